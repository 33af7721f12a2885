//! RequestAuthentication: verifying a request's JWT against the rules compiled for the proxy
//! ([`keel_snapshot::jwt::JwtPolicies`]).
//!
//! Istio's semantics, as Envoy's `jwt_authn` filter implements them for Istio:
//!
//! - a request **without** a token in any rule's locations passes, without a request
//!   principal ([`JwtOutcome::NoToken`]); AuthorizationPolicy's `requestPrincipals` then
//!   decides (unless a rule says `presence: REQUIRED`);
//! - a request **with** a token that fails any check is refused with 401 and Envoy's message
//!   as the body ([`JwtOutcome::Invalid`]);
//! - a valid token gives the principal `iss/sub` and the claims to authorization, and may set
//!   headers (`outputPayloadToHeader`, `outputClaimToHeaders`) and remove the token's header
//!   (`forwardOriginalToken: false`, the default) ([`JwtOutcome::Valid`]).
//!
//! Checks, in Envoy's order: the token's form; `alg` is one ring verifies (RS/PS 256-512,
//! ES256/ES384, EdDSA; never `none` or HMAC); a rule accepts its `iss`; `exp` and `nbf`
//! within [`CLOCK_SKEW`]; `aud` meets the rule's audiences when it has any; a key of the rule's
//! JWKS with the token's `kid` (if both have one) and fitting `alg` verifies the signature.
//!
//! Why ring and not `jsonwebtoken`: ring is already the proxy's only crypto backend, and
//! jsonwebtoken's backends are aws-lc-rs or the `rsa` crate (RUSTSEC-2023-0071).
//!
//! The proxy never fetches keys: a rule's `jwks` is inline, or what the control plane (or
//! standalone's own cache, crate `keel-jwks`) fetched from `jwksUri` or OpenID discovery. A
//! rule without keys — never fetched — refuses its tokens (`Jwks remote fetch is failed`).
//!
//! ```
//! use keel_proxy::jwt::{JwtOutcome, JwtVerifier};
//! use keel_snapshot::jwt::{JwtPolicies, JwtRule, TokenLocation};
//!
//! let policies = JwtPolicies {
//!     rules: vec![JwtRule {
//!         issuer: Some("https://issuer.example".into()),
//!         jwks: Some(r#"{"keys":[]}"#.into()),
//!         locations: TokenLocation::defaults(),
//!         ..Default::default()
//!     }],
//! };
//! let verifier = JwtVerifier::new(&policies);
//! let outcome = verifier.verify(&http::HeaderMap::new(), None, std::time::SystemTime::now());
//! assert_eq!(outcome, JwtOutcome::NoToken);
//! ```

mod extract;
mod jwks;
mod token;
mod verify;

#[cfg(test)]
mod istio_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod verify_tests;

pub use jwks::{Jwks, JwksCache, KeyMatch};
pub use token::{Alg, JwtError};
pub use verify::{CLOCK_SKEW, JwtOutcome, JwtVerifier, VerifiedJwt};

//! Request authentication: the JWT rules (from RequestAuthentications) that apply to one proxy,
//! compiled into plain data the proxy's verifier builds from.
//!
//! Why a model of its own rather than Istio's `JWTRule`: the defaults Istio and Envoy apply are
//! resolved here once (token locations, the space-delimited claims), so the proxy never needs
//! to know them, and the control plane can push the result like the rest of the snapshot.
//! [`compile::jwt`](crate::compile::jwt) selects the policies (with AuthorizationPolicy's
//! rules) and builds this; `keel-proxy`'s `jwt` module verifies tokens against it.

use serde::{Deserialize, Serialize};

/// Istio's default token header, `Authorization: Bearer <token>`.
pub const DEFAULT_HEADER: &str = "authorization";
/// The prefix stripped from the default header.
pub const DEFAULT_PREFIX: &str = "Bearer ";
/// Istio's default query parameter, `?access_token=<token>`.
pub const DEFAULT_PARAM: &str = "access_token";
/// Claims Istio always treats as space-delimited lists, whatever `spaceDelimitedClaims` says.
pub const DEFAULT_SPACE_DELIMITED_CLAIMS: [&str; 2] = ["scope", "permission"];

/// The JWT rules that apply to one proxy, in evaluation order: policies by namespace then
/// name, each policy's rules as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JwtPolicies {
    pub rules: Vec<JwtRule>,
}

impl JwtPolicies {
    /// No rule applies: the proxy skips JWT handling (tokens pass unread).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// One `jwtRules` entry with Istio's defaults resolved.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JwtRule {
    /// `namespace/name` of the RequestAuthentication, for logs and reports.
    pub policy: String,
    /// The `iss` a token must carry; `None` (a `jwksUri`-only rule) accepts any issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `aud` must contain one of these; empty: not checked (Envoy's behaviour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The key set as JSON text (inline `jwks`). `None` when the keys are only reachable
    /// through `jwks_uri`, which the control plane does not fetch yet: tokens for this rule
    /// then fail verification, as in Envoy when the fetch fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Where to look for the token, in order; never empty (Istio's defaults filled in).
    pub locations: Vec<TokenLocation>,
    /// Header that receives the verified payload, base64url-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_payload_to_header: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Keep the token on the request sent upstream (else its header is removed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_original_token: bool,
    /// Claims split on spaces into lists for AuthorizationPolicy, defaults included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
    /// `presence: REQUIRED`: a request without any token is rejected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// Where a token is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenLocation {
    /// A request header (lowercase name); `prefix` is stripped, and a value without it holds
    /// no token.
    Header {
        name: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prefix: String,
    },
    /// A query parameter.
    QueryParam { name: String },
    /// A cookie.
    Cookie { name: String },
}

impl TokenLocation {
    /// Istio's (Envoy's) locations when a rule names none.
    pub fn defaults() -> Vec<TokenLocation> {
        vec![
            TokenLocation::Header {
                name: DEFAULT_HEADER.to_string(),
                prefix: DEFAULT_PREFIX.to_string(),
            },
            TokenLocation::QueryParam {
                name: DEFAULT_PARAM.to_string(),
            },
        ]
    }
}

/// `outputClaimToHeaders`: copy `claim` (dots for nested claims) into `header`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimToHeader {
    /// Lowercase header name.
    pub header: String,
    pub claim: String,
}

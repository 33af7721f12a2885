//! JSON Web Key Sets: parsed once into ring public keys, matched to a token by `kid` and `alg`.
//!
//! Keys ring cannot use (HMAC `oct` keys, P-521, RSA under 2048 bits, keys marked for
//! encryption) are left out with a warning rather than failing the whole set, so one odd key
//! in a provider's set doesn't take down the others.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use super::token::Alg;

/// A parsed key set.
#[derive(Debug, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
    /// Keys left out, and why.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
struct Jwk {
    kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<String>,
    key: PublicKey,
}

#[derive(Debug)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC1 point (`04 || x || y`).
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl PublicKey {
    fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                PublicKey::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (PublicKey::P256(_), Alg::ES256)
                | (PublicKey::P384(_), Alg::ES384)
                | (PublicKey::Ed25519(_), Alg::EdDSA)
        )
    }

    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        let rsa = |params: &'static signature::RsaParameters, n: &[u8], e: &[u8]| {
            RsaPublicKeyComponents { n, e }
                .verify(params, message, sig)
                .is_ok()
        };
        let point = |algorithm: &'static dyn signature::VerificationAlgorithm, bytes: &[u8]| {
            UnparsedPublicKey::new(algorithm, bytes)
                .verify(message, sig)
                .is_ok()
        };
        match (self, alg) {
            (PublicKey::Rsa { n, e }, Alg::RS256) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::RS384) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::RS512) => {
                rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::PS256) => {
                rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::PS384) => {
                rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e)
            }
            (PublicKey::Rsa { n, e }, Alg::PS512) => {
                rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e)
            }
            // JWS carries ECDSA signatures as fixed-width r || s, not DER.
            (PublicKey::P256(p), Alg::ES256) => point(&signature::ECDSA_P256_SHA256_FIXED, p),
            (PublicKey::P384(p), Alg::ES384) => point(&signature::ECDSA_P384_SHA384_FIXED, p),
            (PublicKey::Ed25519(x), Alg::EdDSA) => point(&signature::ED25519, x),
            _ => false,
        }
    }
}

/// What [`Jwks::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    Verified,
    /// No key has the token's `kid` and fits its `alg`.
    NoKey,
    /// Keys fit, none verifies the signature.
    BadSignature,
}

impl Jwks {
    /// A key set (`{"keys": [...]}`) or a single key, as Envoy accepts either.
    pub fn parse(text: &str) -> Result<Jwks, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let keys = match value.get("keys") {
            Some(Value::Array(keys)) => keys.clone(),
            Some(_) => return Err("\"keys\" is not a list".into()),
            None => vec![value],
        };
        let mut out = Jwks::default();
        for (i, key) in keys.iter().enumerate() {
            match parse_key(key) {
                Ok(jwk) => out.keys.push(jwk),
                Err(why) => out.warnings.push(format!("key {i}: {why}; left out")),
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Tries every key that may have signed the token: Envoy's rule, a key whose `kid`
    /// differs from the token's is skipped (keys without a `kid`, or a token without one,
    /// match any), and so is a key of another type or pinned to another `alg`.
    pub fn verify(&self, alg: Alg, kid: Option<&str>, message: &[u8], sig: &[u8]) -> KeyMatch {
        let mut candidates = self.keys.iter().filter(|k| {
            k.key.fits(alg)
                && k.alg.as_deref().is_none_or(|a| a == alg.name())
                && match (kid, k.kid.as_deref()) {
                    (Some(want), Some(have)) => want == have,
                    _ => true,
                }
        });
        let Some(first) = candidates.next() else {
            return KeyMatch::NoKey;
        };
        if std::iter::once(first)
            .chain(candidates)
            .any(|k| k.key.verify(alg, message, sig))
        {
            KeyMatch::Verified
        } else {
            KeyMatch::BadSignature
        }
    }
}

fn b64_field(key: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = key
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no \"{name}\""))?;
    // Some issuers pad their base64url; the padding carries nothing.
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("\"{name}\" is not base64url"))
}

fn parse_key(key: &Value) -> Result<Jwk, String> {
    let str_field = |name: &str| key.get(name).and_then(Value::as_str).map(str::to_string);
    if str_field("use").is_some_and(|u| u != "sig") {
        return Err("\"use\" is not \"sig\"".into());
    }
    let kty = str_field("kty").ok_or("no \"kty\"")?;
    let crv = str_field("crv");
    let public = match (kty.as_str(), crv.as_deref()) {
        ("RSA", _) => {
            let mut n = b64_field(key, "n")?;
            // ring wants the modulus minimal; a leading zero byte is a common encoding slip.
            let zeros = n.iter().take_while(|b| **b == 0).count();
            n.drain(..zeros);
            if n.len() * 8 < 2048 {
                return Err(format!(
                    "RSA modulus of {} bits; at least 2048 are required",
                    n.len() * 8
                ));
            }
            PublicKey::Rsa {
                n,
                e: b64_field(key, "e")?,
            }
        }
        ("EC", Some(c @ ("P-256" | "P-384"))) => {
            let len = if c == "P-256" { 32 } else { 48 };
            let (x, y) = (b64_field(key, "x")?, b64_field(key, "y")?);
            if x.len() != len || y.len() != len {
                return Err(format!("{c} coordinates must be {len} bytes"));
            }
            let point = [&[4u8][..], &x, &y].concat();
            if c == "P-256" {
                PublicKey::P256(point)
            } else {
                PublicKey::P384(point)
            }
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64_field(key, "x")?;
            if x.len() != 32 {
                return Err("Ed25519 \"x\" must be 32 bytes".into());
            }
            PublicKey::Ed25519(x)
        }
        ("oct", _) => return Err("HMAC (oct) keys are not accepted".into()),
        (kty, crv) => {
            return Err(format!(
                "unsupported key type {kty}{}",
                crv.map(|c| format!(" curve {c}")).unwrap_or_default()
            ));
        }
    };
    Ok(Jwk {
        kid: str_field("kid"),
        alg: str_field("alg"),
        key: public,
    })
}

/// Parsed key sets by their JSON text, so a new configuration that keeps a rule's `jwks`
/// doesn't parse it again (and rules sharing a key set share one parse).
#[derive(Debug, Default)]
pub struct JwksCache {
    sets: HashMap<String, Arc<Result<Jwks, String>>>,
}

impl JwksCache {
    pub fn new() -> JwksCache {
        JwksCache::default()
    }

    pub fn get(&mut self, text: &str) -> Arc<Result<Jwks, String>> {
        if let Some(hit) = self.sets.get(text) {
            return Arc::clone(hit);
        }
        let parsed = Arc::new(Jwks::parse(text));
        self.sets.insert(text.to_string(), Arc::clone(&parsed));
        parsed
    }

    /// Drops sets no rule of the current configuration uses.
    pub fn retain_only(&mut self, used: &[&str]) {
        self.sets.retain(|text, _| used.contains(&text.as_str()));
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

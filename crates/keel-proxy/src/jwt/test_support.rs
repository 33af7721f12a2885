//! Keys and tokens for the tests: Ed25519 and ECDSA keys generated with ring, and the RSA
//! fixture signed offline with openssl (ring can't generate RSA keys; testdata/gen_rsa.py).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keel_snapshot::jwt::{JwtPolicies, JwtRule, TokenLocation};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.keel.test";
/// 2026-01-01T00:00:00Z: the tests' clock.
pub const NOW: u64 = 1_767_225_600;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW)
}

/// A signing key and its public JWK.
pub enum TestKey {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
}

impl TestKey {
    pub fn ed25519() -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        TestKey::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    pub fn p256() -> TestKey {
        let (alg, rng) = (
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            SystemRandom::new(),
        );
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        TestKey::P256(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
    }

    pub fn p384() -> TestKey {
        let (alg, rng) = (
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            SystemRandom::new(),
        );
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        TestKey::P384(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
    }

    pub fn alg(&self) -> &'static str {
        match self {
            TestKey::Ed25519(_) => "EdDSA",
            TestKey::P256(_) => "ES256",
            TestKey::P384(_) => "ES384",
        }
    }

    pub fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k.public_key().as_ref())})
            }
            TestKey::P256(k) | TestKey::P384(k) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if half == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "crv": crv, "kid": kid,
                       "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
            }
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            TestKey::Ed25519(k) => k.sign(message).as_ref().to_vec(),
            TestKey::P256(k) | TestKey::P384(k) => k
                .sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec(),
        }
    }

    /// A token with `header` (alg filled in unless given) and `claims`, signed by this key.
    pub fn token(&self, header: Value, claims: Value) -> String {
        let mut header = header;
        if header.get("alg").is_none() {
            header["alg"] = json!(self.alg());
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

/// Claims valid at [`NOW`] for [`ISSUER`].
pub fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": "keel", "iat": NOW - 10, "exp": NOW + 3600})
}

pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// One rule for [`ISSUER`] with `jwks` and Istio's default locations.
pub fn rule(jwks: String) -> JwtRule {
    JwtRule {
        policy: "foo/jwt".into(),
        issuer: Some(ISSUER.into()),
        jwks: Some(jwks),
        locations: TokenLocation::defaults(),
        space_delimited_claims: vec!["scope".into(), "permission".into()],
        ..Default::default()
    }
}

pub fn policies(rules: Vec<JwtRule>) -> JwtPolicies {
    JwtPolicies { rules }
}

pub fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

/// The RSA fixture: its JWKS, and a token per RS/PS algorithm (iss `rsa.keel.test`).
pub struct RsaFixture {
    pub jwks: String,
    pub tokens: Value,
}

pub fn rsa_fixture() -> RsaFixture {
    let v: Value = serde_json::from_str(include_str!("testdata/rsa.json")).unwrap();
    RsaFixture {
        jwks: v["jwks"].as_str().unwrap().to_string(),
        tokens: v["tokens"].clone(),
    }
}

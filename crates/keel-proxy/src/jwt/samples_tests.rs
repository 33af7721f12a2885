//! Istio's own sample key set and token (`security/tools/jwt/samples/jwks.json` and
//! `demo.jwt` in istio/istio), when the shared samples carry them.

use std::path::Path;

use serde_json::Value;

use super::test_support::{bearer, rule};
use super::{JwtOutcome, JwtVerifier};

#[test]
fn istio_demo_token_verifies_with_istio_jwks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/istio-samples/security/tools/jwt/samples");
    let (Ok(jwks), Ok(token)) = (
        std::fs::read_to_string(dir.join("jwks.json")),
        std::fs::read_to_string(dir.join("demo.jwt")),
    ) else {
        println!("skipped: {} has no jwks.json and demo.jwt", dir.display());
        return;
    };
    let token = token.trim();
    let mut r = rule(jwks);
    r.issuer = Some("testing@secure.istio.io".into());
    let verifier = JwtVerifier::new(&super::test_support::policies(vec![r]));
    // Istio's demo token expires in 2037; verify it at its issue time plus a day.
    let payload: Value = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let iat = payload["iat"].as_u64().unwrap_or(0);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(iat + 86_400);
    match verifier.verify(&bearer(token), None, at) {
        JwtOutcome::Valid(v) => {
            assert_eq!(
                v.principal,
                "testing@secure.istio.io/testing@secure.istio.io"
            )
        }
        other => panic!("Istio's demo.jwt: {other:?}"),
    }
}

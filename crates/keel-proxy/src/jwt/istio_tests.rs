//! From Istio's YAML and samples to decisions: Istio's own sample key set and token
//! (`security/tools/jwt/samples/jwks.json` and `demo.jwt` in istio/istio) when the shared
//! samples carry them, and RequestAuthentication (with AuthorizationPolicy) compiled and
//! applied as the request path will.

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

/// From Istio YAML to a decided request: a RequestAuthentication with an inline key set and
/// a custom header, compiled for the workload, then a token verified and its headers applied.
#[test]
fn request_authentication_yaml_to_verified_request() {
    use super::test_support::{TestKey, claims, now};
    use keel_snapshot::compile::authz::AuthzWorkload;

    let key = TestKey::p256();
    let jwks = serde_json::json!({ "keys": [key.jwk("k1")] }).to_string();
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: httpbin, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: "https://issuer.keel.test"
    audiences: [keel]
    jwks: '{jwks}'
    fromHeaders: [{{name: X-Token, prefix: "Bearer "}}]
    outputClaimToHeaders: [{{header: x-user, claim: sub}}]
"#
    );
    let loaded = keel_config::load_str(&yaml, "ra.yaml", &keel_config::LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let workload = AuthzWorkload::new("foo", labels);
    let compiled = keel_snapshot::compile::jwt::for_workload(&loaded.resources, &workload);
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    let verifier = JwtVerifier::new(&compiled.rules);

    let token = key.token(serde_json::json!({"kid": "k1"}), claims());
    let mut headers = http::HeaderMap::new();
    headers.insert("x-token", format!("Bearer {token}").parse().unwrap());
    let JwtOutcome::Valid(v) = verifier.verify(&headers, None, now()) else {
        panic!("the token should verify");
    };
    v.apply(&mut headers);
    assert_eq!(v.principal, "https://issuer.keel.test/alice");
    assert_eq!(headers["x-user"], "alice");
    assert!(!headers.contains_key("x-token"));
    // The default Authorization header is not a location of this rule.
    assert_eq!(
        verifier.verify(&bearer(&token), None, now()),
        JwtOutcome::NoToken
    );
}

/// Istio's "require a JWT" pattern end to end: a RequestAuthentication plus an
/// AuthorizationPolicy with `requestPrincipals: ["*"]` and a `scope` claim condition. What
/// the request path will do: verify, then hand the payload to the authorization engine.
#[test]
fn verified_payload_feeds_authorization_policy() {
    use super::test_support::{TestKey, claims, now};
    use keel_snapshot::authz::{Attributes, HeaderList, HttpAttributes};
    use keel_snapshot::compile::authz::AuthzWorkload;

    let key = TestKey::ed25519();
    let jwks = serde_json::json!({ "keys": [key.jwk("k1")] }).to_string();
    let yaml = format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules: [{{issuer: "https://issuer.keel.test", jwks: '{jwks}'}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: foo}}
spec:
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["https://issuer.keel.test/*"]}}}}]
    when: [{{key: "request.auth.claims[scope]", values: [write]}}]
"#
    );
    let loaded = keel_config::load_str(&yaml, "ra.yaml", &keel_config::LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let workload = AuthzWorkload::new("foo", Default::default());
    let rules = keel_snapshot::compile::jwt::for_workload(&loaded.resources, &workload).rules;
    let authz = keel_snapshot::compile::authz::for_workload(&loaded.resources, &workload).policies;
    let verifier = JwtVerifier::new(&rules);

    let allowed = |headers: &http::HeaderMap| -> Result<bool, super::JwtError> {
        let payload = match verifier.verify(headers, None, now()) {
            JwtOutcome::Invalid(e) => return Err(e),
            JwtOutcome::NoToken => None,
            JwtOutcome::Valid(v) => Some(v.payload),
        };
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let attrs = Attributes {
            source_ip: ip,
            remote_ip: None,
            destination_ip: ip,
            destination_port: 8080,
            peer: None,
            sni: None,
            http: Some(HttpAttributes {
                host: "httpbin",
                method: "GET",
                path: "/",
                headers: &HeaderList(&[]),
                jwt: payload.as_ref(),
            }),
        };
        Ok(authz.evaluate(&attrs).decision.allowed)
    };
    let with_scope = |scope: &str| {
        let mut c = claims();
        c["scope"] = serde_json::json!(scope);
        bearer(&key.token(serde_json::json!({}), c))
    };
    assert_eq!(
        allowed(&with_scope("read write")),
        Ok(true),
        "scope is split into a list"
    );
    assert_eq!(allowed(&with_scope("read")), Ok(false));
    assert_eq!(
        allowed(&http::HeaderMap::new()),
        Ok(false),
        "no token: no principal, denied"
    );
    let forged = TestKey::ed25519().token(serde_json::json!({}), claims());
    assert_eq!(
        allowed(&bearer(&forged)),
        Err(super::JwtError::VerificationFails)
    );
}

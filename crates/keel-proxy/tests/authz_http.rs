//! AuthorizationPolicy on HTTP requests at a gateway: decided before routing, denied requests
//! get Istio's `403 RBAC: access denied` with the deciding policy in `x-keel-error`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use support::*;

fn config(port: u16, up: &Upstream, policies: &str) -> String {
    format!(
        "{gw}{se}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: all, namespace: default}}
spec:
  hosts: [\"*\"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: echo.test}}}}]
---
{policies}",
        gw = gateway("gw", port, &["*"]),
        se = se("echo.test", &[up]),
    )
}

#[tokio::test]
async fn deny_then_allow_decide_each_request_before_routing() {
    let up = echo("echo").await;
    let policies = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ['/admin*']}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get-or-header, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET]}}]
  - when: [{key: 'request.headers[x-token]', values: [open-sesame]}]
";
    let p = Proxy::start(|port| config(port, &up, policies)).await;
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(fetch(p.port, "a.test", "/get").await.status, 200);
    let denied = fetch(p.port, "a.test", "/admin/users").await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body.as_ref(), b"RBAC: access denied");
    assert!(
        denied
            .headers
            .get("x-keel-error")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|e| e.contains("ns[istio-system]-policy[deny-admin]-rule[0]")),
        "{denied:?}"
    );
    // POST matches no ALLOW rule, unless the header condition holds.
    let post = send(
        p.port,
        req("POST", "a.test", "/post").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(post.status, 403, "{post:?}");
    let post = send(
        p.port,
        req("POST", "a.test", "/post")
            .header("x-token", "open-sesame")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, 200, "{post:?}");
}

#[tokio::test]
async fn an_empty_allow_policy_denies_everything() {
    let up = echo("echo").await;
    let allow_nothing = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
";
    let p = Proxy::start(|port| config(port, &up, allow_nothing)).await;
    assert_eq!(fetch(p.port, "a.test", "/get").await.status, 403);
}

/// A signed ES256 token and the JWKS that verifies it.
fn es256(claims: &serde_json::Value) -> (String, String) {
    use base64::Engine;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = key.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
        "x": b64.encode(&public[1..33]), "y": b64.encode(&public[33..65]),
    }]});
    let header = b64.encode(br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
    let payload = b64.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
    (
        format!("{signing_input}.{}", b64.encode(sig.as_ref())),
        jwks.to_string(),
    )
}

/// Istio's JWT task: RequestAuthentication rejects an invalid token (401) and passes a
/// request without one; an AuthorizationPolicy on `requestPrincipals` then requires it.
#[tokio::test]
async fn request_authentication_then_request_principals() {
    let up = echo("echo").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (token, jwks) = es256(&serde_json::json!({
        "iss": "testing@secure.istio.io", "sub": "jason", "exp": now + 600,
    }));
    let policies = format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: istio-system}}
spec:
  action: ALLOW
  rules: [{{from: [{{source: {{requestPrincipals: [testing@secure.istio.io/jason]}}}}]}}]
"
    );
    let p = Proxy::start(|port| config(port, &up, &policies)).await;
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let with = |value: &str| {
        req("GET", "a.test", "/headers")
            .header("authorization", value)
            .body(empty())
            .unwrap()
    };
    let ok = send(p.port, with(&format!("Bearer {token}"))).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let bad = send(p.port, with("Bearer invalidtoken")).await;
    assert_eq!(bad.status, 401, "{bad:?}");
    assert!(bad.headers.contains_key("www-authenticate"));
    // No token: RequestAuthentication lets it pass, the ALLOW policy does not.
    assert_eq!(fetch(p.port, "a.test", "/headers").await.status, 403);
}

fn ip_policy(field: &str, blocks: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ingress-policy, namespace: istio-system}}
spec:
  action: ALLOW
  rules: [{{from: [{{source: {{{field}: [{blocks}]}}}}]}}]
"
    )
}

/// Istio's "Ingress Gateway" authorization task (IP-based allow list): `ipBlocks` judges the
/// peer's address, `remoteIpBlocks` the original client's, which the gateway reads from
/// `X-Forwarded-For` past `numTrustedProxies` trusted proxies (none by default: the peer).
/// The gateway appends the peer to `X-Forwarded-For` for the app.
#[tokio::test]
async fn ip_blocks_judge_the_peer_and_remote_ip_blocks_the_forwarded_client() {
    let up = echo("echo").await;
    let with_xff = |port: u16, xff: Option<&'static str>| async move {
        let mut r = req("GET", "a.test", "/headers");
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        send(port, r.body(empty()).unwrap()).await
    };
    let listed = "'1.2.3.4', '5.6.7.0/24'";

    // No trusted proxy (Istio's default).
    let mut p = Proxy::start(|port| config(port, &up, &ip_policy("ipBlocks", listed))).await;
    assert_eq!(
        with_xff(p.port, None).await.status,
        403,
        "127.0.0.1 is not listed"
    );
    assert_eq!(
        with_xff(p.port, Some("1.2.3.4")).await.status,
        403,
        "ipBlocks reads the peer, not the header"
    );
    let port = p.port;
    p.install(&config(
        port,
        &up,
        &ip_policy("ipBlocks", &format!("{listed}, '127.0.0.1'")),
    ))
    .await;
    let ok = with_xff(p.port, Some("1.2.3.4")).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        ok.json()["headers"]["x-forwarded-for"][0],
        "1.2.3.4, 127.0.0.1",
        "the gateway appends its peer"
    );
    // Trusting nobody, remoteIpBlocks also reads the peer.
    p.install(&config(port, &up, &ip_policy("remoteIpBlocks", listed)))
        .await;
    assert_eq!(with_xff(p.port, Some("1.2.3.4")).await.status, 403);

    // One trusted proxy in front: the address it appended is the client.
    let one = Proxy::start_with(
        || {
            keel_proxy::server::Shared::with_l4(
                "",
                keel_proxy::l4::L4Config {
                    num_trusted_proxies: 1,
                    ..Default::default()
                },
            )
        },
        |port| resources(&config(port, &up, &ip_policy("remoteIpBlocks", listed))),
    )
    .await;
    assert_eq!(
        with_xff(one.port, Some("9.9.9.9, 5.6.7.8")).await.status,
        200
    );
    assert_eq!(
        with_xff(one.port, Some("1.2.3.4, 9.9.9.9")).await.status,
        403
    );
    assert_eq!(
        with_xff(one.port, None).await.status,
        403,
        "no header: the peer"
    );
}

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

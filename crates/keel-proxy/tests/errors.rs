//! Errors the proxy answers itself: each with its status, Envoy response flag and a sentence
//! in `x-keel-error` naming what failed.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use support::*;

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: errs, namespace: default}
spec:
  hosts: [errors.test]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /ok}}]
    route: [{destination: {host: svc.test}}]
  - match: [{uri: {prefix: /unknown-host}}]
    route: [{destination: {host: nowhere.test}}]
  - match: [{uri: {prefix: /empty-subset}}]
    route: [{destination: {host: svc.test, subset: v9}}]
  - match: [{uri: {prefix: /refused}}]
    route: [{destination: {host: down.test}}]
  - match: [{uri: {prefix: /reset}}]
    route: [{destination: {host: reset.test}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc.test
  subsets:
  - {name: v9, labels: {version: v9}}
---
";

/// A server that accepts connections and closes them without answering.
async fn hang_up() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let h = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    (addr, h)
}

async fn setup() -> (Proxy, Upstream, u16, tokio::task::JoinHandle<()>) {
    let up = echo("svc").await;
    let closed = closed_port();
    let (reset_addr, reset_task) = hang_up().await;
    let p = Proxy::start(|port| {
        let down = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: down}}\nspec:\n  hosts: [down.test]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {closed}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reset}}\nspec:\n  hosts: [reset.test]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]\n---\n",
            reset_addr.port()
        );
        [
            gateway("gw", port, &["*"]),
            service_entry(
                "svc.test",
                "HTTP",
                &[Ep {
                    upstream: &up,
                    labels: &[("version", "v1")],
                }],
            ),
            down,
            VS.to_string(),
        ]
        .concat()
    })
    .await;
    (p, up, closed, reset_task)
}

#[tokio::test]
async fn no_route_is_404_nr() {
    let (p, up, _, _t) = setup().await;
    assert_eq!(fetch(p.port, "errors.test", "/ok").await.status, 200);
    // The host is known, the path is not.
    let r = fetch(p.port, "errors.test", "/nothing/here?x=1").await;
    assert_eq!(r.status, 404);
    assert!(
        r.error().starts_with("NR ") && r.error().contains("errors.test/nothing/here"),
        "{}",
        r.error()
    );
    assert!(
        r.text().starts_with("NR "),
        "the body says it too: {}",
        r.text()
    );
    // No virtual host for the authority at all.
    let r = fetch(p.port, "unknown.example", "/ok").await;
    assert_eq!(r.status, 404);
    assert!(r.error().starts_with("NR "), "{}", r.error());
    assert!(r.error().contains("unknown.example"), "{}", r.error());
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn destination_in_no_registry_is_503_nc() {
    let (p, _up, _, _t) = setup().await;
    assert!(
        p.warnings.iter().any(|w| w.contains("nowhere.test")),
        "compiling warns about it: {:?}",
        p.warnings
    );
    let r = fetch(p.port, "errors.test", "/unknown-host").await;
    assert_eq!(r.status, 503);
    assert!(r.error().starts_with("NC "), "{}", r.error());
    assert!(
        // Without a service to take it from, the port is the gateway's (as in Istio).
        r.error()
            .contains(&format!("outbound|{}||nowhere.test", p.port))
            && r.error().contains("ServiceEntry"),
        "{}",
        r.error()
    );
}

#[tokio::test]
async fn subset_selecting_no_endpoint_is_503_uh() {
    let (p, up, _, _t) = setup().await;
    let r = fetch(p.port, "errors.test", "/empty-subset").await;
    assert_eq!(r.status, 503);
    assert!(r.error().starts_with("UH "), "{}", r.error());
    assert!(
        r.error().contains("outbound|80|v9|svc.test"),
        "{}",
        r.error()
    );
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn connection_refused_is_503_uf_naming_cluster_and_endpoint() {
    let (p, _up, closed, _t) = setup().await;
    let r = fetch(p.port, "errors.test", "/refused").await;
    assert_eq!(r.status, 503);
    let e = r.error();
    // The mesh-default retry policy retries connect failures twice (as istiod configures
    // every route), so the flags say the retries ran out too, as Istio's sidecars do.
    assert!(e.starts_with("UF,URX "), "{e}");
    assert!(e.contains("outbound|80||down.test"), "{e}");
    assert!(e.contains(&format!("127.0.0.1:{closed}")), "{e}");
    assert!(e.contains("connection refused"), "{e}");
}

#[tokio::test]
async fn upstream_closing_without_answer_is_503_uc() {
    let (p, _up, _, _t) = setup().await;
    let r = fetch(p.port, "errors.test", "/reset").await;
    assert_eq!(r.status, 503);
    assert!(r.error().starts_with("UC "), "{}", r.error());
    assert!(
        r.error().contains("outbound|80||reset.test"),
        "{}",
        r.error()
    );
}

#[tokio::test]
async fn errors_over_http2_too() {
    let (p, _up, _, _t) = setup().await;
    let mut c = H2::connect(p.port).await;
    let r = c
        .send(
            http::Request::get("http://errors.test/refused")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 503);
    assert!(r.error().starts_with("UF,URX "), "{}", r.error());
    let r = c
        .send(
            http::Request::get("http://errors.test/none")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(r.error().starts_with("NR "), "{}", r.error());
}

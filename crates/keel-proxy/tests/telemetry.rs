//! Istio's standard metrics, recorded by the real request path: after requests through the
//! proxy, `/stats/prometheus` has the series a Grafana dashboard or Kiali would query.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use support::*;

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.test]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /down}}]
    route: [{destination: {host: down.test}}]
  - route: [{destination: {host: svc.test}}]
---
";

fn series<'a>(text: &'a str, name: &str, needles: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .collect()
}

#[tokio::test]
async fn requests_are_counted_with_istio_labels() {
    let up = echo("svc").await;
    let closed = closed_port();
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            service_entry("svc.test", "HTTP", &[Ep { upstream: &up, labels: &[("app", "svc"), ("version", "v1")] }]),
            format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: down}}\nspec:\n  hosts: [down.test]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {closed}}}}}]\n---\n"),
            VS.to_string(),
        ]
        .concat()
    })
    .await;
    for _ in 0..3 {
        let r = fetch(p.port, "web.test", "/hello").await;
        assert_eq!(r.status, 200);
    }
    let r = fetch(p.port, "web.test", "/down").await;
    assert_eq!(r.status, 503);
    // The record is written when the response body ends; give the last one a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let text = p.shared.telemetry.render_prometheus();
    let ok = series(
        &text,
        "istio_requests_total{",
        &[
            "reporter=\"source\"",
            "destination_service=\"svc.test\"",
            "destination_app=\"svc\"",
            "destination_version=\"v1\"",
            "response_code=\"200\"",
            "response_flags=\"-\"",
            "request_protocol=\"http\"",
        ],
    );
    assert_eq!(ok.len(), 1, "{text}");
    assert!(ok[0].ends_with(" 3"), "{}", ok[0]);
    let uf = series(
        &text,
        "istio_requests_total{",
        &[
            "destination_service=\"down.test\"",
            "response_code=\"503\"",
            "response_flags=\"UF,URX\"",
        ],
    );
    assert_eq!(uf.len(), 1, "{text}");
    assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram"));
    let count = series(
        &text,
        "istio_request_duration_milliseconds_count{",
        &["destination_service=\"svc.test\""],
    );
    assert!(count[0].ends_with(" 3"), "{count:?}");
    assert!(
        !series(
            &text,
            "istio_response_bytes_bucket{",
            &["destination_service=\"svc.test\"", "le=\"+Inf\""]
        )
        .is_empty()
    );
}

/// A client that gives up before the upstream answers is still counted and logged, with
/// status 0 and flag `DC`, as Envoy reports a downstream disconnect.
#[tokio::test]
async fn a_request_the_client_abandons_is_recorded_as_dc() {
    use tokio::io::AsyncReadExt;
    // An upstream that reads the request and never answers.
    let up = RawUpstream::start(|mut s, _| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut wire = Wire::connect(p.addr()).await;
    wire.send(b"GET /slow HTTP/1.1\r\nHost: p.test\r\n\r\n")
        .await;
    within("the upstream to get the request", async {
        while up.connections() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    drop(wire);
    let text = within("the abandoned request to be recorded", async {
        loop {
            let text = p.shared.telemetry.render_prometheus();
            if text.contains("response_flags=\"DC\"") {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let dc = series(
        &text,
        "istio_requests_total{",
        &["response_code=\"0\"", "response_flags=\"DC\""],
    );
    assert_eq!(dc.len(), 1, "{text}");
    assert!(dc[0].ends_with(" 1"), "{}", dc[0]);
}

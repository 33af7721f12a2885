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

/// Access-log lines, kept.
#[derive(Default)]
struct Lines(std::sync::Mutex<Vec<String>>);

impl keel_proxy::telemetry::AccessLogSink for Lines {
    fn offer(&self, line: String) -> bool {
        self.0.lock().unwrap().push(line);
        true
    }
}

#[tokio::test]
async fn requests_the_codec_refuses_are_counted_and_logged_as_dpe() {
    use keel_proxy::telemetry::{AccessLogFormat, ProxyIdentity, Telemetry, TelemetryOptions};
    let up = echo("svc").await;
    let lines = std::sync::Arc::new(Lines::default());
    let shared = || {
        let telemetry = Telemetry::with_options(
            ProxyIdentity::default(),
            TelemetryOptions {
                sink: Some(lines.clone()),
                ..TelemetryOptions::default()
            },
        );
        telemetry.set_access_log(AccessLogFormat::Text);
        keel_proxy::server::Shared::with_parts(
            "",
            std::sync::Arc::new(telemetry),
            Default::default(),
        )
    };
    let p = Proxy::start_with(shared, |port| {
        resources(
            &[
                gateway("gw", port, &["*"]),
                se("svc.test", &[&up]),
                VS.to_string(),
            ]
            .concat(),
        )
    })
    .await;
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    let cases: [(Vec<u8>, u16); 3] = [
        (
            b"GET / HTTP/1.1\r\nHost: web.test\r\nX-Folded: a\r\n b\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: web.test\r\nX-Folded: a\r\n b\r\n\r\n".to_vec(),
            400,
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: web.test\r\n{many}\r\n").into_bytes(),
            431,
        ),
    ];
    for (request, status) in &cases {
        let mut c = Wire::connect(p.addr()).await;
        c.send(request).await;
        let head = c.head().await;
        assert_eq!(status_of(&head), *status, "{head}");
        let n = header_of(&head, "content-length").unwrap().parse().unwrap();
        let _ = c.body(n).await;
        assert!(c.closed().await);
    }
    // A request the codec accepts is still counted on its own.
    assert_eq!(fetch(p.port, "web.test", "/hello").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let text = p.shared.telemetry.render_prometheus();
    let dpe = |code: &str| {
        series(
            &text,
            "istio_requests_total{",
            &[
                "reporter=\"source\"",
                &format!("response_code=\"{code}\""),
                "response_flags=\"DPE\"",
                "request_protocol=\"http\"",
                "destination_service=\"unknown\"",
            ],
        )
    };
    assert_eq!(dpe("400").len(), 1, "{text}");
    assert!(dpe("400")[0].ends_with(" 2"), "{}", dpe("400")[0]);
    assert_eq!(dpe("431").len(), 1, "{text}");
    assert!(dpe("431")[0].ends_with(" 1"), "{}", dpe("431")[0]);
    let ok = series(&text, "istio_requests_total{", &["response_code=\"200\""]);
    assert!(ok.len() == 1 && ok[0].ends_with(" 1"), "{text}");
    // One access-log line each, as Envoy writes a codec error: no method, path or authority.
    let lines = lines.0.lock().unwrap().clone();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let refused: Vec<&String> = lines.iter().filter(|l| l.contains(" DPE ")).collect();
    assert_eq!(refused.len(), 3, "{lines:?}");
    assert!(
        refused[0].contains("\"- - HTTP/1.1\" 400 DPE DPE ")
            && refused[0].contains("\"-\" \"-\" \"-\" \"-\""),
        "{}",
        refused[0]
    );
    assert!(
        refused[2].contains("\" 431 DPE DPE more than 100 header fields"),
        "{}",
        refused[2]
    );
}

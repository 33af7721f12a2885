//! Resilience policies end to end, against upstreams that misbehave on purpose: timeouts,
//! retries, fault injection, mirroring, circuit breakers and outlier detection.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::*;

/// A gateway on `port` for `host` routing by `http` (the VirtualService's `http:` list,
/// indented for it), with `extra` resources appended.
fn config(port: u16, host: &str, http: &str, extra: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: default}}
spec:
  hosts: [{host}]
  gateways: [gw]
  http:
{http}
---
{extra}",
        gateway("gw", port, &["*"])
    )
}

fn flags_of(p: &Proxy, host: &str) -> Vec<String> {
    let text = p.shared.telemetry.render_prometheus();
    text.lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| l.contains(&format!("destination_service=\"{host}\"")))
        .filter_map(|l| {
            let start = l.find("response_flags=\"")? + "response_flags=\"".len();
            let end = l[start..].find('"')? + start;
            Some(format!("{} {}", &l[start..end], l.rsplit(' ').next()?))
        })
        .collect()
}

#[tokio::test]
async fn route_timeout_answers_504_ut() {
    let (up, _, _) = scripted("slow", |_| Act::Delay(Duration::from_secs(5))).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "t.test",
            "  - timeout: 100ms\n    route: [{destination: {host: slow.test}}]",
            &se("slow.test", &[&up]),
        )
    })
    .await;
    let started = Instant::now();
    let r = fetch(p.port, "t.test", "/").await;
    assert_eq!(r.status, 504);
    assert!(
        r.error().starts_with("UT upstream request timeout"),
        "{}",
        r.error()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn retries_on_5xx_until_success() {
    let (up, count, _) = scripted("flaky", |n| {
        if n < 2 {
            Act::Status(503)
        } else {
            Act::Status(200)
        }
    })
    .await;
    let p = Proxy::start(|port| {
        config(
            port,
            "r.test",
            "  - retries: {attempts: 3, retryOn: 5xx}\n    route: [{destination: {host: flaky.test}}]",
            &se("flaky.test", &[&up]),
        )
    })
    .await;
    let r = fetch(p.port, "r.test", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_run_out_with_urx_and_attempts_zero_disables() {
    let (up, count, _) = scripted("bad", |_| Act::Status(503)).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "r.test",
            "  - match: [{uri: {prefix: /none}}]
    retries: {attempts: 0}
    route: [{destination: {host: bad.test}}]
  - retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: bad.test}}]",
            &se("bad.test", &[&up]),
        )
    })
    .await;
    let r = fetch(p.port, "r.test", "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(count.load(Ordering::SeqCst), 3, "1 attempt + 2 retries");
    let r = fetch(p.port, "r.test", "/none").await;
    assert_eq!(r.status, 503);
    assert_eq!(count.load(Ordering::SeqCst), 4, "no retry with attempts: 0");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let flags = flags_of(&p, "bad.test");
    assert!(flags.contains(&"URX 1".to_string()), "{flags:?}");
    assert!(flags.contains(&"- 1".to_string()), "{flags:?}");
}

#[tokio::test]
async fn default_retry_moves_off_a_refusing_endpoint() {
    let good = echo("good").await;
    let closed = closed_port();
    let p = Proxy::start(|port| {
        config(
            port,
            "d.test",
            "  - route: [{destination: {host: two.test}}]",
            &format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: two, namespace: default}}
spec:
  hosts: [two.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {closed}}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
",
                good.port()
            ),
        )
    })
    .await;
    // The mesh-default policy retries connect failures on another host: never a 503.
    for _ in 0..20 {
        let r = fetch(p.port, "d.test", "/").await;
        assert_eq!(r.status, 200, "{}", r.error());
    }
}

#[tokio::test]
async fn per_try_timeout_retries_a_slow_attempt() {
    let (up, count, _) = scripted("sometimes-slow", |n| {
        if n == 0 {
            Act::Delay(Duration::from_secs(5))
        } else {
            Act::Status(200)
        }
    })
    .await;
    let p = Proxy::start(|port| {
        config(
            port,
            "p.test",
            "  - retries: {attempts: 2, perTryTimeout: 100ms, retryOn: gateway-error}\n    route: [{destination: {host: st.test}}]",
            &se("st.test", &[&up]),
        )
    })
    .await;
    let started = Instant::now();
    let r = fetch(p.port, "p.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn fault_delay_and_abort() {
    let up = echo("svc").await;
    let p = Proxy::start(|port| {
        config(
            port,
            "f.test",
            "  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}
    route: [{destination: {host: svc.test}}]
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: svc.test}}]
  - match: [{uri: {prefix: /half}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 50}}}
    route: [{destination: {host: svc.test}}]",
            &se("svc.test", &[&up]),
        )
    })
    .await;
    let started = Instant::now();
    let r = fetch(p.port, "f.test", "/delay").await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let r = fetch(p.port, "f.test", "/abort").await;
    assert_eq!(r.status, 418);
    assert!(
        r.error().starts_with("FI fault filter abort"),
        "{}",
        r.error()
    );
    assert_eq!(up.connections(), 1, "the abort never reached the upstream");
    // 50 % over 400 requests: a binomial(400, 0.5) is within 150..250 but for 1e-20.
    let mut aborted = 0;
    let mut c = H1::connect(p.port).await;
    for _ in 0..400 {
        if c.send(get("f.test", "/half")).await.status == 500 {
            aborted += 1;
        }
    }
    assert!((150..250).contains(&aborted), "{aborted}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let flags = flags_of(&p, "svc.test");
    assert!(flags.iter().any(|f| f.starts_with("DI ")), "{flags:?}");
}

#[tokio::test]
async fn grpc_fault_abort_is_trailers_only() {
    let up = echo("svc").await;
    let p = Proxy::start(|port| {
        config(
            port,
            "g.test",
            "  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: {host: svc.test}}]",
            &se("svc.test", &[&up]),
        )
    })
    .await;
    let r = send(
        p.port,
        req("POST", "g.test", "/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .body(full("\0\0\0\0\0"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("grpc-status"), Some("14"));
}

#[tokio::test]
async fn mirror_copies_without_waiting() {
    let main = echo("main").await;
    let (shadow, seen, shadow_hosts) =
        scripted("shadow", |_| Act::Delay(Duration::from_secs(5))).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "m.test",
            "  - route: [{destination: {host: main.test}}]\n    mirror: {host: shadow.test}\n    mirrorPercentage: {value: 100}",
            &[se("main.test", &[&main]), se("shadow.test", &[&shadow])].concat(),
        )
    })
    .await;
    let started = Instant::now();
    let r = fetch(p.port, "m.test", "/copy").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), "main");
    // Istio 1.28 and later (Keel's default): the copy keeps the original Host.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the slow mirror held the request"
    );
    within("the mirror to see the copy", async {
        while seen.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(shadow_hosts.lock().unwrap().as_slice(), ["m.test"]);
}

#[tokio::test]
async fn mirror_host_suffix_is_configurable() {
    let main = echo("main").await;
    let (shadow, seen, hosts) = scripted("shadow", |_| Act::Status(200)).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "m.test",
            "  - route: [{destination: {host: main.test}}]\n    mirror: {host: shadow.test}",
            &[se("main.test", &[&main]), se("shadow.test", &[&shadow])].concat(),
        )
    })
    .await;
    p.shared.shadow_host_suffix.store(true, Ordering::SeqCst);
    let r = fetch(p.port, "m.test", "/copy").await;
    assert_eq!(r.status, 200);
    within("the mirror to see the copy", async {
        while seen.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(hosts.lock().unwrap().as_slice(), ["m.test-shadow"]);
}

#[tokio::test]
async fn max_requests_overflow_is_503_uo() {
    let (up, _, _) = scripted("slow", |_| Act::Delay(Duration::from_millis(500))).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "c.test",
            "  - route: [{destination: {host: cb.test}}]",
            &format!(
                "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: cb, namespace: default}}
spec:
  host: cb.test
  trafficPolicy:
    connectionPool:
      http: {{http2MaxRequests: 1}}
---
",
                se("cb.test", &[&up])
            ),
        )
    })
    .await;
    let port = p.port;
    let first = tokio::spawn(async move { fetch(port, "c.test", "/").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = fetch(p.port, "c.test", "/").await;
    assert_eq!(r.status, 503);
    assert!(
        r.error().starts_with("UO upstream overflow"),
        "{}",
        r.error()
    );
    assert!(r.error().contains("http2MaxRequests"), "{}", r.error());
    let clusters = keel_proxy::admin::clusters_text(&p.shared);
    assert!(clusters.contains("::overflow::requests::1"), "{clusters}");
    assert_eq!(first.await.unwrap().status, 200);
}

/// The seeds' scenario: two versions, one always 500, `consecutive5xxErrors: 1`,
/// `baseEjectionTime: 1m`, `maxEjectionPercent: 100`: one error, then only good answers.
#[tokio::test]
async fn outlier_detection_ejects_the_failing_endpoint() {
    let good = echo("good").await;
    let (bad, bad_count, _) = scripted("bad", |_| Act::Status(500)).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "o.test",
            "  - route: [{destination: {host: od.test}}]",
            &format!(
                "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: od, namespace: default}}
spec:
  host: od.test
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}}
---
",
                se("od.test", &[&good, &bad])
            ),
        )
    })
    .await;
    let mut errors = 0;
    for _ in 0..40 {
        let r = fetch(p.port, "o.test", "/").await;
        if r.status == 500 {
            errors += 1;
        } else {
            assert_eq!(r.upstream(), "good");
        }
    }
    assert_eq!(errors, 1, "one error, then the bad endpoint is ejected");
    assert_eq!(bad_count.load(Ordering::SeqCst), 1);
    let clusters = keel_proxy::admin::clusters_text(&p.shared);
    let bad_addr = format!("127.0.0.1:{}", bad.port());
    assert!(
        clusters.contains(&format!(
            "::{bad_addr}::health_flags::/failed_outlier_check"
        )),
        "{clusters}"
    );
    assert!(
        clusters.contains(&format!("::{bad_addr}::outlier::ejections::1")),
        "{clusters}"
    );
    assert!(clusters.contains("::outlier::ejected_for::"), "{clusters}");
    assert!(clusters.contains("::pool::requests::0"), "{clusters}");
}

/// With weighted subsets and the bad subset fully ejected, its share of requests gets 503
/// `UH`, as in Istio, and the error says why.
#[tokio::test]
async fn ejected_subset_keeps_its_weight_and_says_so() {
    let good = echo("good").await;
    let (bad, _, _) = scripted("bad", |_| Act::Status(500)).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "w.test",
            "  - route:
    - {destination: {host: ws.test, subset: v1}, weight: 50}
    - {destination: {host: ws.test, subset: v2}, weight: 50}",
            &format!(
                "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ws, namespace: default}}
spec:
  host: ws.test
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
",
                service_entry(
                    "ws.test",
                    "HTTP",
                    &[
                        Ep {
                            upstream: &good,
                            labels: &[("version", "v1")]
                        },
                        Ep {
                            upstream: &bad,
                            labels: &[("version", "v2")]
                        }
                    ]
                )
            ),
        )
    })
    .await;
    let mut uh = 0;
    let mut explained = String::new();
    for _ in 0..200 {
        let r = fetch(p.port, "w.test", "/").await;
        if r.status == 503 && r.error().starts_with("UH ") {
            uh += 1;
            explained = r.error().to_string();
        }
    }
    assert!((60..140).contains(&uh), "about half get 503 UH: {uh}");
    assert!(
        explained.contains("ejected by outlier detection"),
        "{explained}"
    );
    assert!(
        explained.contains("50% of requests by weight"),
        "{explained}"
    );
}

#[tokio::test]
async fn ejected_endpoint_returns_after_its_time() {
    let good = echo("good").await;
    let (bad, bad_count, _) = scripted("bad", |_| Act::Status(500)).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "o.test",
            "  - route: [{destination: {host: od.test}}]",
            &format!(
                "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: od, namespace: default}}
spec:
  host: od.test
  trafficPolicy:
    outlierDetection: {{consecutive5xxErrors: 1, interval: 50ms, baseEjectionTime: 200ms, maxEjectionPercent: 100}}
---
",
                se("od.test", &[&good, &bad])
            ),
        )
    })
    .await;
    while bad_count.load(Ordering::SeqCst) == 0 {
        fetch(p.port, "o.test", "/").await;
    }
    // Ejected: the next requests all go to the good endpoint.
    for _ in 0..10 {
        assert_eq!(fetch(p.port, "o.test", "/").await.status, 200);
    }
    assert_eq!(bad_count.load(Ordering::SeqCst), 1);
    // After baseEjectionTime (and the next interval) it takes traffic again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    within("the ejected endpoint to come back", async {
        while bad_count.load(Ordering::SeqCst) == 1 {
            fetch(p.port, "o.test", "/").await;
        }
    })
    .await;
}

/// `maxRequestsPerConnection: 2`: every third request opens a new upstream connection;
/// without it one keep-alive connection serves them all.
#[tokio::test]
async fn max_requests_per_connection_recycles_connections() {
    let up = echo("svc").await;
    let p = Proxy::start(|port| {
        config(
            port,
            "k.test",
            "  - route: [{destination: {host: k.svc}}]",
            &format!(
                "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: k, namespace: default}}
spec:
  host: k.svc
  trafficPolicy:
    connectionPool:
      http: {{maxRequestsPerConnection: 2}}
---
",
                se("k.svc", &[&up])
            ),
        )
    })
    .await;
    let mut c = H1::connect(p.port).await;
    for _ in 0..6 {
        assert_eq!(c.send(get("k.test", "/")).await.status, 200);
    }
    assert_eq!(up.connections(), 3);
}

/// `maxConnections: 1` with `http1MaxPendingRequests: 1`: one request in flight, one waiting
/// for the connection (and served after it), the third refused at once with 503 `UO`.
#[tokio::test]
async fn pending_requests_wait_for_the_connection_then_overflow() {
    let (up, count, _) = scripted("slow", |_| Act::Delay(Duration::from_millis(300))).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "q.test",
            "  - route: [{destination: {host: q.svc}}]",
            &format!(
                "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: q, namespace: default}}
spec:
  host: q.svc
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 1}}
      http: {{http1MaxPendingRequests: 1}}
---
",
                se("q.svc", &[&up])
            ),
        )
    })
    .await;
    let port = p.port;
    let first = tokio::spawn(async move { fetch(port, "q.test", "/").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn(async move { fetch(port, "q.test", "/").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = fetch(p.port, "q.test", "/").await;
    assert_eq!(third.status, 503);
    assert!(third.error().starts_with("UO "), "{}", third.error());
    assert!(
        third.error().contains("http1MaxPendingRequests"),
        "{}",
        third.error()
    );
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(
        up.connections(),
        1,
        "the waiting request reused the one connection"
    );
}

/// `maxConcurrentStreams: 1` to an HTTP/2 upstream: a second concurrent request opens a
/// second connection instead of sharing the first.
#[tokio::test]
async fn max_concurrent_streams_opens_more_h2_connections() {
    let (up, _, _) = scripted("h2", |_| Act::Delay(Duration::from_millis(300))).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "s.test",
            "  - route: [{destination: {host: s.svc}}]",
            &format!(
                "{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: s, namespace: default}}
spec:
  host: s.svc
  trafficPolicy:
    connectionPool:
      http: {{maxConcurrentStreams: 1}}
---
",
                service_entry(
                    "s.svc",
                    "HTTP2",
                    &[Ep {
                        upstream: &up,
                        labels: &[]
                    }]
                )
            ),
        )
    })
    .await;
    let port = p.port;
    let a = tokio::spawn(async move { fetch(port, "s.test", "/").await });
    let b = tokio::spawn(async move { fetch(port, "s.test", "/").await });
    assert_eq!(a.await.unwrap().status, 200);
    assert_eq!(b.await.unwrap().status, 200);
    assert_eq!(up.connections(), 2);
    // Afterwards both streams are closed: a third request reuses a connection.
    assert_eq!(fetch(p.port, "s.test", "/").await.status, 200);
    assert_eq!(up.connections(), 2);
}

/// Envoy's route timeout covers the whole response: a body still streaming when it expires
/// is cut (the head, already sent, can't become a 504).
#[tokio::test]
async fn route_timeout_cuts_a_body_still_streaming() {
    let (_gate_tx, gate) = tokio::sync::watch::channel(false);
    let up = slow("stream", gate, 3).await;
    let p = Proxy::start(|port| {
        config(
            port,
            "s.test",
            "  - timeout: 200ms\n    route: [{destination: {host: stream.test}}]",
            &se("stream.test", &[&up]),
        )
    })
    .await;
    let mut h1 = H1::connect(p.port).await;
    let resp = h1.send_streaming(get("s.test", "/")).await;
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let body = within(
        "the body to be cut",
        http_body_util::BodyExt::collect(resp.into_body()),
    )
    .await;
    assert!(
        body.is_err(),
        "the body should fail when the timeout passes"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

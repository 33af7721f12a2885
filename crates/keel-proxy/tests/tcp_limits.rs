//! TCP connections the proxy ends itself: idle for the DestinationRule's
//! `connectionPool.tcp.idleTimeout`, or still open when the drain deadline passes. Both
//! sides are closed and the connection is still counted and measured.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proxy::l4::L4Config;
use keel_proxy::server::{Listeners, Shared};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that echoes each read back and tells (on `closed`) when its side ends.
async fn echo_upstream() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(());
            });
        }
    });
    (port, rx)
}

/// A gateway TCP port forwarding to `db.test` (the upstream), with `idle` as the
/// DestinationRule's idle timeout when given.
fn config(port: u16, upstream: u16, idle: Option<&str>) -> String {
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  servers:
  - port: {{number: {port}, name: tcp, protocol: TCP}}
    hosts: [\"*\"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 3306, name: tcp, protocol: TCP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {upstream}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [\"*\"]
  gateways: [gw]
  tcp:
  - route: [{{destination: {{host: db.test, port: {{number: 3306}}}}}}]
---
"
    );
    if let Some(idle) = idle {
        yaml.push_str(&format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: default}}
spec:
  host: db.test
  trafficPolicy:
    connectionPool:
      tcp: {{idleTimeout: {idle}}}
"
        ));
    }
    yaml
}

/// The proxy with `yaml(port)` installed and a drain timeout of `drain`.
async fn start(yaml: impl Fn(u16) -> String, drain: Duration) -> (Arc<Shared>, Listeners, u16) {
    for _ in 0..5 {
        let port = free_port();
        let (snapshot, warnings) = snapshot_of(&resources(&yaml(port)));
        assert!(warnings.is_empty(), "{warnings:?}");
        let shared = Shared::with_l4(
            "",
            L4Config {
                drain_timeout: drain,
                ..Default::default()
            },
        );
        shared.install(snapshot);
        let listeners = Listeners::default();
        if listeners.reconcile(&shared).await.is_empty() {
            return (shared, listeners, port);
        }
        listeners.stop_all();
    }
    panic!("no free port");
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("write");
    let mut back = vec![0u8; msg.len()];
    within("echo", s.read_exact(&mut back)).await.expect("read");
    assert_eq!(back, msg);
}

/// Reads until the proxy closes the connection; fails after `STEP`.
async fn closed_by_proxy(s: &mut TcpStream) {
    let mut rest = Vec::new();
    let _ = within("close", s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{rest:?}");
}

fn closed_total(shared: &Shared) -> String {
    let text = shared.telemetry.render_prometheus();
    text.lines()
        .filter(|l| l.starts_with("istio_tcp_connections_closed_total{"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_destination_rule_idle_timeout() {
    let (upstream, mut upstream_closed) = echo_upstream().await;
    let (shared, _l, port) = start(
        |p| config(p, upstream, Some("300ms")),
        Duration::from_secs(5),
    )
    .await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // Traffic more often than the timeout keeps the connection open past it...
    let started = Instant::now();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        round_trip(&mut s, format!("ping {i}").as_bytes()).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(600));
    // ...silence closes both sides.
    let quiet = Instant::now();
    closed_by_proxy(&mut s).await;
    assert!(quiet.elapsed() >= Duration::from_millis(300));
    within("upstream side closed", upstream_closed.recv()).await;
    let closed = closed_total(&shared);
    assert!(
        closed.contains("destination_service=\"db.test\""),
        "{closed}"
    );
    assert!(closed.trim_end().ends_with(" 1"), "{closed}");
    let text = shared.telemetry.render_prometheus();
    let sent = text
        .lines()
        .find(|l| l.starts_with("istio_tcp_sent_bytes_total{"))
        .expect("sent bytes");
    assert!(sent.ends_with(" 36"), "{sent}");
}

#[tokio::test]
async fn without_a_destination_rule_connections_stay_open() {
    let (upstream, _closed) = echo_upstream().await;
    let (_shared, _l, port) = start(|p| config(p, upstream, None), Duration::from_secs(5)).await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    round_trip(&mut s, b"hello").await;
    // Istio's default is an hour; a short silence changes nothing.
    tokio::time::sleep(Duration::from_millis(400)).await;
    round_trip(&mut s, b"still here").await;
}

#[tokio::test]
async fn draining_closes_tcp_connections_at_the_deadline() {
    let (upstream, mut upstream_closed) = echo_upstream().await;
    let (shared, listeners, port) =
        start(|p| config(p, upstream, None), Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    round_trip(&mut s, b"before").await;
    // As SIGTERM does: stop accepting, then drain.
    listeners.stop_all();
    let drain_started = Instant::now();
    shared.drain.send(true).expect("drain");
    // The connection keeps working until the deadline...
    round_trip(&mut s, b"while draining").await;
    // ...then both sides are closed, so nothing holds the process open.
    closed_by_proxy(&mut s).await;
    assert!(drain_started.elapsed() >= Duration::from_millis(300));
    within("upstream side closed", upstream_closed.recv()).await;
    within("drain receivers gone", async {
        while shared.drain.receiver_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(closed_total(&shared).trim_end().ends_with(" 1"));
}

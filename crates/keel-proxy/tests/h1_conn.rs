//! Keel's HTTP/1 codec and its connections: upstream connections reused, closed by the
//! upstream while idle, or marked `Connection: close`; large bodies streamed with
//! backpressure instead of buffered; the head-read and idle deadlines; draining; bytes sent
//! right behind an upgrade; and `Expect: 100-continue` left unanswered.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn vs(host: &str, dest: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{}, namespace: default}}\nspec:\n  hosts: [{host}]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: {dest}}}}}]\n---\n",
        host.replace('.', "-")
    )
}

async fn to_echo(up: &Upstream) -> Proxy {
    Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("echo.test", &[up]),
            vs("p.test", "echo.test"),
        ]
        .concat()
    })
    .await
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = echo("echo").await;
    let p = to_echo(&up).await;
    for i in 0..20 {
        // A new client connection each time: only the upstream side is pooled.
        let r = fetch(p.port, "p.test", &format!("/{i}")).await;
        assert_eq!(r.status, 200);
        let r = send(
            p.port,
            req("POST", "p.test", "/post")
                .body(full(vec![b'x'; 3000]))
                .unwrap(),
        )
        .await;
        assert_eq!(r.json()["body_len"], 3000);
    }
    assert_eq!(up.connections(), 1);
}

/// Answers one request per connection, then closes it (without saying so).
async fn one_shot_upstream() -> RawUpstream {
    RawUpstream::start(|s, _| async move {
        let mut w = Wire::new(s);
        let head = w.head().await;
        let n: usize = header_of(&head, "content-length").map_or(0, |n| n.parse().unwrap());
        let _ = w.body(n).await;
        w.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
    })
    .await
}

#[tokio::test]
async fn upstream_closing_idle_connections_costs_no_request() {
    let up = one_shot_upstream().await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    for i in 0..10 {
        // Sometimes the close has been seen when the next request comes, sometimes not.
        if i % 2 == 0 {
            tokio::task::yield_now().await;
        }
        c.send(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
        let head = c.head().await;
        assert_eq!(status_of(&head), 200, "request {i}: {head}");
        assert_eq!(c.body(2).await, b"ok");
    }
    assert_eq!(up.connections(), 10);
}

#[tokio::test]
async fn connection_close_from_upstream_is_not_reused() {
    let up = RawUpstream::start(|s, _| async move {
        let mut w = Wire::new(s);
        let _ = w.head().await;
        w.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            .await;
        // Left open: only the header says not to reuse it.
        let _ = w.read_to_close().await;
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
        let head = c.head().await;
        assert_eq!(status_of(&head), 200);
        // The client's connection is not the upstream's: it stays open.
        assert_eq!(header_of(&head, "connection"), None, "{head}");
        assert_eq!(c.body(2).await, b"ok");
    }
    assert_eq!(up.connections(), 3);
}

/// A client socket with a small send buffer, so it blocks as soon as the proxy stops
/// reading.
async fn small_buffer_client(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_send_buffer_size(16 * 1024).unwrap();
    sock.connect(addr).await.unwrap()
}

#[tokio::test]
async fn large_uploads_stream_with_backpressure() {
    const TOTAL: usize = 64 << 20;
    let gate = Arc::new(tokio::sync::Notify::new());
    let first_read = Arc::new(tokio::sync::Notify::new());
    let up = {
        let (gate, first_read) = (gate.clone(), first_read.clone());
        RawUpstream::start(move |s, _| {
            let (gate, read_first) = (gate.clone(), first_read.clone());
            async move {
                let mut w = Wire::new(s);
                let head = w.head().await;
                let n: usize = header_of(&head, "content-length").unwrap().parse().unwrap();
                let first = w.body(1 << 20).await;
                read_first.notify_one();
                gate.notified().await;
                let rest = w.body(n - first.len()).await;
                let ok = first
                    .iter()
                    .chain(&rest)
                    .enumerate()
                    .all(|(i, b)| *b == (i % 251) as u8);
                let answer = if ok { "intact" } else { "corrupt" };
                w.send(format!("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n{answer}").as_bytes())
                    .await;
                let _ = w.read_to_close().await;
            }
        })
        .await
    };
    let p = proxy_to(up.addr).await;
    let mut s = small_buffer_client(p.addr()).await;
    let written = Arc::new(AtomicUsize::new(0));
    let (mut r, mut wr) = s.split();
    let upload = async {
        wr.write_all(
            format!("PUT /big HTTP/1.1\r\nHost: p.test\r\nContent-Length: {TOTAL}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(64 * 1024) {
            wr.write_all(chunk).await.unwrap();
            written.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    };
    let check = async {
        // The upstream has read its first MiB and reads no more. Whatever the machine's
        // speed, the client can't get further than what the socket buffers on the way hold
        // (loopback autotunes them to a few MiB) plus the frame or two the proxy holds; the
        // pause only gives a proxy that buffered bodies the time to take them all.
        first_read.notified().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = written.load(Ordering::SeqCst);
        assert!(
            sent < TOTAL / 2,
            "{sent} bytes taken while the upstream read nothing"
        );
        gate.notify_one();
        let mut resp = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.ends_with(b"intact") && !got.ends_with(b"corrupt") {
            let n = r.read(&mut resp).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&resp[..n]);
        }
        assert!(
            got.ends_with(b"intact"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    };
    tokio::join!(upload, check);
}

#[tokio::test(start_paused = true)]
async fn silent_and_slow_clients_are_closed() {
    let up = echo("echo").await;
    let p = to_echo(&up).await;
    // Nothing at all: closed once the head deadline passes (30 s, checked within 60 s).
    let mut silent = Wire::connect(p.addr()).await;
    // Half a head: the same.
    let mut slow = Wire::connect(p.addr()).await;
    slow.send(b"GET / HTTP/1.1\r\nHost: p.te").await;
    // A finished request, then idle: kept (the idle limit is an hour).
    let mut idle = Wire::connect(p.addr()).await;
    idle.send(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
    let head = idle.head().await;
    let n = header_of(&head, "content-length").unwrap().parse().unwrap();
    let _ = idle.body(n).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let mut b = [0u8; 1];
    assert_eq!(silent.s.read(&mut b).await.unwrap_or(0), 0);
    assert_eq!(slow.s.read(&mut b).await.unwrap_or(0), 0);
    idle.send(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
    assert_eq!(status_of(&idle.head().await), 200);
}

#[tokio::test]
async fn draining_finishes_the_request_in_flight_then_closes() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let streaming = slow("slow", gate, 3).await;
    let fast = echo("echo").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("slow.test", &[&streaming]),
            se("echo.test", &[&fast]),
            vs("p.test", "slow.test"),
            vs("fast.test", "echo.test"),
        ]
        .concat()
    })
    .await;
    let mut idle = Wire::connect(p.addr()).await;
    idle.send(b"GET / HTTP/1.1\r\nHost: fast.test\r\n\r\n")
        .await;
    let head = idle.head().await;
    let n = header_of(&head, "content-length").unwrap().parse().unwrap();
    let _ = idle.body(n).await;
    let mut busy = Wire::connect(p.addr()).await;
    busy.send(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
    let head = busy.head().await;
    assert_eq!(header_of(&head, "transfer-encoding"), Some("chunked"));
    // The busy connection is mid-response when the proxy drains.
    p.shared.drain.send(true).unwrap();
    assert!(idle.closed().await, "idle connections close at once");
    open.send(true).unwrap();
    let (body, _) = busy.chunked().await;
    assert!(
        String::from_utf8_lossy(&body).ends_with("chunk 3\n"),
        "{body:?}"
    );
    assert!(busy.closed().await, "closed after the response in flight");
}

#[tokio::test]
async fn bytes_right_behind_an_upgrade_reach_the_upstream() {
    let up = upgrade_echo("ws").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("ws.test", &[&up]),
            vs("p.test", "ws.test"),
        ]
        .concat()
    })
    .await;
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"GET /socket HTTP/1.1\r\nHost: p.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly bytes")
        .await;
    let head = c.head().await;
    assert_eq!(status_of(&head), 101, "{head}");
    assert_eq!(c.body(11).await, b"early bytes");
    c.send(b" and more").await;
    assert_eq!(c.body(9).await, b" and more");
}

#[tokio::test]
async fn an_unanswered_expect_closes_the_connection() {
    let up = echo("echo").await;
    let p = to_echo(&up).await;
    let mut c = Wire::connect(p.addr()).await;
    // No route: the proxy answers without wanting the body, so it never says 100 Continue,
    // and it can't know whether the body will follow: the connection closes.
    c.send(b"POST / HTTP/1.1\r\nHost: nowhere.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await;
    let head = c.head().await;
    assert_eq!(status_of(&head), 404, "{head}");
    let n = header_of(&head, "content-length").unwrap().parse().unwrap();
    let _ = c.body(n).await;
    assert!(c.closed().await);
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn a_client_leaving_cancels_its_upstream_request() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let up = RawUpstream::start(move |s, _| {
        let tx = tx.clone();
        async move {
            let mut w = Wire::new(s);
            let _ = w.head().await;
            let _ = tx.send("request");
            // Never answers; reports the proxy hanging up.
            if w.closed().await {
                let _ = tx.send("closed");
            }
        }
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"GET /wait HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
    assert_eq!(within("request", rx.recv()).await, Some("request"));
    drop(c);
    assert_eq!(within("upstream closed", rx.recv()).await, Some("closed"));
}

#[tokio::test]
async fn an_early_answer_is_forwarded_while_the_upload_is_refused() {
    let up = RawUpstream::start(|s, _| async move {
        let mut w = Wire::new(s);
        let _ = w.head().await;
        w.send(b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big!")
            .await;
        let _ = w.read_to_close().await;
    })
    .await;
    let p = proxy_to(up.addr).await;
    let s = tokio::net::TcpStream::connect(p.addr()).await.unwrap();
    let (mut r, mut wr) = s.into_split();
    let total = 8 << 20;
    let upload = tokio::spawn(async move {
        let head = format!("PUT /big HTTP/1.1\r\nHost: p.test\r\nContent-Length: {total}\r\n\r\n");
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..total / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"too big!") {
        let n = within("response", r.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{text}"
    );
    upload.abort();
}

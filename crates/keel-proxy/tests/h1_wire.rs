//! Keel's HTTP/1 codec on the wire: exact bytes through the proxy with raw clients and raw
//! upstreams — header case both ways, chunked bodies and trailers, pipelining, HTTP/1.0,
//! interim responses, HEAD, close-delimited bodies, and malformed input refused without
//! harm to the next connection.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::sync::mpsc;

/// An upstream that answers every request on a connection with `path:body-length`,
/// sending each request head it saw to `heads`.
async fn recording_upstream(heads: mpsc::UnboundedSender<String>) -> RawUpstream {
    RawUpstream::start(move |s, _| {
        let heads = heads.clone();
        async move {
            let mut w = Wire::new(s);
            loop {
                if w.closed().await {
                    return;
                }
                let head = w.head().await;
                let body = match header_of(&head, "content-length") {
                    Some(n) => w.body(n.parse().unwrap()).await,
                    None if header_of(&head, "transfer-encoding").is_some() => w.chunked().await.0,
                    None => Vec::new(),
                };
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let _ = heads.send(head);
                let answer = format!("{path}:{}", body.len());
                w.send(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    )
                    .as_bytes(),
                )
                .await;
            }
        }
    })
    .await
}

/// An upstream that answers each connection's first request with `reply`, then waits.
async fn replying(reply: &'static [u8]) -> RawUpstream {
    RawUpstream::start(move |s, _| async move {
        let mut w = Wire::new(s);
        let _ = w.head().await;
        w.send(reply).await;
        let _ = w.read_to_close().await;
    })
    .await
}

fn lines(head: &str) -> Vec<&str> {
    head.split("\r\n").collect()
}

async fn get(addr: SocketAddr, path: &str) -> (String, Wire) {
    let mut c = Wire::connect(addr).await;
    c.send(format!("GET {path} HTTP/1.1\r\nHost: p.test\r\n\r\n").as_bytes())
        .await;
    (c.head().await, c)
}

#[tokio::test]
async fn header_case_is_kept_both_ways() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let up = RawUpstream::start(move |s, _| {
        let tx = tx.clone();
        async move {
            let mut w = Wire::new(s);
            let _ = tx.send(w.head().await);
            w.send(b"HTTP/1.1 200 OK\r\nX-Upstream-Case: a\r\nETag: \"v1\"\r\nwww-authenticate: Basic\r\nCONTENT-LENGTH: 2\r\n\r\nok")
                .await;
            let _ = w.read_to_close().await;
        }
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"GET /case HTTP/1.1\r\nHost: p.test\r\nX-Custom-Header: 1\r\nx-lower: 2\r\nX-ReQuEsT-ID: abc\r\nACCEPT: */*\r\nUser-Agent: raw\r\n\r\n")
        .await;
    let resp = c.head().await;
    let seen = rx.recv().await.unwrap();
    let sent = lines(&seen);
    for l in [
        "GET /case HTTP/1.1",
        "Host: p.test",
        "X-Custom-Header: 1",
        "x-lower: 2",
        "X-ReQuEsT-ID: abc",
        "ACCEPT: */*",
        "User-Agent: raw",
        // Added by the proxy: lower case.
        "x-forwarded-proto: http",
    ] {
        assert!(sent.contains(&l), "{l:?} not in {seen:?}");
    }
    let got = lines(&resp);
    for l in [
        "HTTP/1.1 200 OK",
        "X-Upstream-Case: a",
        "ETag: \"v1\"",
        "www-authenticate: Basic",
        "CONTENT-LENGTH: 2",
    ] {
        assert!(got.contains(&l), "{l:?} not in {resp:?}");
    }
    assert!(got.iter().any(|l| l.starts_with("date: ")), "{resp:?}");
    assert_eq!(c.body(2).await, b"ok");
}

#[tokio::test]
async fn chunked_both_ways_with_trailers() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let up = RawUpstream::start(move |s, _| {
        let tx = tx.clone();
        async move {
            let mut w = Wire::new(s);
            let head = w.head().await;
            let (body, trailers) = w.chunked().await;
            let _ = tx.send((head, body, trailers));
            w.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\nGrpc-Status: 0\r\n\r\n")
                .await;
            let _ = w.read_to_close().await;
        }
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n")
        .await;
    let resp = c.head().await;
    let (head, body, trailers) = rx.recv().await.unwrap();
    assert_eq!(body, b"hello world");
    assert_eq!(trailers, "x-sum: 11\r\n");
    assert_eq!(header_of(&head, "transfer-encoding"), Some("chunked"));
    assert_eq!(header_of(&head, "content-length"), None);
    assert_eq!(header_of(&resp, "transfer-encoding"), Some("chunked"));
    let (data, trailers) = c.chunked().await;
    assert_eq!(data, b"abcdefg");
    assert_eq!(trailers, "grpc-status: 0\r\n");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let up = recording_upstream(tx).await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"GET /one HTTP/1.1\r\nHost: p.test\r\n\r\nPOST /two HTTP/1.1\r\nHost: p.test\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: p.test\r\n\r\n")
        .await;
    for want in ["/one:0", "/two:3", "/three:0"] {
        let head = c.head().await;
        assert_eq!(status_of(&head), 200, "{head}");
        let n = header_of(&head, "content-length").unwrap().parse().unwrap();
        assert_eq!(String::from_utf8(c.body(n).await).unwrap(), want);
    }
}

#[tokio::test]
async fn http_1_0_clients() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let up = recording_upstream(tx).await;
    let p = proxy_to(up.addr).await;
    // Without keep-alive: answered in HTTP/1.0, then closed.
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"GET /a HTTP/1.0\r\nHost: p.test\r\n\r\n").await;
    let head = c.head().await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert_eq!(c.read_to_close().await, b"/a:0");
    // With keep-alive: said so, and the connection carries another request.
    let mut c = Wire::connect(p.addr()).await;
    for path in ["/b", "/c"] {
        c.send(
            format!("GET {path} HTTP/1.0\r\nHost: p.test\r\nConnection: keep-alive\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let head = c.head().await;
        assert_eq!(header_of(&head, "connection"), Some("keep-alive"), "{head}");
        assert_eq!(c.body(4).await, format!("{path}:0").as_bytes());
    }
    // A body of unknown length goes to an HTTP/1.0 client delimited by the close.
    let chunked =
        replying(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .await;
    let p = proxy_to(chunked.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"GET / HTTP/1.0\r\nHost: p.test\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let head = c.head().await;
    assert_eq!(header_of(&head, "transfer-encoding"), None, "{head}");
    assert_eq!(header_of(&head, "content-length"), None, "{head}");
    assert_eq!(c.read_to_close().await, b"hello");
}

#[tokio::test]
async fn interim_responses_are_not_forwarded() {
    let up = replying(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let p = proxy_to(up.addr).await;
    let (head, mut c) = get(p.addr(), "/").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(c.body(2).await, b"ok");
}

#[tokio::test]
async fn head_responses_keep_their_length_and_have_no_body() {
    let up = RawUpstream::start(move |s, _| async move {
        let mut w = Wire::new(s);
        loop {
            if w.closed().await {
                return;
            }
            let head = w.head().await;
            if head.starts_with("HEAD") {
                w.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
                    .await;
            } else {
                w.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")
                    .await;
            }
        }
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    c.send(b"HEAD / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
    let head = c.head().await;
    assert_eq!(header_of(&head, "content-length"), Some("1234"), "{head}");
    // No body followed: the next response starts right after.
    c.send(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
    let head = c.head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(c.body(3).await, b"get");
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn close_delimited_upstream_bodies_are_chunked_and_not_reused() {
    let up = RawUpstream::start(|s, _| async move {
        let mut w = Wire::new(s);
        let _ = w.head().await;
        w.send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
        // Closing ends the body.
    })
    .await;
    let p = proxy_to(up.addr).await;
    let mut c = Wire::connect(p.addr()).await;
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.1\r\nHost: p.test\r\n\r\n").await;
        let head = c.head().await;
        assert_eq!(
            header_of(&head, "transfer-encoding"),
            Some("chunked"),
            "{head}"
        );
        assert_eq!(c.chunked().await.0, b"until the end");
    }
    assert_eq!(up.connections(), 2);
}

/// Sends `request` on a new connection; returns the response head and whether the proxy
/// closed the connection after it.
async fn refused(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let mut c = Wire::connect(addr).await;
    c.send(request).await;
    let head = c.head().await;
    let n = header_of(&head, "content-length")
        .unwrap_or("0")
        .parse()
        .unwrap();
    let _ = c.body(n).await;
    (head, c.closed().await)
}

#[tokio::test]
async fn malformed_requests_are_refused_and_closed() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let up = recording_upstream(tx).await;
    let p = proxy_to(up.addr).await;
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: p.test\r\nx-big: {}\r\n\r\n",
        "v".repeat(61 * 1024)
    );
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"POST / HTTP/1.1\r\nHost: p.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400, "both Content-Length and Transfer-Encoding"),
        (b"POST / HTTP/1.1\r\nHost: p.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n".to_vec(), 400, "conflicting"),
        (b"POST / HTTP/1.1\r\nHost: p.test\r\nContent-Length: -1\r\n\r\n".to_vec(), 400, "Content-Length"),
        (b"GET / HTTP/1.1\r\nHost: p.test\r\nX-Folded: a\r\n b\r\n\r\n".to_vec(), 400, "malformed"),
        (b"POST / HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), 501, "gzip"),
        (b"POST / HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "chunk size"),
        (b"POST / HTTP/1.1\r\nHost: p.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n".to_vec(), 400, "chunk size"),
        (format!("GET / HTTP/1.1\r\nHost: p.test\r\n{many}\r\n").into_bytes(), 431, "header fields"),
        (big.into_bytes(), 431, "larger than"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), 400, "malformed"),
    ];
    for (request, status, words) in cases {
        let (head, closed) = refused(p.addr(), &request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned();
        assert_eq!(status_of(&head), status, "{shown:?}: {head}");
        let error = header_of(&head, "x-keel-error").unwrap_or("");
        assert!(
            error.starts_with("DPE ") && error.contains(words),
            "{shown:?}: {error}"
        );
        assert!(closed, "{shown:?}: still open");
    }
    // Nothing reached the upstream but the heads of the two bodies that turned out broken,
    // and the proxy still serves.
    let (head, _) = get(p.addr(), "/fine").await;
    assert_eq!(status_of(&head), 200);
    let mut seen = Vec::new();
    while let Ok(h) = rx.try_recv() {
        seen.push(h);
    }
    assert!(
        seen.last().is_some_and(|h| h.starts_with("GET /fine")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_response_cut_short_upstream_is_cut_short_downstream() {
    let up = RawUpstream::start(|s, _| async move {
        let mut w = Wire::new(s);
        let _ = w.head().await;
        w.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
            .await;
        // Closing mid-body.
    })
    .await;
    let p = proxy_to(up.addr).await;
    let (head, mut c) = get(p.addr(), "/").await;
    assert_eq!(header_of(&head, "content-length"), Some("100"));
    // The client gets what there was, then the connection closes: a length it can't meet.
    assert_eq!(c.read_to_close().await, b"only ten..");
}

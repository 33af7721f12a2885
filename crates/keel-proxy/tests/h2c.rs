//! The HTTP/1.1 `Upgrade: h2c` handshake: `101 Switching Protocols`, the upgrading request
//! answered on stream 1, further requests as HTTP/2 on the same connection; requests with
//! a body stay HTTP/1.1.
//!
//! hyper's client can't upgrade, so the handshake is written by hand; stream 1 is checked
//! by reading frames, and later streams with the `h2` client started at stream 3.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;

/// A gateway routing `p.test` to an HTTP/1.1 echo.
async fn proxy() -> (Proxy, Upstream) {
    let up = echo("echo").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("echo.test", &[&up]),
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: p, namespace: default}\nspec:\n  hosts: [p.test]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: echo.test}}]\n".to_string(),
        ]
        .concat()
    })
    .await;
    (p, up)
}

/// Sends `head` and reads the response head (byte by byte: nothing after it is consumed).
async fn exchange_head(s: &mut TcpStream, head: &str) -> String {
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    within("response head", async {
        while !buf.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).await.expect("read"), 1, "closed early");
            buf.push(b[0]);
        }
    })
    .await;
    String::from_utf8_lossy(&buf).to_ascii_lowercase()
}

fn upgrade_request(method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: p.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nx-test: kept\r\n{extra}\r\n"
    )
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

async fn read_frame(s: &mut TcpStream) -> Frame {
    let mut h = [0u8; 9];
    within("frame", s.read_exact(&mut h)).await.expect("frame");
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let mut payload = vec![0u8; len];
    within("frame payload", s.read_exact(&mut payload))
        .await
        .expect("payload");
    Frame {
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        payload,
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads frames until `stream` ends; returns its header block and body.
async fn read_stream(s: &mut TcpStream, stream: u32) -> (Vec<u8>, Vec<u8>) {
    let (mut headers, mut body) = (Vec::new(), Vec::new());
    loop {
        let f = read_frame(s).await;
        match f.kind {
            SETTINGS if f.flags & 1 == 0 => {
                s.write_all(&frame(SETTINGS, 1, 0, &[])).await.expect("ack");
            }
            GOAWAY => panic!("GOAWAY: {:?}", f.payload),
            HEADERS if f.stream == stream => headers.extend_from_slice(&f.payload),
            DATA if f.stream == stream => body.extend_from_slice(&f.payload),
            _ => {}
        }
        if f.stream == stream && f.flags & END_STREAM != 0 {
            return (headers, body);
        }
    }
}

#[tokio::test]
async fn upgrade_answers_the_request_on_stream_1_and_serves_http2() {
    let (p, _up) = proxy().await;
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    let head = exchange_head(&mut s, &upgrade_request("GET", "/first?q=1", "")).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: h2c"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    // The client's preface and SETTINGS; the answer to the upgrading request is stream 1.
    s.write_all(PREFACE).await.expect("preface");
    s.write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    let (headers, body) = read_stream(&mut s, 1).await;
    // hpack: `:status: 200` is static table entry 8, sent indexed.
    assert_eq!(headers.first(), Some(&0x88), "{headers:?}");
    let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(j["path"], "/first");
    assert_eq!(j["query"], "q=1");
    assert_eq!(j["headers"]["host"][0], "p.test");
    assert_eq!(j["headers"]["x-test"][0], "kept");
    assert!(j["headers"].get("upgrade").is_none() && j["headers"].get("http2-settings").is_none());

    // A second request on stream 3, HPACK literals without indexing.
    let mut block = Vec::new();
    for (n, v) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "p.test"),
        (":path", "/second"),
    ] {
        block.push(0);
        block.push(n.len() as u8);
        block.extend_from_slice(n.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    s.write_all(&frame(HEADERS, END_STREAM | 0x4, 3, &block))
        .await
        .expect("stream 3");
    let (headers, body) = read_stream(&mut s, 3).await;
    assert_eq!(headers.first(), Some(&0x88), "{headers:?}");
    let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(j["path"], "/second");
}

#[tokio::test]
async fn an_http2_client_continues_after_the_upgrade() {
    let (p, _up) = proxy().await;
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    let head = exchange_head(&mut s, &upgrade_request("GET", "/first", "")).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // Stream 1 is the upgrading request's, so the client's own streams start at 3 (the
    // client resets stream 1, whose response it never asked for on this connection).
    let (mut client, connection) = within(
        "h2 handshake",
        h2::client::Builder::new()
            .initial_stream_id(3)
            .handshake::<_, bytes::Bytes>(s),
    )
    .await
    .expect("handshake");
    tokio::spawn(connection);
    for path in ["/second", "/third"] {
        let req = http::Request::get(format!("http://p.test{path}"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).expect("send");
        let resp = within("response", resp).await.expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = within("body", body.data()).await {
            let chunk = chunk.expect("chunk");
            let _ = body.flow_control().release_capacity(chunk.len());
            bytes.extend_from_slice(&chunk);
        }
        let j: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(j["path"], path);
    }
}

#[tokio::test]
async fn requests_with_a_body_are_not_upgraded() {
    let (p, _up) = proxy().await;
    let mut c = H1::connect(p.port).await;
    for i in 0..2 {
        let r = c
            .send(
                req("POST", "p.test", "/post")
                    .header("connection", "Upgrade, HTTP2-Settings")
                    .header("upgrade", "h2c")
                    .header("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA")
                    .body(full(format!("hello {i}")))
                    .unwrap(),
            )
            .await;
        // Answered as HTTP/1.1 on the same connection; the upstream saw no upgrade.
        assert_eq!(r.status, 200, "{}", r.error());
        assert_eq!(r.version, http::Version::HTTP_11);
        assert_eq!(r.json()["body_len"], 7);
        assert!(r.seen("upgrade").is_empty() && r.seen("http2-settings").is_empty());
    }
}

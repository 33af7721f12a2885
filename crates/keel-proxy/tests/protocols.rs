//! Protocols through the proxy: HTTP/1.1 keep-alive, chunked bodies, `100-continue`, large
//! streamed bodies, h2c downstream and upstream, gRPC trailers, protocol upgrades.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use bytes::Bytes;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn vs_to(host: &str, dest: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{}, namespace: default}}\nspec:\n  hosts: [{host}]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: {dest}}}}}]\n---\n",
        host.replace('.', "-")
    )
}

/// A proxy routing `p.test` to an HTTP/1.1 echo.
async fn plain() -> (Proxy, Upstream) {
    let up = echo("echo").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("echo.test", &[&up]),
            vs_to("p.test", "echo.test"),
        ]
        .concat()
    })
    .await;
    (p, up)
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let (p, up) = plain().await;
    let mut c = H1::connect(p.port).await;
    for i in 0..10 {
        let r = c.send(get("p.test", &format!("/req/{i}"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], format!("/req/{i}"));
        assert_eq!(r.version, http::Version::HTTP_11);
    }
    // Hop-by-hop headers, and those `Connection` names, stay on their hop.
    let r = c
        .send(
            req("GET", "p.test", "/hop")
                .header("connection", "keep-alive, x-private")
                .header("x-private", "1")
                .header("keep-alive", "timeout=5")
                .header("x-public", "1")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert!(r.seen("x-private").is_empty() && r.seen("keep-alive").is_empty());
    assert_eq!(r.seen("x-public"), ["1"]);
    // The client's single connection carried all of them; upstream connections were reused.
    assert!(
        up.connections() < 10,
        "{} upstream connections",
        up.connections()
    );
}

#[tokio::test]
async fn chunked_request_body_is_streamed_through() {
    let (p, _up) = plain().await;
    let chunks: Vec<Bytes> = (0..20)
        .map(|i| Bytes::from(format!("chunk number {i};").repeat(50)))
        .collect();
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    let r = send(
        p.port,
        req("POST", "p.test", "/upload")
            .body(chunked(chunks))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["body_len"], all.len());
    assert_eq!(j["body_digest"], digest(&all));
    assert_eq!(r.seen("transfer-encoding"), ["chunked"]);
}

/// Reads from `s` until `buf` holds `needle`.
async fn read_until(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    within("raw read", async {
        while !buf.windows(needle.len()).any(|w| w == needle) {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
}

#[tokio::test]
async fn expect_100_continue() {
    let (p, _up) = plain().await;
    let mut s = tokio::net::TcpStream::connect(p.addr())
        .await
        .expect("connect");
    let body = b"hello there";
    s.write_all(
        format!(
            "POST /continue HTTP/1.1\r\nHost: p.test\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("write head");
    // The body is sent only once the proxy says to go on.
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, b"\r\n\r\n").await;
    let head = String::from_utf8_lossy(&buf).to_string();
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    s.write_all(body).await.expect("write body");
    let mut resp = Vec::new();
    read_until(&mut s, &mut resp, b"\"body_digest\"").await;
    read_until(&mut s, &mut resp, b"}").await;
    let text = String::from_utf8_lossy(&resp).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let json_start = text.find('{').expect("json");
    let j: serde_json::Value = serde_json::from_str(&text[json_start..]).expect("json");
    assert_eq!(j["body_len"], body.len());
    assert_eq!(j["path"], "/continue");
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let (p, _up) = plain().await;
    let size = 8 << 20;
    let data = pattern(size);
    let chunks: Vec<Bytes> = data.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    // Up: 8 MiB, chunked.
    let r = send(
        p.port,
        req("PUT", "p.test", "/big").body(chunked(chunks)).unwrap(),
    )
    .await;
    let j = r.json();
    assert_eq!(j["body_len"], size);
    assert_eq!(j["body_digest"], digest(&data));
    // Down: 16 MiB streamed by the upstream, over HTTP/1.1 and h2c.
    let down = 16 << 20;
    let r = send(
        p.port,
        req("GET", "p.test", "/big")
            .header("x-echo-size", down.to_string())
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.body.len(), down);
    assert_eq!(digest(&r.body), digest(&pattern(down)));
    let mut h2 = H2::connect(p.port).await;
    let r = h2
        .send(
            http::Request::get("http://p.test/big")
                .header("x-echo-size", down.to_string())
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.body.len(), down);
    assert_eq!(digest(&r.body), digest(&pattern(down)));
}

#[tokio::test]
async fn h2c_downstream_with_concurrent_streams() {
    let (p, _up) = plain().await;
    let c = H2::connect(p.port).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .send(
                    http::Request::post(format!("http://p.test/stream/{i}"))
                        .body(full(format!("body {i}")))
                        .unwrap(),
                )
                .await;
            (i, r)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.expect("task");
        assert_eq!(r.status, 200);
        assert_eq!(r.version, http::Version::HTTP_2);
        let j = r.json();
        assert_eq!(j["path"], format!("/stream/{i}"));
        assert_eq!(j["body_len"], format!("body {i}").len());
        // The ServiceEntry port says HTTP: the upstream gets HTTP/1.1 with the authority as Host.
        assert_eq!(j["version"], "HTTP/1.1");
        assert_eq!(r.seen("host"), ["p.test"]);
    }
}

#[tokio::test]
async fn http2_and_grpc_ports_are_spoken_as_h2c_upstream() {
    let h2 = echo_h2_only("h2").await;
    let g = echo_h2_only("grpc-port").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            service_entry(
                "h2.test",
                "HTTP2",
                &[Ep {
                    upstream: &h2,
                    labels: &[],
                }],
            ),
            service_entry(
                "g.test",
                "GRPC",
                &[Ep {
                    upstream: &g,
                    labels: &[],
                }],
            ),
            vs_to("h2.example", "h2.test"),
            vs_to("g.example", "g.test"),
        ]
        .concat()
    })
    .await;
    // An HTTP/1.1 client, an h2c-only upstream.
    let mut c = H1::connect(p.port).await;
    for _ in 0..3 {
        let r = c.send(get("h2.example", "/x?y=1")).await;
        assert_eq!(r.status, 200, "{}", r.error());
        let j = r.json();
        assert_eq!(j["version"], "HTTP/2");
        assert_eq!(j["path"], "/x");
        assert_eq!(j["query"], "y=1");
        assert_eq!(j["authority"], "h2.example");
    }
    let r = c.send(get("g.example", "/")).await;
    assert_eq!(r.json()["version"], "HTTP/2");
    // Requests share one multiplexed upstream connection.
    assert_eq!(h2.connections(), 1);
}

#[tokio::test]
async fn grpc_trailers_pass_through() {
    let up = grpc("grpc").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            service_entry(
                "grpc.test",
                "GRPC",
                &[Ep {
                    upstream: &up,
                    labels: &[],
                }],
            ),
            vs_to("grpc.example", "grpc.test"),
        ]
        .concat()
    })
    .await;
    let mut c = H2::connect(p.port).await;
    let msg = Bytes::from_static(b"\x00\x00\x00\x00\x05hello");
    let call = |status: Option<&'static str>| {
        let mut b = http::Request::post("http://grpc.example/pkg.Greeter/SayHello")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(s) = status {
            b = b.header("x-grpc-status", s);
        }
        b.body(full(msg.clone())).unwrap()
    };
    let r = c.send(call(None)).await;
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert_eq!(
        r.header("x-saw-te"),
        Some("trailers"),
        "te: trailers is forwarded"
    );
    assert_eq!(r.body, msg);
    let t = r.trailers.expect("trailers");
    assert_eq!(t.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]));
    assert_eq!(
        t.get("grpc-message").map(|v| v.as_bytes()),
        Some(&b"from-grpc"[..])
    );
    let r = c.send(call(Some("14"))).await;
    let t = r.trailers.expect("trailers");
    assert_eq!(t.get("grpc-status").map(|v| v.as_bytes()), Some(&b"14"[..]));
}

#[tokio::test]
async fn upgrade_round_trip() {
    let up = upgrade_echo("ws").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("ws.test", &[&up]),
            vs_to("ws.example", "ws.test"),
        ]
        .concat()
    })
    .await;
    let mut c = H1::connect(p.port).await;
    let resp = c
        .send_streaming(
            req("GET", "ws.example", "/socket")
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers().get("upgrade").map(|v| v.as_bytes()),
        Some(&b"websocket"[..])
    );
    assert_eq!(
        resp.headers().get("x-upstream").map(|v| v.as_bytes()),
        Some(&b"ws"[..])
    );
    let upgraded = within("upgrade", hyper::upgrade::on(resp))
        .await
        .expect("upgraded");
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    for msg in ["ping", "a longer message over the spliced streams", "last"] {
        io.write_all(msg.as_bytes()).await.expect("write");
        let mut back = vec![0u8; msg.len()];
        within("echo", io.read_exact(&mut back))
            .await
            .expect("read");
        assert_eq!(back, msg.as_bytes());
    }
    // A plain request to the same upstream still works.
    let r = fetch(p.port, "ws.example", "/plain").await;
    assert_eq!(r.status, 200);
    assert!(r.seen("upgrade").is_empty());
}

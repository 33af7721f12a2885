//! TCP proxying, TLS passthrough by SNI and protocol detection, end to end over loopback.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_proxy::l4::orig_dst::{FixedOriginalDst, NoOriginalDst};
use keel_snapshot::{
    HttpRoute, L4Match, LbPolicy, Listener, ListenerKind, ListenerProtocol, RouteAction,
    RouteTable, Snapshot, TcpRoute, TlsRoute, UpstreamProtocol, VirtualHost,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn listener(name: &str, port: u16, kind: ListenerKind, protocol: ListenerProtocol) -> Listener {
    Listener {
        name: name.to_string(),
        address: local(port),
        kind,
        protocol,
        http: None,
        tls: Vec::new(),
        tcp: Vec::new(),
        peer_authn: None,
        terminate_tls: Vec::new(),
        authz: None,
        jwt: None,
    }
}

fn gateway() -> ListenerKind {
    ListenerKind::Gateway {
        gateways: vec!["default/gw".into()],
    }
}

fn tcp_route(
    name: &str,
    matches: Vec<L4Match>,
    clusters: Vec<keel_snapshot::WeightedCluster>,
) -> TcpRoute {
    TcpRoute {
        name: name.into(),
        matches,
        clusters,
        opaque: false,
    }
}

fn snapshot(listeners: Vec<Listener>, clusters: Vec<keel_snapshot::Cluster>) -> Snapshot {
    Snapshot {
        version: "t".into(),
        listeners,
        clusters: clusters
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[tokio::test]
async fn tcp_echo_with_half_close_and_a_server_first_upstream() {
    let echo = echo_server("echo", "").await;
    let banner = echo_server("mysql", "220 ready\r\n").await;
    let (p1, p2) = (free_port(), free_port());
    let mut l1 = listener("echo", p1, gateway(), ListenerProtocol::Tcp);
    l1.tcp.push(tcp_route("r", vec![], vec![to("echo", 100)]));
    let mut l2 = listener("banner", p2, gateway(), ListenerProtocol::Tcp);
    l2.tcp.push(tcp_route("r", vec![], vec![to("banner", 100)]));
    let snap = snapshot(
        vec![l1, l2],
        vec![
            cluster("echo", &[echo], UpstreamProtocol::Tcp),
            cluster("banner", &[banner], UpstreamProtocol::Tcp),
        ],
    );
    let _p = start(snap, Duration::from_secs(10), Arc::new(NoOriginalDst)).await;

    // The client half-closes after writing; the reply still arrives in full.
    assert_eq!(exchange(local(p1), b"hello").await, b"echo:hello");

    // The server speaks first and the client has sent nothing: the banner must arrive.
    let mut s = TcpStream::connect(local(p2)).await.expect("connect");
    let mut banner = [0u8; 11];
    tokio::time::timeout(LIMIT, s.read_exact(&mut banner))
        .await
        .expect("banner in time")
        .expect("banner");
    assert_eq!(&banner, b"220 ready\r\n");
}

#[tokio::test]
async fn weighted_tcp_routes() {
    let a = echo_server("a", "").await;
    let b = echo_server("b", "").await;
    let z = echo_server("zero", "").await;
    let port = free_port();
    let mut l = listener("w", port, gateway(), ListenerProtocol::Tcp);
    l.tcp.push(tcp_route(
        "split",
        vec![],
        vec![to("a", 50), to("b", 50), to("zero", 0)],
    ));
    let snap = snapshot(
        vec![l],
        vec![
            cluster("a", &[a], UpstreamProtocol::Tcp),
            cluster("b", &[b], UpstreamProtocol::Tcp),
            cluster("zero", &[z], UpstreamProtocol::Tcp),
        ],
    );
    let _p = start(snap, Duration::from_secs(10), Arc::new(NoOriginalDst)).await;
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let out = exchange(local(port), b"x").await;
        *seen
            .entry(String::from_utf8_lossy(&out).to_string())
            .or_insert(0) += 1;
    }
    // 40 draws at 50/50: either side missing has probability 2^-39.
    assert!(seen.get("a:x").is_some_and(|n| *n > 0), "{seen:?}");
    assert!(seen.get("b:x").is_some_and(|n| *n > 0), "{seen:?}");
    assert!(!seen.contains_key("zero:x"), "{seen:?}");
}

#[tokio::test]
async fn failures_close_the_connection() {
    let dead = local(free_port());
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let mut unreachable = listener("unreachable", p1, gateway(), ListenerProtocol::Tcp);
    unreachable
        .tcp
        .push(tcp_route("r", vec![], vec![to("dead", 100)]));
    let mut empty = listener("empty", p2, gateway(), ListenerProtocol::Tcp);
    empty
        .tcp
        .push(tcp_route("r", vec![], vec![to("none", 100)]));
    // Routes only for port 1: nothing matches a connection to this listener's port.
    let mut unrouted = listener("unrouted", p3, gateway(), ListenerProtocol::Tcp);
    unrouted.tcp.push(tcp_route(
        "r",
        vec![L4Match {
            port: Some(1),
            ..Default::default()
        }],
        vec![to("dead", 100)],
    ));
    let snap = snapshot(
        vec![unreachable, empty, unrouted],
        vec![
            cluster("dead", &[dead], UpstreamProtocol::Tcp),
            cluster("none", &[], UpstreamProtocol::Tcp),
        ],
    );
    let _p = start(snap, Duration::from_secs(10), Arc::new(NoOriginalDst)).await;
    for port in [p1, p2, p3] {
        assert_eq!(exchange(local(port), b"x").await, b"", "port {port}");
    }
}

/// A ClientHello written independently of the proxy's own test builder: TLS 1.3-style with a
/// session id, two cipher suites, an extension before server_name, and the handshake split
/// over two records.
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    let mut exts = vec![0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04]; // supported_versions
    exts.extend_from_slice(&[0x00, 0x00]);
    exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni_ext);
    let mut body = vec![0x03, 0x03];
    body.extend((0..32).map(|i| i as u8));
    body.push(32);
    body.extend(std::iter::repeat_n(7u8, 32));
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02, 0x01, 0x00]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![0x01, 0x00];
    hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hs.extend_from_slice(&body);
    let (first, second) = hs.split_at(40);
    let mut out = Vec::new();
    for part in [first, second] {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn sni_route(name: &str, hosts: &[&str], cluster: &str) -> TlsRoute {
    TlsRoute {
        name: name.into(),
        matches: vec![L4Match {
            sni_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ..Default::default()
        }],
        clusters: vec![to(cluster, 100)],
    }
}

#[tokio::test]
async fn tls_passthrough_routes_by_sni_and_forwards_bytes_untouched() {
    let a = echo_server("a", "").await;
    let b = echo_server("b", "").await;
    let port = free_port();
    let mut l = listener("tls", port, gateway(), ListenerProtocol::TlsPassthrough);
    l.tls.push(sni_route("a", &["a.example.com"], "a"));
    l.tls.push(sni_route("b", &["*.b.example.com"], "b"));
    let snap = snapshot(
        vec![l],
        vec![
            cluster("a", &[a], UpstreamProtocol::Tcp),
            cluster("b", &[b], UpstreamProtocol::Tcp),
        ],
    );
    let _p = start(snap, Duration::from_secs(10), Arc::new(NoOriginalDst)).await;

    let hello = client_hello("A.example.com");
    let mut want = b"a:".to_vec();
    want.extend_from_slice(&hello);
    assert_eq!(exchange(local(port), &hello).await, want);

    let hello = client_hello("x.b.example.com");
    let mut want = b"b:".to_vec();
    want.extend_from_slice(&hello);
    assert_eq!(exchange(local(port), &hello).await, want);

    // No route for this name; garbage and truncated hellos are closed too.
    assert_eq!(
        exchange(local(port), &client_hello("c.example.com")).await,
        b""
    );
    assert_eq!(exchange(local(port), b"GET / HTTP/1.1\r\n\r\n").await, b"");
    let hello = client_hello("a.example.com");
    assert_eq!(exchange(local(port), &hello[..30]).await, b"");
}

/// One Auto listener: HTTP/1.1 and h2c go to the HTTP upstream, TLS by SNI, anything else
/// (including a client that says nothing, waiting for a server-first banner) to TCP.
#[tokio::test]
async fn detection_on_one_auto_listener() {
    let web = http_server("web").await;
    let banner = echo_server("tcp", "220 ready\r\n").await;
    let tls = echo_server("tls", "").await;
    let port = free_port();
    let mut l = listener("auto", port, gateway(), ListenerProtocol::Auto);
    l.http = Some(RouteTable {
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![HttpRoute {
                name: "web".into(),
                action: RouteAction::Forward {
                    clusters: vec![to("web", 100)],
                    rewrite: None,
                },
                ..Default::default()
            }],
        }],
    });
    l.tls.push(sni_route("tls", &["secure.example.com"], "tls"));
    l.tcp.push(tcp_route("tcp", vec![], vec![to("tcp", 100)]));
    let snap = snapshot(
        vec![l],
        vec![
            cluster("web", &[web], UpstreamProtocol::SameAsDownstream),
            cluster("tcp", &[banner], UpstreamProtocol::Tcp),
            cluster("tls", &[tls], UpstreamProtocol::Tcp),
        ],
    );
    let detect = Duration::from_millis(200);
    let _p = start(snap, detect, Arc::new(NoOriginalDst)).await;

    let (status, upstream, body) = raw_get(local(port), "/one", &[("host", "svc")]).await;
    assert_eq!((status, upstream.as_str()), (200, "web"), "{body}");
    assert_eq!(body, "web HTTP/1.1 svc /one");

    // h2c with prior knowledge.
    let s = TcpStream::connect(local(port)).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("http://svc/two")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = tokio::time::timeout(LIMIT, send.send_request(req))
        .await
        .expect("in time")
        .expect("h2 response");
    assert_eq!(resp.status(), 200);
    assert_eq!(body_string(resp).await, "web HTTP/2.0 svc /two");

    // Raw TCP: the banner first, then the echo.
    let out = exchange(local(port), b"PING\r\n").await;
    assert_eq!(out, b"220 ready\r\ntcp:PING\r\n");

    // TLS by SNI on the same port.
    let hello = client_hello("secure.example.com");
    let mut want = b"tls:".to_vec();
    want.extend_from_slice(&hello);
    assert_eq!(exchange(local(port), &hello).await, want);

    // Server-first: the client waits for the banner; it comes once detection gives up.
    let mut s = TcpStream::connect(local(port)).await.expect("connect");
    let start = tokio::time::Instant::now();
    let mut got = [0u8; 11];
    tokio::time::timeout(LIMIT, s.read_exact(&mut got))
        .await
        .expect("server-first protocol did not stall")
        .expect("banner");
    assert_eq!(&got, b"220 ready\r\n");
    assert!(
        start.elapsed() >= detect,
        "detection waited {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn original_destination_drives_subnet_routes_and_passthrough() {
    let mysql = echo_server("mysql", "").await;
    let other = echo_server("other", "").await;
    let anywhere = echo_server("anywhere", "").await;
    let port = free_port();
    let mut l = listener(
        "out",
        port,
        ListenerKind::SidecarOutbound,
        ListenerProtocol::Tcp,
    );
    l.tcp.push(tcp_route(
        "db",
        vec![L4Match {
            destination_subnets: vec!["10.96.0.0/16".into()],
            port: Some(3306),
            ..Default::default()
        }],
        vec![to("mysql", 100)],
    ));
    l.tcp.push(tcp_route(
        "other",
        vec![L4Match {
            destination_subnets: vec!["10.97.1.1".into()],
            ..Default::default()
        }],
        vec![to("other", 100)],
    ));
    l.tcp.push(tcp_route(
        "passthrough",
        vec![],
        vec![to("PassthroughCluster", 100)],
    ));
    let mut pass = cluster("PassthroughCluster", &[], UpstreamProtocol::Tcp);
    pass.lb = LbPolicy::Passthrough;
    let snap = snapshot(
        vec![l],
        vec![
            cluster("mysql", &[mysql], UpstreamProtocol::Tcp),
            cluster("other", &[other], UpstreamProtocol::Tcp),
            pass,
        ],
    );
    let fake = FixedOriginalDst::new(None);
    let _p = start(snap, Duration::from_millis(100), Arc::new(fake.clone())).await;

    let at = |s: &str| Some(s.parse::<SocketAddr>().expect("addr"));
    fake.set(at("10.96.3.4:3306"));
    assert_eq!(exchange(local(port), b"q").await, b"mysql:q");
    fake.set(at("10.97.1.1:9000"));
    assert_eq!(exchange(local(port), b"q").await, b"other:q");
    // Not a known service: forwarded where the client was going.
    fake.set(Some(anywhere));
    assert_eq!(exchange(local(port), b"q").await, b"anywhere:q");
    // Not redirected: PASSTHROUGH has nowhere to go.
    fake.set(None);
    assert_eq!(exchange(local(port), b"q").await, b"");
}

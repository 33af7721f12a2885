//! Test upstreams and helpers shared by the L4 and sidecar tests. Everything listens on
//! 127.0.0.1 with kernel-assigned ports.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_proxy::l4::L4Config;
use keel_proxy::l4::orig_dst::OriginalDst;
use keel_proxy::server::{Listeners, Shared};
use keel_snapshot::{
    Cluster, Endpoint, EndpointAddress, LbPolicy, Snapshot, UpstreamProtocol, WeightedCluster,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(5);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TCP upstream that writes `banner` as soon as a client connects (server-first when not
/// empty), then `name:` and echoes what it reads until the client half-closes, then closes.
pub async fn echo_server(name: &'static str, banner: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if !banner.is_empty() && s.write_all(banner.as_bytes()).await.is_err() {
                    return;
                }
                let mut out = format!("{name}:").into_bytes();
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            out.extend_from_slice(&buf[..n]);
                            if s.write_all(&out).await.is_err() {
                                return;
                            }
                            out.clear();
                        }
                    }
                }
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 + h2c upstream answering `name <version> <host> <path>` with
/// `x-upstream: name`.
pub async fn http_server(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let svc = service_fn(
                move |req: http::Request<hyper::body::Incoming>| async move {
                    let host = req
                        .headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                        .or_else(|| req.uri().authority().map(|a| a.to_string()))
                        .unwrap_or_default();
                    let body = format!("{name} {:?} {host} {}", req.version(), req.uri().path());
                    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                    resp.headers_mut()
                        .insert("x-upstream", http::HeaderValue::from_static(name));
                    Ok::<_, Infallible>(resp)
                },
            );
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A static cluster.
pub fn cluster(name: &str, endpoints: &[SocketAddr], protocol: UpstreamProtocol) -> Cluster {
    Cluster {
        name: name.to_string(),
        service: name.to_string(),
        port: 0,
        subset: String::new(),
        namespace: String::new(),
        lb: LbPolicy::RoundRobin,
        locality_lb: None,
        protocol,
        endpoints: endpoints
            .iter()
            .map(|a| Endpoint {
                address: EndpointAddress::Socket(*a),
                labels: Default::default(),
                locality: String::new(),
                weight: 1,
                workload: String::new(),
                namespace: String::new(),
                identity: String::new(),
                mtls: false,
            })
            .collect(),
        traffic_policy: None,
        client_credential: None,
    }
}

pub fn to(cluster: &str, weight: u32) -> WeightedCluster {
    WeightedCluster {
        cluster: cluster.to_string(),
        weight,
        ..Default::default()
    }
}

/// Installs `snapshot` and binds its listeners; the returned values keep them running.
pub async fn start(
    snapshot: Snapshot,
    detect_timeout: Duration,
    original_dst: Arc<dyn OriginalDst>,
) -> (Arc<Shared>, Listeners) {
    match try_start(snapshot, detect_timeout, original_dst).await {
        Ok(started) => started,
        Err(errors) => panic!("{errors:?}"),
    }
}

/// [`start`], returning bind errors (a port picked by `free_port` may have been taken by a
/// test running in parallel; the caller picks others and tries again).
pub async fn try_start(
    snapshot: Snapshot,
    detect_timeout: Duration,
    original_dst: Arc<dyn OriginalDst>,
) -> Result<(Arc<Shared>, Listeners), Vec<String>> {
    let shared = Shared::with_l4(
        "",
        L4Config {
            detect_timeout,
            hello_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            original_dst,
            ..Default::default()
        },
    );
    let listeners = Listeners::default();
    shared.install(snapshot);
    let errors = listeners.reconcile(&shared).await;
    if !errors.is_empty() {
        listeners.stop_all();
        return Err(errors);
    }
    Ok((shared, listeners))
}

/// Connects, sends `data`, half-closes, and reads everything until the proxy closes.
pub async fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    tokio::time::timeout(LIMIT, async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // The proxy may already have closed (that is what some tests check).
        let _ = s.write_all(data).await;
        let _ = s.shutdown().await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    })
    .await
    .expect("exchange finished in time")
}

/// An HTTP/1.1 GET through the proxy over a fresh connection, written by hand so absolute
/// form and odd Host headers go out exactly as given. Returns status, `x-upstream` and body.
pub async fn raw_get(
    addr: SocketAddr,
    request_line_target: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = format!("GET {request_line_target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    let out = exchange_keep_open(addr, req.as_bytes()).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let upstream = head
        .lines()
        .find_map(|l| l.strip_prefix("x-upstream: "))
        .unwrap_or("")
        .to_string();
    (status, upstream, body.to_string())
}

/// Like [`exchange`] without the half-close (HTTP servers may close on it).
pub async fn exchange_keep_open(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    tokio::time::timeout(LIMIT, async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(data).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        out
    })
    .await
    .expect("exchange finished in time")
}

/// Reads the body of a hyper response into a string.
pub async fn body_string(resp: http::Response<hyper::body::Incoming>) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).to_string()
}

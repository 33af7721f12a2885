//! Test support for keel-proxy's end-to-end tests: real upstream servers on `127.0.0.1:0`,
//! the proxy running in-process on a free port, and a small HTTP/1.1 and h2c client.
//!
//! Upstreams:
//! - [`echo`]: HTTP/1.1 and h2c; answers JSON naming itself and echoing method, path, query,
//!   version, headers and a digest of the body. Request headers steer it: `x-echo-status`
//!   (status), `x-echo-response-header: name=value` (extra response headers), `x-echo-size: N`
//!   (answer N streamed bytes instead of JSON).
//! - [`echo_h2_only`]: the same speaking only HTTP/2 (prior knowledge).
//! - [`slow`]: streams a first chunk, then waits for a gate before the rest.
//! - [`grpc`]: h2c only; echoes the body and ends with `grpc-status` trailers.
//! - [`upgrade_echo`]: HTTP/1.1; accepts `Upgrade` with 101 and echoes bytes afterwards.
#![allow(dead_code)] // each test binary uses a different part of this module
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_config::{Level, LoadOptions, Resource, load_str, validate_resources};
use keel_proxy::server::{Listeners, Shared};
use keel_snapshot::Snapshot;
use keel_snapshot::compile::gateway::{GatewayOptions, compile};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bodies sent by the test client and the upstreams.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// How long any single step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(5);

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().boxed()
}

/// A body streamed from `chunks` with no length known up front (sent chunked over HTTP/1.1).
pub fn chunked(chunks: Vec<Bytes>) -> TestBody {
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, Infallible>(Frame::data(c))),
    );
    StreamBody::new(stream).boxed()
}

/// FNV-1a, to compare bodies without echoing megabytes back.
pub fn digest(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Bytes `0..n` of a repeating pattern (what `x-echo-size` streams).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

// ---------------------------------------------------------------------------------------
// Upstreams

/// A running upstream server; stops accepting when dropped.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    handle: JoinHandle<()>,
}

impl Upstream {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>;
type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxFuture + Send + Sync>;

#[derive(Clone, Copy)]
enum Speaks {
    /// HTTP/1.1 (with upgrades) or h2c prior knowledge, detected per connection.
    Auto,
    H2Only,
}

async fn spawn_upstream(name: &str, speaks: Speaks, handler: Handler) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let handle = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = handler.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let io = TokioIo::new(stream);
                match speaks {
                    Speaks::Auto => {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection_with_upgrades(io, svc)
                            .await;
                    }
                    Speaks::H2Only => {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await;
                    }
                }
            });
        }
    });
    Upstream {
        name: name.to_string(),
        addr,
        accepted,
        handle,
    }
}

fn headers_json(h: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for name in h.keys() {
        let values: Vec<Value> = h
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        map.insert(name.as_str().to_string(), Value::Array(values));
    }
    Value::Object(map)
}

fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        _ => "other",
    }
}

async fn echo_handler(name: Arc<str>, req: Request<Incoming>) -> Response<TestBody> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let status = header("x-echo-status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let out_body = if let Some(n) = header("x-echo-size").and_then(|s| s.parse::<usize>().ok()) {
        // Streamed in 64 KiB frames, generated as they are sent.
        let frames = (0..n.div_ceil(65536)).map(move |i| {
            let start = i * 65536;
            let end = (start + 65536).min(n);
            let chunk: Vec<u8> = (start..end).map(|j| (j % 251) as u8).collect();
            Ok::<_, Infallible>(Frame::data(Bytes::from(chunk)))
        });
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    } else {
        let v = json!({
            "name": &*name,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "authority": parts.uri.authority().map(|a| a.as_str()),
            "version": version_name(parts.version),
            "headers": headers_json(h),
            "body_len": body.len(),
            "body_digest": digest(&body),
        });
        full(v.to_string())
    };
    let mut resp = Response::new(out_body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-upstream", name.parse().expect("name"));
    for v in h.get_all("x-echo-response-header") {
        if let Some((k, val)) = v.to_str().ok().and_then(|s| s.split_once('=')) {
            resp.headers_mut().append(
                http::HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
                val.trim().parse().expect("header value"),
            );
        }
    }
    resp
}

fn echo_handler_for(name: &str) -> Handler {
    let name: Arc<str> = Arc::from(name);
    Arc::new(move |req| Box::pin(echo_handler(name.clone(), req)))
}

/// An upstream that echoes the request as JSON (HTTP/1.1 or h2c).
pub async fn echo(name: &str) -> Upstream {
    spawn_upstream(name, Speaks::Auto, echo_handler_for(name)).await
}

/// [`echo`] that speaks only HTTP/2 with prior knowledge: HTTP/1.1 requests fail on it.
pub async fn echo_h2_only(name: &str) -> Upstream {
    spawn_upstream(name, Speaks::H2Only, echo_handler_for(name)).await
}

/// A streaming upstream: sends `first\n` at once, waits until `gate` is `true`, then sends
/// `chunks` more lines with a short pause between them.
pub async fn slow(name: &str, gate: watch::Receiver<bool>, chunks: usize) -> Upstream {
    let name_s: Arc<str> = Arc::from(name);
    let handler: Handler = Arc::new(move |_req| {
        let gate = gate.clone();
        let name = name_s.clone();
        Box::pin(async move {
            let stream =
                futures_util::stream::unfold((0usize, gate), move |(i, mut gate)| async move {
                    if i > chunks {
                        return None;
                    }
                    if i > 0 {
                        let _ = gate.wait_for(|open| *open).await;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let line = if i == 0 {
                        "first\n".to_string()
                    } else {
                        format!("chunk {i}\n")
                    };
                    Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(line))),
                        (i + 1, gate),
                    ))
                });
            let mut resp = Response::new(StreamBody::new(stream).boxed());
            resp.headers_mut()
                .insert("x-upstream", name.parse().expect("name"));
            resp
        })
    });
    spawn_upstream(name, Speaks::Auto, handler).await
}

/// A gRPC-like h2c upstream: echoes the request body as the response body and ends with
/// trailers `grpc-status` (from the request's `x-grpc-status`, default 0) and `grpc-message`.
pub async fn grpc(name: &str) -> Upstream {
    let name_s: Arc<str> = Arc::from(name);
    let handler: Handler = Arc::new(move |req| {
        let name = name_s.clone();
        Box::pin(async move {
            let status = req
                .headers()
                .get("x-grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0")
                .to_string();
            let te = req
                .headers()
                .get("te")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", status.parse().expect("status"));
            trailers.insert(
                "grpc-message",
                format!("from-{name}").parse().expect("message"),
            );
            let frames = vec![
                Ok::<_, Infallible>(Frame::data(body)),
                Ok(Frame::trailers(trailers)),
            ];
            let mut resp =
                Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
            let h = resp.headers_mut();
            h.insert("content-type", "application/grpc".parse().expect("ct"));
            h.insert("x-upstream", name.parse().expect("name"));
            h.insert("x-saw-te", te.parse().expect("te"));
            resp
        })
    });
    spawn_upstream(name, Speaks::H2Only, handler).await
}

/// An HTTP/1.1 upstream that accepts any `Upgrade` with 101 and then echoes every byte back
/// prefixed by nothing (a WebSocket stand-in: the proxy must only splice the streams).
pub async fn upgrade_echo(name: &str) -> Upstream {
    let name_s: Arc<str> = Arc::from(name);
    let handler: Handler = Arc::new(move |mut req| {
        let name = name_s.clone();
        Box::pin(async move {
            let Some(proto) = req.headers().get(http::header::UPGRADE).cloned() else {
                return echo_handler(name, req).await;
            };
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut resp = Response::new(empty());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(http::header::UPGRADE, proto);
            h.insert(http::header::CONNECTION, "upgrade".parse().expect("conn"));
            h.insert("x-upstream", name.parse().expect("name"));
            resp
        })
    });
    spawn_upstream(name, Speaks::Auto, handler).await
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// A Gateway named `name` in `default` with one HTTP server on `port` for `hosts`.
pub fn gateway(name: &str, port: u16, hosts: &[&str]) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}
    hosts: [{}]
---
",
        hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One endpoint of a [`service_entry`]: an upstream, and the labels it carries.
pub struct Ep<'a> {
    pub upstream: &'a Upstream,
    pub labels: &'a [(&'a str, &'a str)],
}

/// A STATIC ServiceEntry for `host` with service port 80 (`protocol`) served by `eps`.
pub fn service_entry(host: &str, protocol: &str, eps: &[Ep<'_>]) -> String {
    let name = host.replace(['.', '*'], "-");
    let mut s = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: se-{name}, namespace: default}}
spec:
  hosts: [\"{host}\"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: {protocol}}}
  endpoints:
"
    );
    for ep in eps {
        let labels = ep
            .labels
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!(
            "  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{{labels}}}}}\n",
            ep.upstream.port()
        ));
    }
    s.push_str("---\n");
    s
}

/// [`service_entry`] for plain HTTP with unlabelled endpoints.
pub fn se(host: &str, upstreams: &[&Upstream]) -> String {
    let eps: Vec<Ep<'_>> = upstreams
        .iter()
        .map(|u| Ep {
            upstream: u,
            labels: &[],
        })
        .collect();
    service_entry(host, "HTTP", &eps)
}

/// Reads `yaml`, failing the test on any load or validation error (fixtures must be valid
/// Istio configuration).
pub fn resources(yaml: &str) -> Vec<Resource> {
    let loaded = load_str(yaml, "test.yaml", &LoadOptions::default());
    let mut errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .map(|d| d.to_string())
        .collect();
    errors.extend(
        validate_resources(&loaded.resources, "istio-system")
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| d.to_string()),
    );
    assert!(errors.is_empty(), "invalid fixture: {errors:#?}\n{yaml}");
    loaded.resources
}

/// Compiles resources into a gateway snapshot bound on 127.0.0.1; returns the warnings too.
pub fn snapshot_of(resources: &[Resource]) -> (Snapshot, Vec<String>) {
    let compiled = compile(
        resources,
        &GatewayOptions {
            bind: "127.0.0.1".parse().expect("ip"),
            ..Default::default()
        },
    );
    let warnings = compiled
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.resource, w.message))
        .collect();
    (compiled.snapshot, warnings)
}

pub fn free_port() -> u16 {
    closed_port()
}

// ---------------------------------------------------------------------------------------
// The proxy

/// keel-proxy running in this process.
pub struct Proxy {
    pub shared: Arc<Shared>,
    pub listeners: Arc<Listeners>,
    /// The first gateway port (the one `start`'s closure was given).
    pub port: u16,
    /// Compile warnings of the last installed configuration.
    pub warnings: Vec<String>,
}

impl Proxy {
    /// Starts the proxy with the configuration `yaml(port)` for a free `port`; retries with
    /// another port if the chosen one was taken meanwhile.
    pub async fn start(yaml: impl Fn(u16) -> String) -> Proxy {
        Self::start_resources(|port| resources(&yaml(port))).await
    }

    pub async fn start_resources(res: impl Fn(u16) -> Vec<Resource>) -> Proxy {
        let mut last = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let (snapshot, warnings) = snapshot_of(&res(port));
            let shared = Shared::new("");
            let listeners = Arc::new(Listeners::default());
            shared.install(snapshot);
            let errors = listeners.reconcile(&shared).await;
            if errors.is_empty() {
                return Proxy {
                    shared,
                    listeners,
                    port,
                    warnings,
                };
            }
            listeners.stop_all();
            last = errors;
        }
        panic!("proxy could not bind: {last:?}");
    }

    /// Installs a new configuration, as a reload does.
    pub async fn install(&mut self, yaml: &str) {
        let (snapshot, warnings) = snapshot_of(&resources(yaml));
        self.warnings = warnings;
        let errors = keel_proxy::standalone::apply(&self.shared, &self.listeners, snapshot).await;
        assert!(errors.is_empty(), "{errors:?}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listeners.stop_all();
    }
}

// ---------------------------------------------------------------------------------------
// The client

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Which upstream answered (its `x-upstream` header).
    pub fn upstream(&self) -> &str {
        self.header("x-upstream").unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a response header.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The values of a request header as the echo upstream saw it.
    pub fn seen(&self, name: &str) -> Vec<String> {
        self.json()["headers"][name]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The proxy's `x-keel-error`.
    pub fn error(&self) -> &str {
        self.header("x-keel-error").unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn read(resp: Response<Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    let collected = within("response body", body.collect())
        .await
        .expect("response body");
    let trailers = collected.trailers().cloned();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// One HTTP/1.1 connection to the proxy (kept alive across requests).
pub struct H1 {
    pub tx: hyper::client::conn::http1::SendRequest<TestBody>,
}

impl H1 {
    pub async fn connect(port: u16) -> H1 {
        let stream = within("connect", TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect to proxy");
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("h1 handshake");
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        H1 { tx }
    }

    /// Sends and returns the response head with its body still streaming.
    pub async fn send_streaming(&mut self, req: Request<TestBody>) -> Response<Incoming> {
        within("connection ready", self.tx.ready())
            .await
            .expect("connection closed");
        within("response head", self.tx.send_request(req))
            .await
            .expect("request failed")
    }

    pub async fn send(&mut self, req: Request<TestBody>) -> Resp {
        let resp = self.send_streaming(req).await;
        read(resp).await
    }
}

/// One h2c (prior knowledge) connection to the proxy.
#[derive(Clone)]
pub struct H2 {
    pub tx: hyper::client::conn::http2::SendRequest<TestBody>,
}

impl H2 {
    pub async fn connect(port: u16) -> H2 {
        let stream = within("connect", TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect to proxy");
        let (tx, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { tx }
    }

    /// `req` must carry an absolute URI (`http://host/path`): it becomes `:authority`.
    pub async fn send(&mut self, req: Request<TestBody>) -> Resp {
        within("connection ready", self.tx.ready())
            .await
            .expect("connection closed");
        let resp = within("response head", self.tx.send_request(req))
            .await
            .expect("request failed");
        read(resp).await
    }
}

/// `GET path` with `Host: host`.
pub fn get(host: &str, path: &str) -> Request<TestBody> {
    req("GET", host, path).body(empty()).expect("request")
}

/// A request builder with method, path and `Host`.
pub fn req(method: &str, host: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host)
}

/// `GET http://host/path` on a fresh HTTP/1.1 connection.
pub async fn fetch(port: u16, host: &str, path: &str) -> Resp {
    H1::connect(port).await.send(get(host, path)).await
}

/// A fresh connection for a prepared request.
pub async fn send(port: u16, req: Request<TestBody>) -> Resp {
    H1::connect(port).await.send(req).await
}

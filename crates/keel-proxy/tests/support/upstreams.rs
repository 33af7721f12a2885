//! Upstream servers for the end-to-end tests (see the parent module's docs).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{TestBody, digest, empty, full};

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

/// What a [`scripted`] upstream does with its n-th request (0-based).
#[derive(Debug, Clone, Copy)]
pub enum Act {
    /// Answer with this status (body: the upstream's name).
    Status(u16),
    /// Wait this long, then answer 200.
    Delay(Duration),
}

/// An upstream that answers its n-th request with `script(n)`, counting requests (the
/// returned `Arc`) and recording each request's Host (the returned list).
pub async fn scripted(
    name: &str,
    script: impl Fn(usize) -> Act + Send + Sync + 'static,
) -> (
    Upstream,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let hosts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hosts_seen = hosts.clone();
    let name_s: Arc<str> = Arc::from(name);
    let script = Arc::new(script);
    let handler: Handler = Arc::new(move |req: Request<Incoming>| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let act = script(n);
        let name = name_s.clone();
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        hosts_seen.lock().expect("hosts").push(host.clone());
        Box::pin(async move {
            let _ = req.into_body().collect().await;
            let status = match act {
                Act::Status(s) => s,
                Act::Delay(d) => {
                    tokio::time::sleep(d).await;
                    200
                }
            };
            let mut resp = Response::new(full(format!("{name}\n")));
            *resp.status_mut() = StatusCode::from_u16(status).expect("status");
            resp.headers_mut()
                .insert("x-upstream", name.parse().expect("name"));
            resp.headers_mut()
                .insert("x-seen-host", host.parse().expect("host"));
            resp
        })
    });
    (
        spawn_upstream(name, Speaks::Auto, handler).await,
        count,
        hosts,
    )
}

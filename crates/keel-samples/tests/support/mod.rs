//! Test plumbing: an HTTP proxy that forwards absolute-form requests by host name (what Keel's
//! sidecar does for an app whose HTTP_PROXY points at it), fake upstreams that record what
//! they receive, and a plain HTTP client that returns whole responses.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use keel_samples::client::{Client, Proxy};
use keel_samples::http_util::Body;
use keel_samples::server::{Handler, Server};
use tokio::net::{TcpListener, TcpStream};

/// A fresh listener on an ephemeral loopback port (and the apps' logs off: written straight to
/// stdout, they would escape the harness's capture).
pub async fn listener() -> TcpListener {
    keel_samples::log::set_quiet(true);
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Starts `handler` on an ephemeral port.
pub async fn start<H: Handler>(name: &'static str, handler: H) -> Server {
    Server::start(name, listener().await, handler).unwrap()
}

/// One request as a server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `host:port` for a proxy, the Host header for an upstream.
    pub authority: String,
    /// The path and query.
    pub path: String,
    /// Whether the request line was in absolute form (`GET http://host/path`).
    pub absolute: bool,
    /// The request headers.
    pub headers: HeaderMap,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Shared record of requests.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    pub fn to(&self, authority: &str) -> Vec<Seen> {
        self.all()
            .into_iter()
            .filter(|s| s.authority == authority)
            .collect()
    }
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }
}

fn seen(req: &Request<Incoming>) -> Seen {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Seen {
        authority,
        path: req
            .uri()
            .path_and_query()
            .map_or("/".into(), |pq| pq.to_string()),
        absolute: req.uri().scheme().is_some(),
        headers: req.headers().clone(),
    }
}

/// The test's stand-in for a sidecar's outbound listener: forwards absolute-form requests to
/// `127.0.0.1:<port>` by host name, and answers 400 to origin-form ones (an app that ignored
/// its HTTP proxy setting would be caught here).
#[derive(Clone, Default)]
pub struct MeshProxy {
    routes: Arc<Mutex<HashMap<String, u16>>>,
    pub log: Log,
}

impl MeshProxy {
    /// Sends requests for `host:9080` to `port` on loopback.
    pub fn route(&self, host: &str, port: u16) {
        self.routes.lock().unwrap().insert(host.to_owned(), port);
    }

    /// A client whose calls go through this proxy, listening at `addr`.
    pub fn client(addr: SocketAddr) -> Client {
        Client::new(Proxy::via("127.0.0.1", addr.port()))
    }
}

impl Handler for MeshProxy {
    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let s = seen(&req);
        self.log.push(s.clone());
        if !s.absolute {
            return reply(
                StatusCode::BAD_REQUEST,
                "origin-form request sent to a proxy",
            );
        }
        let host = req.uri().host().unwrap_or("").to_owned();
        let Some(port) = self.routes.lock().unwrap().get(&host).copied() else {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "no route");
        };
        let (mut parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        parts.uri = s.path.parse().unwrap();
        let forwarded = Request::from_parts(parts, Full::new(body));
        match send(port, forwarded).await {
            Ok((status, headers, body)) => {
                let mut res = Response::new(Full::new(body));
                *res.status_mut() = status;
                *res.headers_mut() = headers;
                res
            }
            Err(e) => reply(StatusCode::BAD_GATEWAY, &e),
        }
    }
}

/// A fake upstream: records requests, answers with `status` and `body` after `delay`; the first
/// `fail_first` requests get a 503 instead.
#[derive(Clone)]
pub struct Fake {
    pub log: Log,
    pub status: StatusCode,
    pub body: &'static str,
    pub delay: Duration,
    pub fail_first: usize,
}

impl Fake {
    pub fn new(body: &'static str) -> Self {
        Fake {
            log: Log::default(),
            status: StatusCode::OK,
            body,
            delay: Duration::ZERO,
            fail_first: 0,
        }
    }
}

impl Handler for Fake {
    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        self.log.push(seen(&req));
        tokio::time::sleep(self.delay).await;
        if self.log.all().len() <= self.fail_first {
            return reply(StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"injected\"}");
        }
        let mut res = reply(self.status, self.body);
        res.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        res
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *res.status_mut() = status;
    res
}

async fn send(
    port: u16,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, body))
}

/// A whole response.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `METHOD path` to `addr` with `headers` and `body`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let (status, headers, body) = send(addr.port(), req).await.unwrap();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` from `addr`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    request(addr, "GET", path, headers, "").await
}

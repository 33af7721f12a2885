//! The test client: HTTP/1.1 and h2c connections to the proxy, responses read whole.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpStream;

use super::{TestBody, empty, within};

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

//! Connections to upstream endpoints: per endpoint, a pool of idle HTTP/1.1 connections and
//! one multiplexed HTTP/2 connection. Keyed by address and protocol, so connections are never
//! shared across endpoints (later also by TLS identity).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Errors a body can fail with: hyper's, or the proxy's own codec's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy passes on: whatever produced it, boxed with a boxed error.
pub type Body = BoxBody<Bytes, BoxError>;

/// Boxes any body into [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A failed send, with the request when it was never sent.
pub type SendFailure = (SendError, Option<Box<Request<Body>>>);

/// Why a request could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (Envoy's UF).
    Connect(String),
    /// The connection failed while sending or before the response head (Envoy's UC).
    Reset(String),
}

#[derive(Default)]
struct EndpointPool {
    idle_h1: Vec<http1::SendRequest<Body>>,
    h2: Option<http2::SendRequest<Body>>,
}

/// All upstream connections of the proxy.
pub struct Pools {
    endpoints: Mutex<crate::runtime::FastMap<SocketAddr, EndpointPool>>,
    connect_timeout: Duration,
    /// Idle HTTP/1.1 connections kept per endpoint.
    max_idle: usize,
}

impl Default for Pools {
    fn default() -> Self {
        // Istio's default connect timeout is 10 s.
        Pools {
            endpoints: Mutex::new(Default::default()),
            connect_timeout: Duration::from_secs(10),
            max_idle: 64,
        }
    }
}

impl Pools {
    /// Sends `req` to `addr` over HTTP/2 (h2c) or HTTP/1.1, reusing a connection if one is
    /// free.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        h2: bool,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        self.send_recoverable(addr, h2, req)
            .await
            .map_err(|(e, _)| e)
    }

    /// Like [`Pools::send`], but a request that was never sent (no connection could be made)
    /// comes back with the error, so a retry can send it without having kept a copy.
    pub async fn send_recoverable(
        self: &Arc<Self>,
        addr: SocketAddr,
        h2: bool,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendFailure> {
        if h2 {
            self.send_h2(addr, req).await
        } else {
            self.send_h1(addr, req).await
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, SendError> {
        match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(SendError::Connect(io_cause(&e))),
            Err(_) => Err(SendError::Connect(format!(
                "connect timeout after {:?}",
                self.connect_timeout
            ))),
        }
    }

    fn pop_idle_h1(&self, addr: SocketAddr) -> Option<http1::SendRequest<Body>> {
        let mut map = self.endpoints.lock().ok()?;
        let pool = map.get_mut(&addr)?;
        while let Some(s) = pool.idle_h1.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// An idle connection that is ready for a request. Connections come back when the
    /// previous response's body ended, possibly before their task noticed; waiting for
    /// `ready` covers that, and a connection that closes meanwhile is skipped.
    async fn take_idle_h1(&self, addr: SocketAddr) -> Option<http1::SendRequest<Body>> {
        while let Some(mut s) = self.pop_idle_h1(addr) {
            if s.is_ready() || s.ready().await.is_ok() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle_h1(&self, addr: SocketAddr, s: http1::SendRequest<Body>) {
        if let Ok(mut map) = self.endpoints.lock() {
            let pool = map.entry(addr).or_default();
            if pool.idle_h1.len() < self.max_idle {
                pool.idle_h1.push(s);
            }
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendFailure> {
        let mut sender = match self.take_idle_h1(addr).await {
            Some(s) => s,
            None => {
                let stream = match self.connect(addr).await {
                    Ok(s) => s,
                    Err(e) => return Err((e, Some(Box::new(req)))),
                };
                let (sender, conn) = match http1::Builder::new()
                    .preserve_header_case(true)
                    .title_case_headers(false)
                    .handshake(TokioIo::new(stream))
                    .await
                {
                    Ok(x) => x,
                    Err(e) => return Err((SendError::Connect(e.to_string()), Some(Box::new(req)))),
                };
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                sender
            }
        };
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| (SendError::Reset(hyper_cause(&e)), None))?;
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the upgraded stream.
            return Ok(resp.map(boxed));
        }
        // The connection is free again once this response's body has been read: the body
        // hands it back then (no task per request).
        let pools = self.clone();
        Ok(resp.map(|inner| {
            PooledBody {
                inner,
                release: Some((pools, addr, sender)),
            }
            .map_err(Into::into)
            .boxed()
        }))
    }

    async fn send_h2(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendFailure> {
        let existing = self
            .endpoints
            .lock()
            .ok()
            .and_then(|m| m.get(&addr).and_then(|p| p.h2.clone()))
            .filter(|s| !s.is_closed());
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let stream = match self.connect(addr).await {
                    Ok(s) => s,
                    Err(e) => return Err((e, Some(Box::new(req)))),
                };
                let (sender, conn) = match http2::Builder::new(TokioExecutor::new())
                    .handshake(TokioIo::new(stream))
                    .await
                {
                    Ok(x) => x,
                    Err(e) => return Err((SendError::Connect(e.to_string()), Some(Box::new(req)))),
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                if let Ok(mut map) = self.endpoints.lock() {
                    map.entry(addr).or_default().h2 = Some(sender.clone());
                }
                sender
            }
        };
        if let Err(e) = sender.ready().await {
            return Err((SendError::Reset(hyper_cause(&e)), Some(Box::new(req))));
        }
        sender
            .send_request(req)
            .await
            .map(|r| r.map(boxed))
            .map_err(|e| (SendError::Reset(hyper_cause(&e)), None))
    }
}

/// An HTTP/1.1 response body that returns its connection to the pool when it has been read
/// to the end. Dropped early, the connection goes with it: hyper closes a connection whose
/// response was not read, since it could not be reused.
struct PooledBody {
    inner: Incoming,
    release: Option<(Arc<Pools>, SocketAddr, http1::SendRequest<Body>)>,
}

impl PooledBody {
    fn release_if_done(&mut self) {
        if self.inner.is_end_stream()
            && let Some((pools, addr, sender)) = self.release.take()
        {
            pools.put_idle_h1(addr, sender);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some((pools, addr, sender)) = self.release.take() {
                    pools.put_idle_h1(addr, sender);
                }
            }
            Poll::Ready(Some(Ok(_))) => self.release_if_done(),
            Poll::Ready(Some(Err(_))) => self.release = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // hyper stops polling a body once it reports its end, so the end may only be seen here.
        self.release_if_done();
    }
}

/// `connection refused`, `connection reset by peer`: the OS's words, lower case.
fn io_cause(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => e.to_string().to_lowercase(),
    }
}

fn hyper_cause(e: &hyper::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

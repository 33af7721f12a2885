//! Connections to upstream endpoints: per endpoint, a pool of idle HTTP/1.1 connections
//! (Keel's own client, [`crate::http::h1::client`]) and one multiplexed HTTP/2 connection
//! (hyper's). Keyed by address and protocol, so connections are never shared across
//! endpoints (later also by TLS identity).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::http::h1::client as h1;
use crate::http::h1::io::io_cause;

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
    idle_h1: Vec<h1::Conn<TcpStream>>,
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

    /// An idle connection the upstream has not closed meanwhile.
    fn take_idle_h1(&self, addr: SocketAddr) -> Option<h1::Conn<TcpStream>> {
        loop {
            let conn = {
                let mut map = self.endpoints.lock().ok()?;
                map.get_mut(&addr)?.idle_h1.pop()?
            };
            // tokio knows the socket would block if nothing happened on it since the last
            // read: then this costs no system call. Data or EOF: the upstream closed it.
            let mut probe = [0u8; 1];
            if matches!(conn.io().try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Some(conn);
            }
        }
    }

    fn put_idle_h1(&self, addr: SocketAddr, conn: h1::Conn<TcpStream>) {
        if let Ok(mut map) = self.endpoints.lock() {
            let pool = map.entry(addr).or_default();
            if pool.idle_h1.len() < self.max_idle {
                pool.idle_h1.push(conn);
            }
        }
    }

    /// HTTP/1.1 with Keel's own client ([`h1::send`]): the connection comes back through
    /// the response body when it ends.
    ///
    /// A reused connection can turn out to be closed only once the request is written (the
    /// upstream's FIN crossed it). Such a request is sent once more on a new connection,
    /// when nothing of it can have been acted on: no response byte arrived, no body byte
    /// was taken, and the method is idempotent (RFC 9110 §9.2.2) — hyper's pooled client
    /// and Envoy retry the same case.
    async fn send_h1(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: Request<Body>,
    ) -> Result<Response<Body>, SendFailure> {
        let (conn, reused) = match self.take_idle_h1(addr) {
            Some(c) => (c, true),
            None => match self.connect(addr).await {
                Ok(stream) => (h1::Conn::new(stream), false),
                Err(e) => return Err((e, Some(Box::new(req)))),
            },
        };
        let idempotent = req.method().is_idempotent();
        let failure = match h1::send(conn, req, self.releaser(addr)).await {
            Ok(resp) => return Ok(resp),
            Err(f) => f,
        };
        match failure.unsent {
            // The pooled connection was closed under us: send once more on a new one.
            Some(req) if reused && idempotent => {
                let conn = match self.connect(addr).await {
                    Ok(stream) => h1::Conn::new(stream),
                    Err(e) => return Err((e, Some(Box::new(req)))),
                };
                h1::send(conn, req, self.releaser(addr))
                    .await
                    .map_err(|f| (SendError::Reset(f.cause), f.unsent.map(Box::new)))
            }
            unsent => Err((SendError::Reset(failure.cause), unsent.map(Box::new))),
        }
    }

    /// What a response body calls to return its connection.
    fn releaser(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> impl FnOnce(h1::Conn<TcpStream>) + Send + Sync + Unpin + 'static {
        let pools = self.clone();
        move |conn| pools.put_idle_h1(addr, conn)
    }

    async fn send_h2(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, SendFailure> {
        // Requests from HTTP/1 clients carry the codec's header-case marks.
        crate::http::h1::case::clear_marks(req.headers_mut());
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

fn hyper_cause(e: &hyper::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

//! Connections to upstream endpoints: per endpoint, a pool of idle HTTP/1.1 connections
//! (Keel's own client, [`crate::http::h1::client`]) and one multiplexed HTTP/2 connection
//! (hyper's). Keyed by cluster and address, so connections are never shared across
//! endpoints. Endpoints that take mesh mTLS ([`crate::tls::upstream`]) get it when their
//! connection is opened.

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
use crate::tls::mesh::{Carries, MeshTls};
use crate::tls::upstream::{UpstreamIo, UpstreamTlsTable, mesh_handshake, origin_handshake};

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

/// A request on its way to an upstream. The head stays boxed from the parser on: it passes
/// through every layer of the request path (each an async fn whose future holds it), and as
/// a `Request` by value each of those was a copy of its ~240 bytes.
#[derive(Debug)]
pub struct Outbound {
    pub head: Box<http::request::Parts>,
    pub body: Body,
}

impl Outbound {
    pub fn new(head: Box<http::request::Parts>, body: Body) -> Self {
        Outbound { head, body }
    }

    pub fn into_request(self) -> Request<Body> {
        Request::from_parts(*self.head, self.body)
    }
}

/// A failed send, with the request when it was never sent.
pub type SendFailure = (SendError, Option<Outbound>);

/// Why a request could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// The cluster's connection pool is full (`maxConnections` and `http1MaxPendingRequests`):
    /// Envoy's UO.
    Overflow(crate::resilience::Overflow),
    /// No connection could be made (Envoy's UF).
    Connect(String),
    /// The connection failed while sending or before the response head (Envoy's UC).
    Reset(String),
}

#[derive(Default)]
struct EndpointPool {
    idle_h1: Vec<Idle>,
    /// HTTP/2 connections with their open streams; another is opened when every one has
    /// `maxConcurrentStreams` open.
    h2: Vec<(http2::SendRequest<Body>, Arc<std::sync::atomic::AtomicU32>)>,
}

/// An idle HTTP/1.1 connection and what the cluster's `connectionPool` limits need about it.
struct Idle {
    conn: h1::Conn<UpstreamIo>,
    /// Holds the connection's place under `maxConnections` (none without limits).
    slot: Option<crate::resilience::ConnectionGuard>,
    requests: u32,
    opened: tokio::time::Instant,
    idle_since: tokio::time::Instant,
}

/// The pool of one cluster: its limits, and the key its connections are kept under (as in
/// Envoy, a cluster's connections are its own, so its limits count exactly them).
pub struct ClusterPool<'a> {
    pub breakers: &'a crate::resilience::CircuitBreakers,
}

impl ClusterPool<'_> {
    fn key(&self) -> usize {
        self.breakers.id()
    }
}

/// All upstream connections of the proxy.
pub struct Pools {
    /// By (cluster pool key, endpoint); key 0 is requests sent without a cluster's limits.
    endpoints: Mutex<crate::runtime::FastMap<(usize, SocketAddr), EndpointPool>>,
    connect_timeout: Duration,
    /// Idle HTTP/1.1 connections kept per endpoint.
    max_idle: usize,
    /// Which endpoints get mesh mTLS, as of the snapshot in force.
    tls: arc_swap::ArcSwap<UpstreamTlsTable>,
    /// The proxy's mesh mTLS, once it has a workload certificate (`--ca-address`).
    mesh: std::sync::OnceLock<Arc<MeshTls>>,
}

impl Default for Pools {
    fn default() -> Self {
        // Istio's default connect timeout is 10 s.
        Pools {
            endpoints: Mutex::new(Default::default()),
            connect_timeout: Duration::from_secs(10),
            max_idle: 64,
            tls: Default::default(),
            mesh: std::sync::OnceLock::new(),
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
        req: Outbound,
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
        req: Outbound,
    ) -> Result<Response<Body>, SendFailure> {
        if h2 {
            self.send_h2(None, addr, req).await
        } else {
            self.send_h1(None, addr, req).await
        }
    }

    /// Like [`Pools::send_recoverable`], within the cluster's `connectionPool` limits:
    /// `maxConnections` (further requests wait, up to `http1MaxPendingRequests`, then fail
    /// fast with UO), `maxRequestsPerConnection`, `connectTimeout`, `idleTimeout` and
    /// `maxConnectionDuration`.
    pub async fn send_in(
        self: &Arc<Self>,
        cluster: &ClusterPool<'_>,
        addr: SocketAddr,
        h2: bool,
        req: Outbound,
    ) -> Result<Response<Body>, SendFailure> {
        // hyper's HTTP/2 client futures are large; boxed, they don't make every HTTP/1.1
        // request's future (moved through each layer of the request path) larger too.
        if h2 {
            Box::pin(self.send_h2(Some(cluster), addr, req)).await
        } else {
            self.send_h1(Some(cluster), addr, req).await
        }
    }

    /// Turns on mesh mTLS toward the endpoints that take it.
    pub fn set_mesh(&self, mesh: Arc<MeshTls>) {
        let _ = self.mesh.set(mesh);
    }

    /// The proxy's mesh mTLS, when it has a workload certificate.
    pub fn mesh(&self) -> Option<&Arc<MeshTls>> {
        self.mesh.get()
    }

    /// The identity behind `addr` (cluster pool key `key`) when connections to it are mesh
    /// mTLS: the client side's `destination_principal`. The handshake checked the server's
    /// certificate against exactly this identity.
    pub fn mesh_peer(&self, key: usize, addr: SocketAddr) -> Option<String> {
        self.mesh.get()?;
        let table = self.tls.load();
        if table.origin(key).is_some() {
            return None;
        }
        table
            .mesh(key, addr)
            .map(|t| t.identity.clone())
            .filter(|id| !id.is_empty())
    }

    /// Which endpoints take mesh mTLS, from a new snapshot.
    pub fn set_tls(&self, table: UpstreamTlsTable) {
        self.tls.store(Arc::new(table));
    }

    /// Where a new connection to `addr` (in the cluster with pool key `key`) goes: mesh mTLS
    /// over `stream` when the endpoint takes it and this proxy has a certificate.
    pub async fn secure(
        &self,
        key: usize,
        addr: SocketAddr,
        carries: Carries,
        stream: TcpStream,
    ) -> Result<UpstreamIo, SendError> {
        let table = self.tls.load();
        if let Some(origin) = table.origin(key).cloned() {
            drop(table);
            return Box::pin(origin_handshake(&origin, stream))
                .await
                .map_err(SendError::Connect);
        }
        let target = table.mesh(key, addr).cloned();
        drop(table);
        match (target, self.mesh.get()) {
            (Some(target), Some(mesh)) => {
                // Boxed: rare, and large.
                Box::pin(mesh_handshake(mesh, &target, carries, stream))
                    .await
                    .map_err(SendError::Connect)
            }
            _ => Ok(UpstreamIo::Plain(stream)),
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, SendError> {
        self.connect_within(addr, self.connect_timeout).await
    }

    async fn connect_within(
        &self,
        addr: SocketAddr,
        limit: Duration,
    ) -> Result<TcpStream, SendError> {
        // Boxed: connecting is rare (connections are pooled) and its future is large, and
        // every request's future would otherwise have room for it.
        match Box::pin(tokio::time::timeout(limit, TcpStream::connect(addr))).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(SendError::Connect(io_cause(&e))),
            Err(_) => Err(SendError::Connect(format!(
                "connect timeout after {limit:?}"
            ))),
        }
    }

    /// A connection for the next request: an idle one, or a new one when the cluster's
    /// `maxConnections` allows; otherwise the request waits as pending for one to free up
    /// (or fails with UO when `http1MaxPendingRequests` are already waiting).
    async fn checkout(
        &self,
        cluster: Option<&ClusterPool<'_>>,
        addr: SocketAddr,
    ) -> Result<(Idle, bool), SendError> {
        let key = cluster.map_or(0, ClusterPool::key);
        let Some(cluster) = cluster else {
            if let Some(idle) = self.take_idle_h1(key, addr, None) {
                return Ok((idle, true));
            }
            let stream = self.connect(addr).await?;
            let io = self.secure(key, addr, Carries::Http1, stream).await?;
            return Ok((fresh(io, None), false));
        };
        let limits = cluster.breakers.limits();
        let mut pending = None;
        loop {
            let released = cluster.breakers.released();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(idle) = self.take_idle_h1(key, addr, Some(limits)) {
                return Ok((idle, true));
            }
            match cluster.breakers.try_connection() {
                Ok(slot) => {
                    let stream = self.connect_within(addr, limits.connect_timeout).await?;
                    if let Some(k) = &limits.tcp_keepalive {
                        set_keepalive(&stream, k);
                    }
                    let io = self.secure(key, addr, Carries::Http1, stream).await?;
                    return Ok((fresh(io, Some(slot)), false));
                }
                Err(full) if pending.is_none() => match cluster.breakers.try_pending() {
                    Ok(p) => pending = Some(p),
                    Err(overflow) => {
                        tracing::debug!(limit = ?full.limit, "connection pool full");
                        return Err(SendError::Overflow(overflow));
                    }
                },
                Err(_) => {}
            }
            released.await;
        }
    }

    /// An idle connection the upstream has not closed meanwhile (and, within a cluster's
    /// limits, idle for less than `idleTimeout`).
    fn take_idle_h1(
        &self,
        key: usize,
        addr: SocketAddr,
        limits: Option<&crate::resilience::PoolLimits>,
    ) -> Option<Idle> {
        loop {
            let idle = {
                let mut map = self.endpoints.lock().ok()?;
                map.get_mut(&(key, addr))?.idle_h1.pop()?
            };
            let now = tokio::time::Instant::now();
            if limits
                .and_then(|l| l.idle_timeout)
                .is_some_and(|t| now.duration_since(idle.idle_since) >= t)
            {
                continue;
            }
            // tokio knows the socket would block if nothing happened on it since the last
            // read: then this costs no system call. Data or EOF: the upstream closed it. A TLS
            // connection can't be peeked under its records; a closed one is found when the
            // request is sent, and an idempotent request is sent again (see `send_h1`).
            let mut probe = [0u8; 1];
            let io = idle.conn.io();
            if io.is_mtls()
                || matches!(io.tcp().try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Some(idle);
            }
        }
    }

    /// Closes the idle connections of clusters no longer configured (`live`: the pool keys
    /// of the clusters in force).
    pub fn retain_clusters(&self, live: &std::collections::HashSet<usize>) {
        if let Ok(mut map) = self.endpoints.lock() {
            map.retain(|(key, _), _| *key == 0 || live.contains(key));
        }
    }

    fn put_idle_h1(&self, key: usize, addr: SocketAddr, idle: Idle) {
        if let Ok(mut map) = self.endpoints.lock() {
            let pool = map.entry((key, addr)).or_default();
            if pool.idle_h1.len() < self.max_idle {
                pool.idle_h1.push(idle);
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
        cluster: Option<&ClusterPool<'_>>,
        addr: SocketAddr,
        req: Outbound,
    ) -> Result<Response<Body>, SendFailure> {
        let (idle, reused) = match self.checkout(cluster, addr).await {
            Ok(x) => x,
            Err(e) => return Err((e, Some(req))),
        };
        let idempotent = req.head.method.is_idempotent();
        let (conn, releaser) = self.releaser(cluster, addr, idle);
        let failure = match h1::send(conn, req, releaser).await {
            Ok(resp) => return Ok(resp),
            Err(f) => f,
        };
        match failure.unsent {
            // The pooled connection was closed under us: send once more on a new one.
            Some(req) if reused && idempotent => {
                let limit = cluster.map_or(self.connect_timeout, |c| {
                    c.breakers.limits().connect_timeout
                });
                let slot = match cluster.map(|c| c.breakers.try_connection()) {
                    Some(Err(overflow)) => {
                        return Err((SendError::Overflow(overflow), Some(req)));
                    }
                    Some(Ok(slot)) => Some(slot),
                    None => None,
                };
                let key = cluster.map_or(0, ClusterPool::key);
                let connected = match self.connect_within(addr, limit).await {
                    Ok(stream) => self.secure(key, addr, Carries::Http1, stream).await,
                    Err(e) => Err(e),
                };
                let idle = match connected {
                    Ok(io) => fresh(io, slot),
                    Err(e) => return Err((e, Some(req))),
                };
                let (conn, releaser) = self.releaser(cluster, addr, idle);
                h1::send(conn, req, releaser)
                    .await
                    .map_err(|f| (SendError::Reset(f.cause), f.unsent))
            }
            unsent => Err((SendError::Reset(failure.cause), unsent)),
        }
    }

    /// The connection to send on, and what its response body calls to return it: back to
    /// the idle pool, unless `maxRequestsPerConnection` or `maxConnectionDuration` say it is
    /// done (then it closes and its `maxConnections` slot frees).
    fn releaser(
        self: &Arc<Self>,
        cluster: Option<&ClusterPool<'_>>,
        addr: SocketAddr,
        idle: Idle,
    ) -> (
        h1::Conn<UpstreamIo>,
        impl FnOnce(h1::Conn<UpstreamIo>) + Send + Sync + Unpin + 'static,
    ) {
        let pools = self.clone();
        let key = cluster.map_or(0, ClusterPool::key);
        let breakers = cluster.map(|c| c.breakers.clone());
        let Idle {
            conn,
            slot,
            requests,
            opened,
            ..
        } = idle;
        let release = move |conn| {
            let requests = requests + 1;
            if let Some(b) = &breakers {
                let limits = b.limits();
                let spent = limits
                    .max_requests_per_connection
                    .is_some_and(|max| requests >= max);
                let old = limits
                    .max_connection_duration
                    .is_some_and(|max| opened.elapsed() >= max);
                if spent || old {
                    // Dropping the connection and its slot wakes a pending request.
                    return;
                }
            }
            pools.put_idle_h1(
                key,
                addr,
                Idle {
                    conn,
                    slot,
                    requests,
                    opened,
                    idle_since: tokio::time::Instant::now(),
                },
            );
            if let Some(b) = &breakers {
                b.connection_idle();
            }
        };
        (conn, release)
    }

    async fn send_h2(
        self: &Arc<Self>,
        cluster: Option<&ClusterPool<'_>>,
        addr: SocketAddr,
        mut req: Outbound,
    ) -> Result<Response<Body>, SendFailure> {
        use std::sync::atomic::Ordering;
        // Requests from HTTP/1 clients carry the codec's header-case marks.
        crate::http::h1::case::clear_marks(&mut req.head.headers);
        let key = cluster.map_or(0, ClusterPool::key);
        let max_streams = cluster.map_or(u32::MAX, |c| c.breakers.limits().max_concurrent_streams);
        let existing = self.endpoints.lock().ok().and_then(|mut m| {
            let pool = m.get_mut(&(key, addr))?;
            pool.h2.retain(|(s, _)| !s.is_closed());
            pool.h2
                .iter()
                .find(|(_, open)| open.load(Ordering::Relaxed) < max_streams)
                .cloned()
        });
        let (mut sender, open) = match existing {
            Some(s) => s,
            None => {
                let limit = cluster.map_or(self.connect_timeout, |c| {
                    c.breakers.limits().connect_timeout
                });
                let connected = match self.connect_within(addr, limit).await {
                    Ok(s) => self.secure(key, addr, Carries::Http2, s).await,
                    Err(e) => Err(e),
                };
                let stream = match connected {
                    Ok(s) => s,
                    Err(e) => return Err((e, Some(req))),
                };
                let (sender, conn) = match http2::Builder::new(TokioExecutor::new())
                    .handshake(TokioIo::new(stream))
                    .await
                {
                    Ok(x) => x,
                    Err(e) => return Err((SendError::Connect(e.to_string()), Some(req))),
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let entry = (sender, Arc::new(std::sync::atomic::AtomicU32::new(0)));
                if let Ok(mut map) = self.endpoints.lock() {
                    map.entry((key, addr)).or_default().h2.push(entry.clone());
                }
                entry
            }
        };
        if let Err(e) = sender.ready().await {
            return Err((SendError::Reset(hyper_cause(&e)), Some(req)));
        }
        let stream = StreamSlot::open(open);
        sender
            .send_request(req.into_request())
            .await
            .map(|r| {
                r.map(|body| {
                    boxed(StreamBody {
                        body,
                        _slot: stream,
                    })
                })
            })
            .map_err(|e| (SendError::Reset(hyper_cause(&e)), None))
    }
}

/// Counts one open stream on an HTTP/2 connection until dropped (for `maxConcurrentStreams`).
struct StreamSlot(Arc<std::sync::atomic::AtomicU32>);

impl StreamSlot {
    fn open(count: Arc<std::sync::atomic::AtomicU32>) -> StreamSlot {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StreamSlot(count)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An HTTP/2 response body holding its stream's place until it is read or dropped.
struct StreamBody {
    body: hyper::body::Incoming,
    _slot: StreamSlot,
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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

/// A newly connected HTTP/1.1 connection.
fn fresh(stream: UpstreamIo, slot: Option<crate::resilience::ConnectionGuard>) -> Idle {
    let now = tokio::time::Instant::now();
    Idle {
        conn: h1::Conn::new(stream),
        slot,
        requests: 0,
        opened: now,
        idle_since: now,
    }
}

/// `connectionPool.tcp.tcpKeepalive`: SO_KEEPALIVE with the given probes, time and interval
/// (the system's defaults for what is unset, as Envoy does).
fn set_keepalive(stream: &TcpStream, k: &crate::resilience::TcpKeepalive) {
    let mut ka = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        ka = ka.with_time(t);
    }
    if let Some(i) = k.interval {
        ka = ka.with_interval(i);
    }
    if let Some(p) = k.probes {
        ka = ka.with_retries(p);
    }
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!("cannot set TCP keepalive: {e}");
    }
}

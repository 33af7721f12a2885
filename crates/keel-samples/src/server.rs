//! The HTTP server every sample app runs on: accept on a listener, serve HTTP/1.1 and HTTP/2
//! (prior knowledge) with hyper, log one line per request, and stop cleanly — no new
//! connections, in-flight requests finish (up to [`DRAIN_TIMEOUT`]), idle connections close.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::http_util::Body;
use crate::log;

/// How long a stopping server waits for in-flight requests (httpbin's longest delay is 10 s).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(11);

/// One sample app: answers a request. Implementations never panic; every failure is a response.
pub trait Handler: Send + Sync + 'static {
    /// Answers `req`, which arrived from `peer`.
    fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// A running server; [`Server::stop`] shuts it down gracefully (dropping it does too, without
/// waiting).
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Starts serving `handler` on `listener`; `name` prefixes the access log lines.
    pub fn start<H: Handler>(
        name: &'static str,
        listener: TcpListener,
        handler: H,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(name, listener, Arc::new(handler), stopped));
        Ok(Server { addr, stop, task })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and returns when all connections are
    /// closed (or [`DRAIN_TIMEOUT`] passed).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    handler: Arc<H>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(serve_connection(name, stream, peer, handler.clone(), stopped.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    log!("{name}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        conns.abort_all();
    }
}

async fn serve_connection<H: Handler>(
    name: &'static str,
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(logged(name, &*handler, req, peer).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Runs the handler and writes the access log line:
/// `productpage "GET /productpage HTTP/1.1" 200 5123 12ms 127.0.0.1:40122`.
async fn logged<H: Handler>(
    name: &str,
    handler: &H,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned());
    let version = req.version();
    let res = handler.handle(req, peer).await;
    let size = res.body().size_hint().exact().unwrap_or(0);
    log!(
        "{name} \"{method} {target} {version:?}\" {} {size} {}ms {peer}",
        res.status().as_u16(),
        start.elapsed().as_millis()
    );
    res
}

/// Resolves when the process is asked to stop: SIGTERM or SIGINT (Ctrl-C).
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                r = tokio::signal::ctrl_c() => if r.is_err() {
                    term.recv().await;
                },
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No way to hear signals: run until killed.
        std::future::pending::<()>().await;
    }
}

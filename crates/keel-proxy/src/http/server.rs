//! Serving one downstream connection: HTTP/1.x by Keel's own codec ([`super::h1::server`]),
//! which hands HTTP/2 — prior knowledge (the connection preface) or an `Upgrade: h2c`
//! handshake ([`super::h2c`]) — to hyper's HTTP/2 server ([`serve_h2`]). Generic over the
//! IO, so TLS-terminated streams use the same path.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::{ConnInfo, Shared};

/// Serves HTTP on `io` until the client closes it or the proxy drains.
pub async fn serve<IO>(shared: Arc<Shared>, conn: Arc<ConnInfo>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    super::h1::server::serve(shared, conn, io).await
}

/// Serves HTTP/2 on `io` (which starts with the client's connection preface) until the
/// client closes it, or, once the proxy drains, until the streams in flight are done.
pub async fn serve_h2<IO>(shared: Arc<Shared>, conn: Arc<ConnInfo>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let (shared, conn) = (shared.clone(), conn.clone());
        service_fn(move |req| {
            let (head, body) = req.into_parts();
            let handled =
                super::forward::handle(shared.clone(), conn.clone(), Box::new(head), body);
            async move {
                let mut resp = handled.await?;
                // Responses from HTTP/1 upstreams carry the codec's header-case marks.
                super::h1::case::clear_marks(resp.headers_mut());
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(connection);
    let mut drain = shared.drain.subscribe();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = async { drain.wait_for(|d| *d).await.is_ok() } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

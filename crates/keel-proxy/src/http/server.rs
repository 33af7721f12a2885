//! Serving one downstream connection as HTTP/1.1 or HTTP/2 (prior knowledge, or an
//! `Upgrade: h2c` handshake: [`super::h2c`]), generic over the IO so TLS-terminated streams
//! use the same path.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

use super::h2c::{self, H2cRequest};
use crate::server::{ConnInfo, Shared};

/// Serves HTTP on `io` until the client closes it or the proxy drains.
pub async fn serve<IO>(shared: Arc<Shared>, conn: Arc<ConnInfo>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let shared = shared.clone();
        let conn = conn.clone();
        service_fn(move |mut req| {
            let (shared, conn) = (shared.clone(), conn.clone());
            async move {
                match h2c::classify(&req, &conn) {
                    H2cRequest::None => {}
                    H2cRequest::Upgrade => return Ok(h2c::upgrade(shared, conn, req)),
                    H2cRequest::Ignore => h2c::strip_upgrade(&mut req),
                }
                super::forward::handle(shared, conn, req).await
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().preserve_header_case(true).keep_alive(true);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(connection);
    let mut drain = shared.drain.subscribe();
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = drain.changed() => {
            // Finish in-flight requests, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

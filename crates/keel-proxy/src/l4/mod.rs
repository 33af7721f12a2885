//! Connections below HTTP: what a listener does with a connection before (or instead of)
//! speaking HTTP.
//!
//! - `Http` listeners go straight to [`crate::http::server`].
//! - `Tcp` listeners proxy bytes ([`tcp`]) without reading a single byte first, so
//!   server-first protocols (MySQL, SMTP) work on declared TCP ports.
//! - `TlsPassthrough` listeners read the ClientHello ([`sni`]), route on its server name and
//!   forward the bytes untouched.
//! - `Auto` listeners sniff the first bytes ([`detect`]) and pick one of the above.
//!
//! Connections redirected by iptables carry their original destination ([`orig_dst`]),
//! which TCP routes match on and PASSTHROUGH clusters forward to.

pub mod detect;
pub mod exchange;
pub mod orig_dst;
pub mod sni;
pub mod splice;
pub mod tcp;

use std::sync::Arc;
use std::time::Duration;

use keel_snapshot::{Listener, ListenerProtocol, MtlsMode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::server::{ConnInfo, Shared};
use detect::{Detected, Rewind};
use orig_dst::{OriginalDst, SoOriginalDst};

/// Settings of the L4 path.
#[derive(Clone)]
pub struct L4Config {
    /// How long an `Auto` listener waits for the client's first bytes before treating the
    /// connection as TCP. Istio's `meshConfig.protocolDetectionTimeout` started at 100ms,
    /// was documented as 5s up to Istio 1.11, and has been 0s ("no timeout") since
    /// istio/api#2117 (Istio 1.12), which stalls server-first protocols on undeclared ports
    /// forever. Keel keeps the original short default so they start after a brief pause;
    /// `Duration::ZERO` waits without a deadline, as Istio's 0s does.
    pub detect_timeout: Duration,
    /// How long a TLS passthrough listener waits for a complete ClientHello (Envoy's
    /// listener filter timeout is 15s; a real client sends its hello at once).
    pub hello_timeout: Duration,
    /// Upstream connect timeout (Istio's `connectTimeout` default, 10s).
    pub connect_timeout: Duration,
    /// How long TCP connections continue once the proxy drains (`--drain-timeout`, like
    /// Istio's `terminationDrainDuration`, 5s): they have no request boundary to finish at,
    /// so they are closed when it passes instead of holding the process open.
    pub drain_timeout: Duration,
    /// Where redirected connections were going.
    pub original_dst: Arc<dyn OriginalDst>,
    /// Proxies in front of a gateway whose `X-Forwarded-For` entries are trusted (Istio's
    /// `gatewayTopology.numTrustedProxies`, default 0).
    pub num_trusted_proxies: u8,
}

impl Default for L4Config {
    fn default() -> Self {
        L4Config {
            detect_timeout: Duration::from_millis(100),
            hello_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            original_dst: Arc::new(SoOriginalDst),
            num_trusted_proxies: 0,
        }
    }
}

impl std::fmt::Debug for L4Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L4Config")
            .field("detect_timeout", &self.detect_timeout)
            .field("hello_timeout", &self.hello_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

/// Serves one accepted connection according to its listener's protocol.
pub async fn serve(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    protocol: ListenerProtocol,
    stream: TcpStream,
) {
    match protocol {
        ListenerProtocol::Http => crate::http::server::serve(shared, conn, stream).await,
        ListenerProtocol::Tcp => serve_tcp(&shared, &conn, Rewind::new(Vec::new(), stream)).await,
        ListenerProtocol::TlsPassthrough => serve_tls(&shared, &conn, stream, Vec::new()).await,
        ListenerProtocol::Auto => serve_auto(shared, conn, stream).await,
    }
}

/// Serves a connection whose TLS this proxy terminated (a gateway's HTTPS or TLS server): HTTP
/// inside (HTTP/2 when ALPN agreed `h2`) or TCP routes.
pub async fn serve_terminated(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    protocol: ListenerProtocol,
    t: crate::tls::terminate::Terminated,
) {
    match protocol {
        ListenerProtocol::Http | ListenerProtocol::Auto if t.h2 => {
            crate::http::server::serve_h2(shared, conn, t.stream).await
        }
        ListenerProtocol::Http | ListenerProtocol::Auto => {
            crate::http::server::serve(shared, conn, t.stream).await
        }
        ListenerProtocol::Tcp | ListenerProtocol::TlsPassthrough => {
            serve_tcp(&shared, &conn, t.stream).await
        }
    }
}

/// The listener as of the current snapshot (routes change without rebinding).
fn current_listener(shared: &Shared, name: &str) -> Option<Listener> {
    shared.runtime.load().snapshot.listener(name).cloned()
}

async fn serve_tcp<S>(shared: &Arc<Shared>, conn: &ConnInfo, downstream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let dst = tcp::destination(conn);
    let listener = current_listener(shared, &conn.listener);
    if let Some(policies) = listener.as_ref().and_then(|l| l.authz.as_ref())
        && let Err(why) = crate::authz::check_connection(policies, conn, None)
    {
        // As Envoy's network RBAC filter: the connection is closed.
        tracing::info!(listener = %conn.listener, downstream = %conn.remote, "TCP connection to {dst} closed: {why}");
        return;
    }
    let Some(route) = listener
        .as_ref()
        .and_then(|l| tcp::find_tcp_route(&l.tcp, dst))
    else {
        let e = ProxyError::no_l4_route(&format!("TCP connection to {dst}"), &conn.listener);
        tracing::warn!(listener = %conn.listener, downstream = %conn.remote, "{e}");
        return;
    };
    tcp::forward(shared, conn, &route.name, &route.clusters, downstream).await;
}

/// TLS passed through: read the ClientHello (after `prefix`, bytes already read), route on
/// its server name, then TCP routes, and forward every byte as it came.
async fn serve_tls(shared: &Arc<Shared>, conn: &ConnInfo, mut stream: TcpStream, prefix: Vec<u8>) {
    let (sni, buf) = match read_hello(&mut stream, prefix, shared.l4.hello_timeout).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(listener = %conn.listener, downstream = %conn.remote, "reading the TLS ClientHello failed: {e}");
            return;
        }
    };
    let dst = tcp::destination(conn);
    let listener = current_listener(shared, &conn.listener);
    if let Some(policies) = listener.as_ref().and_then(|l| l.authz.as_ref())
        && let Err(why) = crate::authz::check_connection(policies, conn, sni.as_deref())
    {
        tracing::info!(listener = %conn.listener, downstream = %conn.remote, "TLS connection to {dst} closed: {why}");
        return;
    }
    let tls_route = listener
        .as_ref()
        .and_then(|l| tcp::find_tls_route(&l.tls, dst, sni.as_deref()));
    let (name, clusters) = match tls_route {
        Some(r) => (r.name.clone(), r.clusters.clone()),
        None => match listener
            .as_ref()
            .and_then(|l| tcp::find_tcp_route(&l.tcp, dst))
        {
            Some(r) => (r.name.clone(), r.clusters.clone()),
            None => {
                let what = match &sni {
                    Some(s) => format!("TLS connection to {dst} with SNI \"{s}\""),
                    None => format!("TLS connection to {dst} without SNI"),
                };
                let e = ProxyError::no_l4_route(&what, &conn.listener);
                tracing::warn!(listener = %conn.listener, downstream = %conn.remote, "{e}");
                return;
            }
        },
    };
    tcp::forward(shared, conn, &name, &clusters, Rewind::new(buf, stream)).await;
}

/// Terminates mesh mTLS on the inbound side and serves what it carries, as the client's ALPN
/// says: HTTP/2, HTTP/1.1, or TCP (`istio`, or a declared TCP port).
async fn serve_mesh_mtls(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mesh: &crate::tls::mesh::MeshTls,
    stream: Rewind<TcpStream>,
    declared: bool,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(mesh.server_config());
    let accepted = tokio::time::timeout(shared.l4.hello_timeout, acceptor.accept(stream)).await;
    let tls = match accepted {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::info!(listener = %conn.listener, downstream = %conn.remote, "mesh mTLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(listener = %conn.listener, downstream = %conn.remote, "mesh mTLS handshake not done in time");
            return;
        }
    };
    let (peer, client_cert, alpn) = {
        let c = &tls.get_ref().1;
        let leaf = c.peer_certificates().and_then(|certs| certs.first());
        let peer = leaf.and_then(|leaf| crate::tls::mesh::spiffe_ids(leaf).into_iter().next());
        let by = mesh.identity().id().to_string();
        let client_cert = leaf.map(|leaf| Arc::from(crate::tls::xfcc::element(Some(&by), leaf)));
        (peer, client_cert, c.alpn_protocol().map(<[u8]>::to_vec))
    };
    let conn = Arc::new(ConnInfo {
        tls: true,
        peer_identity: peer.map(Arc::from),
        client_cert,
        ..(*conn).clone()
    });
    match alpn.as_deref() {
        Some(crate::tls::mesh::ALPN_H2) if !declared => {
            crate::http::server::serve_h2(shared, conn, tls).await
        }
        Some(crate::tls::mesh::ALPN_HTTP11) if !declared => {
            crate::http::server::serve(shared, conn, tls).await
        }
        Some(crate::telemetry::peer_exchange::TCP_ALPN) => {
            let mut tls = tls;
            let frame =
                crate::telemetry::peer_exchange::own_tcp_frame(shared.telemetry.peer_exchange());
            match exchange::exchange(&mut tls, frame, shared.l4.hello_timeout).await {
                Ok(x) => {
                    let conn = ConnInfo {
                        peer_workload: x.peer,
                        ..(*conn).clone()
                    };
                    serve_tcp(&shared, &conn, Rewind::new(x.rest, tls)).await
                }
                Err(e) => tracing::info!(
                    listener = %conn.listener, downstream = %conn.remote,
                    "TCP metadata exchange failed, connection closed: {e}"
                ),
            }
        }
        _ => serve_tcp(&shared, &conn, tls).await,
    }
}

/// Reads until the ClientHello is complete (or clearly isn't one), within `timeout` and
/// [`sni::MAX_HELLO`] bytes. A hello that can't be read routes as "no SNI" rather than
/// failing: SNI-less routes (and TCP routes) may still take it.
async fn read_hello(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> std::io::Result<(Option<String>, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Records add five bytes of header per fragment; allow for a hello split into many.
    let limit = 2 * sni::MAX_HELLO;
    loop {
        match sni::parse(&buf) {
            sni::Hello::Parsed { sni } => return Ok((sni, buf)),
            sni::Hello::Invalid(why) => {
                tracing::debug!("not a readable ClientHello ({why}); routing without SNI");
                return Ok((None, buf));
            }
            sni::Hello::Incomplete if buf.len() >= limit => return Ok((None, buf)),
            sni::Hello::Incomplete => {}
        }
        let mut chunk = vec![0u8; 4096.min(limit - buf.len())];
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no complete ClientHello within {timeout:?}"),
                ));
            }
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "client closed before its ClientHello was complete",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sniffs the protocol, unless the connection's original destination is a declared TCP
/// port (an `opaque` TCP route's match holds for it): those are never sniffed, as Istio
/// hands such connections to a port listener that doesn't sniff.
async fn serve_auto(shared: Arc<Shared>, conn: Arc<ConnInfo>, mut stream: TcpStream) {
    let listener = current_listener(&shared, &conn.listener);
    let dst = tcp::destination(&conn);
    let declared = listener.as_ref().is_some_and(|l| {
        l.tcp
            .iter()
            .any(|r| r.opaque && r.matches.iter().any(|m| tcp::l4_matches(m, dst, None)))
    });
    // The sidecar's inbound side with a workload certificate: PeerAuthentication decides
    // whether mesh mTLS is accepted, and whether plaintext still is.
    let mtls = match (
        listener.as_ref().and_then(|l| l.peer_authn.as_ref()),
        shared.pools.mesh(),
    ) {
        (Some(pa), Some(mesh)) => match pa.mode_for(dst.port()) {
            MtlsMode::Disable => None,
            mode => Some((mode, mesh.clone())),
        },
        _ => None,
    };
    if declared && mtls.is_none() {
        return serve_tcp(&shared, &conn, Rewind::new(Vec::new(), stream)).await;
    }
    let (detected, mut buf) = match detect::detect(&mut stream, shared.l4.detect_timeout).await {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(listener = %conn.listener, downstream = %conn.remote, "protocol detection failed: {e}");
            return;
        }
    };
    if let Some((mode, mesh)) = mtls {
        if detected == Detected::Tls {
            // The whole ClientHello tells mesh mTLS (Istio's ALPN names) from an app's TLS.
            match read_hello(&mut stream, buf, shared.l4.hello_timeout).await {
                Ok((_, hello)) => buf = hello,
                Err(e) => {
                    tracing::debug!(listener = %conn.listener, downstream = %conn.remote, "reading the TLS ClientHello failed: {e}");
                    return;
                }
            }
            let alpn = sni::alpn(&buf);
            if crate::tls::mesh::is_mesh_alpn(alpn.iter().map(Vec::as_slice)) {
                return serve_mesh_mtls(shared, conn, &mesh, Rewind::new(buf, stream), declared)
                    .await;
            }
        }
        if mode == MtlsMode::Strict {
            // As Envoy under STRICT: the connection is closed, the client sees a reset.
            tracing::info!(listener = %conn.listener, downstream = %conn.remote, "PeerAuthentication STRICT: a connection without mesh mTLS is refused");
            return;
        }
        if declared {
            return serve_tcp(&shared, &conn, Rewind::new(buf, stream)).await;
        }
    }
    let has_http = listener.as_ref().is_some_and(|l| l.http.is_some());
    tracing::trace!(listener = %conn.listener, downstream = %conn.remote, ?detected, "protocol detected");
    match detected {
        Detected::Http1 | Detected::Http2 if has_http => {
            crate::http::server::serve(shared, conn, Rewind::new(buf, stream)).await
        }
        Detected::Tls => serve_tls(&shared, &conn, stream, buf).await,
        _ => serve_tcp(&shared, &conn, Rewind::new(buf, stream)).await,
    }
}

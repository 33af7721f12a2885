//! TLS toward upstreams: which endpoints get mesh mTLS (Istio's auto mTLS and
//! `ISTIO_MUTUAL`), and the connection type that is either plain TCP or TLS over it.
//!
//! The decision is made once per snapshot ([`UpstreamTlsTable::from_runtime`]) and looked up
//! by (cluster, endpoint address) when a connection is opened, so the request path only pays
//! a map lookup on the rare new connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use keel_config::model::networking::destination_rule::TlsMode as ClientTlsMode;
use keel_snapshot::EndpointAddress;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::mesh::{Carries, MeshTls};
use crate::runtime::{FastMap, Runtime};

/// How to reach one endpoint of one cluster over mesh mTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshTarget {
    /// The SPIFFE ID expected behind it (any mesh identity when empty).
    pub identity: String,
    /// Istio's SNI for it: `outbound_.<port>_.<subset>_.<host>`.
    pub sni: String,
}

/// TLS the proxy originates to a cluster's endpoints (DestinationRule `tls.mode: SIMPLE` or
/// `MUTUAL`): verified against the configured CA (else the system's), by `subjectAltNames`
/// or the SNI's name, unless `insecureSkipVerify`.
pub struct OriginTls {
    /// The configuration, or why it can't be built (the connection then fails with it).
    pub config: Result<Arc<rustls::ClientConfig>, String>,
    pub sni: ServerName<'static>,
}

impl std::fmt::Debug for OriginTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginTls").field("sni", &self.sni).finish()
    }
}

/// The endpoints that get mesh mTLS, and the clusters the proxy originates TLS to, by
/// (cluster pool key, address) and cluster pool key.
#[derive(Debug, Default)]
pub struct UpstreamTlsTable {
    mesh: FastMap<(usize, SocketAddr), Arc<MeshTarget>>,
    origin: FastMap<usize, Arc<OriginTls>>,
}

impl UpstreamTlsTable {
    /// What `rt`'s clusters say: `tls.mode: ISTIO_MUTUAL` sends mTLS to every endpoint,
    /// `DISABLE` to none, and without a `tls` setting auto mTLS sends it to the endpoints the
    /// control plane marked (`mtls`: a sidecar that accepts it); SIMPLE and MUTUAL originate
    /// TLS with the user's certificates ([`OriginTls`]).
    pub fn from_runtime(rt: &Runtime) -> UpstreamTlsTable {
        let mut mesh = FastMap::default();
        let mut origin = FastMap::default();
        for c in rt.clusters.values() {
            let cluster = &c.cluster;
            let mode = cluster
                .traffic_policy
                .as_ref()
                .and_then(|p| p.tls.as_ref())
                .map(|t| t.mode);
            if let Some(tls) = cluster
                .traffic_policy
                .as_ref()
                .and_then(|p| p.tls.as_ref())
                .filter(|t| matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual))
            {
                origin.insert(
                    c.policies.breakers.id(),
                    Arc::new(super::origin::build(
                        tls,
                        cluster.client_credential.as_ref(),
                        &cluster.service,
                        &cluster.name,
                    )),
                );
                continue;
            }
            let sni = format!(
                "outbound_.{}_.{}_.{}",
                cluster.port, cluster.subset, cluster.service
            );
            for e in &cluster.endpoints {
                let EndpointAddress::Socket(addr) = e.address else {
                    continue;
                };
                let wanted = match mode {
                    Some(ClientTlsMode::IstioMutual) => true,
                    None => e.mtls,
                    Some(_) => false,
                };
                if wanted {
                    mesh.insert(
                        (c.policies.breakers.id(), addr),
                        Arc::new(MeshTarget {
                            identity: e.identity.clone(),
                            sni: sni.clone(),
                        }),
                    );
                }
            }
        }
        UpstreamTlsTable { mesh, origin }
    }

    /// TLS to originate to the endpoints of the cluster with pool key `key`.
    pub fn origin(&self, key: usize) -> Option<&Arc<OriginTls>> {
        self.origin.get(&key)
    }

    /// Mesh mTLS for `addr` in the cluster with pool key `key` (0: any cluster).
    pub fn mesh(&self, key: usize, addr: SocketAddr) -> Option<&Arc<MeshTarget>> {
        if key != 0 {
            return self.mesh.get(&(key, addr));
        }
        self.mesh
            .iter()
            .find(|((_, a), _)| *a == addr)
            .map(|(_, t)| t)
    }
}

/// An upstream connection: plain TCP, or TLS over it.
pub enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpstreamIo {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamIo::Plain(s) => s,
            UpstreamIo::Tls(t) => t.get_ref().0,
        }
    }

    /// Whether the peer was authenticated with mesh mTLS.
    pub fn is_mtls(&self) -> bool {
        matches!(self, UpstreamIo::Tls(_))
    }

    /// The protocol the TLS handshake agreed with ALPN, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            UpstreamIo::Plain(_) => None,
            UpstreamIo::Tls(t) => t.get_ref().1.alpn_protocol(),
        }
    }
}

/// TLS over `stream` as `origin` configures it.
pub async fn origin_handshake(origin: &OriginTls, stream: TcpStream) -> Result<UpstreamIo, String> {
    let config = origin.config.clone()?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(origin.sni.clone(), stream)
        .await
        .map_err(|e| format!("TLS handshake with {:?} failed: {e}", origin.sni))?;
    Ok(UpstreamIo::Tls(Box::new(tls)))
}

/// Mesh mTLS over `stream` to `target`, carrying `carries`.
pub async fn mesh_handshake(
    mesh: &MeshTls,
    target: &MeshTarget,
    carries: Carries,
    stream: TcpStream,
) -> Result<UpstreamIo, String> {
    let config = mesh.client_config(&target.identity, carries)?;
    let name = ServerName::try_from(target.sni.clone())
        .or_else(|_| ServerName::try_from("outbound.mesh".to_string()))
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| format!("mTLS handshake failed: {e}"))?;
    Ok(UpstreamIo::Tls(Box::new(tls)))
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamIo::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamIo::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(t) => Pin::new(t.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(s) => s.is_write_vectored(),
            UpstreamIo::Tls(t) => t.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamIo::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamIo::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

//! Istio's certificate API, `istio.v1.auth.IstioCertificateService/CreateCertificate`, served
//! over TLS (istiod's 15012) so the token in the call can't be read off the wire. The proxy
//! sends a PEM CSR and the requested lifetime with its token as `authorization: Bearer TOKEN`;
//! it gets back the chain, the root last.
//!
//! The TLS listener's certificate is issued by the CA itself for istiod's names
//! (`istiod.istio-system.svc`, ...) and the addresses given, so a proxy that trusts the root
//! trusts the CA without any other distribution.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_xds::pb::istio::v1::auth::istio_certificate_service_server::{
    IstioCertificateService, IstioCertificateServiceServer,
};
use keel_xds::pb::istio::v1::auth::{IstioCertificateRequest, IstioCertificateResponse};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::token::Authenticator;
use super::{Ca, SignError};

/// The names the CA's serving certificate carries besides the listener's own address:
/// istiod's, so clients configured for Istio find them.
pub const SERVING_NAMES: [&str; 4] = [
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
    "istiod",
    "localhost",
];

/// How long the serving certificate lasts (re-issued at each start).
const SERVING_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

pub struct CertificateService {
    ca: Arc<Ca>,
    auth: Arc<dyn Authenticator>,
}

impl CertificateService {
    pub fn new(ca: Arc<Ca>, auth: Arc<dyn Authenticator>) -> Self {
        CertificateService { ca, auth }
    }
}

fn bearer<T>(req: &Request<T>) -> Option<&str> {
    let v = req.metadata().get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

#[tonic::async_trait]
impl IstioCertificateService for CertificateService {
    async fn create_certificate(
        &self,
        req: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let token = bearer(&req)
            .ok_or_else(|| Status::unauthenticated(super::token::AuthError::Missing.to_string()))?;
        let id = self
            .auth
            .authenticate(token)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let r = req.into_inner();
        let ttl = u64::try_from(r.validity_duration)
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        let ca = self.ca.clone();
        let signed =
            tokio::task::spawn_blocking(move || ca.sign_csr(&r.csr, &id, ttl).map(|c| (c, id)))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        match signed {
            Ok((cert_chain, id)) => {
                tracing::info!(identity = %id, "issued a workload certificate");
                Ok(Response::new(IstioCertificateResponse { cert_chain }))
            }
            Err(e) => Err(match e {
                SignError::InvalidCsr(_) | SignError::BadLifetime(_) => {
                    Status::invalid_argument(e.to_string())
                }
                SignError::NotAllowed(_) => Status::permission_denied(e.to_string()),
                SignError::Internal(_) => Status::internal(e.to_string()),
            }),
        }
    }
}

/// A TLS connection the gRPC server can serve.
struct TlsConn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = Option<SocketAddr>;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.peer_addr().ok()
    }
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The TLS configuration of the CA's listener: a serving certificate for
/// [`SERVING_NAMES`] and `extra` names (the listener's address), ALPN `h2` for gRPC.
pub fn tls_config(ca: &Ca, extra: &[&str]) -> Result<rustls::ServerConfig, String> {
    let mut names: Vec<&str> = SERVING_NAMES.to_vec();
    names.extend_from_slice(extra);
    let (chain, key) = ca
        .serving_certificate(&names, SERVING_TTL)
        .map_err(|e| e.to_string())?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("serving certificate: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| format!("serving key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Serves the certificate API over TLS on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: rustls::ServerConfig,
    service: CertificateService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    // Handshakes run on their own tasks: a slow or silent client must not hold up the others.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<TlsConn, std::io::Error>>(64);
    let accepting = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsConn(tls))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, "CA: TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%peer, "CA: TLS handshake timed out"),
                }
            });
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    let served = tonic::transport::Server::builder()
        .add_service(IstioCertificateServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    accepting.abort();
    served
}

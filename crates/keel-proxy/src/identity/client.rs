//! The CA client: Istio's `IstioCertificateService/CreateCertificate` over TLS (istiod's
//! 15012). The CA's certificate must chain to the mesh root (`--ca-root-cert`) and name
//! `istiod.istio-system.svc`, as Istio's agent checks; the bearer token proves the identity.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use keel_xds::pb::istio::v1::auth::IstioCertificateRequest;
use keel_xds::pb::istio::v1::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use super::IdentityError;
use super::material::TrustRoots;

/// The name the CA's certificate is checked for (Istio's default `CA_ADDR` host).
pub const CA_SERVER_NAME: &str = "istiod.istio-system.svc";

/// Asks a CA to sign a CSR: the seam between rotation and the network, faked in tests.
pub trait CertificateSigner: Send + Sync + 'static {
    /// Returns Istio's `cert_chain` (leaf first, root last) for `csr_pem`, valid for `ttl`.
    fn sign(
        &self,
        csr_pem: String,
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<String>, IdentityError>> + Send;
}

/// Where the bearer token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// Read at every request, so a rotated file (a Kubernetes projected token) is followed.
    File(PathBuf),
    /// `KEEL_CA_TOKEN`, read once at start.
    Env(String),
}

impl std::fmt::Debug for TokenSource {
    // The token is a credential: never in a log or a panic message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(p) => f.debug_tuple("File").field(p).finish(),
            TokenSource::Env(_) => f.write_str("Env(<redacted>)"),
        }
    }
}

impl TokenSource {
    /// Where the token is, for messages: `in /var/run/token` or `in $KEEL_CA_TOKEN`.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::File(p) => format!("in {}", p.display()),
            TokenSource::Env(_) => "in $KEEL_CA_TOKEN".to_string(),
        }
    }

    fn read(&self) -> Result<String, IdentityError> {
        let token = match self {
            TokenSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| IdentityError::TokenUnreadable {
                    place: self.describe(),
                    cause: e.to_string(),
                })?
                .trim()
                .to_string(),
            TokenSource::Env(t) => t.trim().to_string(),
        };
        if token.is_empty() {
            return Err(IdentityError::TokenUnreadable {
                place: self.describe(),
                cause: "it is empty".into(),
            });
        }
        Ok(token)
    }
}

/// A step of connecting to the CA that failed, carried through tonic's error chain so the
/// message can say which one.
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    #[error("TCP: {0}")]
    Tcp(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
}

/// Opens TCP, then TLS with the CA's expected name, for tonic's channel.
#[derive(Clone)]
struct TlsConnector {
    address: String,
    tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<CaStream>, ConnectFailure>> + Send>>;
type CaStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

impl tonic::codegen::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<CaStream>;
    type Error = ConnectFailure;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(&this.address)
                .await
                .map_err(ConnectFailure::Tcp)?;
            let _ = tcp.set_nodelay(true);
            let tls = this
                .tls
                .connect(this.name.clone(), tcp)
                .await
                .map_err(ConnectFailure::Tls)?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// The CA over TLS, with one HTTP/2 connection kept between rotations.
pub struct CaClient {
    address: String,
    connector: TlsConnector,
    token: TokenSource,
    root_path: PathBuf,
    timeout: Duration,
    channel: tokio::sync::Mutex<Option<Channel>>,
}

impl CaClient {
    /// A client for the CA at `address` (`HOST:PORT`) trusting `roots`, sending the token
    /// from `token`. Nothing is connected until the first request.
    pub fn new(
        address: &str,
        roots: &TrustRoots,
        token: TokenSource,
    ) -> Result<CaClient, IdentityError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IdentityError::Internal(format!("TLS setup: {e}")))?
            .with_root_certificates(roots.store.clone())
            .with_no_client_auth();
        // gRPC needs HTTP/2, and the CA offers nothing else.
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = ServerName::try_from(CA_SERVER_NAME)
            .map_err(|e| IdentityError::Internal(format!("server name: {e}")))?;
        Ok(CaClient {
            address: address.to_string(),
            connector: TlsConnector {
                address: address.to_string(),
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
                name,
            },
            token,
            root_path: roots.path.clone(),
            // Istio's agent gives a CSR exchange 10 s in all.
            timeout: Duration::from_secs(10),
            channel: tokio::sync::Mutex::new(None),
        })
    }

    async fn channel(&self) -> Result<Channel, IdentityError> {
        let mut slot = self.channel.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        // The URI only names the HTTP/2 authority; the connector decides where to connect.
        let endpoint = Endpoint::from_shared(format!("http://{CA_SERVER_NAME}:15012"))
            .map_err(|e| IdentityError::Internal(e.to_string()))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = endpoint
            .connect_with_connector(self.connector.clone())
            .await
            .map_err(|e| self.connect_error(&e))?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Names the step that failed: TCP (is the CA there?) or TLS (is it the mesh's CA?).
    fn connect_error(&self, e: &(dyn std::error::Error + 'static)) -> IdentityError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cause {
            if let Some(f) = err.downcast_ref::<ConnectFailure>() {
                return match f {
                    ConnectFailure::Tcp(io) => IdentityError::Unreachable {
                        address: self.address.clone(),
                        cause: io.to_string(),
                    },
                    ConnectFailure::Tls(io) => IdentityError::Tls {
                        address: self.address.clone(),
                        root: self.root_path.clone(),
                        cause: io.to_string(),
                    },
                };
            }
            cause = err.source();
        }
        IdentityError::Unreachable {
            address: self.address.clone(),
            cause: chain_text(e),
        }
    }

    fn status_error(&self, s: &tonic::Status) -> IdentityError {
        use tonic::Code;
        match s.code() {
            Code::Unauthenticated => IdentityError::TokenRejected {
                place: self.token.describe(),
                message: s.message().to_string(),
            },
            Code::PermissionDenied => IdentityError::Refused {
                message: s.message().to_string(),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                match std::error::Error::source(s) {
                    Some(src) => self.connect_error(src),
                    None => IdentityError::Unreachable {
                        address: self.address.clone(),
                        cause: format!("{:?}: {}", s.code(), s.message()),
                    },
                }
            }
            code => IdentityError::Rejected {
                code: format!("{code:?}"),
                message: s.message().to_string(),
            },
        }
    }
}

fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl CertificateSigner for CaClient {
    async fn sign(&self, csr_pem: String, ttl: Duration) -> Result<Vec<String>, IdentityError> {
        let token = self.token.read()?;
        let channel = self.channel().await?;
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr: csr_pem,
            validity_duration: i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX),
            metadata: None,
        });
        let value =
            format!("Bearer {token}")
                .parse()
                .map_err(|_| IdentityError::TokenUnreadable {
                    place: self.token.describe(),
                    cause: "it holds characters a header can't carry".into(),
                })?;
        request.metadata_mut().insert("authorization", value);
        let result = IstioCertificateServiceClient::new(channel)
            .create_certificate(request)
            .await;
        match result {
            Ok(response) => {
                let chain = response.into_inner().cert_chain;
                if chain.is_empty() {
                    return Err(IdentityError::BadResponse(
                        "the CA answered with an empty chain".into(),
                    ));
                }
                Ok(chain)
            }
            Err(status) => {
                let err = self.status_error(&status);
                if matches!(
                    err,
                    IdentityError::Unreachable { .. } | IdentityError::Tls { .. }
                ) {
                    // A fresh connection next time rather than a broken one.
                    *self.channel.lock().await = None;
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_read_trimmed_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "keel1:default:sleep:00\n").unwrap();
        let file = TokenSource::File(path.clone());
        assert_eq!(file.read().unwrap(), "keel1:default:sleep:00");
        std::fs::write(&path, "  \n").unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(err.contains(&format!("in {}", path.display())), "{err}");
        assert!(
            err.contains("empty") && err.contains("--ca-token-file"),
            "{err}"
        );
        let missing = TokenSource::File(dir.path().join("nope"))
            .read()
            .unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");

        let env = TokenSource::Env("secret-value".into());
        assert_eq!(env.read().unwrap(), "secret-value");
        assert!(!format!("{env:?}").contains("secret-value"));
        assert_eq!(env.describe(), "in $KEEL_CA_TOKEN");
    }
}

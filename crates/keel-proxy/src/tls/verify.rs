//! The one server-certificate verifier of the proxy's TLS clients: the chain must reach a
//! trusted root (WebPKI), then the name is checked the way the connection asks — a SPIFFE ID
//! for mesh mTLS (workload certificates carry no DNS name), the SNI's DNS name or
//! `subjectAltNames` for TLS origination, or nothing with `insecureSkipVerify`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use super::mesh::spiffe_ids;

/// How the server's name is checked once its chain verified.
#[derive(Debug, Clone)]
pub enum NameCheck {
    /// Mesh mTLS: one of these SPIFFE IDs (any mesh identity when empty).
    Spiffe(Vec<String>),
    /// TLS origination: the SNI's DNS name when empty, else one of these names (DNS names or
    /// SPIFFE IDs), as Istio's `subjectAltNames` replace the host name check.
    SubjectAltNames(Vec<String>),
    /// `insecureSkipVerify`: neither chain nor name.
    Skip,
}

#[derive(Debug)]
pub struct ServerVerifier {
    roots: Arc<RootCertStore>,
    check: NameCheck,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    pub fn new(roots: Arc<RootCertStore>, check: NameCheck) -> Self {
        ServerVerifier {
            roots,
            check,
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

/// The server presented another identity than the one expected behind the endpoint.
#[derive(Debug)]
struct WrongIdentity {
    found: Vec<String>,
    expected: Vec<String>,
}

impl std::fmt::Display for WrongIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the peer is {:?}, not the expected {:?}",
            self.found, self.expected
        )
    }
}

impl std::error::Error for WrongIdentity {}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if matches!(self.check, NameCheck::Skip) {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        match &self.check {
            NameCheck::Skip => Ok(ServerCertVerified::assertion()),
            NameCheck::Spiffe(expected) if expected.is_empty() => {
                Ok(ServerCertVerified::assertion())
            }
            NameCheck::Spiffe(expected) => {
                let ids = spiffe_ids(end_entity);
                if ids.iter().any(|id| expected.contains(id)) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(Error::InvalidCertificate(CertificateError::Other(
                        rustls::OtherError(Arc::new(WrongIdentity {
                            found: ids,
                            expected: expected.clone(),
                        })),
                    )))
                }
            }
            NameCheck::SubjectAltNames(sans) if sans.is_empty() => {
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            NameCheck::SubjectAltNames(sans) => {
                let by_dns = sans.iter().any(|san| {
                    ServerName::try_from(san.as_str())
                        .is_ok_and(|name| rustls::client::verify_server_name(&cert, &name).is_ok())
                });
                if by_dns || spiffe_ids(end_entity).iter().any(|id| sans.contains(id)) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(Error::InvalidCertificate(CertificateError::NotValidForName))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

//! rustls resolvers that present the workload certificate in use at each handshake. A
//! `ServerConfig`/`ClientConfig` built once with these keeps serving across rotations: every
//! handshake loads the current material (one atomic load), and a connection keeps the
//! certificate it was established with.
//!
//! How the mTLS listeners and upstream connections are meant to use them (peers are verified
//! against [`WorkloadIdentity::roots`]; a SPIFFE-aware verifier replaces WebPKI's name check on
//! the client side, since workload certificates carry no DNS names):
//!
//! ```
//! use std::sync::Arc;
//! use keel_proxy::identity::{SpiffeId, TrustRoots, WorkloadIdentity};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let mut ca = rcgen::CertificateParams::default();
//! # ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! # let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
//! # let root_pem = ca.self_signed(&key)?.pem();
//! let roots = TrustRoots::from_pem("root-cert.pem".as_ref(), root_pem.as_bytes())?;
//! let identity = WorkloadIdentity::new(
//!     SpiffeId::new("cluster.local", "default", "sleep"),
//!     "127.0.0.1:15012",
//!     Arc::new(roots),
//! );
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let peers = rustls::server::WebPkiClientVerifier::builder_with_provider(
//!     identity.roots().store.clone(),
//!     provider.clone(),
//! )
//! .build()?;
//! // Built once; every handshake presents the certificate in use at that moment.
//! let inbound = rustls::ServerConfig::builder_with_provider(provider)
//!     .with_safe_default_protocol_versions()?
//!     .with_client_cert_verifier(peers)
//!     .with_cert_resolver(identity.server_resolver());
//! # let _ = inbound;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::WorkloadIdentity;

/// The server side of mTLS: answers every ClientHello with the workload certificate (SNI
/// doesn't choose: a sidecar has one identity). Before the first certificate it returns
/// `None`, which aborts the handshake — the proxy isn't ready then anyway.
#[derive(Debug, Clone)]
pub struct WorkloadCertResolver(pub Arc<WorkloadIdentity>);

impl ResolvesServerCert for WorkloadCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current().map(|m| m.certified_key.clone())
    }
}

/// The client side of mTLS: offers the workload certificate when the peer asks for one, if
/// its signature schemes include the key's.
#[derive(Debug, Clone)]
pub struct WorkloadClientCertResolver(pub Arc<WorkloadIdentity>);

impl ResolvesClientCert for WorkloadClientCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let material = self.0.current()?;
        // rustls would fail the handshake later anyway; saying no here sends no certificate
        // rather than one the peer can't check.
        material
            .certified_key
            .key
            .choose_scheme(sigschemes)
            .map(|_| material.certified_key.clone())
    }

    fn has_certs(&self) -> bool {
        self.0.has_certificate()
    }
}

impl WorkloadIdentity {
    /// A resolver for a `rustls::ServerConfig` (`with_cert_resolver`).
    pub fn server_resolver(self: &Arc<Self>) -> Arc<WorkloadCertResolver> {
        Arc::new(WorkloadCertResolver(self.clone()))
    }

    /// A resolver for a `rustls::ClientConfig` (`with_client_cert_resolver`).
    pub fn client_resolver(self: &Arc<Self>) -> Arc<WorkloadClientCertResolver> {
        Arc::new(WorkloadClientCertResolver(self.clone()))
    }
}

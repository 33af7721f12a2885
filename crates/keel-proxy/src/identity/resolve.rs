//! rustls resolvers that present the workload certificate in use at each handshake. A
//! `ServerConfig`/`ClientConfig` built once with these keeps serving across rotations: every
//! handshake loads the current material (one atomic load), and a connection keeps the
//! certificate it was established with.

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

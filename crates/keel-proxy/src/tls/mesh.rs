//! Mutual TLS between proxies (Istio's `ISTIO_MUTUAL`): both sides present their workload
//! certificate, both verify the other's chain to the mesh root, and the client checks that the
//! server is the identity the control plane said is behind that endpoint — its SPIFFE ID in
//! the URI SAN, since workload certificates carry no DNS name. ALPN marks mesh traffic with
//! Istio's protocol names, so the inbound side can tell it from an app's own TLS, and carries
//! the protocol inside (`istio-h2`, `istio-http/1.1`, `istio` for TCP).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::{ClientConfig, ServerConfig};

use super::verify::{NameCheck, ServerVerifier};
use crate::identity::WorkloadIdentity;

/// ALPN of mesh mTLS carrying HTTP/2 (Istio's name).
pub const ALPN_H2: &[u8] = b"istio-h2";
/// ALPN of mesh mTLS carrying HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"istio-http/1.1";
/// ALPN of mesh mTLS carrying anything else (TCP).
pub const ALPN_TCP: &[u8] = b"istio";

/// Whether a ClientHello's ALPN list marks it as mesh mTLS (every Istio name starts with
/// `istio`, `istio-peer-exchange` included).
pub fn is_mesh_alpn<'a>(mut protocols: impl Iterator<Item = &'a [u8]>) -> bool {
    protocols.any(|p| p.starts_with(b"istio"))
}

/// What an upstream connection carries, for its ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Carries {
    Http2,
    Http1,
    Tcp,
}

impl Carries {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Carries::Http2 => vec![ALPN_H2.to_vec()],
            Carries::Http1 => vec![ALPN_HTTP11.to_vec()],
            Carries::Tcp => vec![ALPN_TCP.to_vec()],
        }
    }
}

/// The SPIFFE IDs among a certificate's URI SANs.
pub fn spiffe_ids(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => {
                Some(u.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The rustls configurations of a proxy's mesh mTLS, built once for its identity: each
/// handshake presents the certificate in use at that moment.
pub struct MeshTls {
    identity: Arc<WorkloadIdentity>,
    server: Arc<ServerConfig>,
    /// Client configurations by (expected identity, what the connection carries).
    clients: Mutex<HashMap<(String, Carries), Arc<ClientConfig>>>,
}

impl MeshTls {
    pub fn new(identity: Arc<WorkloadIdentity>) -> Result<MeshTls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let peers = rustls::server::WebPkiClientVerifier::builder_with_provider(
            identity.roots().store.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("the mesh roots can't verify peers: {e}"))?;
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(peers)
            .with_cert_resolver(identity.server_resolver());
        // Clients don't resume (see `client_config`); tickets would only sit unread in pooled
        // connections.
        server.send_tls13_tickets = 0;
        server.alpn_protocols = vec![
            ALPN_H2.to_vec(),
            ALPN_HTTP11.to_vec(),
            ALPN_TCP.to_vec(),
            b"istio-peer-exchange".to_vec(),
            b"istio-http/1.0".to_vec(),
        ];
        Ok(MeshTls {
            identity,
            server: Arc::new(server),
            clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn identity(&self) -> &Arc<WorkloadIdentity> {
        &self.identity
    }

    /// The inbound side's configuration.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// The configuration for connecting to a peer that must be `expected` (any mesh identity
    /// when empty), carrying `carries`.
    pub fn client_config(
        &self,
        expected: &str,
        carries: Carries,
    ) -> Result<Arc<ClientConfig>, String> {
        let key = (expected.to_string(), carries);
        if let Ok(cache) = self.clients.lock()
            && let Some(c) = cache.get(&key)
        {
            return Ok(c.clone());
        }
        let expected_ids = if expected.is_empty() {
            Vec::new()
        } else {
            vec![expected.to_string()]
        };
        let verifier = Arc::new(ServerVerifier::new(
            self.identity.roots().store.clone(),
            NameCheck::Spiffe(expected_ids),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.identity.client_resolver());
        config.alpn_protocols = carries.alpn();
        // A resumed session would keep the certificates of its first handshake across a
        // rotation; mesh connections are pooled, so full handshakes cost little.
        config.resumption = rustls::client::Resumption::disabled();
        let config = Arc::new(config);
        if let Ok(mut cache) = self.clients.lock() {
            cache.insert(key, config.clone());
        }
        Ok(config)
    }
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;

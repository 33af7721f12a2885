//! Mutual TLS between proxies (Istio's `ISTIO_MUTUAL`): both sides present their workload
//! certificate, both verify the other's chain to the mesh root, and the client checks that the
//! server is the identity the control plane said is behind that endpoint — its SPIFFE ID in
//! the URI SAN, since workload certificates carry no DNS name. ALPN marks mesh traffic with
//! Istio's protocol names, so the inbound side can tell it from an app's own TLS, and carries
//! the protocol inside (`istio-h2`, `istio-http/1.1`, `istio` for TCP).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::{ClientConfig, ServerConfig};

use super::verify::{NameCheck, ServerVerifier};
use crate::identity::{TrustRoots, WorkloadIdentity};

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
    /// TCP, without metadata exchange.
    Tcp,
    /// TCP, offering Istio's metadata exchange first (as Istio's sidecars do): a server that
    /// agrees `istio-peer-exchange` starts both directions with a metadata frame
    /// ([`crate::l4::exchange`]).
    TcpExchange,
}

impl Carries {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Carries::Http2 => vec![ALPN_H2.to_vec()],
            Carries::Http1 => vec![ALPN_HTTP11.to_vec()],
            Carries::Tcp => vec![ALPN_TCP.to_vec()],
            Carries::TcpExchange => vec![
                crate::telemetry::peer_exchange::TCP_ALPN.to_vec(),
                ALPN_TCP.to_vec(),
            ],
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

/// The rustls configurations of a proxy's mesh mTLS, built for its identity: each handshake
/// presents the certificate in use at that moment. Peers are verified against the roots the
/// configurations were built with; when the identity's roots change (mounted files read
/// again, `identity::files`), the next handshake rebuilds them.
pub struct MeshTls {
    identity: Arc<WorkloadIdentity>,
    server: ArcSwap<Built<ServerConfig>>,
    /// Client configurations by (expected identity, what the connection carries), for the
    /// roots they were built with.
    clients: Mutex<ClientCache>,
}

/// Client configurations for one set of roots, by (expected identity, what the connection
/// carries).
type ClientCache = (
    Arc<TrustRoots>,
    HashMap<(String, Carries), Arc<ClientConfig>>,
);

/// A configuration and the roots it verifies peers with.
struct Built<T> {
    roots: Arc<TrustRoots>,
    config: Arc<T>,
}

impl MeshTls {
    pub fn new(identity: Arc<WorkloadIdentity>) -> Result<MeshTls, String> {
        let roots = identity.roots();
        let server = Self::build_server(&identity, &roots)?;
        Ok(MeshTls {
            identity,
            server: ArcSwap::from_pointee(Built {
                roots: roots.clone(),
                config: server,
            }),
            clients: Mutex::new((roots, HashMap::new())),
        })
    }

    fn build_server(
        identity: &Arc<WorkloadIdentity>,
        roots: &TrustRoots,
    ) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let peers = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.store.clone(),
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
        // rustls picks the first of these the client offers: the exchange before bare TCP.
        server.alpn_protocols = vec![
            ALPN_H2.to_vec(),
            ALPN_HTTP11.to_vec(),
            crate::telemetry::peer_exchange::TCP_ALPN.to_vec(),
            ALPN_TCP.to_vec(),
            b"istio-http/1.0".to_vec(),
        ];
        Ok(Arc::new(server))
    }

    pub fn identity(&self) -> &Arc<WorkloadIdentity> {
        &self.identity
    }

    /// The inbound side's configuration, for the roots in use.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let built = self.server.load();
        let roots = self.identity.roots();
        if Arc::ptr_eq(&built.roots, &roots) {
            return built.config.clone();
        }
        match Self::build_server(&self.identity, &roots) {
            Ok(config) => {
                self.server.store(Arc::new(Built {
                    roots,
                    config: config.clone(),
                }));
                config
            }
            // New roots that can't verify anything: keep verifying with the old ones rather
            // than refuse every peer (the reload that brought them was checked already, so
            // this is not expected).
            Err(e) => {
                tracing::error!("mesh mTLS keeps its previous roots: {e}");
                built.config.clone()
            }
        }
    }

    /// The configuration for connecting to a peer that must be `expected` (any mesh identity
    /// when empty), carrying `carries`.
    pub fn client_config(
        &self,
        expected: &str,
        carries: Carries,
    ) -> Result<Arc<ClientConfig>, String> {
        let key = (expected.to_string(), carries);
        let roots = self.identity.roots();
        if let Ok(mut cache) = self.clients.lock() {
            if !Arc::ptr_eq(&cache.0, &roots) {
                *cache = (roots.clone(), HashMap::new());
            }
            if let Some(c) = cache.1.get(&key) {
                return Ok(c.clone());
            }
        }
        let expected_ids = if expected.is_empty() {
            Vec::new()
        } else {
            vec![expected.to_string()]
        };
        let verifier = Arc::new(ServerVerifier::new(
            roots.store.clone(),
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
        if let Ok(mut cache) = self.clients.lock()
            && Arc::ptr_eq(&cache.0, &roots)
        {
            cache.1.insert(key, config.clone());
        }
        Ok(config)
    }
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;

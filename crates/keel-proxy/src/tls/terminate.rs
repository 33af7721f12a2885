//! TLS terminated on a gateway's server port (Istio's `tls.mode` SIMPLE, MUTUAL,
//! OPTIONAL_MUTUAL, ISTIO_MUTUAL): the ClientHello is read first, its server name picks the
//! listener's [`ServerTls`] entry (first match, as Envoy's filter chains), and that entry's
//! configuration finishes the handshake — so each server of a port can have its own
//! certificate, client-certificate policy and versions.
//!
//! A [`Terminator`] is built from a listener's entries and kept by its accept loop; it is
//! rebuilt when the entries change (a pushed Secret, an edited Gateway) or, checked at most
//! once a second, when a certificate file's modification time changes — so certificates are
//! picked up without a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keel_snapshot::tls::{Pem, ServerTls, ServerTlsMode, TlsVersion, sni_matches};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::identity::WorkloadIdentity;

/// How often certificate files are checked for changes.
pub const FILE_CHECK: Duration = Duration::from_secs(1);

/// One entry, ready: its configuration, or why it can't serve.
struct Entry {
    names: Vec<String>,
    config: Result<Arc<ServerConfig>, String>,
    /// Client certificates must carry one of these SANs (any, when empty).
    subject_alt_names: Vec<String>,
}

/// The TLS a listener terminates, built from its [`ServerTls`] entries.
pub struct Terminator {
    source: Vec<ServerTls>,
    entries: Vec<Entry>,
    /// Certificate files and their modification times when read.
    files: Vec<(PathBuf, Option<SystemTime>)>,
    has_identity: bool,
}

/// A terminated connection.
pub struct Terminated {
    pub stream: TlsStream<TcpStream>,
    pub sni: Option<String>,
    /// ALPN `h2` was agreed.
    pub h2: bool,
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(pem: &Pem, files: &mut Vec<(PathBuf, Option<SystemTime>)>) -> Result<Vec<u8>, String> {
    match pem {
        Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
        Pem::File(path) => {
            let p = PathBuf::from(path);
            files.push((p.clone(), modified(&p)));
            std::fs::read(&p).map_err(|e| format!("cannot read {path}: {e}"))
        }
    }
}

/// The PEM certificates in `bytes` (`what` names them in errors); at least one.
pub(super) fn certs(bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate in it"));
    }
    Ok(certs)
}

/// OpenSSL/BoringSSL names (as Istio's `cipherSuites` take them) of the TLS 1.2 suites rustls
/// offers.
fn suite_named(name: &str) -> Option<rustls::CipherSuite> {
    use rustls::CipherSuite::*;
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

fn provider(tls: &ServerTls) -> Result<Arc<CryptoProvider>, String> {
    let mut p = rustls::crypto::ring::default_provider();
    if !tls.cipher_suites.is_empty() {
        let wanted: Vec<rustls::CipherSuite> = tls
            .cipher_suites
            .iter()
            .filter_map(|n| suite_named(n))
            .collect();
        let unknown: Vec<&String> = tls
            .cipher_suites
            .iter()
            .filter(|n| suite_named(n).is_none())
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(
                "{}: cipher suites {unknown:?} are not available (only ECDHE with AES-GCM or ChaCha20); they are left out",
                tls.origin
            );
        }
        // TLS 1.3's suites are not configurable (as in Envoy); the 1.2 ones are filtered.
        p.cipher_suites.retain(|s| {
            matches!(s, rustls::SupportedCipherSuite::Tls13(_)) || wanted.contains(&s.suite())
        });
    }
    Ok(Arc::new(p))
}

fn versions(tls: &ServerTls) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let min = tls.min_version.unwrap_or(TlsVersion::Tls12);
    let max = tls.max_version.unwrap_or(TlsVersion::Tls13);
    [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= min && *v <= max)
    .map(|(_, v)| v)
    .collect()
}

/// Picks, among an entry's certificates (RSA and ECDSA), one whose key the client can verify.
#[derive(Debug)]
struct Pairs(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for Pairs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes: &[SignatureScheme] = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

fn build(
    tls: &ServerTls,
    http: bool,
    identity: Option<&Arc<WorkloadIdentity>>,
    files: &mut Vec<(PathBuf, Option<SystemTime>)>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider(tls)?;
    let versions = versions(tls);
    if versions.is_empty() {
        return Err("minProtocolVersion is above maxProtocolVersion".into());
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?;
    let roots = |pem: &Pem, files: &mut Vec<_>| -> Result<Arc<RootCertStore>, String> {
        let mut store = RootCertStore::empty();
        for c in certs(&read(pem, files)?, "the client CA certificates")? {
            store
                .add(c)
                .map_err(|e| format!("a client CA certificate is unusable: {e}"))?;
        }
        Ok(Arc::new(store))
    };
    let verifier = match tls.mode {
        ServerTlsMode::Simple => None,
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let ca = tls.client_ca.as_ref().ok_or_else(|| {
                format!(
                    "{:?} has no CA certificates to verify clients with",
                    tls.mode
                )
            })?;
            let b =
                WebPkiClientVerifier::builder_with_provider(roots(ca, files)?, provider.clone());
            let b = if tls.mode == ServerTlsMode::OptionalMutual {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(b.build().map_err(|e| e.to_string())?)
        }
        ServerTlsMode::IstioMutual => {
            let id = identity.ok_or(
                "ISTIO_MUTUAL presents the gateway's workload certificate: start the gateway with --ca-address (and --ca-root-cert, --ca-token-file), or with --cert-chain, --key and --root-cert",
            )?;
            Some(
                WebPkiClientVerifier::builder_with_provider(id.roots().store.clone(), provider)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = if tls.mode == ServerTlsMode::IstioMutual {
        let id = identity.ok_or("no workload identity")?;
        builder.with_cert_resolver(id.server_resolver())
    } else {
        if tls.certificates.is_empty() {
            return Err(
                "no certificate (see the control plane's warnings: a missing Secret?)".into(),
            );
        }
        let mut pairs = Vec::new();
        for pair in &tls.certificates {
            let chain = certs(&read(&pair.chain, files)?, "the certificate chain")?;
            let key = PrivateKeyDer::from_pem_slice(&read(&pair.key, files)?)
                .map_err(|e| format!("the private key: {e}"))?;
            let signing = rustls::crypto::ring::sign::any_supported_type(&key)
                .map_err(|e| format!("the private key is unusable: {e}"))?;
            pairs.push(Arc::new(CertifiedKey::new(chain, signing)));
        }
        builder.with_cert_resolver(Arc::new(Pairs(pairs)))
    };
    if http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if tls.mode == ServerTlsMode::IstioMutual {
            // A sidecar calling the gateway over auto mTLS offers Istio's names only.
            config.alpn_protocols.extend([
                super::mesh::ALPN_H2.to_vec(),
                super::mesh::ALPN_HTTP11.to_vec(),
            ]);
        }
    }
    Ok(Arc::new(config))
}

impl Terminator {
    /// Builds the configurations of `source`. `http`: ALPN offers h2 and http/1.1.
    pub fn new(source: &[ServerTls], http: bool, identity: Option<&Arc<WorkloadIdentity>>) -> Self {
        let mut files = Vec::new();
        let entries = source
            .iter()
            .map(|tls| {
                let config = build(tls, http, identity, &mut files);
                if let Err(e) = &config {
                    tracing::warn!(
                        "{}: TLS for {:?} can't be served, its handshakes fail: {e}",
                        tls.origin,
                        tls.server_names
                    );
                }
                Entry {
                    names: tls.server_names.clone(),
                    config,
                    subject_alt_names: tls.subject_alt_names.clone(),
                }
            })
            .collect();
        Terminator {
            source: source.to_vec(),
            entries,
            files,
            has_identity: identity.is_some(),
        }
    }

    /// Whether it must be rebuilt for `source`: other entries, the workload identity
    /// appeared, or (when `files` asks, at most every [`FILE_CHECK`]) a certificate file
    /// changed.
    pub fn stale(&self, source: &[ServerTls], identity: bool, files: bool) -> bool {
        self.source != source
            || self.has_identity != identity
            || (files && self.files.iter().any(|(p, t)| modified(p) != *t))
    }

    /// Whether certificate files back it (worth checking every [`FILE_CHECK`]).
    pub fn reads_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// Reads the ClientHello, picks the entry its server name matches and completes the
    /// handshake (within `timeout`).
    pub async fn accept(&self, stream: TcpStream, timeout: Duration) -> Result<Terminated, String> {
        let handshake = async {
            let start = LazyConfigAcceptor::new(Acceptor::default(), stream)
                .await
                .map_err(|e| format!("reading the ClientHello: {e}"))?;
            let sni = start
                .client_hello()
                .server_name()
                .map(str::to_ascii_lowercase);
            let entry = self
                .entries
                .iter()
                .find(|e| sni_matches(&e.names, sni.as_deref().unwrap_or("")))
                .ok_or_else(|| {
                    format!(
                        "no server of this port serves {} (hosts: {})",
                        sni.as_deref()
                            .map_or("a client without SNI".to_string(), |s| format!(
                                "SNI \"{s}\""
                            )),
                        self.entries
                            .iter()
                            .flat_map(|e| e.names.iter().cloned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            let config = entry.config.clone()?;
            let stream = start
                .into_stream(config)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            if !entry.subject_alt_names.is_empty() {
                check_sans(&stream, &entry.subject_alt_names)?;
            }
            let h2 = matches!(
                stream.get_ref().1.alpn_protocol(),
                Some(b"h2" | super::mesh::ALPN_H2)
            );
            Ok(Terminated { stream, sni, h2 })
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| format!("TLS handshake not done within {timeout:?}"))?
    }
}

/// The client certificate must name one of `wanted` among its SANs (Istio's
/// `subjectAltNames` on a MUTUAL server); a client without one passes only OPTIONAL_MUTUAL.
fn check_sans(stream: &TlsStream<TcpStream>, wanted: &[String]) -> Result<(), String> {
    let Some(leaf) = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    else {
        return Ok(());
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("the client certificate can't be read: {e}"))?;
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                    x509_parser::extensions::GeneralName::URI(u) => u.to_string(),
                    x509_parser::extensions::GeneralName::RFC822Name(e) => e.to_string(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if sans.iter().any(|s| wanted.contains(s)) {
        Ok(())
    } else {
        Err(format!(
            "the client certificate's SANs {sans:?} are not among the server's subjectAltNames {wanted:?}"
        ))
    }
}

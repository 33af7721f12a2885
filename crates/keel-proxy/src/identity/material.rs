//! What a certificate is, parsed once when it arrives: the facts `/certs` shows and the
//! rotation is scheduled from, beside the rustls material handshakes use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::CertifiedKey;
use serde::Serialize;
use x509_parser::extensions::GeneralName;

use super::{IdentityError, SpiffeId};

/// A subject alternative name, in Envoy's `/certs` form (`{"uri": "spiffe://..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum San {
    Uri(String),
    Dns(String),
    IpAddress(String),
}

/// One certificate's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// RFC 4514 form; empty for Istio's workload certificates, which carry none.
    pub subject: String,
    pub issuer: String,
    /// Lowercase hex without leading zeros, as Envoy and istioctl print serials.
    pub serial: String,
    pub sans: Vec<San>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertFacts {
    pub fn parse(der: &[u8]) -> Result<CertFacts, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let hex: String = cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let serial = match hex.trim_start_matches('0') {
            "" => "0".to_string(),
            s => s.to_string(),
        };
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::URI(u) => sans.push(San::Uri(u.to_string())),
                    GeneralName::DNSName(d) => sans.push(San::Dns(d.to_string())),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_from_bytes(b) {
                            sans.push(San::IpAddress(ip.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        }
        let time = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
        Ok(CertFacts {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial,
            sans,
            not_before: time(cert.validity().not_before.timestamp()),
            not_after: time(cert.validity().not_after.timestamp()),
        })
    }

    /// The SPIFFE ID in the URI SANs, if there is exactly one.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        let mut ids = self.sans.iter().filter_map(|s| match s {
            San::Uri(u) => SpiffeId::parse(u).ok(),
            _ => None,
        });
        match (ids.next(), ids.next()) {
            (Some(id), None) => Some(id),
            _ => None,
        }
    }

    /// Valid at `now` (istioctl's VALID CERT).
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// The mesh's roots (`--ca-root-cert`): trusted for the CA's TLS, for the issued chain and,
/// with mTLS, for peers.
#[derive(Debug)]
pub struct TrustRoots {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
    pub facts: Vec<CertFacts>,
    pub store: Arc<RootCertStore>,
}

impl TrustRoots {
    /// Reads `path`: one or more PEM certificates.
    pub fn load(path: &Path) -> Result<TrustRoots, IdentityError> {
        let bytes = std::fs::read(path).map_err(|e| IdentityError::RootUnreadable {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
        Self::from_pem(path, &bytes)
    }

    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<TrustRoots, IdentityError> {
        let invalid = |cause: String| IdentityError::RootUnreadable {
            path: path.to_path_buf(),
            cause,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(invalid(
                "holds no PEM certificate (expected the mesh's root-cert.pem)".into(),
            ));
        }
        let mut store = RootCertStore::empty();
        let mut facts = Vec::new();
        for c in &certs {
            store
                .add(c.clone())
                .map_err(|e| invalid(format!("not a usable root certificate: {e}")))?;
            facts.push(CertFacts::parse(c).map_err(invalid)?);
        }
        Ok(TrustRoots {
            path: path.to_path_buf(),
            certs,
            facts,
            store: Arc::new(store),
        })
    }
}

/// A workload certificate in use: what handshakes present, and its facts.
#[derive(Debug)]
pub struct Material {
    /// The chain (leaf first, then any intermediates; the root is not sent) with the key.
    pub certified_key: Arc<CertifiedKey>,
    /// Facts of `certified_key`'s leaf, then of its intermediates.
    pub leaf: CertFacts,
    pub intermediates: Vec<CertFacts>,
    pub id: SpiffeId,
    /// When the proxy received it: the start of the lifetime rotation is computed over, as
    /// Istio's agent does (the CA back-dates `not_before` for clock skew).
    pub received_at: SystemTime,
    /// When the rotation is due (half-life with jitter).
    pub rotate_at: SystemTime,
    pub roots: Arc<TrustRoots>,
}

impl Material {
    /// Builds the material from the CA's answer (Istio's `cert_chain`: leaf, intermediates,
    /// root last) and the key the CSR was made with. Checks what a peer would: the chain
    /// verifies to `roots` for client and server use, the key matches the leaf, and the leaf
    /// names `expected`.
    pub fn from_ca_response(
        cert_chain: &[String],
        key: PrivateKeyDer<'static>,
        expected: &SpiffeId,
        roots: Arc<TrustRoots>,
        received_at: SystemTime,
    ) -> Result<Material, String> {
        let mut certs: Vec<CertificateDer<'static>> = Vec::new();
        for pem in cert_chain {
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                certs.push(c.map_err(|e| format!("the chain is not PEM: {e}"))?);
            }
        }
        // The root travels with the answer; peers have it already, so it isn't sent.
        let served: Vec<CertificateDer<'static>> = certs
            .into_iter()
            .filter(|c| !roots.certs.contains(c))
            .collect();
        verify_chain(&served, &roots)?;
        let mut facts = served.iter().map(|c| CertFacts::parse(c));
        let leaf = facts
            .next()
            .ok_or("the answer holds no workload certificate")??;
        let intermediates = facts.collect::<Result<Vec<_>, _>>()?;
        let id = leaf
            .spiffe_id()
            .ok_or("the certificate carries no single SPIFFE ID as its URI SAN")?;
        if &id != expected {
            return Err(format!("the certificate names {id}, not {expected}"));
        }
        let provider = rustls::crypto::ring::default_provider();
        let certified_key = CertifiedKey::from_der(served, key, &provider)
            .map_err(|e| format!("the certificate doesn't match the key: {e}"))?;
        Ok(Material {
            certified_key: Arc::new(certified_key),
            leaf,
            intermediates,
            id,
            received_at,
            rotate_at: received_at,
            roots,
        })
    }

    /// Leaf first, then the intermediates: the chain handshakes present.
    pub fn chain(&self) -> impl Iterator<Item = &CertFacts> {
        std::iter::once(&self.leaf).chain(&self.intermediates)
    }

    /// The leaf's lifetime as rotation counts it: from receipt to `not_after`.
    pub fn lifetime(&self) -> Duration {
        self.leaf
            .not_after
            .duration_since(self.received_at)
            .unwrap_or_default()
    }
}

/// Verifies `chain` (leaf first) against `roots` as both a client and a server certificate.
pub(super) fn verify_chain(
    chain: &[CertificateDer<'static>],
    roots: &TrustRoots,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.store.clone(), provider)
            .build()
            .map_err(|e| format!("cannot build a verifier for the roots: {e}"))?;
    let (leaf, rest) = chain.split_first().ok_or("empty chain")?;
    verifier
        .verify_client_cert(leaf, rest, UnixTime::now())
        .map(|_| ())
        .map_err(|e| {
            format!(
                "the certificate doesn't verify against the root in {}: {e}",
                roots.path.display()
            )
        })
}

/// `t` as RFC 3339 in UTC, second precision (`2024-05-01T12:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc3339_formats_utc_seconds() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        assert_eq!(rfc3339(t), "2024-05-01T12:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 86_399);
        assert_eq!(rfc3339(leap), "2000-02-29T23:59:59Z");
    }

    #[test]
    fn a_root_file_without_certificates_is_refused_with_the_path() {
        let err = TrustRoots::from_pem(Path::new("/etc/root.pem"), b"hello").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/etc/root.pem"), "{text}");
        assert!(text.contains("--ca-root-cert"), "{text}");
    }
}

//! The control plane's certificate authority, as istiod's: it issues each workload an X.509
//! certificate for its SPIFFE identity (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>` in the URI
//! SAN), signed under a root every proxy trusts, so sidecars can authenticate one another.
//!
//! - **Material** ([`Ca::load_or_create`]): Istio's plug-in layout when the plug-in directory
//!   holds `ca-cert.pem`, `ca-key.pem`, `root-cert.pem` and `cert-chain.pem` (an intermediate
//!   under an existing root, as `istioctl`'s `cacerts` secret); else a self-signed root
//!   (ECDSA P-256, 10 years) created on first start and kept in the CA directory
//!   (`root-cert.pem`, `root-key.pem` owner-only), so restarts keep the same trust.
//! - **Signing** ([`Ca::sign_csr`]): the CSR gives only the public key. The certificate names
//!   the identity the caller proved ([`token`]), never one the CSR asks for; a CSR asking for
//!   another identity is refused, as Istio's CA does. Lifetime: the requested one, 24 h when
//!   none, refused above the maximum (90 days, Istio's `MAX_WORKLOAD_CERT_TTL`), and never
//!   past the signing certificate's own end.
//! - **Serving** ([`service`]): Istio's `IstioCertificateService/CreateCertificate` over TLS
//!   (15012), with a serving certificate the CA issues itself.

pub mod service;
pub mod token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ::time::OffsetDateTime;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};

pub use keel_snapshot::identity::{NotSpiffeId, SpiffeId};

use crate::store::atomic;

/// The plug-in layout's files (Istio's `cacerts`).
pub const PLUGIN_FILES: [&str; 4] = [
    "ca-cert.pem",
    "ca-key.pem",
    "root-cert.pem",
    "cert-chain.pem",
];

/// How certificates are issued.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// `cluster.local` unless the mesh says otherwise.
    pub trust_domain: String,
    /// When a request names no lifetime (Istio: 24 h).
    pub default_ttl: Duration,
    /// Longer requests are refused (Istio's `MAX_WORKLOAD_CERT_TTL`: 90 days).
    pub max_ttl: Duration,
    /// A self-signed root's lifetime (Istio: 10 years).
    pub root_ttl: Duration,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            trust_domain: "cluster.local".into(),
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(90 * 24 * 3600),
            root_ttl: Duration::from_secs(10 * 365 * 24 * 3600),
        }
    }
}

/// Where the CA's signing material came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// A root this CA created, kept in this directory.
    SelfSigned(PathBuf),
    /// Istio's plug-in layout in this directory: an intermediate under an existing root.
    PlugIn(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Material { path: PathBuf, why: String },
    #[error("cannot create the CA's certificate: {0}")]
    Generate(rcgen::Error),
}

/// Why a certificate request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the CSR can't be used: {0}")]
    InvalidCsr(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    BadLifetime(String),
    #[error("signing failed: {0}")]
    Internal(String),
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The signing certificate's own end: nothing it signs outlives it.
    not_after: OffsetDateTime,
    /// Istio's `cert-chain.pem` (the signing certificate up to the root); empty for a
    /// self-signed root.
    chain: String,
    /// `root-cert.pem`: what proxies trust.
    root: String,
    source: CaSource,
    opts: CaOptions,
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn material(path: &Path, why: impl Into<String>) -> CaError {
    CaError::Material {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// The key in `path`; ring reads PKCS#8 only, so other encodings get the conversion command.
fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let text = read(path)?;
    if text.contains("BEGIN RSA PRIVATE KEY") || text.contains("BEGIN EC PRIVATE KEY") {
        return Err(material(
            path,
            format!(
                "the key is PKCS#1/SEC1; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.new && mv {0}.new {0}`",
                path.display()
            ),
        ));
    }
    KeyPair::from_pem(&text).map_err(|e| material(path, format!("not a usable private key: {e}")))
}

/// The end of validity of the first certificate in `pem`.
fn not_after_of(path: &Path, pem: &str) -> Result<OffsetDateTime, CaError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| material(path, format!("not a PEM certificate: {e}")))?;
    let cert = block
        .parse_x509()
        .map_err(|e| material(path, format!("not an X.509 certificate: {e}")))?;
    Ok(cert.validity().not_after.to_datetime())
}

fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness".to_string())?;
    // Positive, as RFC 5280 requires.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

impl Ca {
    /// The plug-in material in `plugin` when all of [`PLUGIN_FILES`] are there; else the
    /// self-signed root in `dir`, created on first use. A plug-in directory with only some
    /// of the files is an error naming the missing ones.
    pub fn load_or_create(
        dir: &Path,
        plugin: Option<&Path>,
        opts: CaOptions,
    ) -> Result<Ca, CaError> {
        if let Some(p) = plugin {
            let missing: Vec<&str> = PLUGIN_FILES
                .iter()
                .copied()
                .filter(|f| !p.join(f).exists())
                .collect();
            if missing.len() < PLUGIN_FILES.len() {
                if !missing.is_empty() {
                    return Err(material(
                        p,
                        format!(
                            "Istio's plug-in CA layout needs {}; missing {}",
                            PLUGIN_FILES.join(", "),
                            missing.join(", ")
                        ),
                    ));
                }
                return Self::plug_in(p, opts);
            }
        }
        Self::self_signed(dir, opts)
    }

    fn plug_in(dir: &Path, opts: CaOptions) -> Result<Ca, CaError> {
        let cert_path = dir.join("ca-cert.pem");
        let cert = read(&cert_path)?;
        let key = read_key(&dir.join("ca-key.pem"))?;
        let not_after = not_after_of(&cert_path, &cert)?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key)
            .map_err(|e| material(&cert_path, format!("not a CA certificate: {e}")))?;
        Ok(Ca {
            issuer,
            not_after,
            chain: read(&dir.join("cert-chain.pem"))?,
            root: read(&dir.join("root-cert.pem"))?,
            source: CaSource::PlugIn(dir.to_path_buf()),
            opts,
        })
    }

    fn self_signed(dir: &Path, opts: CaOptions) -> Result<Ca, CaError> {
        let cert_path = dir.join("root-cert.pem");
        let key_path = dir.join("root-key.pem");
        if !cert_path.exists() {
            let (cert, key) = Self::new_root(&opts).map_err(CaError::Generate)?;
            // The key first: a crash between the two leaves no certificate without its key.
            for (path, bytes, private) in [(&key_path, &key, true), (&cert_path, &cert, false)] {
                atomic::write(path, bytes.as_bytes(), private).map_err(|source| CaError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        let cert = read(&cert_path)?;
        let key = read_key(&key_path)?;
        let not_after = not_after_of(&cert_path, &cert)?;
        let issuer = Issuer::from_ca_cert_pem(&cert, key)
            .map_err(|e| material(&cert_path, format!("not a CA certificate: {e}")))?;
        Ok(Ca {
            issuer,
            not_after,
            chain: String::new(),
            root: cert,
            source: CaSource::SelfSigned(dir.to_path_buf()),
            opts,
        })
    }

    /// A new self-signed root: (certificate PEM, PKCS#8 key PEM).
    fn new_root(opts: &CaOptions) -> Result<(String, String), rcgen::Error> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // Istio's self-signed root names only the organisation: the trust domain.
        dn.push(DnType::OrganizationName, opts.trust_domain.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - ::time::Duration::minutes(1);
        params.not_after = now + opts.root_ttl;
        params.serial_number = Some(random_serial().map_err(|_| rcgen::Error::RingUnspecified)?);
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub fn source(&self) -> &CaSource {
        &self.source
    }

    pub fn trust_domain(&self) -> &str {
        &self.opts.trust_domain
    }

    /// The roots proxies trust (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root
    }

    /// What every certificate this CA issues has: its key identifier, a fresh serial, and a
    /// validity from a minute ago (grace for clocks a little behind the CA's) for `ttl`, never
    /// past the signing certificate's end.
    fn issued(&self, params: &mut CertificateParams, ttl: Duration) -> Result<(), SignError> {
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - ::time::Duration::minutes(1);
        params.not_after = (now + ttl).min(self.not_after);
        params.serial_number = Some(random_serial().map_err(SignError::Internal)?);
        Ok(())
    }

    /// Signs the public key of `csr_pem` for `id`, the identity the caller proved, for `ttl`
    /// (the default when `None`). Returns Istio's `cert_chain`: the new certificate, then
    /// `cert-chain.pem` when plugged in, then the root.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<Vec<String>, SignError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| SignError::InvalidCsr(e.to_string()))?;
        let wanted = id.to_string();
        for san in &csr.params.subject_alt_names {
            if let SanType::URI(uri) = san
                && uri.as_str() != wanted
            {
                return Err(SignError::NotAllowed(format!(
                    "the CSR asks for {} but the caller proved {wanted}",
                    uri.as_str()
                )));
            }
        }
        let ttl = ttl.unwrap_or(self.opts.default_ttl);
        if ttl > self.opts.max_ttl {
            return Err(SignError::BadLifetime(format!(
                "requested TTL {} s is greater than the max allowed TTL {} s",
                ttl.as_secs(),
                self.opts.max_ttl.as_secs()
            )));
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            wanted
                .as_str()
                .try_into()
                .map_err(|e| SignError::Internal(format!("{e}")))?,
        )];
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issued(&mut params, ttl)?;
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(|e| SignError::Internal(e.to_string()))?;
        let mut out = vec![signed.pem()];
        if !self.chain.trim().is_empty() {
            out.push(self.chain.clone());
        }
        out.push(self.root.clone());
        Ok(out)
    }

    /// A certificate for the CA's own TLS listener: `names` as DNS SANs (IP addresses as IP
    /// SANs), for `ttl`. Returns (chain PEM, key PEM).
    pub fn serving_certificate(
        &self,
        names: &[&str],
        ttl: Duration,
    ) -> Result<(String, String), SignError> {
        let internal = |e: rcgen::Error| SignError::Internal(e.to_string());
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(internal)?;
        let mut params = CertificateParams::new(
            names
                .iter()
                .filter(|n| n.parse::<std::net::IpAddr>().is_err())
                .map(|n| n.to_string())
                .collect::<Vec<_>>(),
        )
        .map_err(internal)?;
        params.subject_alt_names.extend(
            names
                .iter()
                .filter_map(|n| n.parse::<std::net::IpAddr>().ok())
                .map(SanType::IpAddress),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issued(&mut params, ttl)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(internal)?;
        let mut chain = cert.pem();
        if !self.chain.trim().is_empty() {
            chain.push_str(&self.chain);
        }
        Ok((chain, key.serialize_pem()))
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

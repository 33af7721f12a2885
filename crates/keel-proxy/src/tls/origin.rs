//! DestinationRule `tls.mode: SIMPLE` and `MUTUAL`: TLS the proxy originates to an upstream
//! (typically a ServiceEntry for an external service), with the user's certificates read
//! from files when the snapshot is installed, or from the Secret `credentialName` names.

use std::sync::Arc;

use keel_config::model::networking::destination_rule::{ClientTlsSettings, TlsMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use keel_snapshot::tls::ClientCredential;

use super::upstream::OriginTls;
use super::verify::{NameCheck, ServerVerifier};

/// Debian's (and most distributions') bundle of public CAs: the roots when `caCertificates`
/// is not set, as Envoy would use the system's.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    super::terminate::certs(&bytes, path)
}

/// The origination for a cluster of `host` (`name` in messages).
pub fn build(
    tls: &ClientTlsSettings,
    credential: Option<&ClientCredential>,
    host: &str,
    name: &str,
) -> OriginTls {
    let sni_text = if tls.sni.is_empty() { host } else { &tls.sni };
    let (sni, config) = match ServerName::try_from(sni_text.to_string()) {
        Ok(sni) => (sni, config(tls, credential)),
        Err(_) => (
            ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()),
            Err(format!("sni \"{sni_text}\" is not a DNS name")),
        ),
    };
    let config = config.map_err(|e| {
        let e = format!("DestinationRule tls for {name}: {e}");
        tracing::warn!("{e}");
        e
    });
    OriginTls { config, sni }
}

/// Where the CA certificates and the client certificate come from: files named in the
/// DestinationRule, or the Secret its `credentialName` names (resolved by the compiler).
enum Material<'a> {
    Files(&'a ClientTlsSettings),
    Secret(&'a ClientCredential),
}

impl Material<'_> {
    fn roots(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        match self {
            Material::Files(tls) => {
                let ca = if tls.ca_certificates.is_empty() {
                    SYSTEM_ROOTS
                } else {
                    &tls.ca_certificates
                };
                read_certs(ca)
            }
            Material::Secret(c) => match &c.ca {
                Some(pem) => super::terminate::certs(pem.as_bytes(), &c.secret),
                None => read_certs(SYSTEM_ROOTS),
            },
        }
    }

    fn client(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        match self {
            Material::Files(tls) => {
                let chain = read_certs(&tls.client_certificate)?;
                let key_bytes = std::fs::read(&tls.private_key)
                    .map_err(|e| format!("cannot read {}: {e}", tls.private_key))?;
                let key = PrivateKeyDer::from_pem_slice(&key_bytes)
                    .map_err(|e| format!("{}: not a private key: {e}", tls.private_key))?;
                Ok((chain, key))
            }
            Material::Secret(c) => {
                let (Some(chain), Some(key)) = (&c.chain, &c.key) else {
                    return Err(format!(
                        "MUTUAL needs a client certificate: Secret {} has no tls.crt and tls.key (or cert and key)",
                        c.secret
                    ));
                };
                let chain = super::terminate::certs(chain.as_bytes(), &c.secret)?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| format!("Secret {}: not a private key: {e}", c.secret))?;
                Ok((chain, key))
            }
        }
    }
}

fn config(
    tls: &ClientTlsSettings,
    credential: Option<&ClientCredential>,
) -> Result<Arc<ClientConfig>, String> {
    let material = if tls.credential_name.is_empty() {
        Material::Files(tls)
    } else {
        match credential {
            Some(c) if c.found => Material::Secret(c),
            Some(c) => {
                return Err(format!(
                    "credentialName: no Secret {}; apply one in the proxy's namespace (keel apply -f)",
                    c.secret
                ));
            }
            None => {
                return Err(format!(
                    "credentialName \"{}\" was not resolved by the control plane",
                    tls.credential_name
                ));
            }
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let skip = tls.insecure_skip_verify == Some(true);
    if !skip {
        for c in material.roots()? {
            roots
                .add(c)
                .map_err(|e| format!("unusable CA certificate: {e}"))?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let check = if skip {
        NameCheck::Skip
    } else {
        NameCheck::SubjectAltNames(tls.subject_alt_names.clone())
    };
    let verifier = Arc::new(ServerVerifier::new(Arc::new(roots), check));
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = if tls.mode == TlsMode::Mutual {
        let (chain, key) = material.client()?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

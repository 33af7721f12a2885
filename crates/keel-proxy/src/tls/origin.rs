//! DestinationRule `tls.mode: SIMPLE` and `MUTUAL`: TLS the proxy originates to an upstream
//! (typically a ServiceEntry for an external service), with the user's certificates read
//! from files when the snapshot is installed.

use std::sync::Arc;

use keel_config::model::networking::destination_rule::{ClientTlsSettings, TlsMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

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
pub fn build(tls: &ClientTlsSettings, host: &str, name: &str) -> OriginTls {
    let sni_text = if tls.sni.is_empty() { host } else { &tls.sni };
    let (sni, config) = match ServerName::try_from(sni_text.to_string()) {
        Ok(sni) => (sni, config(tls)),
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

fn config(tls: &ClientTlsSettings) -> Result<Arc<ClientConfig>, String> {
    if !tls.credential_name.is_empty() {
        return Err(format!(
            "credentialName \"{}\" is not supported on sidecars yet: give caCertificates (and clientCertificate, privateKey) as files",
            tls.credential_name
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let ca = if tls.ca_certificates.is_empty() {
        SYSTEM_ROOTS
    } else {
        &tls.ca_certificates
    };
    let skip = tls.insecure_skip_verify == Some(true);
    if !skip {
        for c in read_certs(ca)? {
            roots
                .add(c)
                .map_err(|e| format!("{ca}: unusable CA certificate: {e}"))?;
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
        let chain = read_certs(&tls.client_certificate)?;
        let key_bytes = std::fs::read(&tls.private_key)
            .map_err(|e| format!("cannot read {}: {e}", tls.private_key))?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes)
            .map_err(|e| format!("{}: not a private key: {e}", tls.private_key))?;
        builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

//! A Gateway server's `tls` as the listener's [`ServerTls`], with Istio's rules:
//!
//! - SIMPLE / MUTUAL / OPTIONAL_MUTUAL take their certificate from `credentialName` (a
//!   Kubernetes Secret in the gateway workload's namespace: `tls.crt`/`tls.key`, or
//!   `cert`/`key`), `credentialNames` (up to two), `tlsCertificates`, or the
//!   `serverCertificate`/`privateKey` files. Client CAs for MUTUAL come from the credential's
//!   `ca.crt`/`cacert`, else the Secret `<credentialName>-cacert`, else `caCertCredentialName`,
//!   else `caCertificates`.
//! - ISTIO_MUTUAL serves the gateway's workload certificate and trusts the mesh root.
//! - A credential that can't be found makes the server unusable, as in Istio: its entry has
//!   no certificate (or no client CA), so the proxy fails those handshakes rather than serve
//!   plaintext on a TLS port; a warning names the Secret and the fix.

use keel_config::model::kube::secret::Secret;
use keel_config::model::networking::gateway::{Server, ServerTlsSettings, TlsMode, TlsProtocol};
use keel_config::{Resource, Spec};

use super::Warning;
use crate::tls::{CertificatePair, ClientCredential, Pem, ServerTls, ServerTlsMode, TlsVersion};

/// Whether `server` terminates TLS (HTTPS or TLS with a mode other than passthrough).
pub fn terminates(server: &Server) -> bool {
    let proto = server
        .port
        .as_ref()
        .map(|p| p.protocol.to_ascii_uppercase())
        .unwrap_or_default();
    matches!(proto.as_str(), "HTTPS" | "TLS")
        && server
            .tls
            .as_ref()
            .is_some_and(|t| !matches!(t.mode, TlsMode::Passthrough | TlsMode::AutoPassthrough))
}

fn secret<'a>(resources: &'a [Resource], namespace: &str, name: &str) -> Option<&'a Secret> {
    resources.iter().find_map(|r| match &r.spec {
        Spec::Secret(s) if r.namespace() == namespace && r.name() == name => Some(&**s),
        _ => None,
    })
}

/// A DestinationRule's `credentialName` in `namespace`, Istio's way: `cert`/`key`/`cacert`
/// or `tls.crt`/`tls.key`/`ca.crt`, the CA possibly in a Secret `<name>-cacert` of its own.
pub fn client_credential(resources: &[Resource], namespace: &str, name: &str) -> ClientCredential {
    let main = secret(resources, namespace, name);
    let value = |s: &Secret, keys: &[&str]| {
        keys.iter()
            .find_map(|k| s.get(k)?.ok().filter(|v| !v.is_empty()))
            .map(text)
    };
    let ca = main
        .and_then(|s| value(s, &["cacert", "ca.crt"]))
        .or_else(|| {
            secret(resources, namespace, &format!("{name}-cacert"))
                .and_then(|s| value(s, &["cacert", "ca.crt"]))
        });
    let (chain, key) = match main.and_then(Secret::tls_material) {
        Some(m) => (Some(text(m.cert)), Some(text(m.key))),
        None => (None, None),
    };
    ClientCredential {
        secret: format!("{namespace}/{name}"),
        found: main.is_some(),
        chain,
        key,
        ca,
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

fn version(p: TlsProtocol, warn: &mut dyn FnMut(String)) -> Option<TlsVersion> {
    match p {
        TlsProtocol::TlsAuto => None,
        TlsProtocol::Tlsv1_0 | TlsProtocol::Tlsv1_1 => {
            warn(format!(
                "{} is not supported (TLS 1.2 and 1.3 only); TLSV1_2 is used instead",
                p.as_str()
            ));
            Some(TlsVersion::Tls12)
        }
        TlsProtocol::Tlsv1_2 => Some(TlsVersion::Tls12),
        TlsProtocol::Tlsv1_3 => Some(TlsVersion::Tls13),
    }
}

/// The listener TLS for a terminating `server` of Gateway `origin` (`ns/name`) on `port`
/// (`None` for passthrough). Secrets are looked up in `secret_namespace`, where the gateway
/// runs; what can't be resolved is left out, with a warning.
pub fn server_tls(
    server: &Server,
    origin: &str,
    port: u16,
    resources: &[Resource],
    secret_namespace: &str,
    warnings: &mut Vec<Warning>,
) -> Option<ServerTls> {
    let tls: &ServerTlsSettings = server.tls.as_ref()?;
    let origin_text = format!("Gateway {origin}, port {port}");
    let mut warn = |message: String| {
        warnings.push(Warning {
            resource: format!("Gateway {origin}"),
            message: format!("server port {port}: {message}"),
        })
    };
    let mode = match tls.mode {
        TlsMode::Simple => ServerTlsMode::Simple,
        TlsMode::Mutual => ServerTlsMode::Mutual,
        TlsMode::OptionalMutual => ServerTlsMode::OptionalMutual,
        TlsMode::IstioMutual => ServerTlsMode::IstioMutual,
        TlsMode::Passthrough | TlsMode::AutoPassthrough => return None,
    };
    let mut certificates = Vec::new();
    let mut client_ca = None;
    if mode != ServerTlsMode::IstioMutual {
        let mut names: Vec<&str> = Vec::new();
        if !tls.credential_name.is_empty() {
            names.push(&tls.credential_name);
        }
        names.extend(tls.credential_names.iter().flatten().map(String::as_str));
        for name in &names {
            match secret(resources, secret_namespace, name).and_then(Secret::tls_material) {
                Some(m) => {
                    if let Some(ca) = m.ca {
                        client_ca.get_or_insert(Pem::Inline(text(ca)));
                    }
                    certificates.push(CertificatePair {
                        chain: Pem::Inline(text(m.cert)),
                        key: Pem::Inline(text(m.key)),
                    });
                }
                None => warn(format!(
                    "credentialName \"{name}\": no Secret {secret_namespace}/{name} with tls.crt and tls.key (or cert and key); the server has no certificate until one is applied (keel apply -f a kubernetes.io/tls Secret in {secret_namespace})"
                )),
            }
        }
        for c in tls.tls_certificates.iter().flatten() {
            certificates.push(CertificatePair {
                chain: Pem::File(c.server_certificate.clone()),
                key: Pem::File(c.private_key.clone()),
            });
            if !c.ca_certificates.is_empty() {
                client_ca.get_or_insert(Pem::File(c.ca_certificates.clone()));
            }
        }
        if names.is_empty() && tls.tls_certificates.is_none() && !tls.server_certificate.is_empty()
        {
            certificates.push(CertificatePair {
                chain: Pem::File(tls.server_certificate.clone()),
                key: Pem::File(tls.private_key.clone()),
            });
        }
        if matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) {
            let ca_secret = |name: &str| {
                secret(resources, secret_namespace, name).and_then(|s| {
                    ["ca.crt", "cacert"]
                        .iter()
                        .find_map(|k| s.get(k)?.ok().filter(|v| !v.is_empty()))
                        .map(|b| Pem::Inline(text(b)))
                })
            };
            if client_ca.is_none() && !tls.credential_name.is_empty() {
                client_ca = ca_secret(&format!("{}-cacert", tls.credential_name));
            }
            if client_ca.is_none() && !tls.ca_cert_credential_name.is_empty() {
                client_ca = ca_secret(&tls.ca_cert_credential_name);
            }
            if client_ca.is_none() && !tls.ca_certificates.is_empty() {
                client_ca = Some(Pem::File(tls.ca_certificates.clone()));
            }
            if client_ca.is_none() {
                warn(format!(
                    "{} needs CA certificates to verify clients: add ca.crt to the credential's Secret, a Secret {}-cacert, caCertCredentialName or caCertificates; clients can't be verified until then",
                    tls.mode.as_str(),
                    tls.credential_name
                ));
            }
        }
        if certificates.is_empty() && names.is_empty() {
            warn(format!(
                "tls mode {} without a certificate: set credentialName, or serverCertificate and privateKey",
                tls.mode.as_str()
            ));
        }
    }
    let server_names: Vec<String> = server
        .hosts
        .iter()
        .map(|h| h.split_once('/').map_or(h.as_str(), |(_, host)| host))
        .map(str::to_ascii_lowercase)
        .collect();
    Some(ServerTls {
        server_names,
        mode,
        certificates,
        client_ca,
        subject_alt_names: tls.subject_alt_names.clone(),
        min_version: version(tls.min_protocol_version, &mut warn),
        max_version: version(tls.max_protocol_version, &mut warn),
        cipher_suites: tls.cipher_suites.clone(),
        origin: origin_text,
    })
}

//! TLS a listener terminates: a gateway server's `tls` (SIMPLE, MUTUAL, OPTIONAL_MUTUAL,
//! ISTIO_MUTUAL), resolved so the proxy needs nothing else — certificate files by path (the
//! proxy reads them and re-reads them when they change) or the PEM of a Kubernetes Secret
//! named by `credentialName`, which the control plane pushes like any other config, so a
//! Secret update reaches the gateway without a restart.

use serde::{Deserialize, Serialize};

/// One certificate selection rule of a listener: the first whose `server_names` match the
/// client's SNI serves the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTls {
    /// SNI names (`bookinfo.com`, `*.example.com`, `*` for any), from the server's hosts.
    pub server_names: Vec<String>,
    pub mode: ServerTlsMode,
    /// Certificate and key pairs (Istio allows two: RSA and ECDSA); empty for ISTIO_MUTUAL,
    /// which serves the workload certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificatePair>,
    /// CAs client certificates must chain to (MUTUAL, OPTIONAL_MUTUAL); ISTIO_MUTUAL uses the
    /// mesh's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<Pem>,
    /// Client certificate SANs accepted (any, when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<TlsVersion>,
    /// OpenSSL/BoringSSL cipher names (TLS 1.2 suites; TLS 1.3's are not configurable, as in
    /// Envoy); empty: the defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// `Gateway ns/name, port 443`: names it in errors.
    pub origin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Server certificate only.
    Simple,
    /// A client certificate is required and verified.
    Mutual,
    /// A client certificate is verified if sent.
    OptionalMutual,
    /// The workload certificate, and a client certificate from the mesh.
    IstioMutual,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatePair {
    pub chain: Pem,
    pub key: Pem,
}

/// A DestinationRule's `credentialName`, resolved: the Secret's client certificate and key
/// (`tls.crt`/`tls.key` or `cert`/`key`) and CA (`ca.crt`/`cacert`, or the Secret
/// `<name>-cacert`), as PEM; `None` where the Secret has no such entry. `found: false`: there
/// is no Secret of that name in the proxy's namespace (connections then fail, saying so).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClientCredential {
    /// `namespace/name` of the Secret.
    pub secret: String,
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// PEM material: a file the proxy reads, or the PEM itself (from a Secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pem {
    File(String),
    Inline(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "TLSV1_2")]
    Tls12,
    #[serde(rename = "TLSV1_3")]
    Tls13,
}

/// Whether `sni` is one of `names` (exact, `*.suffix` for one or more labels, `*` for all),
/// case-insensitively, as Envoy matches server names.
pub fn sni_matches(names: &[String], sni: &str) -> bool {
    names.iter().any(|n| {
        if n == "*" {
            return true;
        }
        match n.strip_prefix('*') {
            Some(suffix) => {
                sni.len() > suffix.len()
                    && sni
                        .get(sni.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
            None => n.eq_ignore_ascii_case(sni),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_match_as_envoy_does() {
        let names = vec!["bookinfo.com".to_string(), "*.example.com".to_string()];
        assert!(sni_matches(&names, "BookInfo.com"));
        assert!(sni_matches(&names, "a.example.com"));
        assert!(sni_matches(&names, "a.b.example.com"));
        assert!(!sni_matches(&names, "example.com"));
        assert!(!sni_matches(&names, "other.com"));
        assert!(sni_matches(&["*".to_string()], "anything"));
    }
}

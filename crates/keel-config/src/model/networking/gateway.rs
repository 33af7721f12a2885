//! `Gateway` (networking.istio.io): the ports, hosts and TLS settings of a load balancer at
//! the edge of the mesh (ingress or egress gateway).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::validate::common::{
    Protocol, UNIX_ADDRESS_PREFIX, check_max_items, is_istio_dns1123_label, is_valid_cipher_suite,
    unknown_protocol_hint, validate_ip_address, validate_namespace_slash_wildcard_hostname,
    validate_port, validate_unix_address,
};
use crate::validate::{Severity, Validate, Validator};

/// `istio.networking.v1alpha3.Gateway`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Gateway {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// Labels of the gateway pods this configuration applies to (by default searched in all
    /// namespaces).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

/// `istio.networking.v1alpha3.Server`: one listener of the gateway.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Server {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// IP or Unix socket (`unix:///path`, `unix://@name`) to bind to; with a socket the
    /// port number is 0.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// `namespace/dnsName` (namespace `*`, `.` or a name; `*/` when omitted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Not implemented by Istio.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    /// Optional name, unique among servers (used in stats).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `istio.networking.v1alpha3.Port`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Port {
    pub number: u32,
    /// HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, ... (case-insensitive).
    pub protocol: String,
    pub name: String,
    /// Deprecated; has no effect on gateways or sidecars.
    #[serde(skip_serializing_if = "is_zero")]
    pub target_port: u32,
}

/// `istio.networking.v1alpha3.ServerTLSSettings` (also used by Sidecar ingress listeners).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerTlsSettings {
    /// Answer plain HTTP with a 301 redirect to HTTPS.
    #[serde(skip_serializing_if = "is_false")]
    pub https_redirect: bool,
    #[serde(skip_serializing_if = "is_default")]
    pub mode: TlsMode,
    /// Path of the server certificate (SIMPLE, MUTUAL).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    /// Path of the private key (SIMPLE, MUTUAL).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// Path of the CA bundle verifying client certificates (MUTUAL, OPTIONAL_MUTUAL).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    /// Path of a certificate revocation list for client certificates.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
    /// Kubernetes secret with the certificate, key and (for mTLS) CA.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    /// Like `credentialName`, for up to two certificates (e.g. RSA and ECDSA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_names: Option<Vec<String>>,
    /// Up to two certificate/key pairs given as file paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_certificates: Option<Vec<TlsCertificate>>,
    /// Secret or ConfigMap holding the CA certificates for client verification.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_cert_credential_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Base64 SHA-256 hashes of the SPKIs of accepted client certificates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    /// Hex SHA-256 hashes of accepted client certificates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    #[serde(skip_serializing_if = "is_default")]
    pub min_protocol_version: TlsProtocol,
    #[serde(skip_serializing_if = "is_default")]
    pub max_protocol_version: TlsProtocol,
    /// BoringSSL cipher names; empty means Envoy's defaults.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
}

/// `ServerTLSSettings.TLSCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsCertificate {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
}

istio_enum! {
    /// `ServerTLSSettings.TLSmode`.
    pub enum TlsMode {
        /// Route on SNI without terminating TLS.
        Passthrough = "PASSTHROUGH" = 0,
        /// Terminate TLS with the server certificate.
        Simple = "SIMPLE" = 1,
        /// Terminate TLS and require a client certificate.
        Mutual = "MUTUAL" = 2,
        /// Passthrough routed by the SNI Istio encodes (multi-network east-west gateways).
        AutoPassthrough = "AUTO_PASSTHROUGH" = 3,
        /// Mutual TLS with the gateway's mesh identity.
        IstioMutual = "ISTIO_MUTUAL" = 4,
        /// Like MUTUAL, but a client certificate is optional.
        OptionalMutual = "OPTIONAL_MUTUAL" = 5,
    }
}

istio_enum! {
    /// `ServerTLSSettings.TLSProtocol`.
    pub enum TlsProtocol {
        TlsAuto = "TLS_AUTO" = 0,
        Tlsv1_0 = "TLSV1_0" = 1,
        Tlsv1_1 = "TLSV1_1" = 2,
        Tlsv1_2 = "TLSV1_2" = 3,
        Tlsv1_3 = "TLSV1_3" = 4,
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// The annotation Istio sets on Gateways it generates from Kubernetes Gateway API objects.
const GATEWAY_SEMANTICS_ANNOTATION: &str = "internal.istio.io/gateway-semantics";

impl Validate for Gateway {
    fn validate(&self, v: &mut Validator) {
        let gateway_semantics = v
            .ctx
            .annotations
            .get(GATEWAY_SEMANTICS_ANNOTATION)
            .is_some_and(|a| a == "gateway");
        let name = v.ctx.name.clone();
        if !gateway_semantics && !name.is_empty() && !is_istio_dns1123_label(&name) {
            v.field("metadata", |v| {
                v.error_at("name", format!("invalid gateway name: \"{name}\" (a Gateway name is a DNS label: no dots, at most 63 characters)"));
            });
        }
        v.field("spec", |v| {
            if self.servers.is_empty() {
                v.error_at("servers", "gateway must have at least one server");
            }
            let mut port_names = BTreeSet::new();
            v.each("servers", &self.servers, |v, s| {
                validate_server(v, s, gateway_semantics);
                if let Some(port) = &s.port {
                    if !port_names.insert(port.name.clone()) {
                        v.error_at(
                            "port",
                            format!(
                                "port names in servers must be unique: duplicate name {}",
                                port.name
                            ),
                        );
                    }
                    let http = Protocol::parse(&port.protocol).is_some_and(Protocol::is_http);
                    if !http && s.tls.as_ref().is_some_and(|t| t.https_redirect) {
                        v.field("tls", |v| {
                            v.warn_at("httpsRedirect", "tls.httpsRedirect should only be used with http servers: it redirects plain HTTP requests, which this port doesn't receive");
                        });
                    }
                }
            });
        });
    }
}

fn validate_server(v: &mut Validator, s: &Server, gateway_semantics: bool) {
    if s.hosts.is_empty() {
        v.error_at(
            "hosts",
            "server config must contain at least one host (e.g. \"*\" or \"*/example.com\")",
        );
    }
    v.each("hosts", &s.hosts, |v, host| {
        for e in validate_namespace_slash_wildcard_hostname(host, true, gateway_semantics) {
            v.error(e);
        }
    });
    let port_ok = match &s.port {
        None => {
            v.error_at("port", "port is required");
            false
        }
        Some(port) => v.field("port", |v| validate_server_port(v, port, &s.bind)),
    };
    validate_server_bind(v, s.port.as_ref(), &s.bind);
    if let Some(tls) = &s.tls {
        v.field("tls", |v| validate_tls_options(v, tls));
    }
    let Some(port) = s.port.as_ref().filter(|_| port_ok) else {
        return;
    };
    let Some(protocol) = Protocol::parse(&port.protocol) else {
        return;
    };
    match &s.tls {
        None if protocol.is_tls() => {
            v.error_at("tls", format!("server must have TLS settings for HTTPS/TLS protocols: port {} is {}; add tls (e.g. mode: SIMPLE with credentialName)", port.number, port.protocol));
        }
        Some(tls) if !protocol.is_tls() => {
            if protocol.is_http() {
                let passthrough =
                    matches!(tls.mode, TlsMode::Passthrough | TlsMode::AutoPassthrough);
                if !passthrough
                    || !tls.ca_certificates.is_empty()
                    || !tls.private_key.is_empty()
                    || !tls.server_certificate.is_empty()
                {
                    v.error_at("tls", format!("server cannot have TLS settings for plain text HTTP ports: only tls.httpsRedirect is allowed on {} port {}; use protocol HTTPS to terminate TLS", port.protocol, port.number));
                }
            } else {
                v.error_at("tls", format!("server cannot have TLS settings for non HTTPS/TLS ports: port {} is {}; use protocol HTTPS or TLS", port.number, port.protocol));
            }
        }
        _ => {}
    }
}

/// Istio's `validateServerPort`; returns whether the port has no errors.
fn validate_server_port(v: &mut Validator, port: &Port, bind: &str) -> bool {
    let before = count_errors(v);
    if Protocol::parse(&port.protocol).is_none() {
        v.error_at(
            "protocol",
            format!(
                "invalid protocol \"{}\", supported protocols are HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TLS, TCP, MONGO, REDIS, MYSQL ({})",
                port.protocol,
                unknown_protocol_hint(&port.protocol)
            ),
        );
    }
    if (port.number > 0 || !bind.starts_with(UNIX_ADDRESS_PREFIX))
        && let Err(e) = validate_port(i64::from(port.number))
    {
        v.error_at("number", e);
    }
    if port.target_port > 0 {
        v.error_at(
            "targetPort",
            "targetPort has no impact on Gateways: remove it (the gateway listens on number)",
        );
    }
    if port.name.is_empty() {
        v.error_at(
            "name",
            format!(
                "port name must be set (port {} {})",
                port.number, port.protocol
            ),
        );
    }
    count_errors(v) == before
}

fn count_errors(v: &Validator) -> usize {
    v.issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count()
}

fn validate_server_bind(v: &mut Validator, port: Option<&Port>, bind: &str) {
    if let Some(path) = bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
        if let Err(e) = validate_unix_address(path) {
            v.error_at("bind", e);
        }
        if let Some(p) = port.filter(|p| p.number != 0) {
            v.error_at(
                "bind",
                format!(
                    "port number must be 0 for unix domain socket: port {} is bound to {bind}",
                    p.number
                ),
            );
        }
    } else if !bind.is_empty()
        && let Err(e) = validate_ip_address(bind)
    {
        v.error_at("bind", e);
    }
}

/// Istio's `validateTLSOptions` for a server's `tls` (the current path), plus the CRD's
/// rules. Sidecar ingress listeners reuse it.
pub(crate) fn validate_tls_options(v: &mut Validator, tls: &ServerTlsSettings) {
    let credential_names = tls.credential_names.as_deref().unwrap_or_default();
    let tls_certificates = tls.tls_certificates.as_deref().unwrap_or_default();
    for (field, n) in [
        (
            "credentialNames",
            tls.credential_names.as_ref().map(Vec::len),
        ),
        (
            "tlsCertificates",
            tls.tls_certificates.as_ref().map(Vec::len),
        ),
    ] {
        match n {
            Some(0) => v.error_at(field, "should have at least 1 items: remove the empty list"),
            Some(n) => check_max_items(v, field, n, 2),
            None => {}
        }
    }
    if tls.credential_names.is_some() && tls.tls_certificates.is_some() {
        v.error("only one of credentialNames or tlsCertificates can be set");
    }
    if !tls.credential_name.is_empty() && tls.credential_names.is_some() {
        v.error("only one of credentialName or credentialNames can be set");
    }

    if matches!(
        tls.min_protocol_version,
        TlsProtocol::Tlsv1_0 | TlsProtocol::Tlsv1_1
    ) && tls.cipher_suites.is_empty()
    {
        v.warn_at("minProtocolVersion", "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.");
    }
    if tls.max_protocol_version != TlsProtocol::TlsAuto
        && tls.min_protocol_version != TlsProtocol::TlsAuto
        && tls.max_protocol_version < tls.min_protocol_version
    {
        v.error_at("maxProtocolVersion", format!("maxProtocolVersion {} is lower than minProtocolVersion {}: no TLS version could be negotiated", tls.max_protocol_version, tls.min_protocol_version));
    }
    let mut invalid = BTreeSet::new();
    let mut valid = BTreeSet::new();
    let mut dup = BTreeSet::new();
    for cs in &tls.cipher_suites {
        if !is_valid_cipher_suite(cs) {
            invalid.insert(cs.as_str());
        } else if !valid.insert(cs.as_str()) {
            dup.insert(cs.as_str());
        }
    }
    if !invalid.is_empty() {
        v.warn_at(
            "cipherSuites",
            format!(
                "ignoring invalid cipher suites: [{}] (supported: {})",
                invalid.into_iter().collect::<Vec<_>>().join(" "),
                crate::validate::common::VALID_CIPHER_SUITES.join(", ")
            ),
        );
    }
    if !dup.is_empty() {
        v.warn_at(
            "cipherSuites",
            format!(
                "ignoring duplicate cipher suites: [{}]",
                dup.into_iter().collect::<Vec<_>>().join(" ")
            ),
        );
    }

    let mode = tls.mode;
    if mode == TlsMode::IstioMutual {
        // The mesh certificate is used; nothing else may be given.
        for (field, set, what) in [
            (
                "serverCertificate",
                !tls.server_certificate.is_empty(),
                "server certificate",
            ),
            ("privateKey", !tls.private_key.is_empty(), "private key"),
            (
                "caCertificates",
                !tls.ca_certificates.is_empty(),
                "CA bundle",
            ),
            (
                "tlsCertificates",
                !tls_certificates.is_empty(),
                "tlsCertificates",
            ),
            (
                "credentialName",
                !tls.credential_name.is_empty(),
                "credentialName",
            ),
            (
                "credentialNames",
                !credential_names.is_empty(),
                "credentialNames",
            ),
        ] {
            if set {
                v.error_at(field, format!("ISTIO_MUTUAL TLS cannot have associated {what}: it uses the gateway's mesh certificate; remove {field} or use MUTUAL"));
            }
        }
        return;
    }

    if matches!(mode, TlsMode::Passthrough | TlsMode::AutoPassthrough)
        && (!tls.ca_crl.is_empty()
            || !tls.server_certificate.is_empty()
            || !tls.private_key.is_empty()
            || !tls.ca_certificates.is_empty()
            || !tls_certificates.is_empty()
            || !tls.credential_name.is_empty()
            || !credential_names.is_empty())
    {
        v.warn(format!(
            "{mode} mode does not use certificates, they will be ignored"
        ));
    }

    let sources = [
        !tls.server_certificate.is_empty() && !tls.private_key.is_empty(),
        !tls.credential_name.is_empty(),
        !credential_names.is_empty(),
        !tls_certificates.is_empty(),
    ];
    // The CRD's rules above already name the credentialName(s)/tlsCertificates clashes.
    let crd_clash = tls.credential_names.is_some()
        && (tls.tls_certificates.is_some() || !tls.credential_name.is_empty());
    if sources.iter().filter(|s| **s).count() > 1 && !crd_clash {
        v.error("only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified");
    }

    let terminates = matches!(
        mode,
        TlsMode::Simple | TlsMode::Mutual | TlsMode::OptionalMutual
    );
    if terminates && (!tls.credential_name.is_empty() || !credential_names.is_empty()) {
        // Certificates (and the CA) come from the secret.
        return;
    }
    if terminates {
        let prefix = if mode == TlsMode::Simple {
            "SIMPLE TLS"
        } else {
            "MUTUAL TLS"
        };
        if mode != TlsMode::Simple
            && tls.ca_certificates.is_empty()
            && tls.ca_cert_credential_name.is_empty()
        {
            v.error_at("caCertificates", format!("{prefix} requires a client CA bundle: set caCertificates (or credentialName with a CA, or caCertCredentialName)"));
        }
        if tls_certificates.is_empty() {
            if tls.server_certificate.is_empty() {
                v.error_at("serverCertificate", format!("{prefix} requires a server certificate: set credentialName (a Kubernetes secret) or serverCertificate and privateKey"));
            }
            if tls.private_key.is_empty() {
                v.error_at("privateKey", format!("{prefix} requires a private key: set credentialName (a Kubernetes secret) or serverCertificate and privateKey"));
            }
        }
        v.each("tlsCertificates", tls_certificates, |v, c| {
            if c.server_certificate.is_empty() {
                v.error_at(
                    "serverCertificate",
                    format!("{prefix} requires a server certificate"),
                );
            }
            if c.private_key.is_empty() {
                v.error_at("privateKey", format!("{prefix} requires a private key"));
            }
        });
    }
    if !tls.ca_crl.is_empty() {
        if !tls.credential_name.is_empty() {
            v.error_at("caCrl", "CRL is not supported with credentialName. CRL has to be specified in the credential");
        }
        if mode == TlsMode::Simple {
            v.error_at("caCrl", "CRL is not supported with SIMPLE TLS: client certificates are only checked with MUTUAL or OPTIONAL_MUTUAL");
        }
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;

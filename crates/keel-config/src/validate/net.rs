//! Validation helpers for networking kinds (Gateway, ServiceEntry, WorkloadEntry,
//! WorkloadGroup, ProxyConfig; Sidecar and DestinationRule use several): protocols,
//! namespace/host pairs, exportTo, addresses, ports and CRD size limits.

#![allow(unused_imports)]

use super::Validator;
use super::common::*;
use crate::types::{Duration, Percent};
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Istio's `labels.IsDNS1123Label`: like RFC 1123 but upper case allowed, ≤ 63 characters.
pub fn is_istio_dns1123_label(s: &str) -> bool {
    is_dns_label_loose(s)
}

/// A port protocol as Istio's `protocol.Parse` reads it (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Grpc,
    GrpcWeb,
    Http,
    HttpProxy,
    Http2,
    Https,
    Tcp,
    Tls,
    Udp,
    Mongo,
    Redis,
    MySql,
}

impl Protocol {
    /// The names Istio accepts, as written in its docs.
    pub const NAMES: &'static [&'static str] = &[
        "HTTP",
        "HTTPS",
        "HTTP2",
        "GRPC",
        "GRPC-WEB",
        "TLS",
        "TCP",
        "UDP",
        "MONGO",
        "REDIS",
        "MYSQL",
        "HTTP_PROXY",
    ];

    /// `None` is Istio's `protocol.Unsupported` (the empty string included).
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "http" => Protocol::Http,
            "http_proxy" => Protocol::HttpProxy,
            "http2" => Protocol::Http2,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::MySql,
            _ => return None,
        })
    }

    /// Carried over HTTP (HTTP, HTTP2, HTTP_PROXY, GRPC, GRPC-WEB).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::HttpProxy
                | Protocol::Grpc
                | Protocol::GrpcWeb
        )
    }

    /// Carried over TCP without HTTP parsing (TCP, HTTPS, TLS, MONGO, REDIS, MYSQL).
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Protocol::Tcp
                | Protocol::Https
                | Protocol::Tls
                | Protocol::Mongo
                | Protocol::Redis
                | Protocol::MySql
        )
    }

    /// On top of TLS (HTTPS, TLS).
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }
}

/// "unsupported protocol", with a suggestion when the name is a likely typo.
pub fn unknown_protocol_hint(got: &str) -> String {
    let list = Protocol::NAMES.join(", ");
    match crate::suggest::closest(got, Protocol::NAMES.iter().copied()) {
        Some(best) if !got.is_empty() => {
            format!("did you mean \"{best}\"? Supported (case-insensitive): {list}")
        }
        _ => format!("supported (case-insensitive): {list}"),
    }
}

/// The prefix of a Unix domain socket address (`unix:///path`, `unix://@abstract`).
pub const UNIX_ADDRESS_PREFIX: &str = "unix://";

/// Istio's `ValidateUnixAddress` for the part after `unix://`.
pub fn validate_unix_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("unix address must not be empty".into());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

/// Istio's `ValidateIPAddress`.
pub fn validate_ip_address(s: &str) -> Result<(), String> {
    s.parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("{s} is not a valid IP"))
}

/// Istio's `ValidateIPSubnet`: an IP address, or a CIDR block when it contains one `/`.
pub fn validate_ip_subnet(s: &str) -> Result<(), String> {
    if s.matches('/').count() == 1 {
        let ok = s.split_once('/').is_some_and(|(ip, bits)| {
            let max = match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => 32,
                Ok(std::net::IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            !bits.is_empty()
                && bits.bytes().all(|b| b.is_ascii_digit())
                && (bits == "0" || !bits.starts_with('0'))
                && bits.parse::<u32>().is_ok_and(|b| b <= max)
        });
        return if ok {
            Ok(())
        } else {
            Err(format!("{s} is not a valid CIDR block"))
        };
    }
    validate_ip_address(s)
}

/// Istio's `ValidatePartialWildCard`: `*` may only be the whole host or a `*.` prefix.
pub fn validate_partial_wildcard(host: &str) -> Result<(), String> {
    if host.contains('*') && host.len() != 1 && !host.starts_with("*.") {
        return Err(format!("partial wildcard \"{host}\" not allowed"));
    }
    Ok(())
}

/// The `dnsName` part of a Gateway or Sidecar host (`ns/dnsName`).
fn validate_sidecar_or_gateway_hostname_part(host: &str, is_gateway: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if host != "*" && !host.contains('.') {
        errs.push(format!(
            "short names (non FQDN) are not allowed (got \"{host}\"): use a fully qualified name such as {host}.example.com or a wildcard like *.example.com"
        ));
    }
    if let Err(e) = validate_wildcard_domain(host) {
        // A Gateway also accepts an IP address as its host.
        if !is_gateway || host.parse::<std::net::IpAddr>().is_err() {
            errs.push(e);
        }
    }
    if let Err(e) = validate_partial_wildcard(host) {
        errs.push(e);
    }
    errs
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for `Gateway.servers[].hosts` and
/// `Sidecar.egress[].hosts`: `namespace/dnsName`, namespace `*`, `.` (or `~` in a Sidecar,
/// or in a Gateway converted from the Gateway API) or a DNS label. Gateways also accept a
/// bare `dnsName` (any namespace).
pub fn validate_namespace_slash_wildcard_hostname(
    host: &str,
    is_gateway: bool,
    gateway_semantics: bool,
) -> Vec<String> {
    let Some((ns, name)) = host.split_once('/') else {
        if is_gateway {
            return validate_sidecar_or_gateway_hostname_part(host, true);
        }
        return vec![format!(
            "host must be of form namespace/dnsName (got \"{host}\"): e.g. */{host}, ./{host} or istio-system/{host}"
        )];
    };
    let mut errs = Vec::new();
    if ns.is_empty() || name.is_empty() {
        errs.push("config namespace and dnsName in host entry cannot be empty".to_string());
    }
    let special = ns == "*" || ns == "." || (ns == "~" && (!is_gateway || gateway_semantics));
    if !special && !is_istio_dns1123_label(ns) {
        let what = if is_gateway { "gateway" } else { "sidecar" };
        errs.push(format!(
            "invalid namespace value \"{ns}\" in {what}: use *, . or a namespace name"
        ));
    }
    errs.extend(validate_sidecar_or_gateway_hostname_part(name, is_gateway));
    errs
}

/// Istio's `ValidatePortName`.
pub fn validate_port_name(name: &str) -> Result<(), String> {
    if is_istio_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid port name: \"{name}\" (use letters, digits and '-', at most 63 characters)"
        ))
    }
}

/// Istio's `validateExportTo`. `.` stands for the resource's own namespace; `~` (visible to
/// no one) is only for ServiceEntry; a DestinationRule with a workload selector may only be
/// exported to its own namespace.
pub fn validate_export_to(
    v: &mut Validator,
    export_to: &[String],
    is_service_entry: bool,
    is_destination_rule_with_selector: bool,
) {
    if export_to.is_empty() {
        return;
    }
    let namespace = v.ctx.namespace.clone();
    let mut seen: Vec<String> = Vec::new();
    v.field("exportTo", |v| {
        for (i, e) in export_to.iter().enumerate() {
            let key = if e == "." { namespace.clone() } else { e.clone() };
            v.index(i, |v| {
                if seen.contains(&key) {
                    if &key != e {
                        v.error(format!(
                            "duplicate entries in exportTo: . and current namespace {namespace}"
                        ));
                    } else {
                        v.error(format!("duplicate entries in exportTo for entry {e}"));
                    }
                } else if is_service_entry && e == "~" {
                    seen.push(key);
                } else if key == "~" {
                    v.error("exportTo ~ (none) is not allowed for Istio configuration objects (only ServiceEntry may use it)");
                } else if key != "*" && !is_istio_dns1123_label(&key) {
                    v.error(format!(
                        "only .,*, or a valid DNS 1123 label is allowed as exportTo entry (got \"{e}\")"
                    ));
                } else {
                    seen.push(key);
                }
            });
        }
        if is_destination_rule_with_selector && !seen.is_empty() {
            if seen.contains(&namespace) {
                if seen.len() > 1 {
                    v.error("destination rule with workload selector cannot have multiple entries in exportTo");
                }
            } else {
                v.error("destination rule with workload selector cannot have exportTo beyond current namespace");
            }
        }
        if seen.iter().any(|s| s == "*") && export_to.len() > 1 {
            v.error("cannot have both public (*) and non-public exportTo values for a resource: \"*\" already exports everywhere");
        }
        if seen.iter().any(|s| s == "~") && export_to.len() > 1 {
            v.error("cannot export service entry to no one (~) and someone");
        }
    });
}

/// The cipher suites Gateway `tls.cipherSuites` accepts (BoringSSL names, as in Istio's
/// `security.ValidCipherSuites`).
pub const VALID_CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// Istio's `security.IsValidCipherSuite`: a known name, `ALL`, or an OpenSSL-style
/// expression starting with an operator (`-`, `+`, `!`, `[`...), which is not parsed.
pub fn is_valid_cipher_suite(cs: &str) -> bool {
    match cs.chars().next() {
        None => true,
        Some(_) if cs == "ALL" => true,
        Some(c) if !c.is_alphanumeric() => true,
        Some(_) => VALID_CIPHER_SUITES.contains(&cs),
    }
}

/// Istio's `labels.Instance.Validate` for labels inside a spec (WorkloadEntry, endpoints):
/// keys like Kubernetes label keys, values of alphanumerics, `-`, `_`, `.` (no length limit).
pub fn validate_tag_labels(v: &mut Validator, field: &str, labels: &BTreeMap<String, String>) {
    v.field(field, |v| {
        for (k, val) in labels {
            let key_ok = match k.rsplit_once('/') {
                Some((p, n)) => p.len() <= 253 && is_dns_prefix(p) && is_qualified_name_part(n),
                None => is_qualified_name_part(k),
            };
            if !key_ok {
                v.error_at(
                    k,
                    format!("invalid tag key: \"{k}\" (an optional DNS prefix and '/', then at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)"),
                );
            }
            if !val.is_empty() && !is_tag_value(val) {
                v.error_at(
                    k,
                    format!("invalid tag value: \"{val}\" (alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)"),
                );
            }
        }
    });
}

fn is_dns_prefix(p: &str) -> bool {
    !p.is_empty() && p.split('.').all(is_dns_label_loose)
}

fn is_tag_value(s: &str) -> bool {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    matches(&R, r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", s)
}

/// The CRD's `maxItems`: Kubernetes' "Too many" error.
pub fn check_max_items(v: &mut Validator, field: &str, len: usize, max: usize) {
    if len > max {
        v.error_at(
            field,
            format!("Too many: {len}: must have at most {max} items"),
        );
    }
}

/// The CRD's `maxLength` on a string field: Kubernetes' "Too long" error.
pub fn check_max_len(v: &mut Validator, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        v.error_at(field, format!("Too long: may not be more than {max} bytes"));
    }
}

#[cfg(test)]
mod net2_tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("http"), Some(Protocol::Http));
        assert_eq!(Protocol::parse("GRPC-Web"), Some(Protocol::GrpcWeb));
        assert_eq!(Protocol::parse(""), None);
        assert_eq!(Protocol::parse("kafka"), None);
        assert!(Protocol::Https.is_tls() && Protocol::Https.is_tcp());
        assert!(Protocol::Grpc.is_http() && !Protocol::Tcp.is_http());
        assert!(unknown_protocol_hint("HTTTP").contains("did you mean \"HTTP\""));
    }

    #[test]
    fn addresses() {
        assert!(validate_unix_address("@abstract").is_ok());
        assert!(validate_unix_address("/var/run/x.sock").is_ok());
        assert!(validate_unix_address("relative").is_err());
        assert!(validate_unix_address("/dir/").is_err());
        assert!(validate_unix_address("").is_err());
        assert!(validate_ip_subnet("1.2.3.4").is_ok());
        assert!(validate_ip_subnet("001:db8::").is_ok());
        assert!(validate_ip_subnet("1.2.3.4/16").is_ok());
        assert!(validate_ip_subnet("2001:1::1/64").is_ok());
        assert!(validate_ip_subnet("1.2.3.4/99").is_err());
        assert!(validate_ip_subnet("1.2.3.4/").is_err());
        assert!(validate_ip_subnet("example.com").is_err());
        assert!(validate_ip_address("foo.bar").is_err());
    }

    #[test]
    fn hosts() {
        assert!(validate_namespace_slash_wildcard_hostname("foo.bar.com", true, false).is_empty());
        assert!(validate_namespace_slash_wildcard_hostname("1.1.1.1", true, false).is_empty());
        assert!(validate_namespace_slash_wildcard_hostname("*", true, false).is_empty());
        assert!(
            validate_namespace_slash_wildcard_hostname("ns1/*.bar.com", true, false).is_empty()
        );
        assert!(validate_namespace_slash_wildcard_hostname("./foo.com", true, false).is_empty());
        let e = validate_namespace_slash_wildcard_hostname("~/foo.com", true, false);
        assert!(e[0].contains("invalid namespace value"), "{e:?}");
        assert!(validate_namespace_slash_wildcard_hostname("~/foo.com", true, true).is_empty());
        assert!(validate_namespace_slash_wildcard_hostname("~/*", false, false).is_empty());
        let e = validate_namespace_slash_wildcard_hostname("foo", true, false);
        assert!(e[0].contains("short names"), "{e:?}");
        let e = validate_namespace_slash_wildcard_hostname("*bar.com", true, false);
        assert!(e.iter().any(|m| m.contains("partial wildcard")), "{e:?}");
        let e = validate_namespace_slash_wildcard_hostname("/", true, false);
        assert!(e[0].contains("cannot be empty"), "{e:?}");
        let e = validate_namespace_slash_wildcard_hostname("foo.com", false, false);
        assert!(e[0].contains("namespace/dnsName"), "{e:?}");
    }

    #[test]
    fn ciphers_and_names() {
        assert!(is_valid_cipher_suite("ECDHE-ECDSA-AES128-SHA"));
        assert!(is_valid_cipher_suite("-ECDHE-ECDSA-AES128-SHA"));
        assert!(is_valid_cipher_suite("ALL"));
        assert!(!is_valid_cipher_suite("not-a-cipher-suite"));
        assert!(validate_port_name("Henry").is_ok());
        assert!(validate_port_name("http_1").is_err());
        assert!(validate_partial_wildcard("*.a.com").is_ok());
        assert!(validate_partial_wildcard("*x").is_err());
    }
}

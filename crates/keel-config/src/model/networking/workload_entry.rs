//! `WorkloadEntry` (networking.istio.io): a workload outside Kubernetes (a VM, a bare-metal
//! host) described like a pod. The same message is a `ServiceEntry` endpoint and a
//! `WorkloadGroup` template.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::validate::common::{
    UNIX_ADDRESS_PREFIX, check_max_items, check_max_len, validate_fqdn, validate_port,
    validate_tag_labels, validate_unix_address,
};
use crate::validate::{Validate, Validator};

/// `istio.networking.v1alpha3.WorkloadEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WorkloadEntry {
    /// An IP address, a DNS name (DNS resolution only) or a Unix domain socket
    /// (`unix:///absolute/path`, `unix://@abstract`), without the port.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Port name (of the owning service) → port on this endpoint. The CRD tells an empty
    /// map from an absent one (a Unix socket may not have one at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<BTreeMap<String, u32>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network of the endpoint (endpoints on the same network reach each other directly).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// `region/zone/subzone`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// Load-balancing weight; 0 means the default.
    #[serde(skip_serializing_if = "is_zero")]
    pub weight: u32,
    /// The service account the workload's proxy runs as (its mTLS identity).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_account: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkloadEntry {
    /// The address is a Unix domain socket.
    pub fn is_unix(&self) -> bool {
        self.address.starts_with(UNIX_ADDRESS_PREFIX)
    }

    fn has_ports(&self) -> bool {
        self.ports.is_some()
    }

    fn ports(&self) -> impl Iterator<Item = (&String, &u32)> {
        self.ports.iter().flatten()
    }
}

/// How the owner reads an entry's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressRule {
    /// A `WorkloadEntry` resource: IP, FQDN or Unix socket; required unless `network` is set.
    Resource,
    /// A `ServiceEntry` endpoint with STATIC resolution: IP or Unix socket.
    Static,
    /// A `ServiceEntry` endpoint with DNS or DNS_ROUND_ROBIN resolution: IP or FQDN.
    Dns,
    /// A `ServiceEntry` endpoint whose resolution doesn't use it (only the schema applies).
    SchemaOnly,
    /// A `WorkloadGroup` template: schema only, and the address may be empty.
    Template,
}

/// The CRD schema's rules for a `WorkloadEntry`, wherever it appears (`required_address`
/// is false for a `WorkloadGroup` template, where the address is filled in later).
pub(crate) fn validate_schema(v: &mut Validator, we: &WorkloadEntry, required_address: bool) {
    check_max_len(v, "address", &we.address, 256);
    check_max_len(v, "locality", &we.locality, 2048);
    check_max_len(v, "network", &we.network, 2048);
    check_max_len(v, "serviceAccount", &we.service_account, 253);
    check_max_items(v, "labels", we.labels.len(), 256);
    if required_address && we.address.is_empty() && we.network.is_empty() {
        v.error("Address is required: set address (an IP, a hostname or a unix:// socket), or network for an endpoint reached through that network's gateway");
    }
    if let Some(path) = we.address.strip_prefix(UNIX_ADDRESS_PREFIX) {
        v.field("address", |v| {
            if !(path.starts_with('/') || path.starts_with('@')) {
                let why = validate_unix_address(path).err().unwrap_or_default();
                v.error(format!(
                    "UDS must be an absolute path or abstract socket: {why} (write unix:///path/to/socket or unix://@name)"
                ));
            } else if path.ends_with('/') {
                v.error(format!(
                    "UDS may not be a dir: \"{}\" ends with '/'",
                    we.address
                ));
            }
        });
        if we.has_ports() {
            v.error_at(
                "ports",
                "UDS may not include ports: a Unix socket has no port; remove ports",
            );
        }
    }
    if let Some(ports) = &we.ports {
        check_max_items(v, "ports", ports.len(), 128);
        v.field("ports", |v| {
            for (name, port) in ports {
                if name.len() >= 63 || !is_port_key(name) {
                    v.error_at(name, format!("Invalid value: port name must be valid: \"{name}\" (letters, digits and '-', starting and ending with a letter or digit, at most 62 characters)"));
                }
                if !(1..=65535).contains(port) {
                    v.error_at(
                        name,
                        format!("port must be between 1-65535 (got {port})"),
                    );
                }
            }
        });
    }
}

fn is_port_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Istio's `validateWorkloadEntry` (webhook rules) on top of the schema, for an entry read
/// with `rule`. `service_ports` are the owning ServiceEntry's port names, if any.
pub(crate) fn validate_entry(
    v: &mut Validator,
    we: &WorkloadEntry,
    rule: AddressRule,
    service_ports: Option<&BTreeSet<String>>,
) {
    validate_schema(v, we, rule != AddressRule::Template);
    if matches!(rule, AddressRule::SchemaOnly | AddressRule::Template) {
        return;
    }
    let addr = we.address.as_str();
    if addr.is_empty() && !we.network.is_empty() && rule != AddressRule::Dns {
        v.warn(format!(
            "address is unset with network \"{}\": the endpoint is reached through that network's gateway",
            we.network
        ));
    }
    let is_ip = addr.parse::<std::net::IpAddr>().is_ok();
    match rule {
        AddressRule::SchemaOnly | AddressRule::Template => {}
        AddressRule::Dns => {
            if !is_ip && validate_fqdn(addr).is_err() {
                v.error_at(
                    "address",
                    format!("endpoint address \"{addr}\" is not a valid FQDN or an IP address"),
                );
            }
        }
        AddressRule::Static | AddressRule::Resource => {
            if !addr.is_empty() && !we.is_unix() && !is_ip {
                if rule == AddressRule::Static {
                    v.error_at("address", format!("endpoint address \"{addr}\" is not a valid IP address: with resolution STATIC, endpoints are IPs or unix:// sockets (use resolution DNS for hostnames)"));
                } else if validate_fqdn(addr).is_err() {
                    v.error_at(
                        "address",
                        format!("endpoint address \"{addr}\" is not a valid FQDN or an IP address"),
                    );
                }
            }
        }
    }
    v.field("ports", |v| {
        for (name, port) in we.ports() {
            if let Some(defined) = service_ports
                && !defined.contains(name)
            {
                v.error_at(name, format!("endpoint port {port} is not defined by the service entry: \"{name}\" must be the name of one of spec.ports"));
            }
        }
    });
    validate_tag_labels(v, "labels", &we.labels);
    if we.is_unix()
        && rule == AddressRule::Static
        && let Some(defined) = service_ports
        && defined.len() != 1
    {
        v.error_at(
            "address",
            format!(
                "exactly 1 service port required for unix endpoints (the service entry has {})",
                defined.len()
            ),
        );
    }
}

impl Validate for WorkloadEntry {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| {
            validate_entry(v, self, AddressRule::Resource, None);
        });
    }
}

/// The port check Istio applies to probe and entry ports.
pub(crate) fn check_port(v: &mut Validator, field: &str, port: u32) {
    if let Err(e) = validate_port(i64::from(port)) {
        v.error_at(field, e);
    }
}

#[cfg(test)]
mod tests {
    use crate::{LoadOptions, load_str, validate_resources};

    fn check(spec: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: w, namespace: ns}}\nspec:\n{spec}"
        );
        let loaded = load_str(&text, "we.yaml", &LoadOptions::default());
        let mut out: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        out.extend(
            validate_resources(&loaded.resources, "istio-system")
                .iter()
                .map(|d| d.to_string()),
        );
        out
    }

    fn errors(spec: &str) -> Vec<String> {
        check(spec)
            .into_iter()
            .filter(|m| m.contains(": error: "))
            .collect()
    }

    #[test]
    fn accepts_istio_shapes() {
        for ok in [
            "  address: 1.2.3.4\n  serviceAccount: sa\n  network: net\n  labels: {app: a}\n  ports: {http: 1}\n  weight: 2\n  locality: foo/bar/baz\n",
            "  address: unix://@foo\n",
            "  address: unix:///foo/bar\n",
            "  address: example.com\n",
            "  address: 2001:db8::1\n",
            "  labels: {security.istio.io/tlsMode: istio, version: \"\"}\n  address: 10.0.0.1\n",
        ] {
            assert!(check(ok).is_empty(), "{ok}: {:?}", check(ok));
        }
        // No address but a network: accepted with a warning.
        let w = check("  network: net\n");
        assert!(
            w.len() == 1 && w[0].contains("warning") && w[0].contains("address is unset"),
            "{w:?}"
        );
    }

    #[test]
    fn rejects_what_istio_rejects() {
        let e = errors("  serviceAccount: sa\n");
        assert!(e[0].contains("spec: Address is required"), "{e:?}");
        let e = errors("  address: unix:///dir/\n");
        assert!(
            e[0].contains("we.yaml:5:12") && e[0].contains("UDS may not be a dir"),
            "{e:?}"
        );
        let e = errors("  address: unix://relative\n");
        assert!(
            e[0].contains("UDS must be an absolute path or abstract socket"),
            "{e:?}"
        );
        let e = errors("  address: unix://\n");
        assert!(e[0].contains("unix address must not be empty"), "{e:?}");
        let e = errors("  address: unix://@foo\n  ports: {http: 80}\n");
        assert!(
            e[0].contains("spec.ports: UDS may not include ports"),
            "{e:?}"
        );
        let e = errors("  address: 1.1.1.1\n  ports: {http: 99999}\n");
        assert!(
            e[0].contains("spec.ports.http: port must be between 1-65535"),
            "{e:?}"
        );
        let e = errors("  address: 1.1.1.1\n  ports: {\"@\": 80}\n");
        assert!(
            e[0].contains("Invalid value: port name must be valid"),
            "{e:?}"
        );
        let e = errors("  address: bad_host!\n");
        assert!(
            e[0].contains("is not a valid FQDN or an IP address"),
            "{e:?}"
        );
        let e = errors("  address: 1.1.1.1\n  labels: {\"-bad\": x}\n");
        assert!(e[0].contains("invalid tag key"), "{e:?}");
        let e = errors("  address: 1.1.1.1\n  labels: {app: \"a b\"}\n");
        assert!(e[0].contains("invalid tag value"), "{e:?}");
        let e = errors(&format!(
            "  address: 1.1.1.1\n  serviceAccount: {}\n",
            "a".repeat(254)
        ));
        assert!(e[0].contains("Too long"), "{e:?}");
        let e = errors("  address: 1.1.1.1\n  weight: -1\n");
        assert!(!e.is_empty(), "{e:?}");
    }
}

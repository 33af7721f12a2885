//! `ServiceEntry` (networking.istio.io): adds a service to the mesh's registry — an external
//! API, a database on VMs, or workloads selected by labels.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::workload_entry::{AddressRule, WorkloadEntry, validate_entry};
use crate::istio_enum;
use crate::validate::common::{
    Protocol, check_max_items, check_max_len, unknown_protocol_hint, validate_export_to,
    validate_fqdn, validate_ip_subnet, validate_partial_wildcard, validate_port_name,
    validate_wildcard_domain,
};
use crate::validate::{Validate, Validator};

/// `istio.networking.v1alpha3.ServiceEntry`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServiceEntry {
    /// The names of the service (DNS names, optionally with a `*.` prefix wildcard).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Virtual IPs (or CIDR blocks with resolution NONE or STATIC) of the service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    #[serde(skip_serializing_if = "is_default")]
    pub location: Location,
    #[serde(skip_serializing_if = "is_default")]
    pub resolution: Resolution,
    /// The service's endpoints; exclusive with `workloadSelector`. The CRD tells an empty
    /// list from an absent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<WorkloadEntry>>,
    /// Pods and WorkloadEntries (in the same namespace) that implement the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces that can see the service: `.` (own), `*` (all), `~` (none), or names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Identities the service's server certificates may present (secure naming).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// `istio.networking.v1alpha3.ServicePort`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServicePort {
    pub number: u32,
    /// HTTP, HTTPS, HTTP2, GRPC, TLS, TCP, MONGO, ...; empty means detected from traffic.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    pub name: String,
    /// Port on the endpoints, when it differs from `number`.
    #[serde(skip_serializing_if = "is_zero")]
    pub target_port: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// `istio.networking.v1alpha3.WorkloadSelector` (note: `labels`, not `matchLabels`), used by
/// ServiceEntry and Sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WorkloadSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

istio_enum! {
    /// `ServiceEntry.Location`.
    pub enum Location {
        /// Outside the mesh: no mTLS to it, no sidecar behind it.
        MeshExternal = "MESH_EXTERNAL" = 0,
        /// Part of the mesh (e.g. VMs with proxies).
        MeshInternal = "MESH_INTERNAL" = 1,
    }
}

istio_enum! {
    /// `ServiceEntry.Resolution`: how the proxy finds the service's endpoints.
    pub enum Resolution {
        /// Forward to the address the caller connected to.
        None = "NONE" = 0,
        /// Use the listed endpoint IPs (or the selected workloads).
        Static = "STATIC" = 1,
        /// Resolve the hosts (or endpoint names) through DNS, all addresses.
        Dns = "DNS" = 2,
        /// Resolve through DNS and use the first address only.
        DnsRoundRobin = "DNS_ROUND_ROBIN" = 3,
        /// Resolve each request's host when it arrives (for wildcard hosts).
        DynamicDns = "DYNAMIC_DNS" = 4,
    }
}

/// Istio's `ValidateAlphaWorkloadSelector` plus the CRD rules, for `workloadSelector`.
/// `owner` prefixes the "no labels" warning (`service entry`, `sidecar`).
pub(crate) fn validate_alpha_workload_selector(
    v: &mut Validator,
    sel: &WorkloadSelector,
    owner: &str,
) {
    v.field("workloadSelector", |v| {
        if sel.labels.is_empty() {
            v.warn(format!("{owner}: workload selector specified without labels, will be applied to all services in namespace"));
        }
        check_max_items(v, "labels", sel.labels.len(), 256);
        v.field("labels", |v| {
            for (k, val) in &sel.labels {
                if k.is_empty() {
                    v.error(format!(
                        "empty key is not supported in selector: \"={val}\""
                    ));
                }
                if k.contains('*') || val.contains('*') {
                    v.error_at(
                        k,
                        format!("wildcard is not supported in selector: \"{k}={val}\""),
                    );
                }
                check_max_len(v, k, val, 63);
            }
        });
    });
}

impl Validate for ServiceEntry {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| self.validate_spec(v));
    }
}

impl ServiceEntry {
    fn endpoints(&self) -> &[WorkloadEntry] {
        self.endpoints.as_deref().unwrap_or_default()
    }

    fn validate_spec(&self, v: &mut Validator) {
        if let Some(sel) = &self.workload_selector {
            validate_alpha_workload_selector(v, sel, "service entry");
            if self.endpoints.is_some() {
                v.error_at("endpoints", "only one of WorkloadSelector or Endpoints can be set: endpoints are the listed addresses, a selector picks pods and WorkloadEntries");
            }
        }

        if self.hosts.is_empty() {
            v.error_at(
                "hosts",
                "Required value: service entry must have at least one host",
            );
        }
        check_max_items(v, "hosts", self.hosts.len(), 256);
        v.each("hosts", &self.hosts, |v, host| {
            if host == "*" {
                v.error("hostname cannot be wildcard: \"*\" would capture every host; use a domain such as *.example.com");
                return;
            }
            if let Err(e) = validate_wildcard_domain(host) {
                v.error(e);
            }
            if let Err(e) = validate_partial_wildcard(host) {
                v.warn(e);
            }
        });

        self.validate_addresses(v);
        let port_names = self.validate_ports(v);

        let endpoints = self.endpoints();
        check_max_items(v, "endpoints", endpoints.len(), 4096);
        match self.resolution {
            Resolution::None => {
                if self.endpoints.is_some() {
                    v.error_at("endpoints", "NONE mode cannot set endpoints: with resolution NONE traffic goes to the address the caller used; remove endpoints or use STATIC or DNS");
                }
                if self.workload_selector.is_some() {
                    v.warn_at(
                        "workloadSelector",
                        "workloadSelector should not be set when resolution mode is NONE",
                    );
                }
                self.each_endpoint(v, AddressRule::SchemaOnly, &port_names);
            }
            Resolution::Static => self.each_endpoint(v, AddressRule::Static, &port_names),
            Resolution::Dns | Resolution::DnsRoundRobin => {
                if endpoints.is_empty() {
                    v.each("hosts", &self.hosts, |v, host| {
                        if host != "*" && validate_fqdn(host).is_err() {
                            v.error(format!("hosts must be FQDN if no endpoints are provided for resolution mode {}: \"{host}\" can't be looked up in DNS", self.resolution));
                        }
                    });
                }
                if self.resolution == Resolution::DnsRoundRobin && endpoints.len() > 1 {
                    v.error_at("endpoints", format!("DNS_ROUND_ROBIN mode cannot have multiple endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN (got {})", endpoints.len()));
                }
                self.each_endpoint(v, AddressRule::Dns, &port_names);
                if !self.addresses.is_empty() && self.hosts.len() > 1 && self.has_tcp_port() {
                    v.warn("service entry can not have more than one host specified simultaneously with address and tcp port");
                }
            }
            Resolution::DynamicDns => {
                if !endpoints.is_empty() {
                    v.warn_at("endpoints", "endpoints are not used with resolution DYNAMIC_DNS: each request's host is resolved when it arrives");
                }
                self.each_endpoint(v, AddressRule::SchemaOnly, &port_names);
            }
        }

        // With plain TCP the proxy can't tell several hosts apart (no Host header, no SNI).
        if self.resolution != Resolution::None && self.hosts.len() > 1 {
            let bad = self.ports.iter().position(|p| {
                !Protocol::parse(&p.protocol).is_some_and(|p| p.is_http() || p.is_tls())
            });
            if let Some(i) = bad {
                v.field("ports", |v| v.index(i, |v| v.error(format!(
                    "multiple hosts provided with non-HTTP, non-TLS ports: port \"{}\" ({}) can't tell the {} hosts apart; use HTTP/TLS protocols, one host per ServiceEntry, or resolution NONE",
                    self.ports[i].name,
                    if self.ports[i].protocol.is_empty() { "no protocol" } else { &self.ports[i].protocol },
                    self.hosts.len()
                ))));
            }
        }

        validate_export_to(v, &self.export_to, true, false);
    }

    fn validate_addresses(&self, v: &mut Validator) {
        check_max_items(v, "addresses", self.addresses.len(), 256);
        let mut cidr = false;
        v.each("addresses", &self.addresses, |v, a| {
            cidr |= a.contains('/');
            if a.chars().count() > 64 {
                v.error("Too long: may not be more than 64 bytes");
            } else if let Err(e) = validate_ip_subnet(a) {
                v.error(e);
            }
        });
        if cidr && !matches!(self.resolution, Resolution::None | Resolution::Static) {
            v.error_at(
                "addresses",
                format!("CIDR addresses are allowed only for NONE/STATIC resolution types (resolution is {})", self.resolution),
            );
        }
    }

    /// Checks `ports` and returns the declared port names.
    fn validate_ports(&self, v: &mut Validator) -> BTreeSet<String> {
        let auto_allocation = self.resolution != Resolution::None
            && self.addresses.is_empty()
            && !v
                .ctx
                .labels
                .get("networking.istio.io/enable-autoallocate-ip")
                .is_some_and(|l| l.eq_ignore_ascii_case("false"));
        check_max_items(v, "ports", self.ports.len(), 256);
        let mut names = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        v.each("ports", &self.ports, |v, p| {
            check_max_len(v, "name", &p.name, 256);
            check_max_len(v, "protocol", &p.protocol, 256);
            if p.name.is_empty() {
                v.error_at(
                    "name",
                    "Required value: every service entry port needs a name",
                );
            } else if !names.insert(p.name.clone()) {
                v.error_at(
                    "name",
                    format!(
                        "Duplicate value: service entry port name \"{}\" already defined",
                        p.name
                    ),
                );
            } else if let Err(e) = validate_port_name(&p.name) {
                v.error_at("name", e);
            }
            if !numbers.insert(p.number) {
                v.error_at(
                    "number",
                    format!("port number cannot be duplicated: {} is already defined", p.number),
                );
            }
            if !(1..=65535).contains(&p.number) {
                v.error_at(
                    "number",
                    format!("port must be between 1-65535 (got {})", p.number),
                );
            }
            if p.target_port != 0 && p.target_port > 65535 {
                v.error_at(
                    "targetPort",
                    format!("port must be between 1-65535 (got {})", p.target_port),
                );
            }
            if !p.protocol.is_empty() && Protocol::parse(&p.protocol).is_none() {
                v.error_at(
                    "protocol",
                    format!(
                        "unsupported protocol: {} ({})",
                        p.protocol,
                        unknown_protocol_hint(&p.protocol)
                    ),
                );
            }
            if !auto_allocation
                && self.addresses.is_empty()
                && (p.protocol.is_empty() || p.protocol == "TCP")
            {
                v.warn("addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled: without an address the proxy can't tell this service's TCP traffic from others on the same port");
            }
        });
        names
    }

    fn each_endpoint(&self, v: &mut Validator, rule: AddressRule, ports: &BTreeSet<String>) {
        v.each("endpoints", self.endpoints(), |v, e| {
            validate_entry(v, e, rule, Some(ports));
        });
    }

    fn has_tcp_port(&self) -> bool {
        self.ports
            .iter()
            .any(|p| Protocol::parse(&p.protocol).is_some_and(Protocol::is_tcp))
    }
}

#[cfg(test)]
#[path = "service_entry_tests.rs"]
mod tests;

//! Where a Service's pods are: `corev1.Endpoints` and `discovery.k8s.io/v1` EndpointSlice.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::checks::{
    check_dns1123_label, check_dns1123_subdomain, check_port_num, check_qualified_name,
};
use super::core::ObjectReference;
use super::protocol::{MeshProtocol, Protocol, convert_protocol};
use crate::validate::common::is_dns1123_subdomain;
use crate::validate::{Validate, Validator};

/// `corev1.Endpoints` (deprecated in favour of EndpointSlice, still widely written).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Endpoints {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<EndpointSubset>,
}

/// A set of addresses that all serve the same ports.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSubset {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<EndpointAddress>,
    /// Addresses not (yet) ready to receive traffic.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointAddress {
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The pod (usually) behind the address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
}

/// A port of `corev1.Endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointPort {
    /// Matches the Service port's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: i32,
    #[serde(
        default,
        deserialize_with = "Protocol::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl EndpointPort {
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or_default()
    }

    pub fn mesh_protocol(&self) -> MeshProtocol {
        convert_protocol(
            self.port,
            &self.name,
            self.protocol(),
            self.app_protocol.as_deref(),
        )
    }
}

/// `discovery.k8s.io/v1` EndpointSlice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlice {
    /// Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_type: Option<AddressType>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointSlicePort>,
}

kube_enum! {
    /// `discovery.v1.AddressType`.
    pub enum AddressType {
        Ipv4 = "IPv4",
        Ipv6 = "IPv6",
        Fqdn = "FQDN",
    }
}

/// `discovery.v1.Endpoint`: one backend (usually a pod) with 1–100 addresses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Endpoint {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    pub conditions: EndpointConditions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<ObjectReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hints: Option<EndpointHints>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub deprecated_topology: BTreeMap<String, String>,
}

/// Readiness of an endpoint. Absent `ready` or `serving` means true (unknown state is
/// treated as ready); absent `terminating` means false.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointConditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
}

impl EndpointConditions {
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }
    pub fn is_serving(&self) -> bool {
        self.serving.unwrap_or_else(|| self.is_ready())
    }
    pub fn is_terminating(&self) -> bool {
        self.terminating.unwrap_or(false)
    }
}

/// Topology-aware routing hints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointHints {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub for_zones: Vec<NameRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub for_nodes: Vec<NameRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NameRef {
    pub name: String,
}

/// A port of an EndpointSlice. An absent `port` means "all ports".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlicePort {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "Protocol::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol: Option<Protocol>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl EndpointSlicePort {
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or_default()
    }

    pub fn mesh_protocol(&self) -> MeshProtocol {
        convert_protocol(
            self.port.unwrap_or(0),
            &self.name,
            self.protocol(),
            self.app_protocol.as_deref(),
        )
    }
}

impl EndpointSlice {
    /// The Service the slice belongs to (label `kubernetes.io/service-name`).
    pub fn service_name<'a>(&self, labels: &'a BTreeMap<String, String>) -> Option<&'a str> {
        labels.get("kubernetes.io/service-name").map(String::as_str)
    }
}

/// `ValidateNonSpecialIP`: endpoints may not be unspecified, loopback or link-local.
fn special_ip_error(ip: &IpAddr) -> Option<&'static str> {
    match ip {
        _ if ip.is_unspecified() => Some("may not be unspecified (0.0.0.0 or ::)"),
        _ if ip.is_loopback() => Some("may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        IpAddr::V4(v4) if v4.octets()[..3] == [224, 0, 0] => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xff0f) == 0xff02 => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        _ => None,
    }
}

/// An endpoint IP at the current path; `family` restricts it to IPv4 or IPv6.
fn check_endpoint_ip(v: &mut Validator, ip: &str, family: Option<AddressType>) {
    let parsed = ip.parse::<IpAddr>();
    let Ok(addr) = parsed else {
        let what = match family {
            Some(AddressType::Ipv4) => "an IPv4 address",
            Some(AddressType::Ipv6) => "an IPv6 address",
            _ => "a valid IP address",
        };
        v.error(format!("Invalid value: \"{ip}\": must be {what}"));
        return;
    };
    match (family, addr) {
        (Some(AddressType::Ipv4), IpAddr::V6(_)) => {
            v.error(format!("Invalid value: \"{ip}\": must be an IPv4 address"));
        }
        (Some(AddressType::Ipv6), IpAddr::V4(_)) => {
            v.error(format!("Invalid value: \"{ip}\": must be an IPv6 address"));
        }
        _ => {
            if let Some(e) = special_ip_error(&addr) {
                v.error(format!("Invalid value: \"{ip}\": {e}"));
            }
        }
    }
}

impl Validate for Endpoints {
    fn validate(&self, v: &mut Validator) {
        v.each("subsets", &self.subsets, |v, ss| {
            if ss.addresses.is_empty() && ss.not_ready_addresses.is_empty() {
                v.error("Required value: must specify `addresses` or `notReadyAddresses`");
            }
            for (field, addrs) in [
                ("addresses", &ss.addresses),
                ("notReadyAddresses", &ss.not_ready_addresses),
            ] {
                v.each(field, addrs, |v, a| {
                    v.field("ip", |v| check_endpoint_ip(v, &a.ip, None));
                    if !a.hostname.is_empty() {
                        v.field("hostname", |v| check_dns1123_label(v, &a.hostname));
                    }
                    if let Some(node) = a.node_name.as_deref().filter(|n| !n.is_empty()) {
                        v.field("nodeName", |v| check_dns1123_subdomain(v, node));
                    }
                });
            }
            let several = ss.ports.len() > 1;
            v.each("ports", &ss.ports, |v, p| {
                if p.name.is_empty() {
                    if several {
                        v.error_at(
                            "name",
                            "Required value: each port must be named when there is more than one",
                        );
                    }
                } else {
                    v.field("name", |v| check_dns1123_label(v, &p.name));
                }
                check_port_num(v, "port", i64::from(p.port));
                if let Some(app) = &p.app_protocol {
                    check_qualified_name(v, "appProtocol", app);
                }
            });
        });
    }
}

impl Validate for EndpointSlice {
    fn validate(&self, v: &mut Validator) {
        if self.address_type.is_none() {
            v.error_at("addressType", "Required value: one of IPv4, IPv6, FQDN");
        }
        if self.endpoints.len() > 1000 {
            v.error_at(
                "endpoints",
                format!(
                    "Too many: {}: must have at most 1000 items",
                    self.endpoints.len()
                ),
            );
        }
        v.each("endpoints", &self.endpoints, |v, e| {
            if e.addresses.is_empty() {
                v.error_at(
                    "addresses",
                    "Required value: must contain at least 1 address",
                );
            } else if e.addresses.len() > 100 {
                v.error_at(
                    "addresses",
                    format!(
                        "Too many: {}: must have at most 100 items",
                        e.addresses.len()
                    ),
                );
            }
            v.field("addresses", |v| {
                for (i, a) in e.addresses.iter().enumerate() {
                    v.index(i, |v| match self.address_type {
                        Some(AddressType::Fqdn) => check_fqdn(v, a),
                        family @ Some(_) => check_endpoint_ip(v, a, family),
                        None => {}
                    });
                }
            });
            if let Some(h) = &e.hostname {
                v.field("hostname", |v| check_dns1123_label(v, h));
            }
        });
        if self.ports.len() > 100 {
            v.error_at(
                "ports",
                format!(
                    "Too many: {}: must have at most 100 items",
                    self.ports.len()
                ),
            );
        }
        let mut names = BTreeSet::new();
        v.each("ports", &self.ports, |v, p| {
            v.field("name", |v| {
                if !p.name.is_empty() {
                    check_dns1123_label(v, &p.name);
                }
                if !names.insert(p.name.clone()) {
                    v.error(format!("Duplicate value: \"{}\"", p.name));
                }
            });
            if let Some(app) = &p.app_protocol {
                check_qualified_name(v, "appProtocol", app);
            }
        });
    }
}

/// `IsFullyQualifiedDomainName`: a DNS subdomain of at least two labels (trailing dot allowed).
fn check_fqdn(v: &mut Validator, name: &str) {
    let n = name.strip_suffix('.').unwrap_or(name);
    if !is_dns1123_subdomain(n) {
        check_dns1123_subdomain(v, n);
    } else if !n.contains('.') {
        v.error(format!(
            "Invalid value: \"{name}\": should be a domain with at least two segments separated by dots"
        ));
    }
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;

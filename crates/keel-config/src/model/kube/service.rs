//! `corev1.Service`: the hostnames, ports and pod selectors the mesh builds its registry from.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checks::{
    check_dns1123_label, check_dns1123_subdomain, check_port_num, check_port_num_or_name,
    check_qualified_name, is_dns1035_label, is_ip,
};
use super::pod::PodSpec;
use super::protocol::{MeshProtocol, Protocol, convert_protocol};
use crate::types::IntOrString;
use crate::validate::common::{is_dns1123_subdomain, validate_labels};
use crate::validate::{Validate, Validator};

/// `corev1.Service`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Service {
    pub spec: ServiceSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

/// `corev1.ServiceSpec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Pods with all these labels back the Service. Empty: endpoints are managed by hand.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// The virtual IP; `None` makes a headless Service (clients reach pods directly).
    #[serde(rename = "clusterIP", skip_serializing_if = "String::is_empty")]
    pub cluster_ip: String,
    #[serde(rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "ServiceType::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub type_: Option<ServiceType>,
    #[serde(rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    #[serde(
        default,
        deserialize_with = "SessionAffinity::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_affinity: Option<SessionAffinity>,
    #[serde(rename = "loadBalancerIP", skip_serializing_if = "String::is_empty")]
    pub load_balancer_ip: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
    /// For `type: ExternalName`: the DNS name the Service is an alias of.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_name: String,
    #[serde(
        default,
        deserialize_with = "TrafficPolicy::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_traffic_policy: Option<TrafficPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<i32>,
    /// Include not-ready pods in endpoints (used by StatefulSet peer discovery).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub publish_not_ready_addresses: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<IpFamily>,
    #[serde(
        default,
        deserialize_with = "IpFamilyPolicy::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_family_policy: Option<IpFamilyPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    #[serde(
        default,
        deserialize_with = "TrafficPolicy::deserialize_optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_traffic_policy: Option<TrafficPolicy>,
    /// Routing preference (`PreferClose`, `PreferSameZone`, `PreferSameNode`); the set
    /// grows with Kubernetes versions, so it is kept as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<String>,
}

kube_enum! {
    /// `corev1.ServiceType`.
    pub enum ServiceType {
        ClusterIp = "ClusterIP",
        NodePort = "NodePort",
        LoadBalancer = "LoadBalancer",
        /// A DNS alias (`externalName`); no proxying, no endpoints.
        ExternalName = "ExternalName",
    }
}

kube_enum! {
    /// `corev1.ServiceAffinity`.
    pub enum SessionAffinity {
        None = "None",
        ClientIp = "ClientIP",
    }
}

kube_enum! {
    /// `externalTrafficPolicy` / `internalTrafficPolicy`: any node's endpoints, or only the
    /// receiving node's.
    pub enum TrafficPolicy {
        Cluster = "Cluster",
        Local = "Local",
    }
}

kube_enum! {
    /// `corev1.IPFamily`.
    pub enum IpFamily {
        Ipv4 = "IPv4",
        Ipv6 = "IPv6",
    }
}

kube_enum! {
    /// `corev1.IPFamilyPolicy`.
    pub enum IpFamilyPolicy {
        SingleStack = "SingleStack",
        PreferDualStack = "PreferDualStack",
        RequireDualStack = "RequireDualStack",
    }
}

/// `corev1.ServicePort`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    /// Required when the Service has several ports; Istio infers the protocol from its
    /// prefix (`http-…`, `grpc-…`) when `appProtocol` is not set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `TCP`, `UDP` or `SCTP` as written. Kept as text so that a Service with another value
    /// (Istio's own analyzer fixtures use `HTTP`) is still read: validation reports it, and
    /// the registry treats it as TCP, as Istio does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    pub port: i32,
    /// The pods' port: a number, or the name of a container port. Defaults to `port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

/// `corev1.ServiceStatus`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerStatus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// An address the load balancer serves the Service on (what an ingress gateway advertises).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerIngress {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<serde_json::Value>,
}

impl ServicePort {
    /// The transport (`TCP` unless said otherwise).
    pub fn protocol(&self) -> Protocol {
        self.protocol
            .as_deref()
            .and_then(Protocol::from_name)
            .unwrap_or_default()
    }

    /// The pods' port, defaulting to `port` as Kubernetes does (also for `targetPort: 0`).
    pub fn target_port(&self) -> IntOrString {
        match &self.target_port {
            None | Some(IntOrString::Int(0)) => IntOrString::Int(i64::from(self.port)),
            Some(t) => t.clone(),
        }
    }

    /// The application protocol Istio infers (`appProtocol`, else the name's prefix).
    pub fn mesh_protocol(&self) -> MeshProtocol {
        convert_protocol(
            self.port,
            &self.name,
            self.protocol(),
            self.app_protocol.as_deref(),
        )
    }
}

impl Service {
    pub fn service_type(&self) -> ServiceType {
        self.spec.type_.unwrap_or(ServiceType::ClusterIp)
    }

    /// `clusterIP: None`: no virtual IP; clients resolve and reach the pods directly.
    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip == "None"
    }

    pub fn is_external_name(&self) -> bool {
        self.service_type() == ServiceType::ExternalName
    }

    pub fn port_by_name(&self, name: &str) -> Option<&ServicePort> {
        self.spec.ports.iter().find(|p| p.name == name)
    }

    /// The port with this number (of any transport protocol; TCP first if both exist).
    pub fn port_by_number(&self, port: i32) -> Option<&ServicePort> {
        let mut matching = self.spec.ports.iter().filter(|p| p.port == port);
        let first = matching.next()?;
        if first.protocol() == Protocol::Tcp {
            return Some(first);
        }
        Some(
            matching
                .find(|p| p.protocol() == Protocol::Tcp)
                .unwrap_or(first),
        )
    }

    /// Whether the Service routes to a pod with these labels. A Service without a selector
    /// selects nothing (its endpoints are managed by hand).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.spec.selector.is_empty()
            && self
                .spec
                .selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The pod port a Service port sends to, resolving a named `targetPort` against the
    /// pod's containers. `None` if the name is not a port of this pod.
    pub fn resolve_target_port(&self, port: &ServicePort, pod: &PodSpec) -> Option<i32> {
        pod.resolve_port(&port.target_port())
    }

    /// The cluster IPs (`clusterIPs`, else `clusterIP`), without `None`.
    pub fn cluster_ips(&self) -> Vec<&str> {
        let ips: Vec<&str> = if self.spec.cluster_ips.is_empty() {
            vec![self.spec.cluster_ip.as_str()]
        } else {
            self.spec.cluster_ips.iter().map(String::as_str).collect()
        };
        ips.into_iter()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .collect()
    }

    /// Addresses the load balancer reports (IP or hostname).
    pub fn load_balancer_addresses(&self) -> Vec<&str> {
        self.status
            .iter()
            .flat_map(|s| &s.load_balancer)
            .flat_map(|lb| &lb.ingress)
            .map(|i| if i.ip.is_empty() { &i.hostname } else { &i.ip })
            .filter(|a| !a.is_empty())
            .map(String::as_str)
            .collect()
    }
}

impl Validate for Service {
    fn validate(&self, v: &mut Validator) {
        let name = v.ctx.name.clone();
        // Names that are not even DNS subdomains are reported by the metadata rules.
        if is_dns1123_subdomain(&name) && !is_dns1035_label(&name) {
            v.field("metadata", |v| {
                v.error_at(
                    "name",
                    format!(
                        "Invalid value: \"{name}\": a Service name must be a DNS-1035 label: lower case alphanumeric characters or '-', starting with a letter and ending with an alphanumeric character, at most 63 characters"
                    ),
                )
            });
        }
        v.field("spec", |v| self.validate_spec(v));
    }
}

impl Service {
    fn validate_spec(&self, v: &mut Validator) {
        let spec = &self.spec;
        let ty = self.service_type();
        if spec.ports.is_empty() && !self.is_headless() && ty != ServiceType::ExternalName {
            v.warn_at(
                "ports",
                "Required value: a Service that is neither headless nor ExternalName needs ports; the API server rejects it",
            );
        }
        let several = spec.ports.len() > 1;
        let mut names = BTreeSet::new();
        let mut seen = BTreeSet::new();
        v.each("ports", &spec.ports, |v, p| {
            if p.name.is_empty() {
                if several {
                    v.error_at(
                        "name",
                        "Required value: each port must be named when a Service has more than one",
                    );
                }
            } else {
                v.field("name", |v| {
                    check_dns1123_label(v, &p.name);
                    if !names.insert(p.name.clone()) {
                        v.error(format!("Duplicate value: \"{}\"", p.name));
                    }
                });
            }
            check_port_num(v, "port", i64::from(p.port));
            if let Some(proto) = p.protocol.as_deref()
                && !proto.is_empty()
                && Protocol::from_name(proto).is_none()
            {
                v.error_at("protocol", super::checks::unsupported(proto, Protocol::NAMES));
            }
            if !seen.insert((p.port, p.protocol())) {
                v.error(format!(
                    "Duplicate value: port {}/{} is already defined",
                    p.port,
                    p.protocol()
                ));
            }
            if let Some(t) = &p.target_port
                && *t != IntOrString::Int(0)
            {
                v.field("targetPort", |v| check_port_num_or_name(v, t));
            }
            if let Some(app) = &p.app_protocol {
                check_qualified_name(v, "appProtocol", app);
            }
            if let Some(np) = p.node_port
                && np != 0
            {
                check_port_num(v, "nodePort", i64::from(np));
                if ty == ServiceType::ClusterIp {
                    v.warn_at(
                        "nodePort",
                        "Forbidden: may not be used when `type` is 'ClusterIP'; the API server rejects it",
                    );
                }
            }
        });
        if ty == ServiceType::ExternalName {
            let en = spec
                .external_name
                .strip_suffix('.')
                .unwrap_or(&spec.external_name);
            if en.is_empty() {
                v.error_at(
                    "externalName",
                    "Required value: a Service of type ExternalName needs externalName, the DNS name it stands for",
                );
            } else {
                v.field("externalName", |v| check_dns1123_subdomain(v, en));
            }
        }
        let ip_ok = |ip: &str| ip.is_empty() || ip == "None" || is_ip(ip);
        if !ip_ok(&spec.cluster_ip) {
            v.error_at(
                "clusterIP",
                format!(
                    "Invalid value: \"{}\": must be empty, 'None', or a valid IP address",
                    spec.cluster_ip
                ),
            );
        }
        v.field("clusterIPs", |v| {
            for (i, ip) in spec.cluster_ips.iter().enumerate() {
                if !ip_ok(ip) {
                    v.index(i, |v| {
                        v.error(format!(
                            "Invalid value: \"{ip}\": must be empty, 'None', or a valid IP address"
                        ))
                    });
                }
            }
            if let Some(first) = spec.cluster_ips.first()
                && !spec.cluster_ip.is_empty()
                && *first != spec.cluster_ip
            {
                v.index(0, |v| {
                    v.error(format!(
                        "Invalid value: \"{first}\": must match clusterIP \"{}\"",
                        spec.cluster_ip
                    ))
                });
            }
        });
        v.field("externalIPs", |v| {
            for (i, ip) in spec.external_ips.iter().enumerate() {
                if !is_ip(ip) {
                    v.index(i, |v| {
                        v.error(format!(
                            "Invalid value: \"{ip}\": must be a valid IP address"
                        ))
                    });
                }
            }
        });
        validate_labels(v, "selector", &spec.selector);
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

//! `Sidecar` (networking.istio.io v1, v1beta1, v1alpha3): fine-tunes the ports and protocols
//! a workload's proxy accepts (ingress), the services it can reach (egress), and its outbound
//! traffic policy.
//!
//! The model follows `networking/v1alpha3/sidecar.proto`; listener ports and inbound TLS reuse
//! Gateway's `Port` and `ServerTlsSettings`, connection pools DestinationRule's
//! `ConnectionPoolSettings`, the workload selector ServiceEntry's (`labels`). Istio's
//! `ValidateSidecar` and the CRD's constraints are in `sidecar_validate.rs`.

use serde::{Deserialize, Serialize};

use super::destination_rule::ConnectionPoolSettings;
use super::gateway::{Port, ServerTlsSettings};
use super::service_entry::WorkloadSelector;
use super::virtual_service::Destination;
use crate::istio_enum;
use crate::validate::{Validate, Validator};

/// `istio.networking.v1alpha3.Sidecar`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Sidecar {
    /// Workloads (in the Sidecar's namespace) this applies to; absent means every workload in
    /// the namespace (or, in the root namespace, the mesh-wide default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Inbound listeners; absent means Istio derives them from the workload's services.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IstioIngressListener>,
    /// Outbound listeners and the hosts they import; absent means every visible service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<IstioEgressListener>,
    /// Limits on connections the proxy accepts for the workload (all inbound ports unless an
    /// ingress listener sets its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// Overrides the mesh's `outboundTrafficPolicy` for these workloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// `IstioIngressListener`: one inbound listener of the proxy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IstioIngressListener {
    /// The port the proxy listens on (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// IP to bind to; empty means Istio picks one from the workload.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bind: String,
    #[serde(skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Where traffic goes: `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`, `[::]:PORT`, `:PORT`
    /// or `unix:///path`; empty means the workload's IP on the listener's port.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    /// Terminate TLS for clients outside the mesh on this port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Limits on accepted connections for this port (overrides `inboundConnectionPool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// `IstioEgressListener`: one outbound listener and the hosts it exposes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IstioEgressListener {
    /// The listener's port (0 with a Unix socket `bind`); absent makes this the catch-all
    /// listener, which must come last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// IP or Unix socket (`unix:///path`, `unix://@name`) to bind to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bind: String,
    #[serde(skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Services imported, as `namespace/dnsName`: namespace `*` (any), `.` (the Sidecar's),
    /// `~` (none) or a name; dnsName `*`, `*.suffix` or an FQDN (required).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// `OutboundTrafficPolicy`: what happens to traffic to destinations not in the registry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct OutboundTrafficPolicy {
    #[serde(skip_serializing_if = "is_default")]
    pub mode: OutboundTrafficPolicyMode,
    /// Deprecated and ignored by Istio: where unknown traffic is sent in ALLOW_ANY mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<Destination>,
}

istio_enum! {
    /// `OutboundTrafficPolicy.Mode`.
    pub enum OutboundTrafficPolicyMode {
        /// Only services in the registry (Kubernetes services, ServiceEntries) are reachable.
        RegistryOnly = "REGISTRY_ONLY" = 0,
        /// Unknown destinations are passed through.
        AllowAny = "ALLOW_ANY" = 1,
    }
}

istio_enum! {
    /// `CaptureMode`: how traffic reaches a listener bound to an IP.
    pub enum CaptureMode {
        /// The environment's default.
        Default = "DEFAULT" = 0,
        /// Redirected with iptables.
        Iptables = "IPTABLES" = 1,
        /// Not captured: the application talks to the listener directly.
        None = "NONE" = 2,
    }
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

impl Validate for Sidecar {
    fn validate(&self, v: &mut Validator) {
        validate::validate(self, v);
    }
}

#[path = "sidecar_validate.rs"]
mod validate;

#[cfg(test)]
#[path = "sidecar_tests.rs"]
mod tests;

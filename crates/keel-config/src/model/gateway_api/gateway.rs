//! `Gateway` (gateway.networking.k8s.io): listeners bound to addresses.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::kube::LabelSelector;
use crate::model::kube::checks::check_port_num;
use crate::validate::{Validate, Validator};

/// `gateway.networking.k8s.io` `Gateway`. Istio programs a gateway deployment for each one
/// whose class it controls (`istio`, `istio-waypoint`, …).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Gateway {
    pub spec: GatewaySpec,
    /// As written (conditions, addresses and listener status set by the controller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `GatewaySpec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpec {
    /// The GatewayClass whose controller implements this Gateway.
    pub gateway_class_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
    /// Addresses requested for the Gateway (IPs or hostnames of a load balancer).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewaySpecAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
    /// Which ListenerSets may attach (experimental; kept as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_listeners: Option<serde_json::Value>,
    /// Gateway-wide frontend and backend TLS (kept as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_scope: Option<String>,
}

/// A logical endpoint where the Gateway accepts connections.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Listener {
    /// Unique within the Gateway; routes attach to it by `sectionName`.
    pub name: String,
    /// The host (or `*.suffix`) this listener serves; absent or empty means every host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP`, or an implementation's own (Istio: `HBONE`).
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach (default: routes in the Gateway's namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

impl Listener {
    /// The hostname, `None` when absent or empty (both mean every host).
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref().filter(|h| !h.is_empty())
    }
}

/// `ListenerTLSConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListenerTls {
    /// `Terminate` (the default) or `Passthrough`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Secrets holding the certificate and key (Istio reads `tls.crt`/`tls.key`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Client certificate validation of older releases (kept as written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend_validation: Option<serde_json::Value>,
}

/// A reference to a Secret (or another kind holding certificates).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretObjectReference {
    /// Empty for core (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Secret` unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    /// The referrer's namespace unless set (another one needs a ReferenceGrant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `AllowedRoutes`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AllowedRoutes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Route kinds that may attach; empty means those matching the protocol.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

/// `RouteNamespaces`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteNamespaces {
    /// `Same` (the default), `All`, `Selector` or `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Namespaces allowed when `from` is `Selector`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// `RouteGroupKind`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteGroupKind {
    /// `gateway.networking.k8s.io` unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub kind: String,
}

/// `GatewaySpecAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewaySpecAddress {
    /// `IPAddress` (the default), `Hostname`, or an implementation's own (Istio: a
    /// Service name).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// `GatewayInfrastructure`: what the deployed gateway's objects carry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayInfrastructure {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Implementation-specific settings (Istio: a ConfigMap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<super::ParametersReference>,
}

impl Validate for Gateway {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| {
            let mut names = BTreeSet::new();
            v.each("listeners", &self.spec.listeners, |v, l| {
                if let Some(port) = l.port {
                    check_port_num(v, "port", port);
                }
                if !names.insert(l.name.clone()) {
                    v.error_at(
                        "name",
                        format!(
                            "Duplicate value: \"{}\": Listener name must be unique within the Gateway",
                            l.name
                        ),
                    );
                }
            });
        });
    }
}

//! The route kinds (HTTPRoute, GRPCRoute, TCPRoute, TLSRoute): which Gateways (or, for the
//! mesh, Services) they attach to, for which hosts, and their rules.

use serde::{Deserialize, Serialize};

use crate::model::kube::checks::check_port_num;
use crate::validate::{Validate, Validator};

/// A Gateway API route. The four route kinds share what Keel reads of them; rules are kept
/// as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Route {
    pub spec: RouteSpec,
    /// As written (`parents[*].conditions` set by each parent's controller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `HTTPRoute`.
pub type HttpRoute = Route;
/// `GRPCRoute`.
pub type GrpcRoute = Route;
/// `TCPRoute` (no hostnames).
pub type TcpRoute = Route;
/// `TLSRoute` (hostnames match the SNI).
pub type TlsRoute = Route;

/// The spec common to the route kinds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteSpec {
    /// What the route attaches to: Gateways (and their listeners), or Services for mesh
    /// traffic (GAMMA).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    /// Hosts the route serves (HTTPRoute, GRPCRoute, TLSRoute); empty means those of the
    /// listener.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Matches, filters and backends (kept as written).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<serde_json::Value>,
    /// Attach to default Gateways (experimental).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_default_gateways: Option<String>,
}

/// `ParentReference`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParentReference {
    /// `gateway.networking.k8s.io` unless set; `""` for a core Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `Gateway` unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The route's namespace unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// A listener name (of a Gateway) or port name (of a Service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

impl ParentReference {
    /// The group, defaulted.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(super::GROUP)
    }

    /// The kind, defaulted.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("Gateway")
    }

    /// The namespace, defaulting to the route's.
    pub fn namespace<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(route_namespace)
    }

    /// Whether it names a Gateway API Gateway.
    pub fn is_gateway(&self) -> bool {
        self.group() == super::GROUP && self.kind() == "Gateway"
    }
}

impl Validate for Route {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| {
            v.each("parentRefs", &self.spec.parent_refs, |v, p| {
                if let Some(port) = p.port {
                    check_port_num(v, "port", port);
                }
            });
        });
    }
}

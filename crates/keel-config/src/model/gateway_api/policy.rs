//! GatewayClass (which controller implements a Gateway) and ReferenceGrant (which
//! cross-namespace references a namespace allows).

use serde::{Deserialize, Serialize};

use crate::validate::{Validate, Validator};

/// `GatewayClass` (cluster-scoped). Istio's controller is `istio.io/gateway-controller`
/// (classes `istio`, `istio-waypoint`, `istio-remote`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClass {
    pub spec: GatewayClassSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `GatewayClassSpec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GatewayClassSpec {
    pub controller_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<ParametersReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A reference to implementation-specific parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParametersReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `ReferenceGrant`: lets objects of the `from` kinds in other namespaces refer to objects
/// of the `to` kinds in this one (e.g. an HTTPRoute to a Service, a Gateway to a Secret).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferenceGrant {
    pub spec: ReferenceGrantSpec,
}

/// `ReferenceGrantSpec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferenceGrantSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<ReferenceGrantFrom>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<ReferenceGrantTo>,
}

/// Who may refer: a kind in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferenceGrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

/// What may be referred to: a kind in the grant's namespace, all of them or one by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReferenceGrantTo {
    pub group: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ReferenceGrant {
    /// Whether it lets a `from_kind` (of `from_group`) in `from_namespace` refer to the
    /// `to_kind` (of `to_group`) named `to_name` in the grant's namespace.
    pub fn allows(
        &self,
        (from_group, from_kind, from_namespace): (&str, &str, &str),
        (to_group, to_kind, to_name): (&str, &str, &str),
    ) -> bool {
        self.spec
            .from
            .iter()
            .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_namespace)
            && self.spec.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name
                        .as_deref()
                        .is_none_or(|n| n.is_empty() || n == to_name)
            })
    }
}

impl Validate for GatewayClass {
    fn validate(&self, _v: &mut Validator) {}
}

impl Validate for ReferenceGrant {
    fn validate(&self, _v: &mut Validator) {}
}

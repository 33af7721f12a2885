//! `AuthorizationPolicy` (security.istio.io v1, v1beta1): access control on workloads —
//! which requests are allowed, denied, audited or sent to an external authorizer.

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::model::common::{PolicyTargetReference, WorkloadSelector};

#[path = "authorization_policy_validate.rs"]
mod validate_impl;

#[cfg(test)]
#[path = "authorization_policy_tests.rs"]
mod tests;

/// `istio.security.v1beta1.AuthorizationPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuthorizationPolicy {
    /// Workloads the policy applies to; absent means every workload in the namespace (or
    /// the mesh, in the root namespace). At most one of selector, targetRef, targetRefs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateways, Services or ServiceEntries the policy applies to (same namespace).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Absent means "no rule matches" (an ALLOW policy then denies everything); `[{}]`
    /// means "every request matches". Istio tells the two apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    pub action: Action,
    /// The external authorizer of a CUSTOM policy (oneof `action_detail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

istio_enum! {
    /// `AuthorizationPolicy.Action`.
    pub enum Action {
        /// Allow a request only if it matches a rule (the default).
        Allow = "ALLOW" = 0,
        /// Deny a request if it matches any rule.
        Deny = "DENY" = 1,
        /// Audit a request if it matches any rule (no effect on the decision).
        Audit = "AUDIT" = 2,
        /// Hand matching requests to the extension named in `provider`.
        Custom = "CUSTOM" = 3,
    }
}

/// `AuthorizationPolicy.ExtensionProvider`: a provider declared in MeshConfig.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ExtensionProvider {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// A rule matches when one source, one operation and every condition match; `{}` matches all.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Rule {
    /// Absent means any source; an empty list is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<RuleFrom>>,
    /// Absent means any operation; an empty list is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// `Rule.From`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RuleFrom {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `Rule.To`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RuleTo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Who sent the request. Fields are ANDed; values in a list are ORed. Every value supports
/// exact, `prefix*`, `*suffix` and `*` (present) matching.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Source {
    /// Peer identities from the mTLS certificate, `<trust domain>/ns/<ns>/sa/<sa>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// Request identities from the JWT, `<iss>/<sub>`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer identity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Service accounts of the peer, `sa` (policy's namespace) or `ns/sa`; no wildcards,
    /// not combinable with principals or namespaces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// Source IPs or CIDRs of the connection.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// Client IPs or CIDRs from X-Forwarded-For or the PROXY protocol.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    /// Trust domains of the peer identity.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

/// What the request does. Fields are ANDed; values in a list are ORed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Operation {
    /// Hosts (`:authority`), matched case-insensitively; HTTP only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports, as decimal strings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// HTTP methods; HTTP only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Normalized URL paths; also `{*}` / `{**}` path templates. HTTP only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// An extra condition on an Istio attribute (e.g. `request.headers[x-user]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Condition {
    pub key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

//! `WasmPlugin` (extensions.istio.io v1alpha1): a WebAssembly extension for Envoy-based
//! proxies. Keel's proxy does not run them (the loader warns), but the schema is checked so
//! an invalid one is rejected as Istio would.

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::model::common::{PolicyTargetReference, WorkloadSelector};

#[path = "extensions_validate.rs"]
mod validate_impl;

/// `istio.extensions.v1alpha1.WasmPlugin`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WasmPlugin {
    /// Workloads to extend; at most one of selector, targetRef, targetRefs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Where the module is: `oci://`, `file://`, `http://` or `https://` (no scheme means OCI).
    pub url: String,
    /// Expected SHA-256 of the module or image, 64 lower-case hex digits.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    pub image_pull_policy: PullPolicy,
    /// Secret with registry credentials, in the plugin's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// Public key to verify signed modules (not documented by Istio yet).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub verification_key: String,
    /// Passed to the plugin as-is (`google.protobuf.Struct`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<serde_json::Value>,
    /// The plugin's root id in Envoy's configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    pub phase: PluginPhase,
    /// Order among plugins of the same phase; higher runs first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    pub fail_strategy: FailStrategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    /// Traffic the plugin applies to; empty means all.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<TrafficSelector>,
    #[serde(rename = "type")]
    pub type_: PluginType,
}

istio_enum! {
    /// `PluginPhase`: where in the filter chain the plugin goes.
    pub enum PluginPhase {
        /// Last, just before the router.
        UnspecifiedPhase = "UNSPECIFIED_PHASE" = 0,
        /// Before Istio's authentication filters.
        Authn = "AUTHN" = 1,
        /// Before Istio's authorization filters, after authentication.
        Authz = "AUTHZ" = 2,
        /// Before Istio's stats filters, after authorization.
        Stats = "STATS" = 3,
    }
}

istio_enum! {
    /// `PullPolicy`: when to fetch the module again.
    pub enum PullPolicy {
        UnspecifiedPolicy = "UNSPECIFIED_POLICY" = 0,
        IfNotPresent = "IfNotPresent" = 1,
        Always = "Always" = 2,
    }
}

istio_enum! {
    /// `FailStrategy`: what happens when the plugin fails fatally.
    pub enum FailStrategy {
        /// Fail the request.
        FailClose = "FAIL_CLOSE" = 0,
        /// Skip the plugin.
        FailOpen = "FAIL_OPEN" = 1,
        /// Reload the VM and retry.
        FailReload = "FAIL_RELOAD" = 2,
    }
}

istio_enum! {
    /// `PluginType`.
    pub enum PluginType {
        UnspecifiedPluginType = "UNSPECIFIED_PLUGIN_TYPE" = 0,
        Http = "HTTP" = 1,
        Network = "NETWORK" = 2,
    }
}

/// `VmConfig`: settings of the Wasm VM.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct VmConfig {
    /// Environment variables for the VM; names are unique.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// `EnvVar`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EnvVar {
    pub name: String,
    pub value_from: EnvValueSource,
    /// Only with `valueFrom: INLINE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

istio_enum! {
    /// `EnvValueSource`.
    pub enum EnvValueSource {
        /// The value given in `value`.
        Inline = "INLINE" = 0,
        /// The proxy's own environment variable of that name.
        Host = "HOST" = 1,
    }
}

/// `WasmPlugin.TrafficSelector`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TrafficSelector {
    pub mode: WorkloadMode,
    /// Destination ports; empty means all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSelector>,
}

/// `istio.networking.v1beta1.PortSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PortSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

istio_enum! {
    /// `istio.type.v1beta1.WorkloadMode`.
    pub enum WorkloadMode {
        /// Both directions.
        Undefined = "UNDEFINED" = 0,
        Client = "CLIENT" = 1,
        Server = "SERVER" = 2,
        ClientAndServer = "CLIENT_AND_SERVER" = 3,
    }
}

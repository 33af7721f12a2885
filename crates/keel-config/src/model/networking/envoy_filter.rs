//! `EnvoyFilter` (networking.istio.io v1alpha3): patches to the Envoy configuration Istio
//! generates. Keel's proxy is not Envoy and does not apply them (the loader warns), but the
//! schema is checked so an invalid one is rejected as Istio would.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::model::common::PolicyTargetReference;

#[path = "envoy_filter_validate.rs"]
mod validate_impl;

#[cfg(test)]
#[path = "envoy_filter_tests.rs"]
mod tests;

/// `istio.networking.v1alpha3.EnvoyFilter`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EnvoyFilter {
    /// Workloads to patch; absent means every workload in the namespace (or mesh, in the
    /// root namespace). At most one of workloadSelector and targetRefs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Applied in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_patches: Vec<EnvoyConfigObjectPatch>,
    /// Order among EnvoyFilters of the same context; lower first, negative before Istio's own.
    pub priority: i32,
}

/// `istio.networking.v1alpha3.WorkloadSelector` (the `labels` form used by EnvoyFilter,
/// Sidecar and ServiceEntry).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WorkloadSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One patch: what kind of object, which ones, and how to change them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EnvoyConfigObjectPatch {
    pub apply_to: ApplyTo,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<EnvoyConfigObjectMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

istio_enum! {
    /// `EnvoyFilter.ApplyTo`: the kind of Envoy object a patch changes.
    pub enum ApplyTo {
        Invalid = "INVALID" = 0,
        Listener = "LISTENER" = 1,
        FilterChain = "FILTER_CHAIN" = 2,
        NetworkFilter = "NETWORK_FILTER" = 3,
        HttpFilter = "HTTP_FILTER" = 4,
        RouteConfiguration = "ROUTE_CONFIGURATION" = 5,
        VirtualHost = "VIRTUAL_HOST" = 6,
        HttpRoute = "HTTP_ROUTE" = 7,
        Cluster = "CLUSTER" = 8,
        ExtensionConfig = "EXTENSION_CONFIG" = 9,
        Bootstrap = "BOOTSTRAP" = 10,
        ListenerFilter = "LISTENER_FILTER" = 11,
    }
}

istio_enum! {
    /// `EnvoyFilter.PatchContext`: which generated configuration a patch applies to.
    pub enum PatchContext {
        Any = "ANY" = 0,
        SidecarInbound = "SIDECAR_INBOUND" = 1,
        SidecarOutbound = "SIDECAR_OUTBOUND" = 2,
        Gateway = "GATEWAY" = 3,
        Waypoint = "WAYPOINT" = 4,
    }
}

/// `EnvoyFilter.EnvoyConfigObjectMatch`: at most one of listener, routeConfiguration,
/// cluster and waypoint (oneof `object_types`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EnvoyConfigObjectMatch {
    pub context: PatchContext,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_configuration: Option<RouteConfigurationMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMatch>,
    /// Only with `context: WAYPOINT`, which requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointMatch>,
}

impl EnvoyConfigObjectMatch {
    /// Whether any of the `object_types` oneof is set.
    pub fn has_object_type(&self) -> bool {
        self.listener.is_some()
            || self.route_configuration.is_some()
            || self.cluster.is_some()
            || self.waypoint.is_some()
    }
}

/// `EnvoyFilter.ProxyMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ProxyMatch {
    /// An RE2 regex over the proxy's Istio version, e.g. `^1\.2.*`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_version: String,
    /// Exact matches on the proxy's node metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `EnvoyFilter.ListenerMatch`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ListenerMatch {
    /// The service or gateway port the listener serves.
    pub port_number: u32,
    /// Deprecated; ignored by Istio.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_chain: Option<FilterChainMatch>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub listener_filter: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `ListenerMatch.FilterChainMatch`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FilterChainMatch {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// `raw_buffer` or `tls`; SIDECAR_INBOUND only.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transport_protocol: String,
    /// Comma-separated ALPN values; sidecars only.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub application_protocols: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    pub destination_port: u32,
}

/// `ListenerMatch.FilterMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FilterMatch {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// An HTTP filter inside the HTTP connection manager; applyTo HTTP_FILTER only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

/// `ListenerMatch.SubFilterMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SubFilterMatch {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `EnvoyFilter.RouteConfigurationMatch`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RouteConfigurationMatch {
    pub port_number: u32,
    /// GATEWAY context only.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    /// `namespace/name` of an Istio Gateway; GATEWAY context only.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VirtualHostMatch>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `RouteConfigurationMatch.VirtualHostMatch`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct VirtualHostMatch {
    /// `host:port` as Istio names virtual hosts.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain_name: String,
}

/// `RouteConfigurationMatch.RouteMatch`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RouteMatch {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub action: RouteAction,
}

istio_enum! {
    /// `RouteMatch.Action`.
    pub enum RouteAction {
        Any = "ANY" = 0,
        Route = "ROUTE" = 1,
        Redirect = "REDIRECT" = 2,
        DirectResponse = "DIRECT_RESPONSE" = 3,
    }
}

/// `EnvoyFilter.ClusterMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClusterMatch {
    pub port_number: u32,
    /// Fully qualified service name, e.g. `reviews.prod.svc.cluster.local`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// The exact cluster name; other fields are ignored when set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `EnvoyFilter.WaypointMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WaypointMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<WaypointRouteMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_number: Option<u32>,
}

/// `WaypointMatch.RouteMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WaypointRouteMatch {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `EnvoyFilter.Patch`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Patch {
    pub operation: PatchOperation,
    /// The Envoy object or fragment, as JSON (`google.protobuf.Struct`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// For HTTP filters inserted with ADD: where in the chain they go.
    pub filter_class: FilterClass,
}

istio_enum! {
    /// `Patch.Operation`.
    pub enum PatchOperation {
        Invalid = "INVALID" = 0,
        Merge = "MERGE" = 1,
        Add = "ADD" = 2,
        Remove = "REMOVE" = 3,
        InsertBefore = "INSERT_BEFORE" = 4,
        InsertAfter = "INSERT_AFTER" = 5,
        InsertFirst = "INSERT_FIRST" = 6,
        Replace = "REPLACE" = 7,
        /// Like MERGE, but lists in the value replace lists in the target.
        MergeAndReplaceList = "MERGE_AND_REPLACE_LIST" = 8,
    }
}

istio_enum! {
    /// `Patch.FilterClass`.
    pub enum FilterClass {
        Unspecified = "UNSPECIFIED" = 0,
        Authn = "AUTHN" = 1,
        Authz = "AUTHZ" = 2,
        Stats = "STATS" = 3,
    }
}

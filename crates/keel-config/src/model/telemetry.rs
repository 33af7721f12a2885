//! `Telemetry` (telemetry.istio.io v1, v1alpha1): tracing, metrics and access logging for
//! the mesh, a namespace or specific workloads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::model::common::{PolicyTargetReference, WorkloadSelector};
use crate::types::Duration;

#[path = "telemetry_validate.rs"]
mod validate_impl;

/// `istio.telemetry.v1alpha1.Telemetry`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Telemetry {
    /// Workloads this applies to; absent means the namespace (or mesh, in the root
    /// namespace). At most one of selector, targetRef, targetRefs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Only one entry is supported today.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<Tracing>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metrics>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_logging: Vec<AccessLogging>,
}

istio_enum! {
    /// `istio.telemetry.v1alpha1.WorkloadMode`: which side of the traffic a setting covers.
    pub enum WorkloadMode {
        ClientAndServer = "CLIENT_AND_SERVER" = 0,
        /// Outbound traffic of the selected workloads.
        Client = "CLIENT" = 1,
        /// Inbound traffic of the selected workloads.
        Server = "SERVER" = 2,
    }
}

/// `istio.telemetry.v1alpha1.ProviderRef`: an extension provider declared in MeshConfig.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ProviderRef {
    pub name: String,
}

/// `istio.telemetry.v1alpha1.Tracing`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Tracing {
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<TracingSelector>,
    /// Absent means the mesh default; only one provider is supported.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Percentage (0–100) of requests without a prior decision to trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random_sampling_percentage: Option<f64>,
    /// Collect no spans (the trace context is still propagated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_span_reporting: Option<bool>,
    /// Extra span tags, by tag name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Sample on the `x-request-id` (the default) rather than independently per proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Add Istio's own tags (e.g. `istio.canonical_service`) to spans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_istio_tags: Option<bool>,
}

/// `Tracing.TracingSelector`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TracingSelector {
    pub mode: WorkloadMode,
}

/// `Tracing.CustomTag`: exactly one source for the tag value (oneof `type`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CustomTag {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub literal: Option<LiteralTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderTag>,
    /// An access-log formatter such as `%REQ(x-user)%`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formatter: Option<FormatterTag>,
}

/// `Tracing.Literal`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LiteralTag {
    pub value: String,
}

/// `Tracing.Environment`: the value of an environment variable of the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EnvironmentTag {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_value: String,
}

/// `Tracing.RequestHeader`: the value of a request header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HeaderTag {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_value: String,
}

/// `Tracing.Formatter`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FormatterTag {
    pub value: String,
}

/// `istio.telemetry.v1alpha1.Metrics`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Metrics {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Applied in order; later overrides win.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<MetricsOverrides>,
    /// How often metrics are reported (for providers that push).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<Duration>,
}

/// `istio.telemetry.v1alpha1.MetricsOverrides`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricsOverrides {
    /// Absent means every metric in both modes.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<MetricSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Tag (label) changes, by tag name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

/// `istio.telemetry.v1alpha1.MetricSelector`: a standard metric or a custom one (oneof).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MetricSelector {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<IstioMetric>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_metric: Option<String>,
    pub mode: WorkloadMode,
}

istio_enum! {
    /// `MetricSelector.IstioMetric`: Istio's standard metrics.
    pub enum IstioMetric {
        AllMetrics = "ALL_METRICS" = 0,
        RequestCount = "REQUEST_COUNT" = 1,
        RequestDuration = "REQUEST_DURATION" = 2,
        RequestSize = "REQUEST_SIZE" = 3,
        ResponseSize = "RESPONSE_SIZE" = 4,
        TcpOpenedConnections = "TCP_OPENED_CONNECTIONS" = 5,
        TcpClosedConnections = "TCP_CLOSED_CONNECTIONS" = 6,
        TcpSentBytes = "TCP_SENT_BYTES" = 7,
        TcpReceivedBytes = "TCP_RECEIVED_BYTES" = 8,
        GrpcRequestMessages = "GRPC_REQUEST_MESSAGES" = 9,
        GrpcResponseMessages = "GRPC_RESPONSE_MESSAGES" = 10,
    }
}

/// `MetricsOverrides.TagOverride`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TagOverride {
    pub operation: TagOperation,
    /// A CEL expression for the tag value; only with UPSERT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

istio_enum! {
    /// `TagOverride.Operation`.
    pub enum TagOperation {
        /// Add the tag or replace its value.
        Upsert = "UPSERT" = 0,
        /// Drop the tag.
        Remove = "REMOVE" = 1,
    }
}

/// `istio.telemetry.v1alpha1.AccessLogging`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AccessLogging {
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<LogSelector>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Log only what matches a CEL expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<AccessLogFilter>,
}

/// `AccessLogging.LogSelector`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LogSelector {
    pub mode: WorkloadMode,
}

/// `AccessLogging.Filter`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AccessLogFilter {
    /// E.g. `response.code >= 400`.
    pub expression: String,
}

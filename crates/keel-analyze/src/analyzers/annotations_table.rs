//! Istio's resource annotations (`istio.io/api` package `annotation`, `AllResourceAnnotations()`):
//! name, the resource types each applies to, whether it is deprecated, its feature status.
//! API data for `annotations.K8sAnalyzer`.
//!
//! Source: istio/api `annotation/annotations.gen.go` (generated from `annotations.yaml`), the
//! newest version in Keel's reference index (the index did not report its commit; it is the
//! Istio 1.24 generation: it has `sidecar.istio.io/nativeSidecar` and
//! `networking.istio.io/traffic-distribution`, not yet 1.25's `ambient.istio.io/dns-capture`).
//! Entries are in the generated file's order; the order of `resources` is Istio's and shows in
//! IST0107's text. The two entries under "Istio 1.25" come from Istio's 1.25 change notes
//! (both Pod annotations) so that current manifests don't read as unknown annotations.

/// `annotation.ResourceTypes`. `Any` means every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    Any,
    AuthorizationPolicy,
    Gateway,
    GatewayClass,
    Ingress,
    Namespace,
    Pod,
    Service,
    ServiceEntry,
    WorkloadEntry,
}

impl ResourceType {
    /// Istio's `ResourceTypes.String()`: the Kubernetes kind.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Any => "Any",
            ResourceType::AuthorizationPolicy => "AuthorizationPolicy",
            ResourceType::Gateway => "Gateway",
            ResourceType::GatewayClass => "GatewayClass",
            ResourceType::Ingress => "Ingress",
            ResourceType::Namespace => "Namespace",
            ResourceType::Pod => "Pod",
            ResourceType::Service => "Service",
            ResourceType::ServiceEntry => "ServiceEntry",
            ResourceType::WorkloadEntry => "WorkloadEntry",
        }
    }
}

/// `annotation.FeatureStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureStatus {
    Alpha,
    Beta,
    Stable,
}

/// One `annotation.Instance`.
#[derive(Debug, Clone, Copy)]
pub struct Annotation {
    pub name: &'static str,
    pub resources: &'static [ResourceType],
    pub deprecated: bool,
    pub status: FeatureStatus,
    pub description: &'static str,
}

/// The annotation named `name`, if Istio defines one.
pub fn lookup(name: &str) -> Option<&'static Annotation> {
    ANNOTATIONS.iter().find(|a| a.name == name)
}

use FeatureStatus::{Alpha, Beta, Stable};
use ResourceType as R;

const POD: &[ResourceType] = &[R::Pod];
const SERVICE: &[ResourceType] = &[R::Service];
const ANY: &[ResourceType] = &[R::Any];
const GATEWAY: &[ResourceType] = &[R::Gateway];
const WORKLOAD_ENTRY: &[ResourceType] = &[R::WorkloadEntry];

macro_rules! table {
    ( $( $name:literal $res:expr, $dep:literal, $status:ident, $desc:literal; )+ ) => {
        /// Every annotation Istio defines.
        pub const ANNOTATIONS: &[Annotation] = &[ $( Annotation {
            name: $name,
            resources: $res,
            deprecated: $dep,
            status: $status,
            description: $desc,
        } ),+ ];
    };
}

table! {
    "alpha.istio.io/canonical-serviceaccounts" SERVICE, true, Alpha, "Non-Kubernetes service accounts allowed to run the service.";
    "alpha.istio.io/kubernetes-serviceaccounts" SERVICE, true, Alpha, "Kubernetes service accounts allowed to run the service on VMs.";
    "ambient.istio.io/bypass-inbound-capture" POD, false, Alpha, "Ambient: capture outbound traffic only.";
    "ambient.istio.io/redirection" POD, false, Beta, "Set by Istio when a pod is enrolled in ambient mode.";
    "ambient.istio.io/waypoint-inbound-binding" &[R::GatewayClass, R::Gateway], false, Alpha, "How traffic is sent to a waypoint.";
    "galley.istio.io/analyze-suppress" ANY, false, Alpha, "Analysis message codes to suppress on this resource.";
    "gateway.istio.io/controller-version" ANY, false, Alpha, "Controller version recorded on a Gateway.";
    "gateway.istio.io/name-override" GATEWAY, false, Alpha, "Name of the generated Deployment and Service.";
    "gateway.istio.io/service-account" GATEWAY, false, Alpha, "Name of the generated ServiceAccount.";
    "inject.istio.io/templates" POD, false, Alpha, "Injection templates to use.";
    "istio.io/autoRegistrationGroup" WORKLOAD_ENTRY, false, Alpha, "WorkloadGroup of an auto-registered WorkloadEntry.";
    "istio.io/connectedAt" WORKLOAD_ENTRY, false, Alpha, "When the workload connected.";
    "istio.io/disconnectedAt" WORKLOAD_ENTRY, false, Alpha, "When the workload disconnected.";
    "istio.io/dry-run" &[R::AuthorizationPolicy], false, Alpha, "Policy in dry-run mode.";
    "istio.io/rev" POD, false, Alpha, "Control plane revision the proxy is connected to.";
    "istio.io/workloadController" WORKLOAD_ENTRY, false, Alpha, "Control plane instance connected to the workload.";
    "kubernetes.io/ingress.class" &[R::Ingress], false, Stable, "Controller class of an Ingress.";
    "networking.istio.io/exportTo" SERVICE, false, Alpha, "Namespaces the service is exported to.";
    "networking.istio.io/service-type" GATEWAY, false, Alpha, "Type of the generated Service.";
    "networking.istio.io/traffic-distribution" &[R::Service, R::ServiceEntry], false, Alpha, "How traffic is spread over endpoints.";
    "prometheus.istio.io/merge-metrics" POD, false, Alpha, "Merge application metrics with Envoy's.";
    "proxy.istio.io/config" POD, false, Beta, "ProxyConfig overrides for this proxy.";
    "proxy.istio.io/overrides" POD, false, Alpha, "User overrides of the injected proxy container.";
    "readiness.status.sidecar.istio.io/applicationPorts" POD, false, Alpha, "Application ports for the readiness probe.";
    "readiness.status.sidecar.istio.io/failureThreshold" POD, false, Alpha, "Readiness probe failure threshold.";
    "readiness.status.sidecar.istio.io/initialDelaySeconds" POD, false, Alpha, "Readiness probe initial delay.";
    "readiness.status.sidecar.istio.io/periodSeconds" POD, false, Alpha, "Readiness probe period.";
    "sidecar.istio.io/agentLogLevel" POD, false, Alpha, "pilot-agent log level.";
    "sidecar.istio.io/bootstrapOverride" POD, false, Alpha, "Alternative Envoy bootstrap file.";
    "sidecar.istio.io/componentLogLevel" POD, false, Alpha, "Envoy component log levels.";
    "sidecar.istio.io/discoveryAddress" POD, true, Alpha, "XDS discovery address.";
    "sidecar.istio.io/enableCoreDump" POD, false, Alpha, "Enable Envoy core dumps.";
    "sidecar.istio.io/extraStatTags" POD, true, Alpha, "Extra telemetry tags.";
    "sidecar.istio.io/inject" POD, true, Beta, "Inject the sidecar (use the label instead).";
    "sidecar.istio.io/interceptionMode" POD, false, Alpha, "Inbound redirection mode.";
    "sidecar.istio.io/logLevel" POD, false, Alpha, "Envoy log level.";
    "sidecar.istio.io/nativeSidecar" POD, false, Alpha, "Inject the proxy as a native sidecar.";
    "sidecar.istio.io/proxyCPU" POD, false, Alpha, "Proxy CPU request.";
    "sidecar.istio.io/proxyCPULimit" POD, false, Alpha, "Proxy CPU limit.";
    "sidecar.istio.io/proxyImage" POD, false, Alpha, "Proxy image.";
    "sidecar.istio.io/proxyImageType" POD, false, Alpha, "Proxy image type (debug, distroless).";
    "sidecar.istio.io/proxyMemory" POD, false, Alpha, "Proxy memory request.";
    "sidecar.istio.io/proxyMemoryLimit" POD, false, Alpha, "Proxy memory limit.";
    "sidecar.istio.io/rewriteAppHTTPProbers" POD, false, Alpha, "Rewrite HTTP probes through the sidecar.";
    "sidecar.istio.io/statsHistogramBuckets" POD, false, Alpha, "Custom histogram buckets.";
    "sidecar.istio.io/statsInclusionPrefixes" POD, true, Alpha, "Stat prefixes Envoy emits.";
    "sidecar.istio.io/statsInclusionRegexps" POD, true, Alpha, "Stat regexes Envoy emits.";
    "sidecar.istio.io/statsInclusionSuffixes" POD, true, Alpha, "Stat suffixes Envoy emits.";
    "sidecar.istio.io/status" POD, false, Alpha, "Injection status, set by the injector.";
    "sidecar.istio.io/userVolume" POD, false, Alpha, "Extra volumes for the sidecar.";
    "sidecar.istio.io/userVolumeMount" POD, false, Alpha, "Extra volume mounts for the sidecar.";
    "status.sidecar.istio.io/port" POD, false, Alpha, "Sidecar status port (0 disables).";
    "topology.istio.io/controlPlaneClusters" &[R::Namespace], false, Alpha, "Clusters whose istiod may lead this remote cluster.";
    "traffic.istio.io/nodeSelector" SERVICE, false, Stable, "Nodes whose addresses a NodePort gateway uses.";
    "traffic.sidecar.istio.io/excludeInboundPorts" POD, false, Alpha, "Inbound ports not redirected.";
    "traffic.sidecar.istio.io/excludeInterfaces" POD, false, Alpha, "Interfaces not captured.";
    "traffic.sidecar.istio.io/excludeOutboundIPRanges" POD, false, Alpha, "Outbound CIDRs not redirected.";
    "traffic.sidecar.istio.io/excludeOutboundPorts" POD, false, Alpha, "Outbound ports not redirected.";
    "traffic.sidecar.istio.io/includeInboundPorts" POD, false, Alpha, "Inbound ports redirected.";
    "traffic.sidecar.istio.io/includeOutboundIPRanges" POD, false, Alpha, "Outbound CIDRs redirected.";
    "traffic.sidecar.istio.io/includeOutboundPorts" POD, false, Alpha, "Outbound ports redirected.";
    "traffic.sidecar.istio.io/kubevirtInterfaces" POD, false, Alpha, "VM interfaces whose inbound traffic is outbound.";
    // Istio 1.25 (change notes).
    "ambient.istio.io/dns-capture" POD, false, Alpha, "Ambient: capture DNS (true/false).";
    "istio.io/reroute-virtual-interfaces" POD, false, Alpha, "Virtual interfaces whose inbound traffic is outbound.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_looked_up() {
        let names: std::collections::BTreeSet<_> = ANNOTATIONS.iter().map(|a| a.name).collect();
        assert_eq!(names.len(), ANNOTATIONS.len());
        let inject = lookup("sidecar.istio.io/inject").map(|a| (a.deprecated, a.status));
        assert_eq!(inject, Some((true, Beta)));
        assert!(lookup("networking.istio.io/exportThree").is_none());
        assert!(ANNOTATIONS.iter().all(|a| !a.resources.is_empty()));
        assert!(ANNOTATIONS.iter().all(|a| !a.description.is_empty()));
    }
}

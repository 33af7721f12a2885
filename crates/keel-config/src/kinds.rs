//! The kinds Keel knows: group, versions, names, short names.

use std::fmt;

/// Every kind Keel reads. Istio kinds are validated; Kubernetes kinds feed the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Kind {
    // networking.istio.io
    VirtualService,
    DestinationRule,
    Gateway,
    ServiceEntry,
    Sidecar,
    WorkloadEntry,
    WorkloadGroup,
    ProxyConfig,
    EnvoyFilter,
    // security.istio.io
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    // telemetry.istio.io
    Telemetry,
    // extensions.istio.io
    WasmPlugin,
    // gateway.networking.k8s.io (Kubernetes Gateway API)
    /// The Gateway API's `Gateway`, shown as "Gateway" like Istio's own (as istioctl does).
    KubernetesGateway,
    GatewayClass,
    HttpRoute,
    GrpcRoute,
    TcpRoute,
    TlsRoute,
    ReferenceGrant,
    // Kubernetes
    Namespace,
    Service,
    Endpoints,
    EndpointSlice,
    Pod,
    Deployment,
    StatefulSet,
    ReplicaSet,
    DaemonSet,
    ServiceAccount,
    Secret,
    ConfigMap,
    // admissionregistration.k8s.io
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    Node,
}

/// Static facts about a kind.
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    pub name: &'static str,
    pub group: &'static str,
    /// apiVersions (without group) that Istio or Kubernetes serve for it.
    pub versions: &'static [&'static str],
    /// kubectl-style plural and short names, lower case.
    pub aliases: &'static [&'static str],
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
    /// Recognised, but Keel does not implement it (reported, not an error).
    pub unsupported: Option<&'static str>,
}

const NET: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SEC: &[&str] = &["v1", "v1beta1"];
/// Gateway API versions. Not every kind is served at every one of them by every release of
/// the CRDs (HTTPRoute left v1alpha2 in v1.0, TCPRoute is still v1alpha2), but manifests for
/// older and newer releases are all read: what Keel needs has the same shape in each.
const GW_API: &[&str] = &["v1", "v1beta1", "v1alpha2"];
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

pub static KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::VirtualService,
        name: "VirtualService",
        group: "networking.istio.io",
        versions: NET,
        aliases: &["virtualservice", "virtualservices", "vs"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::DestinationRule,
        name: "DestinationRule",
        group: "networking.istio.io",
        versions: NET,
        aliases: &["destinationrule", "destinationrules", "dr"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Gateway,
        name: "Gateway",
        group: "networking.istio.io",
        versions: NET,
        aliases: &["gateway", "gateways", "gw"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::ServiceEntry,
        name: "ServiceEntry",
        group: "networking.istio.io",
        versions: NET,
        aliases: &["serviceentry", "serviceentries", "se"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Sidecar,
        name: "Sidecar",
        group: "networking.istio.io",
        versions: NET,
        aliases: &["sidecar", "sidecars"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::WorkloadEntry,
        name: "WorkloadEntry",
        group: "networking.istio.io",
        versions: NET,
        aliases: &["workloadentry", "workloadentries", "we"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::WorkloadGroup,
        name: "WorkloadGroup",
        group: "networking.istio.io",
        versions: NET,
        aliases: &["workloadgroup", "workloadgroups", "wg"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::ProxyConfig,
        name: "ProxyConfig",
        group: "networking.istio.io",
        versions: &["v1beta1"],
        aliases: &["proxyconfig", "proxyconfigs"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::EnvoyFilter,
        name: "EnvoyFilter",
        group: "networking.istio.io",
        versions: &["v1alpha3"],
        aliases: &["envoyfilter", "envoyfilters"],
        namespaced: true,
        unsupported: Some(
            "EnvoyFilter patches Envoy's own configuration, and Keel's proxy is not Envoy; express the intent with VirtualService, DestinationRule or Telemetry instead",
        ),
    },
    KindInfo {
        kind: Kind::PeerAuthentication,
        name: "PeerAuthentication",
        group: "security.istio.io",
        versions: SEC,
        aliases: &["peerauthentication", "peerauthentications", "pa"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::AuthorizationPolicy,
        name: "AuthorizationPolicy",
        group: "security.istio.io",
        versions: SEC,
        aliases: &["authorizationpolicy", "authorizationpolicies", "ap"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::RequestAuthentication,
        name: "RequestAuthentication",
        group: "security.istio.io",
        versions: SEC,
        aliases: &["requestauthentication", "requestauthentications", "ra"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Telemetry,
        name: "Telemetry",
        group: "telemetry.istio.io",
        versions: &["v1", "v1alpha1"],
        aliases: &["telemetry", "telemetries"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::WasmPlugin,
        name: "WasmPlugin",
        group: "extensions.istio.io",
        versions: &["v1alpha1"],
        aliases: &["wasmplugin", "wasmplugins"],
        namespaced: true,
        unsupported: Some("Keel's proxy does not run Envoy Wasm extensions"),
    },
    KindInfo {
        kind: Kind::KubernetesGateway,
        name: "Gateway",
        group: GATEWAY_API_GROUP,
        versions: GW_API,
        aliases: &["gateway", "gateways", "gtw"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::GatewayClass,
        name: "GatewayClass",
        group: GATEWAY_API_GROUP,
        versions: GW_API,
        aliases: &["gatewayclass", "gatewayclasses", "gc"],
        namespaced: false,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::HttpRoute,
        name: "HTTPRoute",
        group: GATEWAY_API_GROUP,
        versions: GW_API,
        aliases: &["httproute", "httproutes"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::GrpcRoute,
        name: "GRPCRoute",
        group: GATEWAY_API_GROUP,
        versions: GW_API,
        aliases: &["grpcroute", "grpcroutes"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::TcpRoute,
        name: "TCPRoute",
        group: GATEWAY_API_GROUP,
        versions: GW_API,
        aliases: &["tcproute", "tcproutes"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::TlsRoute,
        name: "TLSRoute",
        group: GATEWAY_API_GROUP,
        versions: &["v1", "v1beta1", "v1alpha2", "v1alpha3"],
        aliases: &["tlsroute", "tlsroutes"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::ReferenceGrant,
        name: "ReferenceGrant",
        group: GATEWAY_API_GROUP,
        versions: GW_API,
        aliases: &["referencegrant", "referencegrants", "refgrant"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Namespace,
        name: "Namespace",
        group: "",
        versions: &["v1"],
        aliases: &["namespace", "namespaces", "ns"],
        namespaced: false,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Service,
        name: "Service",
        group: "",
        versions: &["v1"],
        aliases: &["service", "services", "svc"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Endpoints,
        name: "Endpoints",
        group: "",
        versions: &["v1"],
        aliases: &["endpoints", "ep"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::EndpointSlice,
        name: "EndpointSlice",
        group: "discovery.k8s.io",
        versions: &["v1", "v1beta1"],
        aliases: &["endpointslice", "endpointslices"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Pod,
        name: "Pod",
        group: "",
        versions: &["v1"],
        aliases: &["pod", "pods", "po"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Deployment,
        name: "Deployment",
        group: "apps",
        versions: &["v1"],
        aliases: &["deployment", "deployments", "deploy"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::StatefulSet,
        name: "StatefulSet",
        group: "apps",
        versions: &["v1"],
        aliases: &["statefulset", "statefulsets", "sts"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::ReplicaSet,
        name: "ReplicaSet",
        group: "apps",
        versions: &["v1"],
        aliases: &["replicaset", "replicasets", "rs"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::DaemonSet,
        name: "DaemonSet",
        group: "apps",
        versions: &["v1"],
        aliases: &["daemonset", "daemonsets", "ds"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::ServiceAccount,
        name: "ServiceAccount",
        group: "",
        versions: &["v1"],
        aliases: &["serviceaccount", "serviceaccounts", "sa"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Secret,
        name: "Secret",
        group: "",
        versions: &["v1"],
        aliases: &["secret", "secrets"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::ConfigMap,
        name: "ConfigMap",
        group: "",
        versions: &["v1"],
        aliases: &["configmap", "configmaps", "cm"],
        namespaced: true,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::MutatingWebhookConfiguration,
        name: "MutatingWebhookConfiguration",
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        aliases: &[
            "mutatingwebhookconfiguration",
            "mutatingwebhookconfigurations",
        ],
        namespaced: false,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::ValidatingWebhookConfiguration,
        name: "ValidatingWebhookConfiguration",
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        aliases: &[
            "validatingwebhookconfiguration",
            "validatingwebhookconfigurations",
        ],
        namespaced: false,
        unsupported: None,
    },
    KindInfo {
        kind: Kind::Node,
        name: "Node",
        group: "",
        versions: &["v1"],
        aliases: &["node", "nodes", "no"],
        namespaced: false,
        unsupported: None,
    },
];

impl Kind {
    pub fn info(&self) -> &'static KindInfo {
        // KINDS lists every variant; the fallback is unreachable but avoids a panic path.
        KINDS.iter().find(|k| k.kind == *self).unwrap_or(&KINDS[0])
    }

    /// The kind as written in YAML. Not unique on its own: Istio's Gateway and the Gateway
    /// API's are both "Gateway"; a kind is (group, name).
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// The API group ("" for core Kubernetes).
    pub fn group(&self) -> &'static str {
        self.info().group
    }

    /// `Gateway.gateway.networking.k8s.io` (kubectl's `kind.group`); just the name for core
    /// kinds. Unique across kinds.
    pub fn qualified_name(&self) -> String {
        let info = self.info();
        if info.group.is_empty() {
            info.name.to_string()
        } else {
            format!("{}.{}", info.name, info.group)
        }
    }

    /// Whether the kind's CRD marks `spec` as required (the others accept an object without
    /// one): some Istio kinds, and every Gateway API kind.
    pub fn spec_required(&self) -> bool {
        matches!(
            self,
            Kind::ServiceEntry | Kind::WorkloadEntry | Kind::WorkloadGroup | Kind::WasmPlugin
        ) || self.is_gateway_api()
    }

    pub fn is_istio(&self) -> bool {
        self.info().group.ends_with("istio.io")
    }

    /// A kind of the Kubernetes Gateway API (`gateway.networking.k8s.io`).
    pub fn is_gateway_api(&self) -> bool {
        self.info().group == GATEWAY_API_GROUP
    }

    /// Looks a kind up by `apiVersion` and `kind` as written in YAML: by group and name, as
    /// names repeat across groups.
    pub fn lookup(api_version: &str, kind: &str) -> Result<Kind, LookupError> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let Some(info) = KINDS.iter().find(|k| k.name == kind && k.group == group) else {
            return Err(if group.ends_with("istio.io") {
                LookupError::UnknownIstioKind
            } else {
                LookupError::NotMeshKind
            });
        };
        if !info.versions.contains(&version) {
            return Err(LookupError::UnknownVersion {
                kind: info.kind,
                served: info.versions,
            });
        }
        Ok(info.kind)
    }

    /// Resolves a name given on the command line, as kubectl does: `vs`, `virtualservices`,
    /// `VirtualService`, or qualified with the group (`gateways.gateway.networking.k8s.io`,
    /// `gateway.v1.gateway.networking.k8s.io`). An unqualified name shared by two groups
    /// (`gateway`) means the Istio kind; the Gateway API's is `gtw` or the qualified name.
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let (base, qualifier) = match lower.split_once('.') {
            Some((b, q)) => (b, Some(q)),
            None => (lower.as_str(), None),
        };
        KINDS
            .iter()
            .filter(|k| k.aliases.contains(&base) || k.name.eq_ignore_ascii_case(base))
            .find(|k| {
                qualifier.is_none_or(|q| {
                    q == k.group
                        || q.split_once('.')
                            .is_some_and(|(v, g)| g == k.group && k.versions.contains(&v))
                })
            })
            .map(|k| k.kind)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LookupError {
    /// A group Istio owns, but a kind Keel doesn't know.
    UnknownIstioKind,
    /// The kind exists, but not at this apiVersion.
    UnknownVersion {
        kind: Kind,
        served: &'static [&'static str],
    },
    /// Not a kind the mesh reads (skipped with a note).
    NotMeshKind,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(
            Kind::lookup("networking.istio.io/v1alpha3", "VirtualService"),
            Ok(Kind::VirtualService)
        );
        assert_eq!(Kind::lookup("v1", "Service"), Ok(Kind::Service));
        assert_eq!(Kind::lookup("apps/v1", "Deployment"), Ok(Kind::Deployment));
        assert!(matches!(
            Kind::lookup("networking.istio.io/v2", "Gateway"),
            Err(LookupError::UnknownVersion { .. })
        ));
        assert_eq!(
            Kind::lookup("batch/v1", "Job"),
            Err(LookupError::NotMeshKind)
        );
        assert_eq!(Kind::from_cli_name("vs"), Some(Kind::VirtualService));
        assert_eq!(
            Kind::from_cli_name("DestinationRules"),
            Some(Kind::DestinationRule)
        );
        for info in KINDS {
            assert_eq!(info.kind.info().name, info.name);
        }
    }

    #[test]
    fn names_shared_across_groups() {
        // Two kinds named Gateway; (group, name) is what tells them apart.
        assert_eq!(
            Kind::lookup("networking.istio.io/v1", "Gateway"),
            Ok(Kind::Gateway)
        );
        for v in ["v1", "v1beta1", "v1alpha2"] {
            assert_eq!(
                Kind::lookup(&format!("gateway.networking.k8s.io/{v}"), "Gateway"),
                Ok(Kind::KubernetesGateway)
            );
        }
        assert_eq!(Kind::KubernetesGateway.name(), "Gateway");
        assert_eq!(
            Kind::KubernetesGateway.qualified_name(),
            "Gateway.gateway.networking.k8s.io"
        );
        assert_eq!(Kind::Node.qualified_name(), "Node");
        assert!(matches!(
            Kind::lookup("gateway.networking.k8s.io/v2", "HTTPRoute"),
            Err(LookupError::UnknownVersion { .. })
        ));
        assert_eq!(Kind::lookup("v1", "Node"), Ok(Kind::Node));
        assert!(!Kind::Node.info().namespaced && !Kind::GatewayClass.info().namespaced);
        assert!(Kind::HttpRoute.spec_required() && !Kind::Node.spec_required());

        assert_eq!(Kind::from_cli_name("gateway"), Some(Kind::Gateway));
        assert_eq!(Kind::from_cli_name("gw"), Some(Kind::Gateway));
        assert_eq!(Kind::from_cli_name("gtw"), Some(Kind::KubernetesGateway));
        assert_eq!(
            Kind::from_cli_name("gateways.gateway.networking.k8s.io"),
            Some(Kind::KubernetesGateway)
        );
        assert_eq!(
            Kind::from_cli_name("Gateway.v1.gateway.networking.k8s.io"),
            Some(Kind::KubernetesGateway)
        );
        assert_eq!(
            Kind::from_cli_name("gateways.networking.istio.io"),
            Some(Kind::Gateway)
        );
        assert_eq!(Kind::from_cli_name("gateways.example.com"), None);
        assert_eq!(Kind::from_cli_name("HTTPRoutes"), Some(Kind::HttpRoute));
        assert_eq!(Kind::from_cli_name("nodes"), Some(Kind::Node));
        // Every (group, name) pair is listed once.
        let mut seen = std::collections::BTreeSet::new();
        for info in KINDS {
            assert!(seen.insert((info.group, info.name)), "{}", info.name);
        }
    }
}

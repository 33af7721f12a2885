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
];

impl Kind {
    pub fn info(&self) -> &'static KindInfo {
        // KINDS lists every variant; the fallback is unreachable but avoids a panic path.
        KINDS.iter().find(|k| k.kind == *self).unwrap_or(&KINDS[0])
    }

    pub fn name(&self) -> &'static str {
        self.info().name
    }

    /// Whether Istio's CRD marks `spec` as required (the others accept an object without one).
    pub fn spec_required(&self) -> bool {
        matches!(
            self,
            Kind::ServiceEntry | Kind::WorkloadEntry | Kind::WorkloadGroup | Kind::WasmPlugin
        )
    }

    pub fn is_istio(&self) -> bool {
        self.info().group.ends_with("istio.io")
    }

    /// Looks a kind up by `apiVersion` and `kind` as written in YAML.
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

    /// Resolves a name given on the command line (`vs`, `virtualservices`, `VirtualService`).
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let base = lower.split('.').next().unwrap_or(&lower);
        KINDS
            .iter()
            .find(|k| k.aliases.contains(&base))
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
}

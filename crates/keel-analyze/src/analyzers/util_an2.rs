//! Helpers shared by several analyzers, after Istio's `pkg/config/analysis/analyzers/util`:
//! host FQDNs, the service-entry host map with exportTo scopes, label selector strings,
//! sidecar-injection membership, and reading `status` from the raw YAML.

use std::collections::BTreeMap;

use keel_config::Resource;
use keel_config::model::kube::{Container, Namespace};
use keel_config::yaml::Node;

use crate::context::AnalysisContext;

/// `exportTo: ["*"]`: visible in every namespace.
pub const EXPORT_TO_ALL: &str = "*";
/// `exportTo: ["."]`: visible in the resource's own namespace.
pub const EXPORT_TO_LOCAL: &str = ".";
/// The sidecar container's name.
pub const ISTIO_PROXY: &str = "istio-proxy";
/// The namespace label that turns on sidecar injection (`enabled`).
pub const INJECTION_LABEL: &str = "istio-injection";
/// The pod label (or annotation) that overrides injection for one workload.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";
/// The pod annotation set on workloads captured by ambient mode.
pub const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";

/// Istio's `ConvertHostToFQDN`: a short name (no dot, no wildcard) becomes
/// `name.<ns>.svc.<domain>`; anything else is returned as written.
pub fn fqdn(namespace: &str, host: &str, cluster_domain: &str) -> String {
    if !host.starts_with('*') && !host.contains('.') {
        format!("{host}.{namespace}.svc.{cluster_domain}")
    } else {
        host.to_string()
    }
}

/// Istio's `FullName.String()`: `ns/name`, or the name alone without a namespace.
pub fn full_name(r: &Resource) -> String {
    if r.namespace().is_empty() {
        r.name().to_string()
    } else {
        format!("{}/{}", r.namespace(), r.name())
    }
}

/// What a host resolves to: a ServiceEntry, or a Kubernetes Service seen as one.
#[derive(Debug, Clone, Copy)]
pub struct HostEntry<'a> {
    /// Workload selector labels (ServiceEntries only; Services have none).
    pub workload_labels: Option<&'a BTreeMap<String, String>>,
}

/// Istio's `InitServiceEntryHostMap`: `scope/fqdn` → declaring resource, where the scope is
/// `*` or a namespace the host is exported to. ServiceEntries are read first, then Services,
/// each later entry replacing an earlier one with the same key (as Go's map assignment does).
pub struct HostMap<'a> {
    entries: BTreeMap<(String, String), HostEntry<'a>>,
    domain: String,
}

impl<'a> HostMap<'a> {
    pub fn new(ctx: &AnalysisContext<'a>) -> Self {
        let domain = ctx.mesh.cluster_domain.clone();
        let mut entries = BTreeMap::new();
        for (r, se) in ctx.service_entries() {
            let ns = r.namespace();
            let entry = HostEntry {
                workload_labels: se.workload_selector.as_ref().map(|w| &w.labels),
            };
            let mut exports_to_all = false;
            for h in &se.hosts {
                let host = fqdn(ns, h, &domain);
                if se.export_to.is_empty() || exports_to_all {
                    entries.insert((EXPORT_TO_ALL.to_string(), host), entry);
                    continue;
                }
                for e in &se.export_to {
                    let scope = match e.as_str() {
                        EXPORT_TO_ALL => {
                            exports_to_all = true;
                            EXPORT_TO_ALL
                        }
                        EXPORT_TO_LOCAL => ns,
                        other => other,
                    };
                    entries.insert((scope.to_string(), host.clone()), entry);
                    if exports_to_all {
                        break;
                    }
                }
            }
        }
        for (r, _) in ctx.services() {
            let ns = r.namespace();
            let host = fqdn(ns, r.name(), &domain);
            let entry = HostEntry {
                workload_labels: None,
            };
            match r
                .meta
                .annotations
                .get("networking.istio.io/exportTo")
                .filter(|a| !a.is_empty())
            {
                None => {
                    entries.insert((EXPORT_TO_ALL.to_string(), host), entry);
                }
                Some(anno) => {
                    for scope in anno.split(',') {
                        let scope = if scope == EXPORT_TO_LOCAL { ns } else { scope };
                        entries.insert((scope.to_string(), host.clone()), entry);
                    }
                }
            }
        }
        HostMap { entries, domain }
    }

    fn get(&self, scope: &str, host: &str) -> Option<HostEntry<'a>> {
        self.entries
            .get(&(scope.to_string(), host.to_string()))
            .copied()
    }

    /// Istio's `GetDestinationHost`: the entry a `host` written in namespace `ns` (by a
    /// resource with `export_to`) resolves to: exported to all, then to the resource's own
    /// scopes, then a wildcard entry visible from `ns` whose suffix the host ends with.
    /// Where several wildcard entries match, the longest suffix wins (Go picks at random).
    pub fn destination(&self, ns: &str, export_to: &[String], host: &str) -> Option<HostEntry<'a>> {
        let full = fqdn(ns, host, &self.domain);
        if let Some(e) = self.get(EXPORT_TO_ALL, &full) {
            return Some(e);
        }
        if export_to.is_empty() {
            if let Some(e) = self.get(ns, &full) {
                return Some(e);
            }
        } else {
            for e in export_to {
                let scope = if e == EXPORT_TO_LOCAL { ns } else { e.as_str() };
                if let Some(found) = self.get(scope, &full) {
                    return Some(found);
                }
            }
        }
        let bare = host.strip_prefix('*').unwrap_or(host);
        self.entries
            .iter()
            .filter(|((scope, se_host), _)| {
                se_host.starts_with('*') && (scope == EXPORT_TO_ALL || scope == ns)
            })
            .filter(|((_, se_host), _)| bare.ends_with(&se_host[1..]))
            .max_by_key(|((_, se_host), _)| se_host.len())
            .map(|(_, e)| *e)
    }
}

pub use super::util::selector_string;

pub use super::util::selector_matches as labels_match;

/// A field path through a map key that may contain dots (`matchLabels[app.kubernetes.io/name]`).
pub fn key_path(prefix: &str, key: &str) -> String {
    if key.contains(['.', '[', ']']) || key.parse::<usize>().is_ok() {
        format!("{prefix}[{key}]")
    } else {
        format!("{prefix}.{key}")
    }
}

/// Istio's `IsIstioControlPlane`: a label `istio` (any value) or `release: istio`.
pub fn is_istio_control_plane(r: &Resource) -> bool {
    r.meta.labels.contains_key("istio")
        || r.meta.labels.get("release").is_some_and(|v| v == "istio")
}

/// The Namespace object named `name`, if the input has one.
pub fn find_namespace<'a>(
    ctx: &AnalysisContext<'a>,
    name: &str,
) -> Option<(&'a Resource, &'a Namespace)> {
    ctx.namespaces().find(|(r, _)| r.name() == name)
}

/// Istio's `inMesh`: a workload has a sidecar if it has an `istio-proxy` container with an
/// image; else its `sidecar.istio.io/inject` label, else that annotation, decides (`"true"`);
/// else its namespace's `istio-injection` label (`enabled`), if the Namespace is known.
pub fn in_mesh<'c>(
    ctx: &AnalysisContext<'_>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    containers: impl IntoIterator<Item = &'c Container>,
) -> bool {
    if has_istio_proxy(containers) {
        return true;
    }
    if let Some(v) = labels.get(SIDECAR_INJECT) {
        return v == "true";
    }
    if let Some(v) = annotations.get(SIDECAR_INJECT) {
        return v == "true";
    }
    find_namespace(ctx, namespace).is_some_and(|(ns, _)| {
        ns.meta
            .labels
            .get(INJECTION_LABEL)
            .is_some_and(|v| v == "enabled")
    })
}

/// The first container named `istio-proxy` has a non-empty image.
pub fn has_istio_proxy<'c>(containers: impl IntoIterator<Item = &'c Container>) -> bool {
    containers
        .into_iter()
        .find(|c| c.name == ISTIO_PROXY)
        .is_some_and(|c| !c.image.is_empty())
}

/// One entry of a `status.conditions` list, read from the YAML as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// `status.conditions` of a resource, from its raw YAML (Keel's decoder ignores Istio
/// `status`). Entries that are not mappings are skipped; missing fields read as empty.
pub fn status_conditions(r: &Resource) -> Vec<Condition> {
    r.origin
        .node
        .get("status")
        .map(conditions_of)
        .unwrap_or_default()
}

/// The `conditions` list of a status object (or of one of its parts, such as a route's
/// parent status).
pub fn conditions_of(status: &Node) -> Vec<Condition> {
    let Some(list) = status.get("conditions").and_then(Node::as_seq) else {
        return Vec::new();
    };
    let field = |n: &Node, k: &str| {
        n.get(k)
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string()
    };
    list.iter()
        .filter(|n| n.as_map().is_some())
        .map(|n| Condition {
            type_: field(n, "type"),
            status: field(n, "status"),
            reason: field(n, "reason"),
            message: field(n, "message"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_and_selectors() {
        assert_eq!(
            fqdn("ns", "reviews", "cluster.local"),
            "reviews.ns.svc.cluster.local"
        );
        assert_eq!(fqdn("ns", "a.b", "cluster.local"), "a.b");
        assert_eq!(fqdn("ns", "*", "cluster.local"), "*");
        assert_eq!(fqdn("", "x", "cluster.local"), "x..svc.cluster.local");
        let mut l = BTreeMap::new();
        l.insert("version".to_string(), "v1".to_string());
        l.insert("app".to_string(), "a".to_string());
        assert_eq!(selector_string(&l), "app=a,version=v1");
        assert_eq!(key_path("spec.m", "app"), "spec.m.app");
        assert_eq!(
            key_path("spec.m", "app.kubernetes.io/name"),
            "spec.m[app.kubernetes.io/name]"
        );
    }
}

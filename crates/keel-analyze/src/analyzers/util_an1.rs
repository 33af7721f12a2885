//! Host, namespace and selector helpers shared by the VirtualService and Gateway analyzers,
//! mirroring Istio's `pkg/config/analysis/analyzers/util` and `pkg/config/host`.

use std::collections::BTreeMap;

use keel_config::Resource;

use crate::context::AnalysisContext;

/// The gateway name that means "the sidecars of the mesh".
pub const MESH_GATEWAY: &str = "mesh";
/// `exportTo` value meaning every namespace.
pub const EXPORT_TO_ALL: &str = "*";
/// `exportTo` value meaning the object's own namespace.
pub const EXPORT_TO_LOCAL: &str = ".";
/// Istio's hard-coded system namespace (`constants.IstioSystemNamespace`).
pub const ISTIO_SYSTEM_NAMESPACE: &str = "istio-system";

/// `svc.<clusterDomain>`, the suffix short service names are qualified with.
pub fn cluster_local_domain(ctx: &AnalysisContext<'_>) -> String {
    format!("svc.{}", ctx.mesh.cluster_domain)
}

/// `ConvertHostToFQDN`: a short name (no dot, not a wildcard) becomes
/// `<host>.<ns>.<domain>`; anything else is returned as written.
pub fn to_fqdn(namespace: &str, host: &str, domain: &str) -> String {
    if !host.starts_with('*') && !host.contains('.') {
        format!("{host}.{namespace}.{domain}")
    } else {
        host.to_string()
    }
}

/// `NewScopedFqdn`: `<scope>/<fqdn>`.
pub fn scoped_fqdn(scope: &str, namespace: &str, host: &str, domain: &str) -> String {
    format!("{scope}/{}", to_fqdn(namespace, host, domain))
}

/// `ScopedFqdn.GetScopeAndFqdn`.
pub fn split_scoped(s: &str) -> (&str, &str) {
    s.split_once('/').unwrap_or((s, ""))
}

/// `host.Name.Matches`: wildcard-aware host comparison (symmetric).
pub fn host_matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => {
            if a.len() < b.len() {
                sb.ends_with(sa)
            } else {
                sa.ends_with(sb)
            }
        }
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// `host.NamesForNamespace`: the hosts visible from `namespace`; `ns/host` entries are kept
/// (without the prefix) when `ns` is that namespace or `*`.
pub fn names_for_namespace(hosts: &[String], namespace: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(hosts.len());
    for h in hosts {
        if h.contains('/') {
            let mut parts = h.split('/');
            let ns = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            if ns != namespace && ns != "*" {
                continue;
            }
            out.push(name.to_string());
        } else {
            out.push(h.clone());
        }
    }
    out
}

/// `GetResourceNameFromHost`: `(namespace, name)` of the Service a host names — parsed from
/// `<name>.<ns>.svc.cluster.local`, else the host itself in `default_ns`.
pub fn resource_name_from_host(default_ns: &str, host: &str) -> (String, String) {
    // Go's `^(.+)\.(.+)\.svc\.cluster\.local$`: the first group is greedy, so the namespace is
    // the shortest non-empty tail after a dot that leaves a non-empty name.
    let found = host.strip_suffix(".svc.cluster.local").and_then(|rest| {
        rest.rmatch_indices('.')
            .map(|(i, _)| (&rest[..i], &rest[i + 1..]))
            .find(|(name, ns)| !name.is_empty() && !ns.is_empty())
    });
    if let Some((name, ns)) = found {
        return (ns.to_string(), name.to_string());
    }
    (default_ns.to_string(), host.to_string())
}

/// `resource.NewShortOrFullName`: `ns/name`, or `name` in `default_ns`.
pub fn short_or_full_name(default_ns: &str, name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((ns, rest)) => {
            // Go splits on every `/` and keeps the second part only.
            let n = rest.split('/').next().unwrap_or_default();
            (ns.to_string(), n.to_string())
        }
        None => (default_ns.to_string(), name.to_string()),
    }
}

/// `resource.FullName.String()`: `ns/name`, or `name` without a namespace.
pub fn full_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// The resource's `FullName.String()`.
pub fn resource_full_name(r: &Resource) -> String {
    full_name(&r.meta.namespace, &r.meta.name)
}

pub use super::util::selector_string;

pub use super::util::selector_matches;

/// A path segment for a map key: plain when it has no `.` or `[`, bracketed otherwise (Istio's
/// field map uses keys verbatim, so `app.kubernetes.io/name` is one segment there too).
pub fn key_segment(key: &str) -> String {
    if key.contains(['.', '[', ']']) {
        format!("[{key}]")
    } else {
        key.to_string()
    }
}

/// `util.GatewaySelector` with `ExtractLabelFromSelectorString`: the path of the selector's
/// first key (`spec.selector.<key>`), `None` for an empty selector.
pub fn gateway_selector_path(selector_str: &str) -> Option<String> {
    let (key, _) = selector_str.split_once('=')?;
    Some(format!("spec.selector.{}", key_segment(key)))
}

/// What `InitServiceEntryHostMap` stores per host: the ports the ServiceEntry (or Service)
/// exposes, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub ports: Vec<u32>,
}

/// `util.InitServiceEntryHostMap`: ServiceEntry hosts and Kubernetes Services, keyed by
/// `<scope>/<fqdn>` where scope is a namespace the host is visible in or `*`.
#[derive(Debug, Default)]
pub struct ServiceEntryHosts {
    /// Keys in first-insertion order; a later insert under the same key replaces the value
    /// in place (Go map assignment).
    entries: Vec<(String, HostEntry)>,
    index: BTreeMap<String, usize>,
    domain: String,
}

impl ServiceEntryHosts {
    pub fn new(ctx: &AnalysisContext<'_>) -> Self {
        let domain = cluster_local_domain(ctx);
        let mut m = ServiceEntryHosts {
            domain: domain.clone(),
            ..Default::default()
        };
        for (r, se) in ctx.service_entries() {
            let ns = r.meta.namespace.as_str();
            let entry = HostEntry {
                ports: se.ports.iter().map(|p| p.number).collect(),
            };
            let mut exports_to_all = false;
            for h in &se.hosts {
                if se.export_to.is_empty() || exports_to_all {
                    m.insert(scoped_fqdn(EXPORT_TO_ALL, ns, h, &domain), entry.clone());
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
                    m.insert(scoped_fqdn(scope, ns, h, &domain), entry.clone());
                    if exports_to_all {
                        break;
                    }
                }
            }
        }
        for (r, svc) in ctx.services() {
            let ns = r.meta.namespace.as_str();
            let entry = HostEntry {
                ports: svc
                    .spec
                    .ports
                    .iter()
                    .map(|p| u32::try_from(p.port).unwrap_or_default())
                    .collect(),
            };
            let anno = r
                .meta
                .annotations
                .get("networking.istio.io/exportTo")
                .map(String::as_str)
                .unwrap_or_default();
            let scopes: Vec<&str> = if anno.is_empty() {
                vec![EXPORT_TO_ALL]
            } else {
                anno.split(',')
                    .map(|s| if s == EXPORT_TO_LOCAL { ns } else { s })
                    .collect()
            };
            for scope in scopes {
                m.insert(scoped_fqdn(scope, ns, &r.meta.name, &domain), entry.clone());
            }
        }
        m
    }

    fn insert(&mut self, key: String, entry: HostEntry) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = entry,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, entry));
            }
        }
    }

    fn get(&self, key: &str) -> Option<&HostEntry> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// `util.GetDestinationHost`: the entry a destination host from namespace `source_ns`
    /// (of a VirtualService exported to `export_to`) resolves to.
    pub fn destination(
        &self,
        source_ns: &str,
        export_to: &[String],
        host: &str,
    ) -> Option<&HostEntry> {
        let d = &self.domain;
        if let Some(e) = self.get(&scoped_fqdn(EXPORT_TO_ALL, source_ns, host, d)) {
            return Some(e);
        }
        if export_to.is_empty() {
            if let Some(e) = self.get(&scoped_fqdn(source_ns, source_ns, host, d)) {
                return Some(e);
            }
        } else {
            for e in export_to {
                let scope = if e == EXPORT_TO_LOCAL {
                    source_ns
                } else {
                    e.as_str()
                };
                if let Some(found) = self.get(&scoped_fqdn(scope, source_ns, host, d)) {
                    return Some(found);
                }
            }
        }
        // Wildcard entries visible here. Go picks whichever its map iteration meets first;
        // Keel takes the longest matching suffix, then the first declared.
        let bare = host.strip_prefix('*').unwrap_or(host);
        let mut best: Option<(usize, &HostEntry)> = None;
        for (key, entry) in &self.entries {
            let (scope, se_host) = split_scoped(key);
            let Some(suffix) = se_host.strip_prefix('*') else {
                continue;
            };
            if scope != EXPORT_TO_ALL && scope != source_ns {
                continue;
            }
            if bare.ends_with(suffix) && best.is_none_or(|(len, _)| suffix.len() > len) {
                best = Some((suffix.len(), entry));
            }
        }
        best.map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            to_fqdn("ns", "a", "svc.cluster.local"),
            "a.ns.svc.cluster.local"
        );
        assert_eq!(to_fqdn("ns", "a.b", "svc.cluster.local"), "a.b");
        assert_eq!(to_fqdn("ns", "*", "svc.cluster.local"), "*");
        assert!(host_matches("*.a.com", "b.a.com"));
        assert!(host_matches("b.a.com", "*.a.com"));
        assert!(host_matches("*.a.com", "*.b.a.com"));
        assert!(host_matches("*", "anything"));
        assert!(!host_matches("a.com", "b.com"));
        assert_eq!(
            resource_name_from_host("d", "r.x.y.svc.cluster.local"),
            ("y".to_string(), "r.x".to_string())
        );
        assert_eq!(
            resource_name_from_host("d", "r..svc.cluster.local"),
            ("d".to_string(), "r..svc.cluster.local".to_string())
        );
        assert_eq!(
            resource_name_from_host("d", "a.b..svc.cluster.local"),
            ("b.".to_string(), "a".to_string())
        );
        assert_eq!(
            resource_name_from_host("d", "r"),
            ("d".to_string(), "r".to_string())
        );
        assert_eq!(
            short_or_full_name("d", "a/b"),
            ("a".to_string(), "b".to_string())
        );
        assert_eq!(full_name("", "b"), "b");
        let sel: BTreeMap<String, String> = [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into();
        assert_eq!(selector_string(&sel), "a=1,b=2");
        assert_eq!(
            gateway_selector_path("a=1,b=2").as_deref(),
            Some("spec.selector.a")
        );
        assert_eq!(
            gateway_selector_path("app.kubernetes.io/name=x").as_deref(),
            Some("spec.selector.[app.kubernetes.io/name]")
        );
        assert_eq!(
            names_for_namespace(
                &[
                    "ns1/a".to_string(),
                    "ns2/b".to_string(),
                    "*/c".to_string(),
                    "d".to_string()
                ],
                "ns1"
            ),
            vec!["a", "c", "d"]
        );
    }
}

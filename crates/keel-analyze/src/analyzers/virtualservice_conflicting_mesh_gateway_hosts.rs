//! `virtualservice.ConflictingMeshGatewayHostsAnalyzer`: IST0109 when several VirtualServices
//! bound to the mesh gateway (no `gateways`, or `mesh` among them) define the same host for
//! the same namespaces, which leaves the routing undefined.
//!
//! Hosts are keyed `<scope>/<fqdn>` with scope `*` (exported everywhere) or each namespace of
//! `exportTo`. A namespace-scoped key also conflicts with `*`-scoped keys whose host matches
//! it (wildcards included). Each VirtualService is reported once, with the first conflict
//! met; Keel visits keys in sorted order (Istio's map order is random) and VirtualServices in
//! input order.

use std::collections::{BTreeMap, BTreeSet};

use keel_config::Resource;

use super::Analyzer;
use super::util_an1::{
    EXPORT_TO_ALL, EXPORT_TO_LOCAL, MESH_GATEWAY, cluster_local_domain, host_matches,
    resource_full_name, scoped_fqdn, split_scoped,
};
use crate::context::AnalysisContext;
use crate::messages::{CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS, Message};

pub struct ConflictingMeshGatewayHostsAnalyzer;

impl Analyzer for ConflictingMeshGatewayHostsAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.ConflictingMeshGatewayHostsAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let hosts = mesh_gateway_hosts(ctx);
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for (key, list) in &hosts {
            let (scope, fqdn) = split_scoped(key);
            let mut all: Vec<&Resource> = list.clone();
            if scope != EXPORT_TO_ALL {
                for (other, vss) in &hosts {
                    let (other_scope, other_fqdn) = split_scoped(other);
                    if other_scope == EXPORT_TO_ALL && host_matches(fqdn, other_fqdn) {
                        all.extend(vss.iter().copied());
                    }
                }
            }
            if all.len() < 2 {
                continue;
            }
            let names = all
                .iter()
                .map(|r| resource_full_name(r))
                .collect::<Vec<_>>()
                .join(",");
            for r in &all {
                if !reported.insert(resource_full_name(r)) {
                    continue;
                }
                out.push(ctx.message(
                    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
                    r,
                    Some("metadata.name"),
                    format!(
                        "The VirtualServices {names} associated with mesh gateway define the same host {key} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."
                    ),
                ));
            }
        }
    }
}

/// `initMeshGatewayHosts`: `<scope>/<fqdn>` → the mesh-bound VirtualServices defining it (a
/// VirtualService listing a host twice appears twice).
fn mesh_gateway_hosts<'a>(ctx: &AnalysisContext<'a>) -> BTreeMap<String, Vec<&'a Resource>> {
    let domain = cluster_local_domain(ctx);
    let mut map: BTreeMap<String, Vec<&'a Resource>> = BTreeMap::new();
    for (r, vs) in ctx.virtual_services() {
        let on_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH_GATEWAY);
        if !on_mesh {
            continue;
        }
        let ns = r.meta.namespace.as_str();
        let scopes: BTreeSet<&str> =
            if vs.export_to.is_empty() || vs.export_to.iter().any(|e| e == EXPORT_TO_ALL) {
                [EXPORT_TO_ALL].into()
            } else {
                vs.export_to
                    .iter()
                    .map(|e| if e == EXPORT_TO_LOCAL { ns } else { e.as_str() })
                    .collect()
            };
        for scope in scopes {
            for h in &vs.hosts {
                map.entry(scoped_fqdn(scope, ns, h, &domain))
                    .or_default()
                    .push(r);
            }
        }
    }
    map
}

//! `virtualservice.DestinationRuleAnalyzer`: a destination (or mirror) that names a subset
//! needs a DestinationRule for that host defining the subset.
//!
//! IST0101 `Referenced host+subset in destinationrule not found: "<host>+<subset>"` (routes)
//! and `Referenced mirror+subset in destinationrule not found: ...` (mirrors). Hosts are
//! compared as Istio does: `<name>.<ns>.svc.cluster.local` names the Service `ns/name`, any
//! other host is taken verbatim in the rule's (or VirtualService's) namespace — no `exportTo`
//! or wildcard handling.

use std::collections::BTreeSet;

use super::Analyzer;
use super::util_an1::resource_name_from_host;
use super::virtualservice_destination_hosts::{mirror_destinations, route_destinations};
use crate::context::AnalysisContext;
use crate::messages::{Message, REFERENCED_RESOURCE_NOT_FOUND, q};

pub struct DestinationRuleAnalyzer;

impl Analyzer for DestinationRuleAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.DestinationRuleAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the destination rules associated with each virtual service"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // ((namespace, name), subset) for every subset of every DestinationRule.
        let mut known: BTreeSet<((String, String), String)> = BTreeSet::new();
        for (r, dr) in ctx.destination_rules() {
            let host = resource_name_from_host(&r.meta.namespace, &dr.host);
            for s in &dr.subsets {
                known.insert((host.clone(), s.name.clone()));
            }
        }
        for (r, vs) in ctx.virtual_services() {
            let ns = r.meta.namespace.as_str();
            let missing = |host: &str, subset: &str| {
                !subset.is_empty()
                    && !known.contains(&(resource_name_from_host(ns, host), subset.to_string()))
            };
            for d in route_destinations(vs) {
                if missing(d.host(), d.subset()) {
                    out.push(ctx.message(
                        REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        Some(&d.host_path()),
                        format!(
                            "Referenced host+subset in destinationrule not found: {}",
                            q(&format!("{}+{}", d.host(), d.subset()))
                        ),
                    ));
                }
            }
            for d in mirror_destinations(vs) {
                if missing(d.host(), d.subset()) {
                    out.push(ctx.message(
                        REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        Some(&d.mirror_path()),
                        format!(
                            "Referenced mirror+subset in destinationrule not found: {}",
                            q(&format!("{}+{}", d.host(), d.subset()))
                        ),
                    ));
                }
            }
        }
    }
}

//! `destinationrule.SubsetSelectPodAnalyzer` (Istio's `PodNotSelectedAnalyzer`): hosts and
//! subsets that lead nowhere.
//!
//! - IST0174 UnknownDestinationRuleHost: `spec.host` resolves to no ServiceEntry or Service
//!   visible from the rule's namespace (with the rule's `exportTo`).
//! - IST0173 DestinationRuleSubsetNotSelectPods: a subset whose labels (merged over the
//!   ServiceEntry's workload selector) match no Pod in any namespace.
//!
//! As Istio does for endpoints, a pod scheduled on a Node given in the configuration
//! (`spec.nodeName`) also carries the node's non-empty topology labels
//! (`topology.kubernetes.io/region`, `…/zone`, `topology.istio.io/subzone`) and
//! `kubernetes.io/hostname` (the node name), so subsets may select by locality.

use std::collections::BTreeMap;

use keel_config::model::kube::node::pod_labels_on_node;

use super::Analyzer;
use super::util_an2::{HostMap, labels_match};
use crate::context::AnalysisContext;
use crate::messages::{
    DESTINATION_RULE_SUBSET_NOT_SELECT_PODS, Message, UNKNOWN_DESTINATION_RULE_HOST,
};

pub struct SubsetSelectPodAnalyzer;

impl Analyzer for SubsetSelectPodAnalyzer {
    fn name(&self) -> &'static str {
        "destinationrule.SubsetSelectPodAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if pods are selected by subsets in destination rules."
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let hosts = HostMap::new(ctx);
        let nodes: BTreeMap<&str, &BTreeMap<String, String>> = ctx
            .nodes()
            .map(|(r, _)| (r.name(), &r.meta.labels))
            .collect();
        let pods: Vec<BTreeMap<String, String>> = ctx
            .pods()
            .map(|(r, pod)| {
                let node = pod.spec.node_name.as_str();
                pod_labels_on_node(&r.meta.labels, node, nodes.get(node).copied())
            })
            .collect();
        for (r, dr) in ctx.destination_rules() {
            let Some(entry) = hosts.destination(r.namespace(), &dr.export_to, &dr.host) else {
                out.push(ctx.message(
                    UNKNOWN_DESTINATION_RULE_HOST,
                    r,
                    None,
                    format!(
                        "The host {} defined in the DestinationRule does not match any services in the mesh.",
                        dr.host
                    ),
                ));
                continue;
            };
            // Subsets by name: a later subset with the same name replaces an earlier one.
            let mut subsets: Vec<(&str, BTreeMap<String, String>)> = Vec::new();
            for s in &dr.subsets {
                let mut selector = entry.workload_labels.cloned().unwrap_or_default();
                selector.extend(s.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                match subsets.iter_mut().find(|(n, _)| *n == s.name) {
                    Some(slot) => slot.1 = selector,
                    None => subsets.push((&s.name, selector)),
                }
            }
            for (name, selector) in subsets {
                if !pods.iter().any(|labels| labels_match(&selector, labels)) {
                    out.push(ctx.message(
                        DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
                        r,
                        None,
                        format!(
                            "The Subset {name} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream)."
                        ),
                    ));
                }
            }
        }
    }
}

//! `sidecar.SelectorAnalyzer` (Istio's `sidecar/selector.go`): which workloads each Sidecar
//! applies to, and whether that is ambiguous or pointless.
//!
//! - IST0101 ReferencedResourceNotFound: a Sidecar's `workloadSelector` matches no pod in its
//!   namespace (line: the first selector label).
//! - IST0110 ConflictingSidecarWorkloadSelectors: a pod is selected by several Sidecars (one
//!   message per Sidecar and pod; line: `metadata.name`).
//! - IST0111 MultipleSidecarsWithoutWorkloadSelectors: a namespace has several Sidecars without
//!   a selector (one message per Sidecar).
//! - IST0167 IneffectivePolicy: the selected pod, or the namespace of a selector-less Sidecar,
//!   is in ambient mode, so there is no sidecar to configure (once per Sidecar).
//!
//! Istio walks Go maps here; Keel visits pods in input order, namespaces sorted, and lists
//! Sidecar names in input order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keel_config::Resource;

use super::Analyzer;
use super::util_sidecar::{
    first_selector_label, namespace_in_ambient_mode, pod_in_ambient_mode, selector_matches,
    selector_string, workload_selector_label_path,
};
use crate::context::AnalysisContext;
use crate::messages::{
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS, INEFFECTIVE_POLICY,
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS, Message, REFERENCED_RESOURCE_NOT_FOUND, list, q,
};

pub struct SidecarSelectorAnalyzer;

fn key(r: &Resource) -> (&str, &str) {
    (r.meta.namespace.as_str(), r.meta.name.as_str())
}

impl Analyzer for SidecarSelectorAnalyzer {
    fn name(&self) -> &'static str {
        "sidecar.SelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that sidecars that define a workload selector match at least one pod, and that there aren't multiple sidecar resources that select overlapping pods"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let pods: Vec<&Resource> = ctx.pods().map(|(r, _)| r).collect();
        // Pod index (input order) → the Sidecars selecting it.
        let mut pods_to_sidecars: BTreeMap<usize, Vec<&Resource>> = BTreeMap::new();
        // Namespace → its Sidecars without a selector.
        let mut namespace_sidecars: BTreeMap<&str, Vec<&Resource>> = BTreeMap::new();

        for (rs, sc) in ctx.sidecars() {
            let selector = sc
                .workload_selector
                .as_ref()
                .map(|s| &s.labels)
                .filter(|l| !l.is_empty());
            let Some(selector) = selector else {
                namespace_sidecars
                    .entry(rs.meta.namespace.as_str())
                    .or_default()
                    .push(rs);
                continue;
            };
            let mut found = false;
            for (i, pod) in pods.iter().enumerate() {
                if pod.meta.namespace == rs.meta.namespace
                    && selector_matches(selector, &pod.meta.labels)
                {
                    found = true;
                    pods_to_sidecars.entry(i).or_default().push(rs);
                }
            }
            if !found {
                let sel = selector_string(selector);
                let path = workload_selector_label_path(first_selector_label(&sel));
                out.push(ctx.message(
                    REFERENCED_RESOURCE_NOT_FOUND,
                    rs,
                    Some(&path),
                    format!("Referenced selector not found: {}", q(&sel)),
                ));
            }
        }

        // Namespace objects by name (the last one read wins, as in Istio's store).
        let namespaces: HashMap<&str, &Resource> = ctx
            .namespaces()
            .map(|(r, _)| (r.meta.name.as_str(), r))
            .collect();
        let mut reported: BTreeSet<(&str, &str)> = BTreeSet::new();

        for (i, sidecars) in &pods_to_sidecars {
            let pod = pods[*i];
            let ambient = pod_in_ambient_mode(pod);
            if sidecars.len() == 1 && !ambient {
                continue;
            }
            let names = list(&sidecars.iter().map(|r| r.name()).collect::<Vec<_>>());
            for rs in sidecars {
                if ambient {
                    // No sidecar runs there: the Sidecar is pointless rather than ambiguous.
                    if reported.insert(key(rs)) {
                        out.push(ctx.message(
                            INEFFECTIVE_POLICY,
                            rs,
                            None,
                            "The policy has no impact: selected workload is in ambient mode, the policy has no impact.".to_string(),
                        ));
                    }
                    continue;
                }
                out.push(ctx.message(
                    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
                    rs,
                    Some("metadata.name"),
                    format!(
                        "The Sidecars {names} in namespace {} select the same workload pod {}, which can lead to undefined behavior.",
                        q(&pod.meta.namespace),
                        q(&pod.meta.name)
                    ),
                ));
            }
        }

        for (ns, sidecars) in &namespace_sidecars {
            if namespace_in_ambient_mode(namespaces.get(ns).copied()) {
                for rs in sidecars {
                    if reported.insert(key(rs)) {
                        out.push(ctx.message(
                            INEFFECTIVE_POLICY,
                            rs,
                            None,
                            "The policy has no impact: namespace is in ambient mode, the policy has no impact.".to_string(),
                        ));
                    }
                }
                continue;
            }
            if sidecars.len() > 1 {
                let names = list(&sidecars.iter().map(|r| r.name()).collect::<Vec<_>>());
                for rs in sidecars {
                    out.push(ctx.message(
                        MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
                        rs,
                        None,
                        format!(
                            "The Sidecars {names} in namespace {} have no workload selector, which can lead to undefined behavior.",
                            q(ns)
                        ),
                    ));
                }
            }
        }
    }
}

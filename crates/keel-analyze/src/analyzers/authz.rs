//! `auth.AuthorizationPoliciesAnalyzer` (Istio's `AuthorizationPoliciesAnalyzer`).
//!
//! - IST0127 NoMatchingWorkloadsFound: the policy applies to no workload in the mesh. Only
//!   pods with a sidecar (or captured by ambient) count. A policy in the root namespace with a
//!   selector needs a match in any namespace (without a selector it is mesh-wide and fine);
//!   elsewhere a selector-less policy needs any such pod in its namespace, and one with a
//!   selector a matching pod there. The text carries the selector (`k=v,…`).
//! - IST0101 ReferencedResourceNotFound: a `rules[].from[].source.namespaces` or
//!   `notNamespaces` entry matches no Namespace in the input (`*`, `prefix*` and `*suffix`
//!   are patterns). The line is that of the same index in `namespaces`, as in Istio.

use std::collections::BTreeMap;

use super::Analyzer;
use super::util_an2::{AMBIENT_REDIRECTION, in_mesh, labels_match, selector_string};
use crate::context::AnalysisContext;
use crate::messages::{Message, NO_MATCHING_WORKLOADS_FOUND, REFERENCED_RESOURCE_NOT_FOUND, q};

pub struct AuthorizationPoliciesAnalyzer;

/// Istio's `namespaceMatch`: `*` matches all, `*suffix` and `prefix*` match by affix,
/// anything else case-insensitively.
fn namespace_matches(ns: &str, exp: &str) -> bool {
    if exp == "*" {
        return true;
    }
    if let Some(suffix) = exp.strip_prefix('*') {
        return ns.ends_with(suffix);
    }
    if let Some(prefix) = exp.strip_suffix('*') {
        return ns.starts_with(prefix);
    }
    ns.eq_ignore_ascii_case(exp)
}

impl Analyzer for AuthorizationPoliciesAnalyzer {
    fn name(&self) -> &'static str {
        "auth.AuthorizationPoliciesAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the validity of authorization policies"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // Labels of pods in the mesh, by namespace.
        let mut meshed: BTreeMap<&str, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
        for (r, pod) in ctx.pods() {
            let ambient = r
                .meta
                .annotations
                .get(AMBIENT_REDIRECTION)
                .is_some_and(|v| v == "enabled");
            let containers = pod.spec.containers.iter().chain(&pod.spec.init_containers);
            if ambient
                || in_mesh(
                    ctx,
                    r.namespace(),
                    &r.meta.labels,
                    &r.meta.annotations,
                    containers,
                )
            {
                meshed
                    .entry(r.namespace())
                    .or_default()
                    .push(&r.meta.labels);
            }
        }
        let namespaces: Vec<&str> = ctx.namespaces().map(|(r, _)| r.name()).collect();

        for (r, ap) in ctx.authorization_policies() {
            let ns = r.namespace();
            let selector = ap.selector.as_ref().map(|s| &s.match_labels);
            let no_match = |text: String| {
                ctx.message(
                    NO_MATCHING_WORKLOADS_FOUND,
                    r,
                    None,
                    format!(
                        "No matching workloads for this resource with the following labels: {text}"
                    ),
                )
            };
            if ns == ctx.mesh.root_namespace {
                if let Some(sel) = selector
                    && !meshed.values().flatten().any(|l| labels_match(sel, l))
                {
                    out.push(no_match(selector_string(sel)));
                }
            } else {
                let here = meshed.get(ns).map(Vec::as_slice).unwrap_or_default();
                match selector {
                    None if here.is_empty() => out.push(no_match(String::new())),
                    Some(sel) if !here.iter().any(|l| labels_match(sel, l)) => {
                        out.push(no_match(selector_string(sel)));
                    }
                    _ => {}
                }
            }

            for (i, rule) in ap.rules.iter().flatten().enumerate() {
                for (j, from) in rule.from.iter().flatten().enumerate() {
                    let Some(source) = &from.source else { continue };
                    let listed = source.namespaces.iter().enumerate();
                    let negated = source.not_namespaces.iter().enumerate();
                    for (k, exp) in listed.chain(negated) {
                        if namespaces.iter().any(|n| namespace_matches(n, exp)) {
                            continue;
                        }
                        out.push(ctx.message(
                            REFERENCED_RESOURCE_NOT_FOUND,
                            r,
                            Some(&format!("spec.rules[{i}].from[{j}].source.namespaces[{k}]")),
                            format!("Referenced namespace not found: {}", q(exp)),
                        ));
                    }
                }
            }
        }
    }
}

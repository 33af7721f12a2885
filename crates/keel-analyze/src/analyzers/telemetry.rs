//! Telemetry analyzers.
//!
//! `telemetry.SelectorAnalyzer`:
//! - IST0101 ReferencedResourceNotFound: a Telemetry's `selector.matchLabels` matches no Pod
//!   of its namespace (line: the selector's first label, sorted).
//! - IST0159 ConflictingTelemetryWorkloadSelectors: a Pod is selected by several Telemetries;
//!   each is reported, at `metadata.name`.
//!
//! `telemetry.DefaultSelectorAnalyzer`:
//! - IST0160 MultipleTelemetriesWithoutWorkloadSelectors: several Telemetries of a namespace
//!   have no `selector`, `targetRef` or `targetRefs`.
//!
//! `telemetry.ProviderAnalyzer`:
//! - IST0157 InvalidTelemetryProvider: with no default access-log providers in the mesh
//!   config, an `accessLogging` entry that is not `disabled` and names no providers does
//!   nothing.
//!
//! `telemetry.LightstepAnalyzer`:
//! - IST0002 Deprecated: a tracing provider names a mesh extension provider of the removed
//!   Lightstep type (only with a mesh config declaring one).
//!
//! Lists of Telemetry names in messages follow input order.

use std::collections::BTreeMap;

use keel_config::Resource;
use keel_config::model::telemetry::Telemetry;

use super::Analyzer;
use super::util_an2::{key_path, labels_match, selector_string};
use crate::context::AnalysisContext;
use crate::messages::{
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS, DEPRECATED, INVALID_TELEMETRY_PROVIDER,
    MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS, Message, REFERENCED_RESOURCE_NOT_FOUND, list,
    q,
};

fn names(rs: &[&Resource]) -> String {
    list(&rs.iter().map(|r| r.name()).collect::<Vec<_>>())
}

pub struct SelectorAnalyzer;

impl Analyzer for SelectorAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.SelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that telemetries that define a selector match at least one pod, and that there aren't multiple telemetry resources that select overlapping pods"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // Pods (by position in the input) and the Telemetries selecting each.
        let pods: Vec<&Resource> = ctx.pods().map(|(r, _)| r).collect();
        let mut selected: BTreeMap<usize, Vec<&Resource>> = BTreeMap::new();
        for (r, t) in ctx.telemetries() {
            let Some(sel) = t.selector.as_ref().map(|s| &s.match_labels) else {
                continue;
            };
            if sel.is_empty() {
                continue;
            }
            let mut found = false;
            for (i, p) in pods.iter().enumerate() {
                if p.namespace() == r.namespace() && labels_match(sel, &p.meta.labels) {
                    found = true;
                    selected.entry(i).or_default().push(r);
                }
            }
            if !found {
                let first = sel.keys().next().map(String::as_str).unwrap_or_default();
                out.push(ctx.message(
                    REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    Some(&key_path("spec.selector.matchLabels", first)),
                    format!(
                        "Referenced selector not found: {}",
                        q(&selector_string(sel))
                    ),
                ));
            }
        }
        for (i, ts) in selected {
            if ts.len() < 2 {
                continue;
            }
            let pod = pods[i];
            for r in &ts {
                out.push(ctx.message(
                    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
                    r,
                    Some("metadata.name"),
                    format!(
                        "The Telemetries {} in namespace {} select the same workload pod {}, which can lead to undefined behavior.",
                        names(&ts),
                        q(pod.namespace()),
                        q(pod.name())
                    ),
                ));
            }
        }
    }
}

pub struct DefaultSelectorAnalyzer;

fn has_no_selector(t: &Telemetry) -> bool {
    t.selector.is_none() && t.target_ref.is_none() && t.target_refs.is_empty()
}

impl Analyzer for DefaultSelectorAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.DefaultSelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that there aren't multiple telemetry resources that have no selector"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let mut by_ns: BTreeMap<&str, Vec<&Resource>> = BTreeMap::new();
        for (r, t) in ctx.telemetries() {
            if has_no_selector(t) {
                by_ns.entry(r.namespace()).or_default().push(r);
            }
        }
        for (ns, ts) in by_ns {
            if ts.len() < 2 {
                continue;
            }
            for r in &ts {
                out.push(ctx.message(
                    MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
                    r,
                    None,
                    format!(
                        "The Telemetries {} in namespace {} have no workload selector, which can lead to undefined behavior.",
                        names(&ts),
                        q(ns)
                    ),
                ));
            }
        }
    }
}

pub struct ProviderAnalyzer;

impl Analyzer for ProviderAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.ProviderAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that providers in telemery resource is valid"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        if !ctx.mesh.default_access_logging.is_empty() {
            return;
        }
        for (r, t) in ctx.telemetries() {
            for l in &t.access_logging {
                if l.disabled == Some(true) || !l.providers.is_empty() {
                    continue;
                }
                out.push(ctx.message(
                    INVALID_TELEMETRY_PROVIDER,
                    r,
                    None,
                    format!(
                        "The Telemetry {} in namespace {} with empty providers will be ignored.",
                        r.name(),
                        q(r.namespace())
                    ),
                ));
            }
        }
    }
}

pub struct LightstepAnalyzer;

impl Analyzer for LightstepAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.LightstepAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that lightstep provider is still used"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let lightstep = &ctx.mesh.lightstep_providers;
        if lightstep.is_empty() {
            return;
        }
        for (r, t) in ctx.telemetries() {
            for p in t.tracing.iter().flat_map(|tr| &tr.providers) {
                if lightstep.contains(&p.name) {
                    out.push(ctx.message(
                        DEPRECATED,
                        r,
                        None,
                        format!(
                            "Deprecated: The Lightstep provider {} is deprecated, please migrate to OpenTelemetry provider.",
                            p.name
                        ),
                    ));
                }
            }
        }
    }
}

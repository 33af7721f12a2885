//! `injection.Analyzer`: sidecar injection, from Namespace and Pod objects in the input.
//!
//! For each Namespace other than `istio-system`:
//! - IST0123 NamespaceMultipleInjectionLabels: more than one of `istio-injection`,
//!   `istio.io/rev`, `istio.io/dataplane-mode` is set (the latter two count only when
//!   `istio-injection` is absent or `enabled`).
//! - Ambient namespaces (`istio.io/dataplane-mode: ambient`) are not checked further.
//! - Neither `istio-injection` nor `istio.io/rev`: IST0148 NamespaceInjectionEnabledByDefault
//!   when the injector ConfigMap (`istio-sidecar-injector[-<rev>]`) says
//!   `sidecarInjectorWebhook.enableNamespacesByDefault: true`, else IST0102
//!   NamespaceNotInjected (at `metadata.name`).
//! - `istio-injection: enabled` marks the namespace injected.
//!
//! - IST0103 PodMissingProxy: a Pod of an injected namespace without an `istio-proxy`
//!   container (or init container) with an image, unless injection is turned off for it
//!   (`sidecar.istio.io/inject: "false"` label, else annotation) or it uses the host network.
//!
//! Namespaces that are not in the input are not checked (there is no cluster to ask).

use std::collections::BTreeSet;

use keel_config::model::kube::ConfigMap;

use super::Analyzer;
use super::util_an2::{INJECTION_LABEL, SIDECAR_INJECT, full_name, has_istio_proxy};
use crate::context::AnalysisContext;
use crate::messages::{
    Message, NAMESPACE_INJECTION_ENABLED_BY_DEFAULT, NAMESPACE_MULTIPLE_INJECTION_LABELS,
    NAMESPACE_NOT_INJECTED, POD_MISSING_PROXY, list,
};

const REVISION_LABEL: &str = "istio.io/rev";
const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

pub struct InjectionAnalyzer;

/// The injector ConfigMap's name for a revision.
fn injector_config_map(revision: &str) -> String {
    if revision.is_empty() || revision == "default" {
        "istio-sidecar-injector".to_string()
    } else {
        format!("istio-sidecar-injector-{revision}")
    }
}

/// `sidecarInjectorWebhook.enableNamespacesByDefault` from the ConfigMap's `values` JSON.
fn enable_namespaces_by_default(cm: &ConfigMap) -> bool {
    cm.get("values")
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v["sidecarInjectorWebhook"]["enableNamespacesByDefault"].as_bool())
        .unwrap_or(false)
}

impl Analyzer for InjectionAnalyzer {
    fn name(&self) -> &'static str {
        "injection.Analyzer"
    }

    fn description(&self) -> &'static str {
        "Checks conditions related to Istio sidecar injection"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // As in Istio, once an injector ConfigMap has been read its setting carries over to
        // later namespaces whose ConfigMap is absent.
        let mut by_default = false;
        let mut injected: BTreeSet<&str> = BTreeSet::new();
        for (r, _) in ctx.namespaces() {
            let ns = r.name();
            if ns == "istio-system" {
                continue;
            }
            let labels = &r.meta.labels;
            let injection = labels.get(INJECTION_LABEL);
            let revision = labels.get(REVISION_LABEL);

            let mut istio_labels = Vec::new();
            if let Some(v) = injection {
                istio_labels.push(format!("{INJECTION_LABEL}={v}"));
            }
            for l in [REVISION_LABEL, DATAPLANE_MODE_LABEL] {
                if let Some(v) = labels.get(l)
                    && injection.is_none_or(|i| i == "enabled")
                {
                    istio_labels.push(format!("{l}={v}"));
                }
            }
            if istio_labels.len() > 1 {
                out.push(ctx.message(
                    NAMESPACE_MULTIPLE_INJECTION_LABELS,
                    r,
                    None,
                    format!(
                        "The namespace has more than one type of injection labels {}, which may lead to undefined behavior. Make sure only one injection label exists.",
                        list(&istio_labels)
                    ),
                ));
            }
            if labels
                .get(DATAPLANE_MODE_LABEL)
                .is_some_and(|v| v == "ambient")
            {
                continue;
            }

            let cm_name = injector_config_map(revision.map_or("", String::as_str));
            if let Some((_, cm)) = ctx.config_maps().find(|(c, _)| c.name() == cm_name) {
                by_default = enable_namespaces_by_default(cm);
            }

            if injection.is_none_or(String::is_empty) && revision.is_none() {
                if by_default {
                    out.push(ctx.message(
                        NAMESPACE_INJECTION_ENABLED_BY_DEFAULT,
                        r,
                        None,
                        "is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault as true.".to_string(),
                    ));
                } else {
                    out.push(ctx.message(
                        NAMESPACE_NOT_INJECTED,
                        r,
                        Some("metadata.name"),
                        format!(
                            "The namespace is not enabled for Istio injection. Run 'kubectl label namespace {ns} istio-injection=enabled' to enable it, or 'kubectl label namespace {ns} istio-injection=disabled' to explicitly mark it as not needing injection."
                        ),
                    ));
                }
                continue;
            }
            if injection.is_some_and(|v| v == "enabled") {
                injected.insert(ns);
            }
        }

        for (r, pod) in ctx.pods() {
            // A pod Keel derived from a workload template will be injected when it is created.
            if !injected.contains(r.namespace()) || crate::workload_pods::is_template_pod(r) {
                continue;
            }
            let inject = r
                .meta
                .labels
                .get(SIDECAR_INJECT)
                .or_else(|| r.meta.annotations.get(SIDECAR_INJECT));
            if inject.is_some_and(|v| v.eq_ignore_ascii_case("false")) || pod.spec.host_network {
                continue;
            }
            let containers = pod.spec.containers.iter().chain(&pod.spec.init_containers);
            if !has_istio_proxy(containers) {
                out.push(ctx.message(
                    POD_MISSING_PROXY,
                    r,
                    None,
                    format!(
                        "The pod {} is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.",
                        full_name(r)
                    ),
                ));
            }
        }
    }
}

//! `injection.ImageAutoAnalyzer`: workloads written for injection (`image: auto` on their
//! `istio-proxy` container, which the injector replaces with the real proxy image).
//!
//! - IST0147 ImageAutoWithoutInjectionError: a Pod whose `istio-proxy` container has
//!   `image: auto`. A pod object is never injected again, so it cannot start, whatever the
//!   webhooks select.
//! - IST0146 ImageAutoWithoutInjectionWarning: a Deployment whose pod template has it, when no
//!   Istio injector webhook (a MutatingWebhookConfiguration hook whose name ends in
//!   `istio.io`) selects the template: the hook's namespace selector must match the labels of
//!   the Deployment's Namespace (`default` when it has none; no labels when the Namespace is
//!   not in the input) and its object selector the template's labels.
//!
//! Pods Keel derives from workload templates are not Pods of the input and are not reported.
//! Messages have no field line (as in istioctl).

use std::collections::BTreeMap;

use keel_config::model::kube::{Container, Webhook};

use super::Analyzer;
use crate::context::AnalysisContext;
use crate::messages::{
    IMAGE_AUTO_WITHOUT_INJECTION_ERROR, IMAGE_AUTO_WITHOUT_INJECTION_WARNING, Message,
};

pub struct ImageAutoAnalyzer;

/// An `istio-proxy` container (not an init container) with `image: auto`.
fn has_auto_image(containers: &[Container]) -> bool {
    containers
        .iter()
        .any(|c| c.name == "istio-proxy" && c.image == "auto")
}

fn text(kind: &str, name: &str) -> String {
    format!(
        "{kind} {name} contains `image: auto` but does not match any Istio injection webhook selectors."
    )
}

impl Analyzer for ImageAutoAnalyzer {
    fn name(&self) -> &'static str {
        "injection.ImageAutoAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Makes sure that Pods and Deployments with `image: auto` are going to be injected"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let hooks: Vec<&Webhook> = ctx
            .mutating_webhook_configurations()
            .flat_map(|(_, m)| &m.webhooks)
            .filter(|h| h.name.ends_with("istio.io"))
            .collect();

        for (r, pod) in ctx.pods() {
            if crate::workload_pods::is_template_pod(r) || !has_auto_image(&pod.spec.containers) {
                continue;
            }
            out.push(ctx.message(
                IMAGE_AUTO_WITHOUT_INJECTION_ERROR,
                r,
                None,
                text("Pod", r.name()),
            ));
        }

        let no_labels = BTreeMap::new();
        for (r, d) in ctx.deployments() {
            let template = &d.spec.template;
            if !has_auto_image(&template.spec.containers) {
                continue;
            }
            let ns = if r.namespace().is_empty() {
                "default"
            } else {
                r.namespace()
            };
            let ns_labels = ctx
                .namespaces()
                .find(|(n, _)| n.name() == ns)
                .map_or(&no_labels, |(n, _)| &n.meta.labels);
            let pod_labels = &template.metadata.labels;
            if !hooks.iter().any(|h| h.selects(ns_labels, pod_labels)) {
                out.push(ctx.message(
                    IMAGE_AUTO_WITHOUT_INJECTION_WARNING,
                    r,
                    None,
                    text("Deployment", r.name()),
                ));
            }
        }
    }
}

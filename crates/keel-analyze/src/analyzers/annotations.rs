//! `annotations.K8sAnalyzer` (Istio's `annotations/annotations.go`): Istio annotations on
//! Namespaces, Services, Pods and Deployments (annotations on other kinds are not looked at).
//!
//! An annotation is Istio's when it is `kubernetes.io/ingress.class` or its prefix (the part
//! before the first `/`) ends in `istio.io`. For each, in key order:
//! - IST0108 UnknownAnnotation when Istio's table ([`super::annotations_table`]) has no such
//!   annotation;
//! - IST0135 DeprecatedAnnotation when it is deprecated (`sidecar.istio.io/inject` says it is
//!   replaced by the label, and is not reported when the resource also has that label); the
//!   checks go on;
//! - IST0107 MisplacedAnnotation when it applies to other kinds than the resource's (unless it
//!   applies to any kind), naming them;
//! - IST0125 InvalidAnnotation when its value fails Istio's check
//!   ([`super::annotations_validate`]).
//!
//! No line: Istio means to point at the annotation but sets the line on a copy of the message,
//! so its output shows the resource's first line; Keel does the same. Pods Keel derives from
//! workload templates are not looked at: istioctl sees only the Pod objects in the files.

use keel_config::Resource;

use super::Analyzer;
use super::annotations_table::{ResourceType, lookup};
use super::annotations_validate::check;
use crate::context::AnalysisContext;
use crate::messages::{
    DEPRECATED_ANNOTATION, INVALID_ANNOTATION, MISPLACED_ANNOTATION, Message, UNKNOWN_ANNOTATION, q,
};

pub struct K8sAnalyzer;

const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";

impl Analyzer for K8sAnalyzer {
    fn name(&self) -> &'static str {
        "annotations.K8sAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for misplaced and invalid Istio annotations in Kubernetes resources"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (r, _) in ctx.namespaces() {
            check_resource(ctx, r, "Namespace", out);
        }
        for (r, _) in ctx.services() {
            check_resource(ctx, r, "Service", out);
        }
        for (r, _) in ctx.pods() {
            if !crate::workload_pods::is_template_pod(r) {
                check_resource(ctx, r, "Pod", out);
            }
        }
        for (r, _) in ctx.deployments() {
            check_resource(ctx, r, "Deployment", out);
        }
    }
}

fn check_resource(ctx: &AnalysisContext<'_>, r: &Resource, kind: &str, out: &mut Vec<Message>) {
    for (ann, value) in &r.meta.annotations {
        if !is_istio_annotation(ann) {
            continue;
        }
        let Some(def) = lookup(ann) else {
            out.push(ctx.message(
                UNKNOWN_ANNOTATION,
                r,
                None,
                format!("Unknown annotation: {ann}"),
            ));
            continue;
        };
        let has_replacement_label =
            ann == SIDECAR_INJECT && r.meta.labels.contains_key(SIDECAR_INJECT);
        if def.deprecated && !has_replacement_label {
            let extra = if ann == SIDECAR_INJECT {
                " in favor of the \"sidecar.istio.io/inject\" label"
            } else {
                ""
            };
            out.push(ctx.message(
                DEPRECATED_ANNOTATION,
                r,
                None,
                format!(
                    "Annotation {} has been deprecated{extra} and may not work in future Istio versions.",
                    q(ann)
                ),
            ));
        }
        if def.resources.contains(&ResourceType::Any) {
            continue;
        }
        if !def.resources.iter().any(|t| t.name() == kind) {
            let kinds: Vec<&str> = def.resources.iter().map(|t| t.name()).collect();
            out.push(ctx.message(
                MISPLACED_ANNOTATION,
                r,
                None,
                format!(
                    "Misplaced annotation: {ann} can only be applied to {}",
                    kinds.join(", ")
                ),
            ));
            continue;
        }
        if let Some(err) = check(ann, value) {
            out.push(ctx.message(
                INVALID_ANNOTATION,
                r,
                None,
                format!("Invalid annotation {ann}: {err}"),
            ));
        }
    }
}

/// Istio's `istioAnnotation`: the one Kubernetes annotation Istio documents, or a prefix in
/// `istio.io`.
fn is_istio_annotation(ann: &str) -> bool {
    ann == "kubernetes.io/ingress.class"
        || ann
            .split('/')
            .next()
            .is_some_and(|p| p.ends_with("istio.io"))
}

#[cfg(test)]
mod tests {
    use super::is_istio_annotation;

    #[test]
    fn istio_prefixes() {
        assert!(is_istio_annotation("sidecar.istio.io/inject"));
        assert!(is_istio_annotation("istio.io/rev"));
        assert!(is_istio_annotation("readiness.status.sidecar.istio.io/x"));
        assert!(is_istio_annotation("kubernetes.io/ingress.class"));
        assert!(is_istio_annotation("foo.istio.io"));
        assert!(!is_istio_annotation("kubernetes.io/psp"));
        assert!(!is_istio_annotation("helm.sh/hook"));
        assert!(!is_istio_annotation("example.com/istio.io"));
    }
}

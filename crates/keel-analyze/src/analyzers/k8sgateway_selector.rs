//! `k8sgateway.SelectorAnalyzer`: policies that try to pick a Gateway API gateway's pods by
//! label.
//!
//! - IST0166 IneffectiveSelector: an AuthorizationPolicy, RequestAuthentication, Telemetry or
//!   WasmPlugin with a `selector` (and no `targetRef`) whose labels are all on a pod of its
//!   namespace that Istio deployed for a Kubernetes Gateway (a pod labelled
//!   `gateway.networking.k8s.io/gateway-name`). Such gateways take policy through
//!   `targetRef(s)`; the selector has no effect on them. One message per matching pod, naming
//!   its gateway; no line.
//!
//! An empty selector (`selector: {}`) matches every gateway pod of the namespace. As in
//! Istio, only `targetRef` exempts a policy (`targetRefs` together with a `selector` is a
//! validation error anyway). Pods are visited in input order.

use std::collections::BTreeMap;

use keel_config::Resource;
use keel_config::model::common::{PolicyTargetReference, WorkloadSelector};
use keel_config::model::gateway_api::GATEWAY_NAME_LABEL;

use super::Analyzer;
use crate::context::AnalysisContext;
use crate::messages::{INEFFECTIVE_SELECTOR, Message};

pub struct SelectorAnalyzer;

impl Analyzer for SelectorAnalyzer {
    fn name(&self) -> &'static str {
        "k8sgateway.SelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Check that selectors are effective for Kubernetes gateway"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let gateway_pods: Vec<(&str, &BTreeMap<String, String>)> = ctx
            .pods()
            .filter(|(r, _)| r.meta.labels.contains_key(GATEWAY_NAME_LABEL))
            .map(|(r, _)| (r.namespace(), &r.meta.labels))
            .collect();
        if gateway_pods.is_empty() {
            return;
        }
        type Policy<'a> = (
            &'a Resource,
            Option<&'a WorkloadSelector>,
            Option<&'a PolicyTargetReference>,
        );
        let policies: Vec<Policy> = ctx
            .authorization_policies()
            .map(|(r, p)| (r, p.selector.as_ref(), p.target_ref.as_ref()))
            .chain(
                ctx.request_authentications()
                    .map(|(r, p)| (r, p.selector.as_ref(), p.target_ref.as_ref())),
            )
            .chain(
                ctx.telemetries()
                    .map(|(r, p)| (r, p.selector.as_ref(), p.target_ref.as_ref())),
            )
            .chain(
                ctx.wasm_plugins()
                    .map(|(r, p)| (r, p.selector.as_ref(), p.target_ref.as_ref())),
            )
            .collect();
        for (r, selector, target_ref) in policies {
            let Some(selector) = selector.filter(|_| target_ref.is_none()) else {
                continue;
            };
            for (_, labels) in gateway_pods.iter().filter(|(ns, _)| *ns == r.namespace()) {
                let contains = selector
                    .match_labels
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v));
                if contains {
                    let gateway = labels.get(GATEWAY_NAME_LABEL).map_or("", String::as_str);
                    out.push(ctx.message(
                        INEFFECTIVE_SELECTOR,
                        r,
                        None,
                        format!(
                            "Ineffective selector on Kubernetes Gateway {gateway}. Use the TargetRef field instead."
                        ),
                    ));
                }
            }
        }
    }
}

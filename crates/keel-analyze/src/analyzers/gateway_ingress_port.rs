//! `gateway.IngressGatewayPortAnalyzer`: a Gateway's server ports against the Services in
//! front of its workload.
//!
//! - IST0101 `Referenced selector not found` when no pod (in any namespace) matches the
//!   Gateway's selector;
//! - IST0162 for each server port that no Service selecting those pods exposes, as `port` or
//!   numeric `targetPort`. Only ports whose `protocol` is written as `TCP` count — nothing
//!   defaults it, as in `istioctl analyze`.

use std::collections::BTreeSet;

use keel_config::types::IntOrString;

use super::Analyzer;
use super::util_an1::{gateway_selector_path, selector_matches, selector_string};
use crate::context::AnalysisContext;
use crate::messages::{
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE, Message, REFERENCED_RESOURCE_NOT_FOUND, q,
};

pub struct IngressGatewayPortAnalyzer;

/// `intstr.IntOrString.IntValue()`: a numeric string's value, 0 for a name.
fn int_value(v: &IntOrString) -> i64 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => s.parse().unwrap_or(0),
    }
}

impl Analyzer for IngressGatewayPortAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.IngressGatewayPortAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway's ports against the gateway's Kubernetes service ports"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (r, gw) in ctx.gateways() {
            let sel = selector_string(&gw.selector);
            let mut matched = 0usize;
            let mut service_ports: BTreeSet<i64> = BTreeSet::new();
            for (pod, _) in ctx.pods() {
                if !selector_matches(&gw.selector, &pod.meta.labels) {
                    continue;
                }
                matched += 1;
                // Services only select pods of their own namespace; one without a selector
                // selects every pod there.
                for (svc_r, svc) in ctx.services() {
                    if svc_r.meta.namespace != pod.meta.namespace
                        || !selector_matches(&svc.spec.selector, &pod.meta.labels)
                    {
                        continue;
                    }
                    for p in &svc.spec.ports {
                        if p.protocol.as_deref() != Some("TCP") {
                            continue;
                        }
                        service_ports.insert(i64::from(p.port));
                        if let Some(t) = &p.target_port {
                            let t = int_value(t);
                            if t != 0 {
                                service_ports.insert(t);
                            }
                        }
                    }
                }
            }
            let path = gateway_selector_path(&sel);
            if matched == 0 {
                out.push(ctx.message(
                    REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    path.as_deref(),
                    format!("Referenced selector not found: {}", q(&sel)),
                ));
                continue;
            }
            for server in &gw.servers {
                let Some(port) = &server.port else { continue };
                if !service_ports.contains(&i64::from(port.number)) {
                    out.push(ctx.message(
                        GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                        r,
                        path.as_deref(),
                        format!(
                            "The gateway is listening on a target port (port {}) that is not defined in the Service associated with its workload instances (Pod selector {sel}). If you need to access the gateway port through the gateway Service, it will not be available.",
                            port.number
                        ),
                    ));
                }
            }
        }
    }
}

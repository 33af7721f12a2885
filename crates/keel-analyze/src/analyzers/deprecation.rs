//! `deprecation.DeprecationAnalyzer` (Istio's `deprecation/deprecation.go`): IST0002 Deprecated
//! for fields Istio still reads but means to remove, or already ignores.
//!
//! - A VirtualService HTTP route with `fault.delay.percent` (the integer field) above 0: use
//!   `fault.delay.percentage`. One message per route (identical ones collapse in the output).
//! - A Sidecar with `outboundTrafficPolicy.egressProxy`: Istio ignores it.
//!
//! No line: Istio reports these at the resource's start. Istio's third case, the removed
//! `rbac.istio.io` CustomResourceDefinitions, needs CRD objects, which Keel does not read.

use super::Analyzer;
use crate::context::AnalysisContext;
use crate::messages::{DEPRECATED, Message};

pub struct DeprecationAnalyzer;

impl Analyzer for DeprecationAnalyzer {
    fn name(&self) -> &'static str {
        "deprecation.DeprecationAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for deprecated Istio types and fields"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (r, vs) in ctx.virtual_services() {
            for route in &vs.http {
                let delay = route.fault.as_ref().and_then(|f| f.delay.as_ref());
                if delay.is_some_and(|d| d.percent > 0) {
                    out.push(ctx.message(
                        DEPRECATED,
                        r,
                        None,
                        replaced(
                            "HTTPRoute.fault.delay.percent",
                            "HTTPRoute.fault.delay.percentage",
                        ),
                    ));
                }
            }
        }
        for (r, sc) in ctx.sidecars() {
            let egress_proxy = sc
                .outbound_traffic_policy
                .as_ref()
                .and_then(|p| p.egress_proxy.as_ref());
            if egress_proxy.is_some() {
                out.push(ctx.message(
                    DEPRECATED,
                    r,
                    None,
                    ignored("OutboundTrafficPolicy.EgressProxy"),
                ));
            }
        }
    }
}

fn replaced(deprecated: &str, replacement: &str) -> String {
    format!("Deprecated: {deprecated} is deprecated; use {replacement}")
}

fn ignored(field: &str) -> String {
    format!("Deprecated: {field} ignored")
}

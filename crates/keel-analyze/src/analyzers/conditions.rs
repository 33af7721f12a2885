//! `conditions.ConditionAnalyzer`: negative conditions Istio wrote into `status`.
//!
//! - IST0171 NegativeConditionStatus, per condition:
//!   - Service, ServiceEntry: `istio.io/WaypointBound` is `False`.
//!   - AuthorizationPolicy: `ZtunnelAccepted` or `WaypointAccepted` is `False`, or
//!     `WaypointAccepted` has reason `PartiallyInvalid` (whatever its status).
//!
//! Conditions of other tools (e.g. Argo CD's) are ignored. `status` is read from the YAML
//! as written. Kubernetes Gateway API routes and gateways, which Istio also checks, are not
//! kinds Keel reads.

use keel_config::Kind;

use super::Analyzer;
use super::util_an2::{Condition, status_conditions};
use crate::context::AnalysisContext;
use crate::messages::{Message, NEGATIVE_CONDITION_STATUS};

pub struct ConditionAnalyzer;

fn negative(kind: Kind, c: &Condition) -> bool {
    let is_false = c.status == "False";
    match kind {
        Kind::Service | Kind::ServiceEntry => c.type_ == "istio.io/WaypointBound" && is_false,
        Kind::AuthorizationPolicy => {
            (matches!(c.type_.as_str(), "ZtunnelAccepted" | "WaypointAccepted") && is_false)
                || (c.type_ == "WaypointAccepted" && c.reason == "PartiallyInvalid")
        }
        _ => false,
    }
}

impl Analyzer for ConditionAnalyzer {
    fn name(&self) -> &'static str {
        "conditions.ConditionAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for negative status conditions on resources"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for kind in [Kind::Service, Kind::ServiceEntry, Kind::AuthorizationPolicy] {
            for r in ctx.of_kind(kind) {
                for c in status_conditions(r).iter().filter(|c| negative(kind, c)) {
                    out.push(ctx.message(
                        NEGATIVE_CONDITION_STATUS,
                        r,
                        None,
                        format!(
                            "A condition with a negative status is present: type={}, reason={}, message={}.",
                            c.type_, c.reason, c.message
                        ),
                    ));
                }
            }
        }
    }
}

//! `conditions.ConditionAnalyzer`: negative conditions controllers wrote into `status`.
//!
//! - IST0171 NegativeConditionStatus, per condition:
//!   - Service, ServiceEntry: `istio.io/WaypointBound` is `False`.
//!   - AuthorizationPolicy: `ZtunnelAccepted` or `WaypointAccepted` is `False`, or
//!     `WaypointAccepted` has reason `PartiallyInvalid` (whatever its status).
//!   - Gateway API Gateway (`status.conditions`; listener conditions are not read), HTTPRoute
//!     and GRPCRoute (the conditions of every parent, `status.parents[*].conditions`):
//!     `Accepted`, `Programmed` or `ResolvedRefs` is `False`.
//!
//! Conditions of other tools (e.g. Argo CD's) are ignored. `status` is read from the YAML
//! as written.

use keel_config::Kind;
use keel_config::yaml::Node;

use super::Analyzer;
use super::util_an2::{Condition, conditions_of, status_conditions};
use crate::context::AnalysisContext;
use crate::messages::{Message, NEGATIVE_CONDITION_STATUS};

pub struct ConditionAnalyzer;

/// The kinds checked, in the order Istio checks them.
const KINDS: [Kind; 6] = [
    Kind::Service,
    Kind::ServiceEntry,
    Kind::AuthorizationPolicy,
    Kind::KubernetesGateway,
    Kind::HttpRoute,
    Kind::GrpcRoute,
];

fn negative(kind: Kind, c: &Condition) -> bool {
    let is_false = c.status == "False";
    match kind {
        Kind::Service | Kind::ServiceEntry => c.type_ == "istio.io/WaypointBound" && is_false,
        Kind::AuthorizationPolicy => {
            (matches!(c.type_.as_str(), "ZtunnelAccepted" | "WaypointAccepted") && is_false)
                || (c.type_ == "WaypointAccepted" && c.reason == "PartiallyInvalid")
        }
        Kind::KubernetesGateway | Kind::HttpRoute | Kind::GrpcRoute => {
            matches!(c.type_.as_str(), "Accepted" | "Programmed" | "ResolvedRefs") && is_false
        }
        _ => false,
    }
}

/// The conditions of a route: those each parent's controller reported, in order.
fn route_conditions(r: &keel_config::Resource) -> Vec<Condition> {
    let Some(parents) = r
        .origin
        .node
        .get("status")
        .and_then(|s| s.get("parents"))
        .and_then(Node::as_seq)
    else {
        return Vec::new();
    };
    parents.iter().flat_map(conditions_of).collect()
}

impl Analyzer for ConditionAnalyzer {
    fn name(&self) -> &'static str {
        "conditions.ConditionAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for negative status conditions on resources"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for kind in KINDS {
            for r in ctx.of_kind(kind) {
                let conditions = match kind {
                    Kind::HttpRoute | Kind::GrpcRoute => route_conditions(r),
                    _ => status_conditions(r),
                };
                for c in conditions.iter().filter(|c| negative(kind, c)) {
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

//! `schema.ValidationAnalyzer`: Istio's validation rules, reported as IST0106 (errors) and
//! IST0133 (warnings) on each resource, at the offending field's line; VirtualService rules
//! that can never match are IST0130 / IST0131, as in istioctl.

use keel_config::validate::Severity;

use super::Analyzer;
use crate::context::AnalysisContext;
use crate::messages::{Message, SCHEMA_VALIDATION_ERROR, SCHEMA_WARNING};

pub struct SchemaAnalyzer;

impl Analyzer for SchemaAnalyzer {
    fn name(&self) -> &'static str {
        "schema.ValidationAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Runs schema validation as an analyzer and reports any violations"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for r in ctx.resources {
            if !r.kind().is_istio() {
                continue;
            }
            for issue in r.validate(&ctx.mesh.root_namespace) {
                let (mtype, text) = match (&issue.analysis, issue.severity) {
                    (Some((code, text)), _) => match crate::messages::by_code(code) {
                        Some(t) => (t, text.clone()),
                        None => (
                            SCHEMA_WARNING,
                            format!("Schema validation warning: {}", issue.message),
                        ),
                    },
                    (None, Severity::Error) => (
                        SCHEMA_VALIDATION_ERROR,
                        format!("Schema validation error: {}", issue.message),
                    ),
                    (None, Severity::Warning) => (
                        SCHEMA_WARNING,
                        format!("Schema validation warning: {}", issue.message),
                    ),
                };
                let mut m = ctx.message(mtype, r, None, text);
                m = m.with_line(Some(r.origin.locate(&issue.path)));
                out.push(m);
            }
        }
    }
}

//! `envoyfilter.EnvoyPatchAnalyzer`: patch operations that will not do what they say.
//!
//! For each `configPatches[i]` of each EnvoyFilter, in input order (a patch without `patch`
//! ends the EnvoyFilter's checks, as in Istio):
//! - IST0153 EnvoyFilterUsesAddOperationIncorrectly: ADD to ROUTE_CONFIGURATION or HTTP_ROUTE.
//! - IST0154 EnvoyFilterUsesRemoveOperationIncorrectly: REMOVE from ROUTE_CONFIGURATION or
//!   HTTP_ROUTE.
//! - IST0152 EnvoyFilterUsesReplaceOperationIncorrectly: REPLACE on anything but
//!   NETWORK_FILTER, HTTP_FILTER or VIRTUAL_HOST.
//! - Other REMOVE and REPLACE, and INSERT_BEFORE/INSERT_AFTER are relative to what other
//!   filters did: without a `priority`, IST0155 EnvoyFilterUsesRelativeOperationWithProxyVersion
//!   if an earlier patch (in this or an earlier EnvoyFilter) with a `proxyVersion` match named
//!   the same filter, else IST0151 EnvoyFilterUsesRelativeOperation.
//!
//! The filter a patch names is its value's `name`, else the listener's filter-chain filter.
//! Istio points at `configPatches[i].patch.value`, an object, so messages carry the
//! resource's first line (and repeated messages on one EnvoyFilter collapse).

use keel_config::model::networking::envoy_filter::{
    ApplyTo, EnvoyConfigObjectPatch, PatchOperation,
};

use super::Analyzer;
use crate::context::AnalysisContext;
use crate::messages::{
    ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY, ENVOY_FILTER_USES_RELATIVE_OPERATION,
    ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION,
    ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY,
    ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY, Message, MessageType,
};

pub struct EnvoyPatchAnalyzer;

/// The name of the filter a patch is about, for telling patches of one filter apart. A
/// `name` in the value is kept in its JSON form so it never equals a filter-chain name.
fn instance_name(p: &EnvoyConfigObjectPatch) -> String {
    let Some(serde_json::Value::Object(fields)) = p.patch.as_ref().and_then(|x| x.value.as_ref())
    else {
        return String::new();
    };
    if let Some(name) = fields.get("name") {
        return name.to_string();
    }
    p.match_
        .as_ref()
        .and_then(|m| m.listener.as_ref())
        .and_then(|l| l.filter_chain.as_ref())
        .and_then(|fc| fc.filter.as_ref())
        .map(|f| f.name.clone())
        .unwrap_or_default()
}

fn text(mtype: MessageType) -> &'static str {
    if mtype == ENVOY_FILTER_USES_RELATIVE_OPERATION {
        "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly."
    } else if mtype == ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION {
        "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly."
    } else if mtype == ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY {
        "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER."
    } else if mtype == ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY {
        "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."
    } else {
        "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."
    }
}

impl Analyzer for EnvoyPatchAnalyzer {
    fn name(&self) -> &'static str {
        "envoyfilter.EnvoyPatchAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks an envoyFilters "
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // Filters named by earlier patches that match on a proxy version.
        let mut versioned: Vec<String> = Vec::new();
        for (r, ef) in ctx.envoy_filters() {
            for (i, p) in ef.config_patches.iter().enumerate() {
                let Some(patch) = &p.patch else { break };
                let name = instance_name(p);
                let route = matches!(p.apply_to, ApplyTo::RouteConfiguration | ApplyTo::HttpRoute);
                let relative = || {
                    (ef.priority == 0).then(|| {
                        if versioned.contains(&name) {
                            ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION
                        } else {
                            ENVOY_FILTER_USES_RELATIVE_OPERATION
                        }
                    })
                };
                let found = match patch.operation {
                    PatchOperation::Add if route => {
                        Some(ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY)
                    }
                    PatchOperation::Remove if route => {
                        Some(ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY)
                    }
                    PatchOperation::Replace
                        if !matches!(
                            p.apply_to,
                            ApplyTo::NetworkFilter | ApplyTo::HttpFilter | ApplyTo::VirtualHost
                        ) =>
                    {
                        Some(ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY)
                    }
                    PatchOperation::Remove
                    | PatchOperation::Replace
                    | PatchOperation::InsertBefore
                    | PatchOperation::InsertAfter => relative(),
                    _ => None,
                };
                if let Some(mtype) = found {
                    out.push(ctx.message(
                        mtype,
                        r,
                        Some(&format!("spec.configPatches[{i}].patch.value")),
                        text(mtype).to_string(),
                    ));
                }
                let version = p
                    .match_
                    .as_ref()
                    .and_then(|m| m.proxy.as_ref())
                    .is_some_and(|px| !px.proxy_version.is_empty());
                if version {
                    versioned.push(name);
                }
            }
        }
    }
}

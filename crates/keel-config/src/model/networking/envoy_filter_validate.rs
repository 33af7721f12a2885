//! Istio's `ValidateEnvoyFilter` (pkg/config/validation/envoyfilter) as far as it goes without
//! Envoy's protobuf registry, the EnvoyFilter CRD schema rules, and the patch-operation
//! checks of Istio's EnvoyFilter analyzer (as warnings).

use super::{
    ApplyTo, EnvoyConfigObjectMatch, EnvoyConfigObjectPatch, EnvoyFilter, ListenerMatch,
    PatchContext, PatchOperation, WorkloadSelector,
};
use crate::validate::common::{
    check_list_max, reject_dry_run_annotation, validate_label_value, validate_regex,
    validate_target_ref_schema,
};
use crate::validate::{Validate, Validator};

const HCM: &str = "envoy.filters.network.http_connection_manager";

impl Validate for EnvoyFilter {
    fn validate(&self, v: &mut Validator) {
        reject_dry_run_annotation(v);
        v.field("spec", |v| {
            if self.workload_selector.is_some() && !self.target_refs.is_empty() {
                v.error_at(
                    "targetRefs",
                    "only one of targetRefs or workloadSelector can be set: patch either the selected workloads or the targets",
                );
            }
            if let Some(sel) = &self.workload_selector {
                v.field("workloadSelector", |v| validate_selector(v, sel));
            }
            v.field("targetRefs", |v| {
                check_list_max(v, self.target_refs.len(), 16);
                for (i, r) in self.target_refs.iter().enumerate() {
                    v.index(i, |v| validate_target_ref_schema(v, r));
                }
            });
            v.field("configPatches", |v| {
                for (i, p) in self.config_patches.iter().enumerate() {
                    v.index(i, |v| validate_patch(v, p));
                }
            });
        });
    }
}

/// Istio's `ValidateAlphaWorkloadSelector` and the CRD rules on `labels`.
fn validate_selector(v: &mut Validator, sel: &WorkloadSelector) {
    v.field("labels", |v| {
        if sel.labels.len() > 256 {
            v.error(format!(
                "Too many: {}: must have at most 256 items",
                sel.labels.len()
            ));
        }
        for (k, val) in &sel.labels {
            if k.is_empty() {
                v.error(format!(
                    "empty key is not supported in selector: \"={val}\""
                ));
            } else if k.contains('*') || val.contains('*') {
                v.error_at(
                    k,
                    format!("wildcard is not supported in selector: \"{k}={val}\""),
                );
            } else if let Err(e) = validate_label_value(val) {
                v.error_at(k, e);
            }
        }
    });
    if sel.labels.is_empty() {
        v.warn("Envoy filter: workload selector specified without labels, will be applied to all services in namespace");
    }
}

fn validate_patch(v: &mut Validator, cp: &EnvoyConfigObjectPatch) {
    if cp.apply_to == ApplyTo::Invalid {
        return v.error("Envoy filter: missing applyTo: say which kind of Envoy object to patch, e.g. HTTP_FILTER");
    }
    let Some(patch) = &cp.patch else {
        return v.error("Envoy filter: missing patch");
    };
    let op = patch.operation;
    if op == PatchOperation::Invalid {
        return v.field("patch", |v| {
            v.error(
                "Envoy filter: missing patch operation, e.g. MERGE, ADD, REMOVE or INSERT_BEFORE",
            )
        });
    }
    match &patch.value {
        None if op != PatchOperation::Remove => {
            return v.field("patch", |v| {
                v.error("Envoy filter: missing patch value for non-remove operation")
            });
        }
        Some(value) if !value.is_object() => {
            return v.field("patch", |v| {
                v.error_at(
                    "value",
                    "in body must be of type object: give the Envoy configuration as a map",
                )
            });
        }
        _ => {}
    }
    if let Some(m) = &cp.match_ {
        let problems = v.issues.len();
        v.field("match", |v| validate_match_schema(v, m));
        if v.issues.len() > problems {
            return;
        }
        if !m.has_object_type() || m.waypoint.is_some() {
            // Nothing to line up with applyTo (a waypoint match fits every kind).
        } else {
            check_match_fits(v, cp.apply_to, m);
        }
    }
    warn_ignored_operation(v, cp.apply_to, op);
}

/// The CRD's rules on `match` and the proxy-version regex.
fn validate_match_schema(v: &mut Validator, m: &EnvoyConfigObjectMatch) {
    let kinds = [
        m.listener.is_some(),
        m.route_configuration.is_some(),
        m.cluster.is_some(),
        m.waypoint.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        v.error("must validate one and only one schema (oneOf): match one of listener, routeConfiguration, cluster or waypoint");
    }
    if (m.context == PatchContext::Waypoint) != m.waypoint.is_some() {
        v.error("only support waypointMatch when context is WAYPOINT: a WAYPOINT context needs a waypoint match and a waypoint match needs the WAYPOINT context");
    }
    if let Some(n) = m.waypoint.as_ref().and_then(|w| w.port_number)
        && !(1..=65535).contains(&n)
    {
        v.field("waypoint", |v| {
            v.error_at("portNumber", "port must be between 1-65535")
        });
    }
    if let Some(proxy) = &m.proxy
        && !proxy.proxy_version.is_empty()
        && let Err(e) = validate_regex(&proxy.proxy_version)
    {
        v.field("proxy", |v| {
            v.error_at(
                "proxyVersion",
                format!("Envoy filter: invalid regex for proxy version, [{e}]"),
            )
        });
    }
}

/// `applyTo`, `match` and the filter matches must line up.
fn check_match_fits(v: &mut Validator, apply_to: ApplyTo, m: &EnvoyConfigObjectMatch) {
    match apply_to {
        ApplyTo::Listener | ApplyTo::FilterChain | ApplyTo::NetworkFilter | ApplyTo::HttpFilter => {
            match &m.listener {
                None => v.error_at("match", "Envoy filter: applyTo for listener class objects cannot have non listener match"),
                Some(l) => v.field("match", |v| {
                    v.field("listener", |v| check_listener_match(v, apply_to, l))
                }),
            }
        }
        ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute
            if m.route_configuration.is_none() =>
        {
            v.error_at("match", "Envoy filter: applyTo for http route class objects cannot have non route configuration match");
        }
        ApplyTo::Cluster if m.cluster.is_none() => {
            v.error_at(
                "match",
                "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
            );
        }
        _ => {}
    }
}

fn check_listener_match(v: &mut Validator, apply_to: ApplyTo, l: &ListenerMatch) {
    let Some(filter) = l.filter_chain.as_ref().and_then(|fc| fc.filter.as_ref()) else {
        return;
    };
    v.field("filterChain", |v| {
        v.field("filter", |v| {
            if matches!(apply_to, ApplyTo::Listener | ApplyTo::FilterChain) {
                v.warn(format!(
                    "Envoy filter: filter match has no effect when used with {apply_to}"
                ));
            }
            if filter.name.is_empty() {
                return v.error("Envoy filter: filter match has no name to match on");
            }
            if let Some(sub) = &filter.sub_filter {
                if apply_to != ApplyTo::HttpFilter {
                    return v.error_at(
                        "subFilter",
                        "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only",
                    );
                }
                if filter.name != HCM && filter.name != "envoy.http_connection_manager" {
                    return v.error_at(
                        "name",
                        format!("Envoy filter: subfilter match requires filter match with {HCM}"),
                    );
                }
                if sub.name.is_empty() {
                    return v.error_at(
                        "subFilter",
                        "Envoy filter: subfilter match has no name to match on",
                    );
                }
                if let Some(new) = deprecated_filter_name(&sub.name) {
                    v.warn_at(
                        "subFilter",
                        format!(
                            "using deprecated filter name {:?}; use {new:?} instead",
                            sub.name
                        ),
                    );
                }
            }
            if let Some(new) = deprecated_filter_name(&filter.name) {
                v.warn_at(
                    "name",
                    format!(
                        "using deprecated filter name {:?}; use {new:?} instead",
                        filter.name
                    ),
                );
            }
        });
    });
}

/// Envoy's old filter names and their replacements (Istio's `ReverseDeprecatedFilterNames`).
fn deprecated_filter_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "envoy.http_connection_manager" => HCM,
        "envoy.tcp_proxy" => "envoy.filters.network.tcp_proxy",
        "envoy.mongo_proxy" => "envoy.filters.network.mongo_proxy",
        "envoy.redis_proxy" => "envoy.filters.network.redis_proxy",
        "envoy.ratelimit" => "envoy.filters.network.ratelimit",
        "envoy.client_ssl_auth" => "envoy.filters.network.client_ssl_auth",
        "envoy.echo" => "envoy.filters.network.echo",
        "envoy.buffer" => "envoy.filters.http.buffer",
        "envoy.cors" => "envoy.filters.http.cors",
        "envoy.csrf" => "envoy.filters.http.csrf",
        "envoy.ext_authz" => "envoy.filters.http.ext_authz",
        "envoy.fault" => "envoy.filters.http.fault",
        "envoy.grpc_http1_bridge" => "envoy.filters.http.grpc_http1_bridge",
        "envoy.grpc_json_transcoder" => "envoy.filters.http.grpc_json_transcoder",
        "envoy.grpc_web" => "envoy.filters.http.grpc_web",
        "envoy.gzip" => "envoy.filters.http.gzip",
        "envoy.health_check" => "envoy.filters.http.health_check",
        "envoy.ip_tagging" => "envoy.filters.http.ip_tagging",
        "envoy.lua" => "envoy.filters.http.lua",
        "envoy.rate_limit" => "envoy.filters.http.ratelimit",
        "envoy.router" => "envoy.filters.http.router",
        "envoy.listener.tls_inspector" => "envoy.filters.listener.tls_inspector",
        "envoy.listener.http_inspector" => "envoy.filters.listener.http_inspector",
        "envoy.listener.original_dst" => "envoy.filters.listener.original_dst",
        "envoy.listener.original_src" => "envoy.filters.listener.original_src",
        "envoy.listener.proxy_protocol" => "envoy.filters.listener.proxy_protocol",
        _ => return None,
    })
}

/// Istio's EnvoyFilter analyzer: operations Envoy ignores for an object kind.
fn warn_ignored_operation(v: &mut Validator, apply_to: ApplyTo, op: PatchOperation) {
    let route_kind = matches!(apply_to, ApplyTo::RouteConfiguration | ApplyTo::HttpRoute);
    let msg = match op {
        PatchOperation::Add if route_kind => {
            "the ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION or HTTP_ROUTE"
        }
        PatchOperation::Remove if route_kind => {
            "the REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION or HTTP_ROUTE"
        }
        PatchOperation::Replace
            if !matches!(apply_to, ApplyTo::HttpFilter | ApplyTo::NetworkFilter) =>
        {
            "the REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER"
        }
        _ => return,
    };
    v.field("patch", |v| v.warn_at("operation", msg));
}

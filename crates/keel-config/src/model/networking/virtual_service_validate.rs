//! Istio's `ValidateVirtualService` (`pkg/config/validation/validation.go` and
//! `virtualservice.go`) plus the constraints of the VirtualService CRD schema.

use std::collections::BTreeMap;

use super::net_rules as r;
use super::virtual_service::*;
use super::virtual_service_http::*;
use crate::types::{Duration, StringMatch};
use crate::validate::Validator;
use crate::validate::common::{validate_duration, validate_port};

/// `constants.IstioMeshGateway`.
const MESH: &str = "mesh";

/// Whether the routes are bound only to gateways (no `mesh` among non-empty `gateways`).
fn is_gateway(vs: &VirtualService) -> bool {
    !vs.gateways.iter().any(|g| g == MESH)
}

fn is_sni_host(vs: &VirtualService) -> bool {
    vs.tls
        .iter()
        .any(|t| t.r#match.iter().any(|m| !m.sni_hosts.is_empty()))
}

pub(super) fn check(v: &mut Validator, field: &str, res: Result<(), String>) {
    if let Err(e) = res {
        v.error_at(field, e);
    }
}

pub(super) fn check_here(v: &mut Validator, res: Result<(), String>) {
    if let Err(e) = res {
        v.error(e);
    }
}

pub(super) fn check_duration(v: &mut Validator, field: &str, d: &Option<Duration>) {
    if let Some(d) = d {
        check(v, field, validate_duration(d));
    }
}

pub(super) fn validate(vs: &VirtualService, v: &mut Validator) {
    // Routes converted from Kubernetes Gateway API carry this annotation; their gateway and
    // destination names follow Gateway API rules instead.
    let gateway_semantics = v
        .ctx
        .annotations
        .get("internal.istio.io/route-semantics")
        .is_some_and(|s| s == "gateway");
    let namespace = v.ctx.namespace.clone();
    v.field("spec", |v| {
        let delegate = vs.hosts.is_empty();
        if delegate {
            if !vs.gateways.is_empty() {
                v.error_at("gateways", "delegate virtual service must have no gateways specified");
            }
            if !vs.tls.is_empty() {
                v.error_at("tls", "delegate virtual service must have no tls route specified");
            }
            if !vs.tcp.is_empty() {
                v.error_at("tcp", "delegate virtual service must have no tcp route specified");
            }
        }

        let mut applies_to_mesh = vs.gateways.is_empty();
        let mut applies_to_gateway = false;
        if !vs.gateways.is_empty() {
            v.field("gateways", |v| validate_gateway_names(v, &vs.gateways, gateway_semantics));
            applies_to_gateway = is_gateway(vs);
            applies_to_mesh = !applies_to_gateway;
        }

        if !applies_to_gateway {
            v.each("http", &vs.http, |v, route| {
                v.each("match", &route.r#match, |v, m| {
                    for (field, headers) in [("headers", &m.headers), ("withoutHeaders", &m.without_headers)] {
                        for key in headers.keys().filter(|k| r::is_jwt_claim_route(k)) {
                            v.field(field, |v| {
                                v.error_at(key, format!(
                                    "JWT claim based routing (key: {key}) is only supported for gateway, found no gateways: [{}]; \
                                     bind the VirtualService to an ingress gateway to route on claims",
                                    vs.gateways.join(" ")
                                ))
                            });
                        }
                    }
                });
            });
        }

        let sni = is_sni_host(vs);
        let mut all_hosts_valid = true;
        v.field("hosts", |v| {
            for (i, host) in vs.hosts.iter().enumerate() {
                let res = if applies_to_gateway {
                    r::validate_wildcard_domain_for_gateway(sni, host)
                } else {
                    r::validate_wildcard_domain(host)
                };
                match res {
                    Err(e) if !r::is_ip(host) => {
                        v.index(i, |v| v.error(e));
                        all_hosts_valid = false;
                    }
                    Err(_) => {}
                    Ok(()) if applies_to_mesh && host == "*" => {
                        v.index(i, |v| {
                            v.error("wildcard host * is not allowed for virtual services bound to the mesh gateway")
                        });
                        all_hosts_valid = false;
                    }
                    Ok(()) => {}
                }
            }
            if all_hosts_valid {
                for i in 0..vs.hosts.len() {
                    for j in i + 1..vs.hosts.len() {
                        if r::host_matches(&vs.hosts[i], &vs.hosts[j]) {
                            v.index(j, |v| {
                                v.error(format!(
                                    "duplicate hosts in virtual service: {} & {}",
                                    vs.hosts[i], vs.hosts[j]
                                ))
                            });
                        }
                    }
                }
            }
        });

        if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
            v.error("http, tcp or tls must be provided in virtual service");
        }
        v.each("http", &vs.http, |v, route| {
            validate_http_route(v, route, delegate, gateway_semantics)
        });
        v.each("tls", &vs.tls, |v, route| validate_tls_route(v, route, vs, gateway_semantics));
        v.each("tcp", &vs.tcp, |v, route| validate_tcp_route(v, route, gateway_semantics));

        r::validate_export_to(v, &namespace, &vs.export_to, false);

        super::virtual_service_unreachable::analyze(v, vs);
    });
}

/// Istio's `validateGatewayNames`: `mesh`, `<namespace>/<name>`, or the legacy `name.namespace`
/// form (a warning). Like Istio, checking stops after the first name without a `/`.
pub(super) fn validate_gateway_names(v: &mut Validator, names: &[String], gateway_semantics: bool) {
    for (i, name) in names.iter().enumerate() {
        let Some((ns, gw)) = name.split_once('/') else {
            v.index(i, |v| {
                if let Some((n, rest)) = name.split_once('.') {
                    let ns_part = rest.split('.').next().unwrap_or_default();
                    v.warn(format!(
                        "using legacy gatewayName format {name:?}; prefer the <namespace>/<name> format: \"{ns_part}/{n}\""
                    ));
                }
                check_here(v, r::validate_fqdn(name));
            });
            return;
        };
        v.index(i, |v| {
            if ns.is_empty() || gw.is_empty() {
                v.error("config namespace and gateway name cannot be empty");
            }
            if !r::is_dns1123_label(ns) {
                v.error(format!("invalid value for namespace: {ns:?}"));
            }
            if !r::is_dns1123_label(gw) && !gateway_semantics {
                v.error(format!("invalid value for gateway name: {gw:?}"));
            }
        });
    }
}

fn validate_http_route(
    v: &mut Validator,
    http: &HttpRoute,
    delegate: bool,
    gateway_semantics: bool,
) {
    validate_route_conflict(v, http, delegate);
    v.each("match", &http.r#match, validate_match_request);
    if let Some(h) = &http.headers {
        v.field("headers", |v| validate_headers(v, h));
    }
    if let Some(c) = &http.cors_policy {
        v.field("corsPolicy", |v| validate_cors(v, c));
    }
    if let Some(f) = &http.fault {
        v.field("fault", |v| validate_fault(v, f));
    }
    for (field, pct) in [
        ("mirrorPercent", http.mirror_percent),
        ("mirror_percent", http.mirror_percent_snake),
    ] {
        if let Some(p) = pct {
            v.field(field, |v| {
                if p > 100 {
                    v.error(format!(
                        "mirror_percent must have a max value of 100 (it has {p})"
                    ));
                }
                v.warn(
                    "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
                );
            });
        }
    }
    if let Some(p) = &http.mirror_percentage {
        v.field("mirrorPercentage", |v| {
            if p.value > 100.0 {
                v.error(format!(
                    "mirror_percentage must have a max value of 100 (it has {:.6})",
                    p.value
                ));
            }
            if p.value < 0.0 {
                v.error(format!(
                    "mirror_percentage must have a min value of 0 (it has {:.6})",
                    p.value
                ));
            }
        });
    }
    if let Some(m) = &http.mirror {
        v.field("mirror", |v| validate_destination(v, m));
    }
    v.each("mirrors", &http.mirrors, |v, m| {
        let Some(d) = &m.destination else {
            v.error("destination is required for mirrors");
            return;
        };
        v.field("destination", |v| validate_destination(v, d));
        if let Some(p) = &m.percentage {
            v.field("percentage", |v| {
                if p.value > 100.0 {
                    v.error(format!(
                        "mirror percentage must have a max value of 100 (it has {:.6})",
                        p.value
                    ));
                }
                if p.value < 0.0 {
                    v.error(format!(
                        "mirror percentage must have a min value of 0 (it has {:.6})",
                        p.value
                    ));
                }
            });
        }
    });
    if let Some(rd) = &http.redirect {
        v.field("redirect", |v| validate_redirect(v, rd));
    }
    if let Some(d) = &http.direct_response {
        v.field("directResponse", |v| validate_direct_response(v, d));
    }
    if let Some(rt) = &http.retries {
        v.field("retries", |v| validate_retry(v, rt));
    }
    if let Some(rw) = &http.rewrite {
        v.field("rewrite", |v| validate_rewrite(v, rw));
    }
    validate_authority_rewrite(v, http);
    validate_http_route_destinations(v, &http.route, gateway_semantics);
    check_duration(v, "timeout", &http.timeout);
}

/// `validateHTTPRouteConflict`: exactly one of route, redirect, directResponse (or delegate).
fn validate_route_conflict(v: &mut Validator, http: &HttpRoute, delegate_vs: bool) {
    if !delegate_vs && http.delegate.is_some() {
        // A root route: only the delegate may decide what happens.
        if http.redirect.is_some() {
            v.error_at(
                "redirect",
                format!("root HTTP route {} must not specify redirect", http.name),
            );
        }
        if !http.route.is_empty() {
            v.error_at(
                "route",
                format!("root HTTP route {} must not specify route", http.name),
            );
        }
        return;
    }
    if delegate_vs && http.delegate.is_some() {
        v.error_at("delegate", "delegate HTTP route cannot contain delegate");
    }
    if http.redirect.is_some() {
        if !http.route.is_empty() {
            v.error_at(
                "redirect",
                "HTTP route cannot contain both route and redirect",
            );
        }
        if http.fault.is_some() {
            v.error_at(
                "redirect",
                "HTTP route cannot contain both fault and redirect",
            );
        }
        if http.rewrite.is_some() {
            v.error_at(
                "redirect",
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if http.direct_response.is_some() {
            v.error_at(
                "redirect",
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
    } else if http.direct_response.is_some() {
        if !http.route.is_empty() {
            v.error_at(
                "directResponse",
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if http.fault.is_some() {
            v.error_at(
                "directResponse",
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if http.rewrite.is_some() {
            v.error_at(
                "directResponse",
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
    } else if http.route.is_empty() {
        v.error(
            "HTTP route, redirect or direct_response is required: add a `route` with a destination",
        );
    }
    if http.mirror.is_some() && !http.mirrors.is_empty() {
        v.error_at(
            "mirrors",
            "HTTP route cannot contain both mirror and mirrors",
        );
    }
}

fn validate_string_match_field(
    v: &mut Validator,
    field: &str,
    m: &Option<StringMatch>,
    allow_empty_prefix: bool,
) {
    let Some(m) = m else { return };
    v.field(field, |v| {
        r::string_match_oneof(v, m);
        let res = if allow_empty_prefix {
            r::string_match_regexp(m, field)
        } else {
            r::string_match(m, field)
        };
        check_here(v, res);
    });
}

fn validate_match_request(v: &mut Validator, m: &HttpMatchRequest) {
    v.field("headers", |v| {
        for (name, sm) in &m.headers {
            v.field(name, |v| {
                r::string_match_oneof(v, sm);
                check_here(v, r::validate_header_name_or_jwt_claim(name));
                check_here(v, r::string_match(sm, "headers"));
            });
        }
    });
    v.field("withoutHeaders", |v| {
        for (name, sm) in &m.without_headers {
            v.field(name, |v| {
                r::string_match_oneof(v, sm);
                check_here(v, r::validate_header_name_or_jwt_claim(name));
                // `*` is not RE2 here: Istio reads it as "header present".
                if sm.regex.as_deref() != Some("*") {
                    check_here(v, r::string_match(sm, "withoutHeaders"));
                }
            });
        }
    });
    // An empty URI prefix is legal (Envoy's path prefix may be empty); the others are not.
    validate_string_match_field(v, "uri", &m.uri, true);
    validate_string_match_field(v, "scheme", &m.scheme, false);
    validate_string_match_field(v, "method", &m.method, false);
    validate_string_match_field(v, "authority", &m.authority, false);
    v.field("queryParams", |v| {
        for (name, sm) in &m.query_params {
            v.field(name, |v| {
                r::string_match_oneof(v, sm);
                check_here(v, r::string_match(sm, "queryParams"));
            });
        }
    });
    if m.port != 0 {
        check(v, "port", validate_port(i64::from(m.port)));
    }
    r::validate_istio_labels(v, "sourceLabels", &m.source_labels);
    v.field("gateways", |v| {
        validate_gateway_names(v, &m.gateways, false)
    });
    if !m.source_namespace.is_empty() && !r::is_dns1123_label(&m.source_namespace) {
        v.error_at(
            "sourceNamespace",
            format!("sourceNamespace match {} is invalid", m.source_namespace),
        );
    }
}

/// `validateDestination`: a valid (wildcard) host other than `*`, subset and port.
pub(crate) fn validate_destination(v: &mut Validator, d: &Destination) {
    if d.host.is_empty() {
        v.error_at("host", "Required value: destination host is required (a service name such as reviews or reviews.default.svc.cluster.local)");
    } else if d.host == "*" {
        v.error_at("host", format!("invalid destination host {}", d.host));
    } else {
        check(v, "host", r::validate_wildcard_domain(&d.host));
    }
    if !d.subset.is_empty() {
        check(v, "subset", r::validate_subset_name(&d.subset));
    }
    if let Some(p) = &d.port {
        v.field("port", |v| {
            check(v, "number", validate_port(i64::from(p.number)))
        });
    }
}

fn validate_http_route_destinations(
    v: &mut Validator,
    dests: &[HttpRouteDestination],
    gateway_semantics: bool,
) {
    let mut total: i64 = 0;
    v.each("route", dests, |v, d| {
        match &d.destination {
            None => v.error("destination is required"),
            Some(dest) if !gateway_semantics => {
                v.field("destination", |v| validate_destination(v, dest))
            }
            Some(_) => {}
        }
        if let Some(h) = &d.headers {
            v.field("headers", |v| validate_headers(v, h));
        }
        if d.weight < 0 {
            v.error_at("weight", format!("weight {} < 0", d.weight));
        }
        total += i64::from(d.weight);
    });
    if dests.len() > 1 && total == 0 {
        v.error_at(
            "route",
            "total destination weight = 0: give at least one destination a positive weight",
        );
    }
}

pub(super) fn validate_route_destinations(
    v: &mut Validator,
    dests: &[RouteDestination],
    gateway_semantics: bool,
) {
    let mut total: i64 = 0;
    v.each("route", dests, |v, d| {
        match &d.destination {
            None => v.error("destination is required"),
            Some(dest) if !gateway_semantics => {
                v.field("destination", |v| validate_destination(v, dest))
            }
            Some(_) => {}
        }
        if d.weight < 0 {
            v.error_at("weight", format!("weight {} < 0", d.weight));
        }
        total += i64::from(d.weight);
    });
    if dests.len() > 1 && total == 0 {
        v.error_at(
            "route",
            "total destination weight = 0: give at least one destination a positive weight",
        );
    }
}

fn validate_tls_route(
    v: &mut Validator,
    tls: &TlsRoute,
    vs: &VirtualService,
    gateway_semantics: bool,
) {
    if tls.r#match.is_empty() {
        v.error("TLS route must have at least one match condition (sniHosts)");
    }
    v.each("match", &tls.r#match, |v, m| {
        if m.sni_hosts.is_empty() {
            v.error("TLS match must have at least one SNI host");
        } else {
            v.field("sniHosts", |v| {
                for (i, sni) in m.sni_hosts.iter().enumerate() {
                    v.index(i, |v| validate_sni_host(v, sni, vs));
                }
            });
        }
        validate_l4_common(
            v,
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
        );
    });
    if tls.route.is_empty() {
        v.error("TLS route is required");
    }
    validate_route_destinations(v, &tls.route, gateway_semantics);
}

fn validate_sni_host(v: &mut Validator, sni: &str, vs: &VirtualService) {
    let res = if is_gateway(vs) {
        r::validate_wildcard_domain_for_gateway(true, sni)
    } else {
        r::validate_wildcard_domain(sni)
    };
    if let Err(e) = res {
        if r::is_ip(sni) {
            v.warn(format!(
                "using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"
            ));
        } else {
            v.error(e);
        }
        return;
    }
    if !vs.hosts.iter().any(|h| r::host_subset_of(sni, h)) {
        v.error(format!(
            "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
            vs.hosts.join(", ")
        ));
    }
}

fn validate_l4_common(
    v: &mut Validator,
    subnets: &[String],
    port: u32,
    source_labels: &BTreeMap<String, String>,
    gateways: &[String],
) {
    v.field("destinationSubnets", |v| {
        for (i, s) in subnets.iter().enumerate() {
            if let Err(e) = r::validate_ip_subnet(s) {
                v.index(i, |v| v.error(e));
            }
        }
    });
    if port != 0 {
        check(v, "port", validate_port(i64::from(port)));
    }
    r::validate_istio_labels(v, "sourceLabels", source_labels);
    v.field("gateways", |v| validate_gateway_names(v, gateways, false));
}

fn validate_tcp_route(v: &mut Validator, tcp: &TcpRoute, gateway_semantics: bool) {
    v.each("match", &tcp.r#match, |v, m| {
        validate_l4_common(
            v,
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
        );
    });
    if tcp.route.is_empty() {
        v.error("TCP route is required");
    }
    validate_route_destinations(v, &tcp.route, gateway_semantics);
}

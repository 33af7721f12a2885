//! Istio's `ValidateSidecar` (`pkg/config/validation/validation.go`) plus the Sidecar CRD's
//! constraints: listener ports and binds, Unix sockets, default endpoints, inbound TLS,
//! connection pools, egress hosts and the outbound traffic policy.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    CaptureMode, IstioEgressListener, IstioIngressListener, OutboundTrafficPolicy,
    OutboundTrafficPolicyMode, Sidecar,
};
use crate::model::networking::destination_rule_validate::validate_connection_pool;
use crate::model::networking::gateway::{Port, TlsMode, validate_tls_options};
use crate::model::networking::net_rules as r;
use crate::model::networking::service_entry::validate_alpha_workload_selector;
use crate::model::networking::virtual_service_validate::validate_destination;
use crate::validate::Validator;
use crate::validate::common::{
    Protocol, UNIX_ADDRESS_PREFIX, unknown_protocol_hint, validate_ip_address,
    validate_namespace_slash_wildcard_hostname, validate_port, validate_port_name,
    validate_unix_address,
};

pub(super) fn validate(sc: &Sidecar, v: &mut Validator) {
    v.field("spec", |v| {
        if let Some(sel) = &sc.workload_selector {
            validate_alpha_workload_selector(v, sel, "sidecar");
        }
        if sc.egress.is_empty()
            && sc.ingress.is_empty()
            && sc.outbound_traffic_policy.is_none()
            && sc.inbound_connection_pool.is_none()
        {
            v.error("sidecar: empty configuration provided: set at least one of egress, ingress, outboundTrafficPolicy or inboundConnectionPool");
            return;
        }

        let mut ports = BTreeSet::new();
        v.each("ingress", &sc.ingress, |v, l| {
            validate_ingress(v, l, &mut ports)
        });
        if let Some(cp) = &sc.inbound_connection_pool {
            v.field("inboundConnectionPool", |v| validate_connection_pool(v, cp));
        }

        let mut ports = BTreeSet::new();
        let mut sockets = BTreeSet::new();
        let last = sc.egress.len().saturating_sub(1);
        v.field("egress", |v| {
            for (i, l) in sc.egress.iter().enumerate() {
                v.index(i, |v| {
                    validate_egress(v, l, i == last, &mut ports, &mut sockets)
                });
            }
        });

        if let Some(tp) = &sc.outbound_traffic_policy {
            v.field("outboundTrafficPolicy", |v| validate_outbound(v, tp));
        }
    });
}

fn check(v: &mut Validator, field: &str, res: Result<(), String>) {
    if let Err(e) = res {
        v.error_at(field, e);
    }
}

/// Istio's `ValidateProtocol`: empty means "detect from traffic".
fn check_protocol(v: &mut Validator, protocol: &str) {
    if !protocol.is_empty() && Protocol::parse(protocol).is_none() {
        v.error_at(
            "protocol",
            format!(
                "unsupported protocol: {protocol} ({})",
                unknown_protocol_hint(protocol)
            ),
        );
    }
}

fn check_port_name(v: &mut Validator, port: &Port) {
    if !port.name.is_empty() {
        check(v, "name", validate_port_name(&port.name));
    }
}

fn check_target_port(v: &mut Validator, port: &Port) {
    if port.target_port > 0 {
        v.error_at(
            "targetPort",
            "targetPort has no impact on Sidecars: remove it (the listener uses number)",
        );
    }
}

/// An IP `bind`; a Unix socket here gets a hint, since it needs port number 0.
fn check_ip_bind(v: &mut Validator, bind: &str, sockets_allowed: bool) {
    if bind.is_empty() {
        return;
    }
    if let Err(e) = validate_ip_address(bind) {
        let hint = match (bind.starts_with(UNIX_ADDRESS_PREFIX), sockets_allowed) {
            (true, true) => " (a Unix domain socket bind needs port number 0)",
            (true, false) => " (ingress listeners bind to an IP only)",
            _ => "",
        };
        v.error_at("bind", format!("{e}{hint}"));
    }
}

fn validate_ingress(v: &mut Validator, l: &IstioIngressListener, ports: &mut BTreeSet<u32>) {
    let Some(port) = &l.port else {
        v.error_at(
            "port",
            "sidecar: port is required for ingress listeners (e.g. port: {number: 9080, protocol: HTTP, name: http})",
        );
        return;
    };
    v.field("port", |v| {
        check_target_port(v, port);
        check_port_name(v, port);
        check_protocol(v, &port.protocol);
        check(v, "number", validate_port(i64::from(port.number)));
        if !ports.insert(port.number) {
            v.error_at(
                "number",
                format!(
                    "sidecar: ports on IP bound listeners must be unique: port {} is used by an earlier ingress listener",
                    port.number
                ),
            );
        }
    });
    check_ip_bind(v, &l.bind, false);

    if !l.default_endpoint.is_empty() {
        v.field("defaultEndpoint", |v| {
            validate_default_endpoint(v, &l.default_endpoint)
        });
    }

    if let Some(tls) = &l.tls {
        v.field("tls", |v| {
            if !tls.subject_alt_names.is_empty() {
                v.error_at(
                    "subjectAltNames",
                    "sidecar: subjectAltNames is not supported in ingress tls",
                );
            }
            if tls.https_redirect {
                v.error_at("httpsRedirect", "sidecar: httpsRedirect is not supported");
            }
            if !tls.credential_name.is_empty() {
                v.error_at("credentialName", "sidecar: credentialName is not currently supported: give the certificate as files (serverCertificate, privateKey)");
            }
            if matches!(tls.mode, TlsMode::IstioMutual | TlsMode::AutoPassthrough) {
                v.error_at(
                    "mode",
                    format!(
                        "configuration is invalid: cannot set mode to {} in sidecar ingress tls (use SIMPLE, MUTUAL or OPTIONAL_MUTUAL)",
                        tls.mode
                    ),
                );
            }
            validate_tls_options(v, tls);
        });
    }

    if let Some(cp) = &l.connection_pool {
        v.field("connectionPool", |v| {
            validate_connection_pool(v, cp);
            if cp.http.is_some() && !Protocol::parse(&port.protocol).is_some_and(Protocol::is_http)
            {
                v.warn_at("http", format!(
                    "sidecar: HTTP connection pool settings are configured for port {} ({:?}) but its protocol is not HTTP ({}); only TCP settings will apply",
                    port.number, port.name, port.protocol
                ));
            }
        });
    }
}

/// `defaultEndpoint`: `unix:///path`, or `host:port` with host `127.0.0.1`, `0.0.0.0`, `::1`,
/// `::` or empty.
fn validate_default_endpoint(v: &mut Validator, endpoint: &str) {
    if let Some(path) = endpoint.strip_prefix(UNIX_ADDRESS_PREFIX) {
        if let Err(e) = validate_unix_address(path) {
            v.error(e);
        }
        return;
    }
    let (host, port) = match split_host_port(endpoint) {
        Ok(hp) => hp,
        Err(e) => {
            v.error(format!("{e} (defaultEndpoint is 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix://<path>)"));
            return;
        }
    };
    if !matches!(host, "" | "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
        v.error("sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset");
    }
    match port.parse::<i64>() {
        Ok(n) => {
            if let Err(e) = validate_port(n) {
                v.error(e);
            }
        }
        Err(_) => v.error(format!(
            "sidecar: defaultEndpoint port ({port}) is not a number: strconv.Atoi: parsing {port:?}: invalid syntax"
        )),
    }
}

/// Go's `net.SplitHostPort`, with its error texts.
fn split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let err = |why: &str| Err(format!("address {hostport}: {why}"));
    let Some(i) = hostport.rfind(':') else {
        return err("missing port in address");
    };
    let (host, j, k) = if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return err("missing ']' in address");
        };
        if end + 1 == hostport.len() {
            return err("missing port in address");
        }
        if end + 1 != i {
            if hostport.as_bytes().get(end + 1) == Some(&b':') {
                return err("too many colons in address");
            }
            return err("missing port in address");
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..i];
        if host.contains(':') {
            return err("too many colons in address");
        }
        (host, 0, 0)
    };
    if hostport[j..].contains('[') {
        return err("unexpected '[' in address");
    }
    if hostport[k..].contains(']') {
        return err("unexpected ']' in address");
    }
    Ok((host, &hostport[i + 1..]))
}

fn validate_egress(
    v: &mut Validator,
    l: &IstioEgressListener,
    is_last: bool,
    ports: &mut BTreeSet<u32>,
    sockets: &mut BTreeSet<String>,
) {
    match &l.port {
        // The catch-all listener (no port) must be the last one.
        None if !is_last => v.error("sidecar: the egress listener with empty port should be the last listener in the list: give it a port or move it to the end"),
        None => {}
        Some(port) => {
            v.field("port", |v| check_target_port(v, port));
            validate_egress_port_bind_and_capture_mode(v, port, &l.bind, l.capture_mode);
            if port.number == 0 {
                if !sockets.insert(l.bind.clone()) {
                    v.error_at("bind", format!("sidecar: unix domain socket values for listeners must be unique: {} is used by an earlier egress listener", l.bind));
                }
            } else if !ports.insert(port.number) {
                v.field("port", |v| {
                    v.error_at("number", format!("sidecar: ports on IP bound listeners must be unique: port {} is used by an earlier egress listener", port.number));
                });
            }
        }
    }

    if l.hosts.is_empty() {
        v.error_at("hosts", "sidecar: egress listener must contain at least one host (e.g. \"./*\" for the Sidecar's namespace or \"istio-system/*\")");
        return;
    }
    let namespace = v.ctx.namespace.clone();
    // Per namespace, the services imported so far.
    let mut imported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    v.each("hosts", &l.hosts, |v, host| {
        if let Some((ns, svc)) = host.split_once('/') {
            let ns = if ns == "." { namespace.as_str() } else { ns };
            let seen = imported.entry(ns.to_string()).or_default();
            let duplicate = if svc == "*" {
                !seen.is_empty()
            } else {
                seen.contains(svc) || seen.contains("*")
            };
            if duplicate {
                v.warn(format!("duplicated egress host: {host}"));
            }
            seen.insert(svc.to_string());
        }
        for e in validate_namespace_slash_wildcard_hostname(host, false, false) {
            v.error(e);
        }
    });
    if imported.get("*").is_some_and(|s| s.contains("*")) && imported.len() != 1 {
        v.warn_at(
            "hosts",
            "`*/*` host select all resources, no other hosts can be added",
        );
    }
}

/// Istio's `validateSidecarEgressPortBindAndCaptureMode`.
fn validate_egress_port_bind_and_capture_mode(
    v: &mut Validator,
    port: &Port,
    bind: &str,
    capture_mode: CaptureMode,
) {
    v.field("port", |v| {
        check_port_name(v, port);
        check_protocol(v, &port.protocol);
        if port.number != 0 {
            check(v, "number", validate_port(i64::from(port.number)));
        }
    });
    if port.number != 0 {
        check_ip_bind(v, bind, true);
        return;
    }
    // Port 0: a Unix domain socket listener.
    match bind.strip_prefix(UNIX_ADDRESS_PREFIX) {
        None => v.error_at(
            if bind.is_empty() { "port" } else { "bind" },
            "sidecar: ports with 0 value must have a unix domain socket bind address (bind: unix:///path or unix://@name)",
        ),
        Some(path) => check(v, "bind", validate_unix_address(path)),
    }
    if !matches!(capture_mode, CaptureMode::Default | CaptureMode::None) {
        v.error_at(
            "captureMode",
            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
        );
    }
}

/// Istio's `validateSidecarOutboundTrafficPolicy`.
fn validate_outbound(v: &mut Validator, tp: &OutboundTrafficPolicy) {
    let Some(ep) = &tp.egress_proxy else { return };
    v.field("egressProxy", |v| {
        if tp.mode != OutboundTrafficPolicyMode::AllowAny {
            v.error(format!("sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode (mode is {})", tp.mode));
            return;
        }
        if !ep.host.is_empty() {
            check(v, "host", r::validate_fqdn(&ep.host));
        }
        if ep.port.is_none() {
            v.error_at("port", "sidecar: egress_proxy port must be non-nil");
            return;
        }
        // validateDestination repeats some host checks: keep one message per place.
        let before = v.issues.len();
        validate_destination(v, ep);
        let (old, new) = v.issues.split_at(before);
        let fresh: Vec<_> = new
            .iter()
            .filter(|i| !old.iter().any(|o| o.path == i.path && o.message == i.message))
            .cloned()
            .collect();
        v.issues.truncate(before);
        v.issues.extend(fresh);
    });
}

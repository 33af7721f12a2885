//! Istio's `ValidateDestinationRule` (`pkg/config/validation/validation.go`, with
//! `agent.ValidateTLS` and `agent.ValidateLocalityLbSetting`) plus the constraints of the
//! DestinationRule CRD schema (required fields, oneofs, ranges, durations).

use std::collections::{BTreeMap, BTreeSet};

use super::destination_rule::*;
use super::net_rules as r;
use crate::types::Duration;
use crate::validate::Validator;
use crate::validate::common::{
    validate_duration, validate_port, validate_workload_selector_labels,
};

fn check(v: &mut Validator, field: &str, res: Result<(), String>) {
    if let Err(e) = res {
        v.error_at(field, e);
    }
}

fn check_duration(v: &mut Validator, field: &str, d: &Option<Duration>) {
    if let Some(d) = d {
        check(v, field, validate_duration(d));
    }
}

pub(super) fn validate(dr: &DestinationRule, v: &mut Validator) {
    let namespace = v.ctx.namespace.clone();
    v.field("spec", |v| {
        if dr.host.is_empty() {
            v.error_at(
                "host",
                "Required value: host names the service the rule applies to (e.g. reviews or reviews.default.svc.cluster.local)",
            );
        } else {
            check(v, "host", r::validate_wildcard_domain(&dr.host));
        }
        if let Some(tp) = &dr.traffic_policy {
            v.field("trafficPolicy", |v| validate_traffic_policy(v, tp));
        }
        let mut names = BTreeSet::new();
        v.each("subsets", &dr.subsets, |v, s| {
            if !names.insert(s.name.clone()) {
                v.error_at("name", format!("duplicate subset names: {}", s.name));
            }
            check(v, "name", r::validate_subset_name(&s.name));
            r::validate_istio_labels(v, "labels", &s.labels);
            if let Some(tp) = &s.traffic_policy {
                v.field("trafficPolicy", |v| validate_traffic_policy(v, tp));
            }
        });
        r::validate_export_to(v, &namespace, &dr.export_to, dr.workload_selector.is_some());
        if let Some(sel) = &dr.workload_selector {
            v.field("workloadSelector", |v| {
                validate_workload_selector_labels(v, &sel.match_labels);
                if sel.match_labels.is_empty() {
                    v.warn("workload selector specified without labels");
                }
            });
        }
    });
}

/// `validateTrafficPolicy`.
pub(crate) fn validate_traffic_policy(v: &mut Validator, tp: &TrafficPolicy) {
    if tp.load_balancer.is_none()
        && tp.connection_pool.is_none()
        && tp.outlier_detection.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        v.error("traffic policy must have at least one field");
        return;
    }
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        v.error("tunnel and proxyProtocol must not be set together");
        return;
    }
    if let Some(o) = &tp.outlier_detection {
        v.field("outlierDetection", |v| validate_outlier_detection(v, o));
    }
    if let Some(cp) = &tp.connection_pool {
        v.field("connectionPool", |v| validate_connection_pool(v, cp));
    }
    if let Some(lb) = &tp.load_balancer {
        v.field("loadBalancer", |v| {
            validate_load_balancer(v, lb, tp.outlier_detection.is_some())
        });
    }
    if let Some(tls) = &tp.tls {
        v.field("tls", |v| validate_client_tls(v, tls));
    }
    if tp.port_level_settings.len() > 4096 {
        v.error_at(
            "portLevelSettings",
            format!(
                "Too many: {}: must have at most 4096 items",
                tp.port_level_settings.len()
            ),
        );
    }
    v.each("portLevelSettings", &tp.port_level_settings, |v, p| {
        match &p.port {
            None => v.error("portTrafficPolicy must have valid port"),
            // Istio only requires the port to be present; a number outside 1..65535 is
            // accepted but can never apply.
            Some(port) => v.field("port", |v| {
                if let Err(e) = validate_port(i64::from(port.number)) {
                    v.warn_at(
                        "number",
                        format!("{e}; this port-level setting never applies"),
                    );
                }
            }),
        }
        if p.outlier_detection.is_none()
            && p.connection_pool.is_none()
            && p.load_balancer.is_none()
            && p.tls.is_none()
        {
            v.error("port traffic policy must have at least one field");
            return;
        }
        if let Some(o) = &p.outlier_detection {
            v.field("outlierDetection", |v| validate_outlier_detection(v, o));
        }
        if let Some(cp) = &p.connection_pool {
            v.field("connectionPool", |v| validate_connection_pool(v, cp));
        }
        if let Some(lb) = &p.load_balancer {
            v.field("loadBalancer", |v| {
                validate_load_balancer(v, lb, p.outlier_detection.is_some())
            });
        }
        if let Some(tls) = &p.tls {
            v.field("tls", |v| validate_client_tls(v, tls));
        }
    });
    if let Some(t) = &tp.tunnel {
        v.field("tunnel", |v| validate_tunnel(v, t));
    }
    if let Some(rb) = &tp.retry_budget {
        v.field("retryBudget", |v| {
            if let Some(p) = rb.percent
                && (p.is_nan() || !(0.0..=100.0).contains(&p))
            {
                v.error_at(
                    "percent",
                    format!("Invalid value: {p}: retry budget percent must be between 0 and 100"),
                );
            }
        });
    }
}

fn validate_tunnel(v: &mut Validator, t: &TunnelSettings) {
    if !t.protocol.is_empty() && t.protocol != "CONNECT" && t.protocol != "POST" {
        v.error_at(
            "protocol",
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        );
    }
    if t.target_host.is_empty() {
        v.error_at(
            "targetHost",
            "Required value: tunnel target host is required",
        );
    } else if let Err(fqdn_err) = r::validate_fqdn(&t.target_host)
        && !r::is_ip(&t.target_host)
    {
        v.error_at(
            "targetHost",
            format!(
                "tunnel target host must be valid FQDN or IP address: {fqdn_err}; {} is not a valid IP",
                t.target_host
            ),
        );
    }
    if let Err(e) = validate_port(i64::from(t.target_port)) {
        v.error_at("targetPort", format!("tunnel target port is invalid: {e}"));
    }
}

/// `validateOutlierDetection`.
pub(crate) fn validate_outlier_detection(v: &mut Validator, o: &OutlierDetection) {
    check_duration(v, "baseEjectionTime", &o.base_ejection_time);
    if o.consecutive_errors != 0 {
        v.warn_at(
            "consecutiveErrors",
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
    }
    if !o.split_external_local_origin_errors
        && o.consecutive_local_origin_failures.is_some_and(|n| n > 0)
    {
        v.error_at(
            "consecutiveLocalOriginFailures",
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    check_duration(v, "interval", &o.interval);
    check(
        v,
        "maxEjectionPercent",
        r::validate_int_percent(i64::from(o.max_ejection_percent)),
    );
    check(
        v,
        "minHealthPercent",
        r::validate_int_percent(i64::from(o.min_health_percent)),
    );
}

/// `validateConnectionPool`.
pub(crate) fn validate_connection_pool(v: &mut Validator, cp: &ConnectionPoolSettings) {
    if cp.http.is_none() && cp.tcp.is_none() {
        v.error("connection pool must have at least one field");
        return;
    }
    if let Some(h) = &cp.http {
        v.field("http", |v| {
            for (field, value, what) in [
                (
                    "http1MaxPendingRequests",
                    h.http1_max_pending_requests,
                    "http1 max pending requests",
                ),
                (
                    "http2MaxRequests",
                    h.http2_max_requests,
                    "http2 max requests",
                ),
                (
                    "maxRequestsPerConnection",
                    h.max_requests_per_connection,
                    "max requests per connection",
                ),
                ("maxRetries", h.max_retries, "max retries"),
                (
                    "maxConcurrentStreams",
                    h.max_concurrent_streams,
                    "max concurrent streams",
                ),
            ] {
                if value < 0 {
                    v.error_at(field, format!("{what} must be non-negative"));
                }
            }
            check_duration(v, "idleTimeout", &h.idle_timeout);
            if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade) && h.use_client_protocol {
                v.error_at(
                    "useClientProtocol",
                    "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
                );
            }
            if let Some(ka) = &h.http2_keep_alive {
                v.field("http2KeepAlive", |v| {
                    check_duration(v, "interval", &ka.interval);
                    check_duration(v, "timeout", &ka.timeout);
                });
            }
        });
    }
    if let Some(t) = &cp.tcp {
        v.field("tcp", |v| {
            if t.max_connections < 0 {
                v.error_at("maxConnections", "max connections must be non-negative");
            }
            check_duration(v, "connectTimeout", &t.connect_timeout);
            check_duration(v, "maxConnectionDuration", &t.max_connection_duration);
            check_duration(v, "idleTimeout", &t.idle_timeout);
            if let Some(ka) = &t.tcp_keepalive {
                v.field("tcpKeepalive", |v| {
                    check_duration(v, "time", &ka.time);
                    check_duration(v, "interval", &ka.interval);
                });
            }
        });
    }
}

/// `validateLoadBalancer`, with the CRD's oneofs and warmup constraints.
pub(crate) fn validate_load_balancer(
    v: &mut Validator,
    lb: &LoadBalancerSettings,
    has_outlier: bool,
) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        v.error("only one of simple or consistentHash may be set (Invalid value: must validate one and only one schema (oneOf))");
    }
    if let Some(ch) = &lb.consistent_hash {
        v.field("consistentHash", |v| validate_consistent_hash(v, ch));
    }
    if let Some(l) = &lb.locality_lb_setting {
        v.field("localityLbSetting", |v| {
            validate_locality_lb(v, l, has_outlier)
        });
    }
    check_duration(v, "warmupDurationSecs", &lb.warmup_duration_secs);
    if let Some(w) = &lb.warmup {
        v.field("warmup", |v| {
            match &w.duration {
                None => v.error_at(
                    "duration",
                    "Required value: warmup needs a duration (e.g. 300s)",
                ),
                Some(d) if d.nanos < 1_000_000 => v.error_at(
                    "duration",
                    format!("Invalid value: {d}: must be a valid duration greater than 1ms"),
                ),
                Some(_) => {}
            }
            if let Some(p) = w.minimum_percent
                && (p.is_nan() || !(0.0..=100.0).contains(&p))
            {
                v.error_at(
                    "minimumPercent",
                    format!("Invalid value: {p}: minimumPercent must be between 0 and 100"),
                );
            }
            if let Some(a) = w.aggression
                && (a.is_nan() || a < 0.0)
            {
                v.error_at(
                    "aggression",
                    format!("Invalid value: {a}: aggression must be greater than or equal to 0"),
                );
            }
        });
    }
}

fn validate_consistent_hash(v: &mut Validator, ch: &ConsistentHashLb) {
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip.is_some(),
        ch.http_query_parameter_name.is_some(),
    ];
    if keys.iter().filter(|k| **k).count() > 1 {
        v.error("only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set");
    }
    if ch.ring_hash.is_some() && ch.maglev.is_some() {
        v.error("only one of ringHash or maglev may be set");
    }
    if let Some(c) = &ch.http_cookie {
        v.field("httpCookie", |v| {
            if c.name.is_empty() {
                v.error_at("name", "name required for HttpCookie");
            }
            v.each("attributes", &c.attributes, |v, a| {
                if a.name.is_empty() {
                    v.error_at("name", "Required value: a cookie attribute needs a name");
                }
            });
        });
    }
    if ch.minimum_ring_size != 0 {
        v.warn_at(
            "minimumRingSize",
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
        );
        if ch.ring_hash.is_some() || ch.maglev.is_some() {
            v.error_at(
                "minimumRingSize",
                "only one of MinimumRingSize or Maglev/Ringhash can be specified",
            );
        }
    }
    if let Some(ml) = &ch.maglev {
        v.field("maglev", |v| {
            if ml.table_size == 0 {
                v.error_at("tableSize", "tableSize must be set for maglev");
            }
            if ml.table_size >= 5_000_011 {
                v.error_at(
                    "tableSize",
                    "tableSize must be less than 5000011 for maglev",
                );
            }
            if !is_prime(ml.table_size) {
                v.error_at("tableSize", "tableSize must be a prime number for maglev");
            }
        });
    }
}

/// Envoy's primality test (which Istio copies), so 0 and 1 count as prime.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut f = 3u64;
    while f.saturating_mul(f) <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

/// `agent.ValidateLocalityLbSetting` (Istio reports only the first problem of several kinds).
pub(crate) fn validate_locality_lb(
    v: &mut Validator,
    lb: &LocalityLoadBalancerSetting,
    has_outlier: bool,
) {
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        v.error("can not simultaneously specify 'distribute' and 'failover'");
        return;
    }
    if !lb.failover.is_empty() {
        for p in &lb.failover_priority {
            if matches!(
                p.as_str(),
                "topology.kubernetes.io/region"
                    | "topology.kubernetes.io/zone"
                    | "topology.istio.io/subzone"
            ) {
                v.error_at(
                    "failoverPriority",
                    format!("can not simultaneously set 'failover' and topology label '{p}' in 'failover_priority'"),
                );
                return;
            }
        }
    }
    let mut sources = Vec::new();
    for (i, d) in lb.distribute.iter().enumerate() {
        sources.push(d.from.as_str());
        let mut total: u64 = 0;
        for w in d.to.values() {
            if *w == 0 || *w > 100 {
                v.field("distribute", |v| {
                    v.index(i, |v| {
                        v.error_at("to", "locality weight must be in range [1, 100]")
                    })
                });
                return;
            }
            total += u64::from(*w);
        }
        if total != 100 {
            v.field("distribute", |v| {
                v.index(i, |v| {
                    v.error_at("to", format!("total locality weight {total} != 100"))
                })
            });
            return;
        }
        if let Err(e) = validate_localities(d.to.keys().map(String::as_str)) {
            v.field("distribute", |v| v.index(i, |v| v.error_at("to", e)));
        }
    }
    if let Err(e) = validate_localities(sources.into_iter()) {
        v.error_at("distribute", e);
    }
    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !has_outlier {
        v.warn("outlier detection policy must be provided for failover");
    }
    v.each("failover", &lb.failover, |v, f| {
        if f.from == f.to {
            v.error("locality lb failover settings must specify different regions");
        }
        if f.from.contains('/') || f.to.contains('/') {
            v.error("locality lb failover only specify region");
        }
        if f.from.contains('*') || f.to.contains('*') {
            v.error("locality lb failover region should not contain '*' wildcard");
        }
    });
}

/// `validateLocalities`: well-formed `region/zone/subzone` with at most one trailing `*`, and
/// no locality covered by another.
fn validate_localities<'a>(localities: impl Iterator<Item = &'a str>) -> Result<(), String> {
    // region -> zone -> subzones; "*" marks "everything below".
    let mut seen: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for loc in localities {
        let stars = loc.matches('*').count();
        if stars > 1 || (stars == 1 && !loc.ends_with('*')) {
            return Err(format!(
                "locality {loc} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        let overlap = || format!("locality {loc} overlap with previous specified ones");
        if seen.contains_key("*") {
            return Err(overlap());
        }
        let items: Vec<&str> = loc.splitn(3, '/').collect();
        if items.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "locality {loc} must not contain empty region/zone/subzone info"
            ));
        }
        let region = items[0].to_string();
        match items.len() {
            1 => {
                if seen.contains_key(&region) {
                    return Err(overlap());
                }
                seen.insert(
                    region,
                    BTreeMap::from([("*".to_string(), BTreeSet::from(["*".to_string()]))]),
                );
            }
            2 => {
                let zone = items[1].to_string();
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(&zone) {
                    return Err(overlap());
                }
                zones.insert(zone, BTreeSet::from(["*".to_string()]));
            }
            _ => {
                let zone = items[1].to_string();
                let sub = items[2].to_string();
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") {
                    return Err(overlap());
                }
                let subs = zones.entry(zone).or_default();
                if subs.contains("*") || subs.contains(&sub) {
                    return Err(overlap());
                }
                subs.insert(sub);
            }
        }
    }
    Ok(())
}

/// `agent.ValidateTLS` for client TLS settings.
pub(crate) fn validate_client_tls(v: &mut Validator, tls: &ClientTlsSettings) {
    if tls.insecure_skip_verify == Some(true) {
        if tls.mode == TlsMode::Simple
            && (!tls.ca_certificates.is_empty()
                || !tls.credential_name.is_empty()
                || !tls.subject_alt_names.is_empty())
        {
            v.error("cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true");
        }
        if tls.mode == TlsMode::Mutual
            && (!tls.ca_certificates.is_empty() || !tls.subject_alt_names.is_empty())
        {
            v.error("cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true");
        }
    }
    if matches!(tls.mode, TlsMode::Simple | TlsMode::Mutual) && !tls.credential_name.is_empty() {
        if !tls.client_certificate.is_empty()
            || !tls.ca_certificates.is_empty()
            || !tls.private_key.is_empty()
            || !tls.ca_crl.is_empty()
        {
            v.error("cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
        }
        return;
    }
    if tls.mode == TlsMode::Mutual {
        if tls.client_certificate.is_empty() {
            v.error_at(
                "clientCertificate",
                "client certificate required for mutual tls (or set credentialName)",
            );
        }
        if tls.private_key.is_empty() {
            v.error_at(
                "privateKey",
                "private key required for mutual tls (or set credentialName)",
            );
        }
    }
    if tls.mode == TlsMode::IstioMutual {
        let files: Vec<&str> = [
            ("clientCertificate", &tls.client_certificate),
            ("privateKey", &tls.private_key),
            ("caCertificates", &tls.ca_certificates),
            ("credentialName", &tls.credential_name),
        ]
        .iter()
        .filter(|(_, val)| !val.is_empty())
        .map(|(k, _)| *k)
        .collect();
        if !files.is_empty() {
            v.warn(format!(
                "ISTIO_MUTUAL uses Istio's own workload certificates; {} will be ignored (use MUTUAL to present your own)",
                files.join(", ")
            ));
        }
    }
}

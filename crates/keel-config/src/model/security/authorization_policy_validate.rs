//! Istio's `ValidateAuthorizationPolicy` (pkg/config/validation) with the helpers of
//! pkg/config/security, plus the AuthorizationPolicy CRD schema rules.

use std::sync::OnceLock;

use regex::Regex;

use super::{Action, AuthorizationPolicy, Condition, Operation, Rule, Source};
use crate::validate::common::{check_list_max, validate_policy_selection};
use crate::validate::{Validate, Validator};

const DRY_RUN: &str = "istio.io/dry-run";

impl Validate for AuthorizationPolicy {
    fn validate(&self, v: &mut Validator) {
        validate_dry_run(v, self.action);
        v.field("spec", |v| {
            validate_policy_selection(
                v,
                self.selector.as_ref(),
                self.target_ref.as_ref(),
                &self.target_refs,
            );
            validate_action(v, self);
            let Some(rules) = &self.rules else { return };
            v.field("rules", |v| {
                check_list_max(v, rules.len(), 512);
                for (i, rule) in rules.iter().enumerate() {
                    v.index(i, |v| validate_rule(v, i, rule, self.action));
                }
            });
        });
    }
}

/// The `istio.io/dry-run` annotation: a boolean, and only for ALLOW and DENY policies.
fn validate_dry_run(v: &mut Validator, action: Action) {
    let Some(value) = v.ctx.annotations.get(DRY_RUN).cloned() else {
        return;
    };
    let msg = match action {
        Action::Allow | Action::Deny if parse_go_bool(&value).is_none() => {
            format!("annotation {DRY_RUN} with invalid value ({value}): use \"true\" or \"false\"")
        }
        Action::Allow | Action::Deny => return,
        other => format!(
            "the annotation {DRY_RUN} currently only supports action ALLOW/DENY, found action {other}"
        ),
    };
    v.field("metadata", |v| {
        v.field("annotations", |v| v.error_at(DRY_RUN, msg))
    });
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

const MEANINGLESS: &str = "action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request";

/// CUSTOM needs rules and a provider and can't match on identities; only CUSTOM may name a
/// provider; DENY needs rules.
fn validate_action(v: &mut Validator, ap: &AuthorizationPolicy) {
    match ap.action {
        Action::Custom => {
            if ap.rules.is_none() {
                v.error_at("action", format!("CUSTOM {MEANINGLESS}"));
            } else if ap.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                let at = if ap.provider.is_some() {
                    "provider"
                } else {
                    "action"
                };
                v.error_at(
                    at,
                    "`provider.name` must not be empty: name an extension provider declared in MeshConfig",
                );
            }
            v.field("rules", |v| {
                for (i, rule) in ap.rules.iter().flatten().enumerate() {
                    v.index(i, |v| validate_custom_rule(v, rule));
                }
            });
        }
        Action::Deny if ap.rules.is_none() => v.error_at("action", format!("DENY {MEANINGLESS}")),
        _ => {}
    }
    if ap.provider.is_some() && ap.action != Action::Custom {
        v.error_at(
            "provider",
            format!(
                "`provider` must not be with non CUSTOM action, found {}: set action: CUSTOM or remove provider",
                ap.action
            ),
        );
    }
}

fn validate_custom_rule(v: &mut Validator, rule: &Rule) {
    let unsupported = |v: &mut Validator, field: &str, name: &str| {
        v.error_at(
            field,
            format!("{name} is currently not supported with CUSTOM action"),
        );
    };
    v.field("from", |v| {
        for (j, from) in rule.from.iter().flatten().enumerate() {
            let Some(src) = &from.source else { continue };
            v.index(j, |v| {
                v.field("source", |v| {
                    let fields: [(&str, &str, &[String]); 8] = [
                        ("namespaces", "From.Namespaces", &src.namespaces),
                        ("notNamespaces", "From.NotNamespaces", &src.not_namespaces),
                        (
                            "serviceAccounts",
                            "From.ServiceAccounts",
                            &src.service_accounts,
                        ),
                        (
                            "notServiceAccounts",
                            "From.NotServiceAccounts",
                            &src.not_service_accounts,
                        ),
                        ("principals", "From.Principals", &src.principals),
                        ("notPrincipals", "From.NotPrincipals", &src.not_principals),
                        (
                            "requestPrincipals",
                            "From.RequestPrincipals",
                            &src.request_principals,
                        ),
                        (
                            "notRequestPrincipals",
                            "From.NotRequestPrincipals",
                            &src.not_request_principals,
                        ),
                    ];
                    for (field, name, values) in fields {
                        if !values.is_empty() {
                            unsupported(v, field, name);
                        }
                    }
                });
            });
        }
    });
    v.field("when", |v| {
        for (j, when) in rule.when.iter().enumerate() {
            let k = when.key.as_str();
            if matches!(
                k,
                "source.namespace" | "source.serviceAccount" | "source.principal"
            ) || k.starts_with("request.auth.")
            {
                v.index(j, |v| unsupported(v, "key", k));
            }
        }
    });
}

fn validate_rule(v: &mut Validator, i: usize, rule: &Rule, action: Action) {
    let mut from_exists = false;
    let mut tcp_in_from = false;
    if let Some(from) = &rule.from {
        v.field("from", |v| {
            if from.is_empty() {
                v.error(format!(
                    "`from` must not be empty, found at rule {i}: remove it to match any source"
                ));
            }
            check_list_max(v, from.len(), 512);
            for (j, f) in from.iter().enumerate() {
                v.index(j, |v| match &f.source {
                    None => v.error(format!("`from.source` must not be nil, found at rule {i}")),
                    Some(src) => {
                        from_exists = true;
                        tcp_in_from |= v.field("source", |v| validate_source(v, i, src));
                    }
                });
            }
        });
    }
    let mut to_exists = false;
    let mut tcp_in_to = false;
    if let Some(to) = &rule.to {
        v.field("to", |v| {
            if to.is_empty() {
                v.error(format!(
                    "`to` must not be empty, found at rule {i}: remove it to match any operation"
                ));
            }
            for (j, t) in to.iter().enumerate() {
                v.index(j, |v| match &t.operation {
                    None => v.error(format!("`to.operation` must not be nil, found at rule {i}")),
                    Some(op) => {
                        to_exists = true;
                        tcp_in_to |= v.field("operation", |v| validate_operation(v, i, op));
                    }
                });
            }
        });
    }
    v.field("when", |v| {
        for (j, cond) in rule.when.iter().enumerate() {
            v.index(j, |v| validate_condition(v, cond));
        }
    });
    if action == Action::Deny
        && ((from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to))
    {
        v.warn("configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port");
    }
}

/// Checks one source; returns whether it uses attributes that TCP traffic has.
fn validate_source(v: &mut Validator, i: usize, src: &Source) -> bool {
    let identity = [
        &src.principals,
        &src.not_principals,
        &src.namespaces,
        &src.not_namespaces,
    ];
    let accounts = [&src.service_accounts, &src.not_service_accounts];
    if identity.iter().any(|l| !l.is_empty()) && accounts.iter().any(|l| !l.is_empty()) {
        v.error(format!(
            "Cannot set serviceAccounts with namespaces or principals (found at rule {i}): use one way to name the peer"
        ));
    }
    let lists: [(&str, &str, &Vec<String>); 14] = [
        ("principals", "Principals", &src.principals),
        ("notPrincipals", "NotPrincipals", &src.not_principals),
        (
            "requestPrincipals",
            "RequestPrincipals",
            &src.request_principals,
        ),
        (
            "notRequestPrincipals",
            "NotRequestPrincipals",
            &src.not_request_principals,
        ),
        ("namespaces", "Namespaces", &src.namespaces),
        ("notNamespaces", "NotNamespaces", &src.not_namespaces),
        ("serviceAccounts", "ServiceAccounts", &src.service_accounts),
        (
            "notServiceAccounts",
            "NotServiceAccounts",
            &src.not_service_accounts,
        ),
        ("ipBlocks", "IpBlocks", &src.ip_blocks),
        ("notIpBlocks", "NotIpBlocks", &src.not_ip_blocks),
        ("remoteIpBlocks", "RemoteIpBlocks", &src.remote_ip_blocks),
        (
            "notRemoteIpBlocks",
            "NotRemoteIpBlocks",
            &src.not_remote_ip_blocks,
        ),
        ("trustDomains", "TrustDomains", &src.trust_domains),
        ("notTrustDomains", "NotTrustDomains", &src.not_trust_domains),
    ];
    if lists.iter().all(|(_, _, l)| l.is_empty()) {
        v.error(format!("`from.source` must not be empty, found at rule {i}: name at least one field, or remove the source"));
    }
    for (field, name, values) in lists {
        v.field(field, |v| {
            if name.ends_with("ServiceAccounts") {
                check_list_max(v, values.len(), 16);
                check_service_accounts(v, name, values);
            } else {
                check_empty_values(v, name, values);
            }
            if name.ends_with("IpBlocks") {
                validate_ips(v, values);
            }
        });
    }
    lists
        .iter()
        .any(|(field, _, l)| !l.is_empty() && !field.ends_with("equestPrincipals"))
}

/// Checks one operation; returns whether it names ports (which TCP traffic has).
fn validate_operation(v: &mut Validator, i: usize, op: &Operation) -> bool {
    let lists: [(&str, &str, &Vec<String>); 8] = [
        ("hosts", "Hosts", &op.hosts),
        ("notHosts", "NotHosts", &op.not_hosts),
        ("ports", "Ports", &op.ports),
        ("notPorts", "NotPorts", &op.not_ports),
        ("methods", "Methods", &op.methods),
        ("notMethods", "NotMethods", &op.not_methods),
        ("paths", "Paths", &op.paths),
        ("notPaths", "NotPaths", &op.not_paths),
    ];
    if lists.iter().all(|(_, _, l)| l.is_empty()) {
        v.error(format!("`to.operation` must not be empty, found at rule {i}: name at least one field, or remove the operation"));
    }
    for (field, name, values) in lists {
        v.field(field, |v| {
            check_empty_values(v, name, values);
            if name.ends_with("Ports") {
                validate_ports(v, values);
            }
            if name.ends_with("Paths") {
                check_path_templates(v, name, values);
            }
        });
    }
    !op.ports.is_empty() || !op.not_ports.is_empty()
}

fn validate_condition(v: &mut Validator, cond: &Condition) {
    let key = cond.key.as_str();
    if key.is_empty() {
        v.error_at("key", "Required value: `key` must not be empty; name an attribute such as request.headers[x-user]");
        return;
    }
    if cond.values.is_empty() && cond.not_values.is_empty() {
        v.error(format!(
            "at least one of `values` or `notValues` must be set for key {key}"
        ));
        return;
    }
    let check = match attribute_check(key) {
        Ok(c) => c,
        Err(e) => return v.error_at("key", e),
    };
    for (field, label, values) in [
        ("values", "value", &cond.values),
        ("notValues", "notValue", &cond.not_values),
    ] {
        v.field(field, |v| {
            let before = v.issues.len();
            check_empty_values(v, key, values);
            if v.issues.len() > before {
                return;
            }
            match check {
                ValueCheck::None => {}
                ValueCheck::Ips => validate_ips(v, values),
                ValueCheck::Ports => validate_ports(v, values),
                ValueCheck::ServiceAccounts => check_service_accounts(v, key, values),
            }
            for issue in &mut v.issues[before..] {
                issue.message = format!("invalid `{label}` for `key` {key}: {}", issue.message);
            }
        });
    }
}

/// How the values of a condition are checked, per attribute.
#[derive(Clone, Copy)]
enum ValueCheck {
    None,
    Ips,
    Ports,
    ServiceAccounts,
}

/// Istio's `security.ValidateAttribute`: the attributes a condition may use.
fn attribute_check(key: &str) -> Result<ValueCheck, String> {
    let map_key = |key: &str| {
        let ok = key.ends_with(']') && key.find('[').is_some_and(|o| o > 0 && o + 2 < key.len());
        if ok {
            Ok(ValueCheck::None)
        } else {
            Err(format!("bad key ({key}): should have format a[b]"))
        }
    };
    if key.starts_with("request.headers")
        || key.starts_with("request.experimental.inline.headers")
        || key.starts_with("request.auth.claims")
        || key.starts_with("experimental.envoy.filters.")
    {
        return map_key(key);
    }
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => Ok(ValueCheck::Ips),
        "destination.port" => Ok(ValueCheck::Ports),
        "source.serviceAccount" => Ok(ValueCheck::ServiceAccounts),
        "source.namespace"
        | "source.principal"
        | "source.trustDomain"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(ValueCheck::None),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        _ if key.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        _ => Err(format!(
            "unknown attribute: {key}; see https://istio.io/latest/docs/reference/config/security/conditions/"
        )),
    }
}

/// `security.CheckEmptyValues`.
fn check_empty_values(v: &mut Validator, name: &str, values: &[String]) {
    if let Some(i) = values.iter().position(String::is_empty) {
        v.index(i, |v| {
            v.error(format!("empty value not allowed, found in {name}"))
        });
    }
}

/// `security.ValidateIPs`: single addresses or CIDR ranges.
fn validate_ips(v: &mut Validator, values: &[String]) {
    for (i, ip) in values.iter().enumerate() {
        if ip.is_empty() {
            continue;
        }
        let bad = if ip.contains('/') {
            ip.parse::<ipnet::IpNet>()
                .err()
                .map(|e| format!("bad CIDR range ({ip}): {e}"))
        } else {
            ip.parse::<std::net::IpAddr>()
                .err()
                .map(|_| format!("bad IP address ({ip})"))
        };
        if let Some(msg) = bad {
            v.index(i, |v| v.error(msg));
        }
    }
}

/// `security.ValidatePorts`: decimal numbers up to 65535.
fn validate_ports(v: &mut Validator, values: &[String]) {
    for (i, p) in values.iter().enumerate() {
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u64>().is_ok_and(|n| n <= 65535);
        if !ok && !p.is_empty() {
            v.index(i, |v| {
                v.error(format!("bad port ({p}): must be a number in 0..65535"))
            });
        }
    }
}

/// `security.CheckServiceAccount`: `sa` or `ns/sa`, no wildcards, at most 320 characters.
fn check_service_accounts(v: &mut Validator, name: &str, values: &[String]) {
    if values.len() > 16 {
        v.error("may not have more than 16 values");
        return;
    }
    let format = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
    for (i, sa) in values.iter().enumerate() {
        let msg = if sa.is_empty() {
            format!("empty value not allowed, found in {name}")
        } else if sa.contains('*') {
            format!("wildcard not allowed, found in {name}")
        } else if sa.matches('/').count() > 1 {
            format!("{format}, found {sa:?} in {name}")
        } else if sa.len() > 320 {
            format!("value cannot exceed 320 characters, found {sa:?} in {name}")
        } else if sa.starts_with('/') {
            format!("{format}, found empty namespace {sa:?} in {name}")
        } else if sa.ends_with('/') {
            format!("{format}, found empty serviceAccount {sa:?} in {name}")
        } else {
            continue;
        };
        v.index(i, |v| v.error(msg));
    }
}

/// `security.CheckValidPathTemplate`: `{*}` matches one segment and `{**}` the rest; no
/// other braces, `{**}` last among the templates, and plain segments must be RFC 3986 pchars.
fn check_path_templates(v: &mut Validator, name: &str, paths: &[String]) {
    static LITERAL: OnceLock<Option<Regex>> = OnceLock::new();
    let literal_ok = |s: &str| {
        crate::validate::common::matches(&LITERAL, r"^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$", s)
    };
    for (i, path) in paths.iter().enumerate() {
        let template = path.contains("{*}") || path.contains("{**}");
        let trimmed = path.trim_matches('/');
        let mut seen_any = false;
        let mut problem = None;
        for glob in trimmed.split('/') {
            match glob {
                "{*}" if !seen_any => continue,
                "{**}" if !seen_any => {
                    seen_any = true;
                    continue;
                }
                "{*}" | "{**}" => {
                    problem = Some("{**} is not the last operator".to_string());
                }
                _ if glob.contains(['{', '}']) => {
                    problem =
                        Some("Contains '{' or '}' beyond a supported path template".to_string());
                }
                _ if template && !literal_ok(glob) => {
                    problem = Some(format!(
                        "Contains segment {glob} with invalid string literal"
                    ));
                }
                _ => continue,
            }
            break;
        }
        if let Some(p) = problem {
            v.index(i, |v| {
                v.error(format!(
                    "invalid or unsupported path {trimmed}, found in {name}. {p}"
                ))
            });
        }
    }
}

//! Istio's host, header, regex and `exportTo` rules as `pkg/config/validation` (and its
//! `agent`, `labels`, `host` and `visibility` packages) implement them. Used by VirtualService
//! and DestinationRule; other networking kinds may reuse them (candidates for
//! `validate/common.rs`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::OnceLock;

use regex::Regex;

use crate::types::{Percent, StringMatch};
use crate::validate::Validator;

pub(crate) use super::net_regex::validate_regexp;

fn cached(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

fn matches(cell: &'static OnceLock<Option<Regex>>, pattern: &str, s: &str) -> bool {
    cached(cell, pattern).is_some_and(|r| r.is_match(s))
}

const DNS1123_LABEL: &str = "[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?";

/// Istio's `labels.IsDNS1123Label`: like RFC 1123 but upper case is accepted.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    s.len() <= 63 && matches(&R, &format!("^{DNS1123_LABEL}$"), s)
}

/// Istio's `labels.IsWildcardDNS1123Label`: `*`, or a label optionally prefixed by `*` or `*-`.
pub(crate) fn is_wildcard_dns1123_label(s: &str) -> bool {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    s.len() <= 63 && matches(&R, &format!(r"^(\*|(\*|\*-)?{DNS1123_LABEL})$"), s)
}

fn check_dns1123_preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    Ok(())
}

fn validate_dns1123_labels(domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts.last().copied().unwrap_or_default();
    if !tld.is_empty() && tld.parse::<i64>().is_ok() {
        return Err(format!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        // A trailing dot (`istio.io.`) is allowed.
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// Istio's `ValidateFQDN`.
pub(crate) fn validate_fqdn(fqdn: &str) -> Result<(), String> {
    check_dns1123_preconditions(fqdn)?;
    validate_dns1123_labels(fqdn)
}

/// Istio's `ValidateWildcardDomain`: a DNS name whose first label may be a wildcard.
pub(crate) fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    check_dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => validate_dns1123_labels(r),
        None => Ok(()),
    }
}

/// Istio's `ValidateWildcardDomainForVirtualServiceBoundToGateway`: as above, but SNI hosts
/// may also be Istio's generated `outbound_.<port>_.<subset>_.<host>` names.
pub(crate) fn validate_wildcard_domain_for_gateway(sni: bool, domain: &str) -> Result<(), String> {
    check_dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if sni && first == "outbound_" {
        static R: OnceLock<Option<Regex>> = OnceLock::new();
        if !cached(&R, "outbound_.([0-8].*).*").is_some_and(|r| r.is_match(domain)) {
            return Err(format!(
                "domain name {domain:?} invalid (label {first:?} invalid)"
            ));
        }
        return Ok(());
    }
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => validate_dns1123_labels(r),
        None => Ok(()),
    }
}

/// Istio's `netutil.IsValidIPAddress`.
pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Istio's `ValidateIPSubnet`: an IP, or a CIDR block when the text has one `/`.
pub(crate) fn validate_ip_subnet(subnet: &str) -> Result<(), String> {
    if subnet.matches('/').count() == 1 {
        let (addr, bits) = subnet.split_once('/').unwrap_or_default();
        let ok = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 32),
            Ok(IpAddr::V6(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 128),
            Err(_) => false,
        } && !bits.starts_with('+');
        return if ok {
            Ok(())
        } else {
            Err(format!("{subnet} is not a valid CIDR block"))
        };
    }
    if is_ip(subnet) {
        Ok(())
    } else {
        Err(format!("{subnet} is not a valid IP"))
    }
}

/// `host.Name.Matches`: the two names overlap (one covers the other, wildcards included).
pub(crate) fn host_matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => {
            if a.len() < b.len() {
                sb.ends_with(sa)
            } else {
                sa.ends_with(sb)
            }
        }
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// `host.Name.SubsetOf`: every name `a` matches is also matched by `b`.
pub(crate) fn host_subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => a.len() >= b.len() && sa.ends_with(sb),
        (Some(_), None) => false,
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Istio's `validateExportTo` (`.`, `*`, or namespace names; no duplicates; `*` alone), with
/// the rule for DestinationRules that have a workload selector.
pub(crate) fn validate_export_to(
    v: &mut Validator,
    namespace: &str,
    export_to: &[String],
    is_dr_with_selector: bool,
) {
    if export_to.is_empty() {
        return;
    }
    v.field("exportTo", |v| {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (i, e) in export_to.iter().enumerate() {
            let key = if e == "." { namespace.to_string() } else { e.clone() };
            if seen.contains(&key) {
                if &key != e {
                    v.index(i, |v| {
                        v.error(format!(
                            "duplicate entries in exportTo: . and current namespace {namespace}"
                        ))
                    });
                } else {
                    v.index(i, |v| {
                        v.error(format!("duplicate entries in exportTo for entry {e}"))
                    });
                }
                continue;
            }
            let err = match key.as_str() {
                "." | "*" => None,
                "~" => Some(
                    "exportTo ~ (none) is not allowed for Istio configuration objects".to_string(),
                ),
                k if is_dns1123_label(k) => None,
                _ => Some(
                    "only ., *, or a valid DNS 1123 label is allowed as exportTo entry".to_string(),
                ),
            };
            match err {
                Some(msg) => v.index(i, |v| v.error(msg)),
                None => {
                    seen.insert(key);
                }
            }
        }
        if is_dr_with_selector && !seen.is_empty() {
            if seen.contains(namespace) {
                if seen.len() > 1 {
                    v.error("destination rule with workload selector cannot have multiple entries in exportTo");
                }
            } else {
                v.error("destination rule with workload selector cannot have exportTo beyond current namespace");
            }
        }
        if seen.contains("*") && export_to.len() > 1 {
            v.error("cannot have both public (*) and non-public exportTo values for a resource");
        }
    });
}

/// `ValidateHTTPHeaderName`: letters, digits, `-` and `_`.
pub(crate) fn validate_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

/// `jwt.ToRoutingClaim(name).Match`: `@request.auth.claims.a.b` or `@request.auth.claims[a][b]`.
pub(crate) fn is_jwt_claim_route(name: &str) -> bool {
    jwt_claim_route(name).is_some()
}

/// Istio's `jwt.ToRoutingClaim`: the claim path a VirtualService header key names,
/// `@request.auth.claims.a.b` → `[a, b]` (`.` separates nested claims) or
/// `@request.auth.claims[a][b]` → `[a, b]` (for claim names holding dots); `None` for any
/// other header. The prefix is compared without case, the claim names keep theirs.
pub fn jwt_claim_route(name: &str) -> Option<Vec<String>> {
    const PREFIX: &str = "@request.auth.claims";
    let head = name.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &name[PREFIX.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
        return Some(dotted.split('.').map(str::to_string).collect());
    }
    rest.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .filter(|r| !r.is_empty())
        .map(|inner| inner.split("][").map(str::to_string).collect())
}

/// `ValidateHTTPHeaderNameOrJwtClaimRoute`.
pub(crate) fn validate_header_name_or_jwt_claim(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_jwt_claim_route(name) {
        return Ok(());
    }
    validate_header_name(name)
}

/// `ValidateCORSHTTPHeaderName`: a header name or `*`.
pub(crate) fn validate_cors_header_name(name: &str) -> Result<(), String> {
    if name == "*" {
        return Ok(());
    }
    validate_header_name(name)
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// Whether a header name is the request authority (`:authority` or `host`).
pub(crate) fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// `ValidateHTTPHeaderWithAuthorityOperationName`: request `set`/`add` may name the authority.
pub(crate) fn validate_header_op_name_with_authority(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_internal_header(name) && !is_authority_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// `ValidateHTTPHeaderOperationName`: request `remove` and every response operation.
pub(crate) fn validate_header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if is_internal_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// `ValidateHTTPHeaderValue`: no control characters, and Envoy's `%VARIABLE%` syntax is
/// well formed (`%%` escapes a percent sign).
pub(crate) fn validate_header_value(value: &str) -> Result<(), String> {
    if value
        .chars()
        .any(|c| matches!(c, '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}'))
    {
        return Err(format!("header value configuration {value} is invalid"));
    }
    envoy_header_value(value).map_err(|e| format!("header value configuration: {e}"))
}

/// Port of Envoy's header formatter parser as Istio's `validateHeaderValue` has it.
fn envoy_header_value(value: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum S {
        Literal,
        VarName,
        ExpectArray,
        ExpectString,
        InString,
        ExpectDelimOrEnd,
        ExpectArgsEnd,
        ExpectVarEnd,
    }
    let b = value.as_bytes();
    let mut state = S::Literal;
    let mut pos = 0;
    while pos < b.len() {
        let ch = b[pos];
        let has_next = pos + 1 < b.len();
        match state {
            S::Literal => {
                if ch == b'%' {
                    if !has_next {
                        return Err("invalid header configuration. Un-escaped %".into());
                    }
                    if b[pos + 1] == b'%' {
                        pos += 1;
                    } else {
                        state = S::VarName;
                    }
                }
            }
            S::VarName => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch == b'(' {
                    state = S::ExpectArray;
                }
            }
            S::ExpectArray => {
                if ch == b'[' {
                    state = S::ExpectString;
                } else if ch != b' ' {
                    state = S::InString;
                }
            }
            S::ExpectDelimOrEnd => {
                if ch == b',' {
                    state = S::ExpectString;
                } else if ch == b']' {
                    state = S::ExpectArgsEnd;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting ',', ']', or whitespace".into(),
                    );
                }
            }
            S::ExpectString => {
                if ch == b'"' {
                    state = S::InString;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting '\"'".into());
                }
            }
            S::InString => {
                if ch == b'\\' {
                    if !has_next {
                        return Err(
                            "invalid header configuration. Un-terminated backslash in JSON string"
                                .into(),
                        );
                    }
                    pos += 1;
                } else if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch == b'"' {
                    state = S::ExpectDelimOrEnd;
                }
            }
            S::ExpectArgsEnd => {
                if ch == b')' {
                    state = S::ExpectVarEnd;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting ')' or whitespace".into());
                }
            }
            S::ExpectVarEnd => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting '%' or whitespace after".into(),
                    );
                }
            }
        }
        pos += 1;
    }
    if state != S::Literal {
        return Err(format!(
            "invalid header configuration. Un-terminated variable expression '{value}'"
        ));
    }
    Ok(())
}

/// The oneof in `StringMatch`: Istio's CRD rejects more than one of `exact`, `prefix`, `regex`.
pub(crate) fn string_match_oneof(v: &mut Validator, m: &StringMatch) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        v.error("only one of exact, prefix or regex may be set (Invalid value: must validate one and only one schema (oneOf))");
    }
}

/// `validateStringMatchRegexp`: a regex match must be a non-empty valid RE2 pattern.
pub(crate) fn string_match_regexp(m: &StringMatch, place: &str) -> Result<(), String> {
    match &m.regex {
        Some(re) if re.is_empty() => {
            Err(format!("{place:?}: regex string match should not be empty"))
        }
        Some(re) => validate_regexp(re, place),
        None => Ok(()),
    }
}

/// `validateStringMatch`: as above, and a prefix match must not be empty.
pub(crate) fn string_match(m: &StringMatch, place: &str) -> Result<(), String> {
    if m.exact.is_none() && m.prefix.as_deref() == Some("") {
        return Err(format!(
            "{place:?}: prefix string match should not be empty"
        ));
    }
    string_match_regexp(m, place)
}

/// `validatePercentage`: 0, or within [0.0001, 100].
pub(crate) fn validate_percentage(p: &Percent) -> Result<(), String> {
    let x = p.value;
    if x.is_nan() || !(0.0..=100.0).contains(&x) || (x > 0.0 && x < 0.0001) {
        return Err(format!(
            "percentage {x} is neither 0.0, nor in range [0.0001, 100.0]"
        ));
    }
    Ok(())
}

/// `ValidatePercent` for integer percentages.
pub(crate) fn validate_int_percent(p: i64) -> Result<(), String> {
    if (0..=100).contains(&p) {
        Ok(())
    } else {
        Err(format!("percentage {p} is not in range 0..100"))
    }
}

const QUALIFIED_NAME: &str = "(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";

/// Istio's `labels.Instance.Validate` (subset labels, `sourceLabels`): Kubernetes label keys
/// (optional DNS prefix ≤ 253, name ≤ 63) and values of the same characters, any length.
pub(crate) fn validate_istio_labels(
    v: &mut Validator,
    field: &str,
    labels: &std::collections::BTreeMap<String, String>,
) {
    static KEY: OnceLock<Option<Regex>> = OnceLock::new();
    static VALUE: OnceLock<Option<Regex>> = OnceLock::new();
    let key_re = cached(
        &KEY,
        &format!("^({DNS1123_LABEL}(?:\\.{DNS1123_LABEL})*/)?({QUALIFIED_NAME})$"),
    );
    let value_re = cached(&VALUE, &format!("^(?:{QUALIFIED_NAME})?$"));
    v.field(field, |v| {
        for (k, val) in labels {
            let key_err = match key_re.and_then(|r| r.captures(k)) {
                None => Some(format!("invalid tag key: {k:?}")),
                Some(c) => {
                    let prefix = c.get(1).map_or(0, |m| m.as_str().len());
                    let name = c.get(2).map_or(0, |m| m.as_str().len());
                    if prefix > 0 && prefix - 1 > 253 {
                        Some(format!("invalid tag key: {k:?} (DNS prefix is too long)"))
                    } else if name > 63 {
                        Some(format!("invalid tag key: {k:?} (name is too long)"))
                    } else {
                        None
                    }
                }
            };
            if let Some(e) = key_err {
                v.error_at(k, e);
            }
            if !value_re.is_some_and(|r| r.is_match(val)) {
                v.error_at(k, format!("invalid tag value: {val:?}"));
            }
        }
    });
}

/// `validateSubsetName`.
pub(crate) fn validate_subset_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("subset name cannot be empty".into());
    }
    if !is_dns1123_label(name) {
        return Err(format!("subset name is invalid: {name}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_as_istio_checks_them() {
        assert!(validate_wildcard_domain("reviews").is_ok());
        assert!(validate_wildcard_domain("Reviews.Default.svc.cluster.local").is_ok());
        assert!(validate_wildcard_domain("*.example.com").is_ok());
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("*-foo.example.com").is_ok());
        assert!(validate_wildcard_domain("istio.io.").is_ok());
        assert!(validate_wildcard_domain("foo.*.com").is_err());
        assert!(validate_wildcard_domain("10.0.0.1").is_err_and(|e| e.contains("all-numeric")));
        assert!(validate_wildcard_domain("").is_err_and(|e| e.contains("empty domain")));
        assert!(validate_wildcard_domain("bad_host.com").is_err());
        assert!(validate_fqdn("*.example.com").is_err());
        assert!(validate_wildcard_domain_for_gateway(true, "outbound_.80_._.e2e.foo.mesh").is_ok());
        assert!(validate_wildcard_domain_for_gateway(true, "outbound_.x").is_err());
        assert!(validate_wildcard_domain_for_gateway(false, "outbound_.80_.foo").is_err());
    }

    #[test]
    fn istio_labels() {
        let mut v = Validator::default();
        let labels: std::collections::BTreeMap<String, String> = [
            ("app", "web"),
            ("app.kubernetes.io/name", "Web_1"),
            ("empty", ""),
            ("long-value", &"v".repeat(80)),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        validate_istio_labels(&mut v, "labels", &labels);
        assert!(v.issues.is_empty(), "{:?}", v.issues);
        let bad: std::collections::BTreeMap<String, String> = [
            ("-app", "x"),
            ("a/b/c", "x"),
            ("ok", "bad value"),
            (&"n".repeat(64), "x"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        validate_istio_labels(&mut v, "labels", &bad);
        let msgs: Vec<&str> = v.issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(
            msgs.iter().any(|m| m.contains("(name is too long)")),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"invalid tag value: \"bad value\""),
            "{msgs:?}"
        );
    }

    #[test]
    fn host_overlap() {
        assert!(host_matches("foo.com", "foo.com"));
        assert!(!host_matches("foo.com", "bar.com"));
        assert!(host_matches("*.com", "foo.com"));
        assert!(host_matches("bar.com", "*.com"));
        assert!(!host_matches("*.foo.com", "foo.com"));
        assert!(host_matches("*", "*.com"));
        assert!(host_subset_of("a.foo.com", "*.foo.com"));
        assert!(!host_subset_of("*.foo.com", "a.foo.com"));
        assert!(host_subset_of("*.a.foo.com", "*.foo.com"));
    }

    #[test]
    fn subnets_headers_regex() {
        assert!(validate_ip_subnet("10.0.0.0/8").is_ok());
        assert!(validate_ip_subnet("2001:db8::/32").is_ok());
        assert!(validate_ip_subnet("10.0.0.1").is_ok());
        assert!(validate_ip_subnet("10.0.0.0/33").is_err());
        assert!(validate_ip_subnet("foo").is_err());
        assert!(validate_header_value("%HOSTNAME%").is_ok());
        assert!(validate_header_value("100%%").is_ok());
        assert!(validate_header_value("%REQ(x-foo)%").is_ok());
        assert!(validate_header_value("abc%123").is_err());
        assert!(validate_header_value("%START_TIME%%").is_err());
        assert!(validate_header_value("a\nb").is_err());
        assert!(is_jwt_claim_route("@request.auth.claims.group"));
        assert!(is_jwt_claim_route("@request.auth.claims[a][b]"));
        assert!(!is_jwt_claim_route("@request.auth.claims."));
        assert!(!is_jwt_claim_route("@request.auth.claims"));
        assert!(!is_jwt_claim_route("@request.auth.claims[]"));
        assert!(!is_jwt_claim_route("x-user"));
        assert_eq!(
            jwt_claim_route("@Request.Auth.Claims.nested.Key"),
            Some(vec!["nested".to_string(), "Key".to_string()])
        );
        assert_eq!(
            jwt_claim_route("@request.auth.claims[https://a.example/groups][x]"),
            Some(vec![
                "https://a.example/groups".to_string(),
                "x".to_string()
            ])
        );
        // A multi-byte character where the prefix would end is no claim route, not a panic.
        assert_eq!(jwt_claim_route("@request.auth.claim\u{e9}x"), None);
        assert!(validate_header_name("x-user_id").is_ok());
        assert!(validate_header_name("x user").is_err());
        assert!(validate_percentage(&Percent { value: 0.00001 }).is_err());
        assert!(validate_percentage(&Percent { value: 0.0 }).is_ok());
    }
}

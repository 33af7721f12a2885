//! Validation helpers shared by several kinds (hostnames, ports, labels, durations, regexes).
//! They mirror the helpers in Istio's `pkg/config/validation` and `pkg/config/labels`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

use super::Validator;
use crate::types::{Duration, Percent};

// Kind-family helpers, re-exported so callers find every shared rule here.
pub use super::net::*;
pub use super::policy::*;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// Whether `s` matches `pattern`, compiled once into `cell`. The patterns are constants of
/// this crate (a bad one fails the unit tests and then matches nothing).
pub(crate) fn matches(cell: &'static OnceLock<Option<Regex>>, pattern: &str, s: &str) -> bool {
    cell.get_or_init(|| Regex::new(pattern).ok())
        .as_ref()
        .is_some_and(|r| r.is_match(s))
}

/// RFC 1123 label: lower-case alphanumerics and `-`, starting and ending alphanumeric, ≤ 63.
pub fn is_dns1123_label(s: &str) -> bool {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    s.len() <= DNS1123_LABEL_MAX && matches(&R, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", s)
}

/// RFC 1123 subdomain: dot-separated labels, ≤ 253.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX && !s.is_empty() && s.split('.').all(is_dns1123_label)
}

/// A DNS label as Istio's hostname checks accept it: like RFC 1123 but upper case allowed
/// (hosts are case-insensitive), and labels may start with a digit.
pub(crate) fn is_dns_label_loose(s: &str) -> bool {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    !s.is_empty()
        && s.len() <= DNS1123_LABEL_MAX
        && matches(&R, r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$", s)
}

/// Istio's `ValidateFQDN`: a domain name (trailing dot allowed), no wildcard, and the top-level
/// label not all-numeric.
pub fn validate_fqdn(host: &str) -> Result<(), String> {
    crate::model::networking::net_rules::validate_fqdn(host)
}

/// Istio's `ValidateWildcardDomain`: the first label may be `*`, `*foo` or `*-foo`; the rest
/// must be a valid domain (e.g. `*.example.com`, `*`).
pub fn validate_wildcard_domain(host: &str) -> Result<(), String> {
    crate::model::networking::net_rules::validate_wildcard_domain(host)
}

/// Ports are 1–65535 everywhere in Istio.
pub fn validate_port(port: i64) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// Istio's `ValidateDuration` for timeouts and intervals: at least 1 ms, whole milliseconds.
pub fn validate_duration(d: &Duration) -> Result<(), String> {
    if d.nanos < 1_000_000 {
        return Err(format!("duration must be greater than 1ms (got {d})"));
    }
    if d.nanos % 1_000_000 != 0 {
        return Err(format!(
            "only durations to ms precision are supported (got {d})"
        ));
    }
    Ok(())
}

/// Istio's `ValidateDurationRange`.
pub fn validate_duration_range(d: &Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < &min || d > &max {
        return Err(format!("time {d} must be >{min} and <{max}"));
    }
    Ok(())
}

/// A `Percent` must be within 0–100.
pub fn validate_percent(p: &Percent) -> Result<(), String> {
    if !(0.0..=100.0).contains(&p.value) || p.value.is_nan() {
        return Err(format!("percentage {} is not in range 0..100", p.value));
    }
    Ok(())
}

/// Istio compiles regexes with RE2; Rust's `regex` accepts the same syntax (no backreferences,
/// no lookaround), with a size cap like Envoy's program-size limit.
pub fn validate_regex(pattern: &str) -> Result<(), String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| {
            format!(
                "\"{pattern}\" is not a valid regular expression (RE2 syntax): {}",
                first_line(&e.to_string())
            )
        })
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Kubernetes label key: optional DNS subdomain prefix and `/`, then a name of ≤ 63 chars
/// of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Err(format!(
            "invalid label key \"{key}\": prefix must be a DNS subdomain"
        ));
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "invalid label key \"{key}\": name must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

pub(crate) fn is_qualified_name_part(s: &str) -> bool {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    !s.is_empty() && s.len() <= 63 && matches(&R, r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", s)
}

/// Kubernetes label value: empty, or ≤ 63 chars like a qualified name part.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value \"{value}\": must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

/// Istio's `labels.Instance.Validate` used for workload selectors and subset labels.
pub fn validate_labels(v: &mut Validator, field: &str, labels: &BTreeMap<String, String>) {
    v.field(field, |v| {
        for (k, val) in labels {
            if let Err(e) = validate_label_key(k) {
                v.error_at(k, e);
            }
            if let Err(e) = validate_label_value(val) {
                v.error_at(k, e);
            }
        }
    });
}

/// A workload selector's `matchLabels`: valid labels, and no wildcard in keys or values.
pub fn validate_workload_selector_labels(v: &mut Validator, labels: &BTreeMap<String, String>) {
    v.field("matchLabels", |v| {
        for (k, val) in labels {
            if k.is_empty() {
                v.error("key must not be empty");
                continue;
            }
            if k.contains('*') {
                v.error_at(k, "wildcard not allowed in label key match");
            }
            if val.contains('*') {
                v.error_at(k, "wildcard not allowed in label value match");
            }
            if !k.contains('*')
                && let Err(e) = validate_label_key(k)
            {
                v.error_at(k, e);
            }
            if !val.contains('*')
                && let Err(e) = validate_label_value(val)
            {
                v.error_at(k, e);
            }
        }
    });
}

/// A valid HTTP header name (RFC 7230 token).
pub fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An IP address or CIDR block.
pub fn validate_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.parse::<std::net::IpAddr>().is_ok() || s.parse::<ipnet::IpNet>().is_ok() {
        Ok(())
    } else {
        Err(format!("\"{s}\" is not a valid IP address or CIDR block"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(validate_fqdn("reviews.default.svc.cluster.local").is_ok());
        assert!(validate_fqdn("Reviews").is_ok());
        assert!(validate_fqdn("*.example.com").is_err());
        assert!(validate_fqdn("bad_host").is_err());
        assert!(validate_wildcard_domain("*.example.com").is_ok());
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("*foo.com").is_ok());
        assert!(validate_wildcard_domain("*-foo.com").is_ok());
        assert!(validate_fqdn("1.2.3.4").is_err());
        assert!(validate_wildcard_domain("foo.*.com").is_err());
        assert!(validate_wildcard_domain("").is_err());
        assert!(validate_wildcard_domain(&"a".repeat(64)).is_err());
    }

    #[test]
    fn ports_durations_percent_regex() {
        assert!(validate_port(0).is_err());
        assert!(validate_port(65536).is_err());
        assert!(validate_port(80).is_ok());
        assert!(validate_duration(&Duration::from_millis(1)).is_ok());
        assert!(validate_duration(&Duration { nanos: 999_999 }).is_err());
        assert!(validate_duration(&Duration { nanos: 1_500_000 }).is_err());
        assert!(validate_percent(&Percent { value: 100.0 }).is_ok());
        assert!(validate_percent(&Percent { value: 100.1 }).is_err());
        assert!(validate_regex("^/api/v[0-9]+").is_ok());
        assert!(validate_regex("(?=lookahead)").is_err());
        assert!(validate_regex("[").is_err());
    }

    #[test]
    fn labels() {
        assert!(validate_label_key("app").is_ok());
        assert!(validate_label_key("app.kubernetes.io/name").is_ok());
        assert!(validate_label_key("-app").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1").is_ok());
        assert!(validate_label_value("v 1").is_err());
        assert!(is_valid_header_name("x-user"));
        assert!(!is_valid_header_name("x user"));
    }
}

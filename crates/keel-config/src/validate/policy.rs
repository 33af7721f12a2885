//! Validation helpers for policy kinds (AuthorizationPolicy, RequestAuthentication, Telemetry,
//! WasmPlugin, EnvoyFilter): policy targeting, list limits, URL parsing.

#![allow(unused_imports)]

use super::Validator;
use super::common::*;
use crate::types::{Duration, Percent};
use regex::Regex;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::model::common::{PolicyTargetReference, WorkloadSelector};

/// The CRD's `maxItems` on a list: `Too many: N: must have at most M items`.
pub fn check_list_max(v: &mut Validator, len: usize, max: usize) {
    if len > max {
        v.error(format!(
            "Too many: {len}: must have at most {max} items; split the list across several resources"
        ));
    }
}

/// The CRD's `minLength: 1` on a string that is present.
pub fn check_not_empty(v: &mut Validator, field: &str, value: &str) {
    if value.is_empty() {
        v.error_at(field, "in body should be at least 1 chars long");
    }
}

const TARGET_GROUP_PATTERN: &str =
    r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const TARGET_KIND_PATTERN: &str = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$";

/// The CRD schema of `istio.type.v1beta1.PolicyTargetReference` (one `targetRef`, or one
/// item of `targetRefs`): kind and name required, group and kind patterns, no namespace.
pub fn validate_target_ref_schema(v: &mut Validator, r: &PolicyTargetReference) {
    static GROUP: OnceLock<Option<Regex>> = OnceLock::new();
    static KIND: OnceLock<Option<Regex>> = OnceLock::new();
    if r.group.len() > 253 {
        v.error_at("group", "Too long: may not be longer than 253");
    } else if !matches(&GROUP, TARGET_GROUP_PATTERN, &r.group) {
        v.error_at(
            "group",
            format!("in body should match '{TARGET_GROUP_PATTERN}': use an API group such as gateway.networking.k8s.io, or \"\" for core"),
        );
    }
    if r.kind.is_empty() {
        v.error_at(
            "kind",
            "Required value: name the kind of the target, e.g. Service or Gateway",
        );
    } else if r.kind.len() > 63 {
        v.error_at("kind", "Too long: may not be longer than 63");
    } else if !matches(&KIND, TARGET_KIND_PATTERN, &r.kind) {
        v.error_at(
            "kind",
            format!("in body should match '{TARGET_KIND_PATTERN}'"),
        );
    }
    if r.name.is_empty() {
        v.error_at("name", "Required value: name the target resource");
    } else if r.name.len() > 253 {
        v.error_at("name", "Too long: may not be longer than 253");
    }
    if !r.namespace.is_empty() {
        v.error_at(
            "namespace",
            "cross namespace referencing is not currently supported: remove namespace; the target must be in the policy's namespace",
        );
    }
}

/// Istio's `validatePolicyTargetReference`: policies may target a Service, a ServiceEntry,
/// or a Gateway API Gateway or GatewayClass.
pub fn validate_target_ref_kind(v: &mut Validator, r: &PolicyTargetReference) {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.as_str()
    };
    let allowed = matches!(
        (group, r.kind.as_str()),
        ("core", "Service")
            | ("networking.istio.io", "ServiceEntry")
            | ("gateway.networking.k8s.io", "Gateway" | "GatewayClass")
    );
    if !allowed && !r.kind.is_empty() {
        v.error(format!(
            "targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was {}/{}",
            r.group, r.kind
        ));
    }
}

/// Istio's `validateWorkloadSelector` plus the CRD rules on `matchLabels`: no wildcards,
/// no empty keys, at most 4096 labels; a selector without labels is a warning.
pub fn validate_policy_selector(v: &mut Validator, selector: &WorkloadSelector) {
    validate_workload_selector_labels(v, &selector.match_labels);
    if selector.match_labels.len() > 4096 {
        v.error_at(
            "matchLabels",
            format!(
                "Too many: {}: must have at most 4096 items",
                selector.match_labels.len()
            ),
        );
    }
    if selector.match_labels.is_empty() {
        v.warn("workload selector specified without labels: the policy applies to every workload in its namespace");
    }
}

/// How a policy picks what it applies to (`selector`, `targetRef`, `targetRefs`), checked as
/// Istio's webhook and CRD do: at most one of the three, each well formed, and targets of a
/// kind Istio supports. Call with the validator at `spec`.
pub fn validate_policy_selection(
    v: &mut Validator,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = [
        selector.is_some(),
        target_ref.is_some(),
        !target_refs.is_empty(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        let at = if target_ref.is_some() && selector.is_some() || target_refs.is_empty() {
            "targetRef"
        } else {
            "targetRefs"
        };
        v.error_at(
            at,
            "only one of targetRefs or selector can be set: a policy applies either to the workloads its selector picks or to the resources it targets",
        );
    }
    if let Some(sel) = selector {
        v.field("selector", |v| validate_policy_selector(v, sel));
    }
    if let Some(r) = target_ref {
        v.field("targetRef", |v| {
            validate_target_ref_schema(v, r);
            validate_target_ref_kind(v, r);
        });
    }
    v.field("targetRefs", |v| {
        check_list_max(v, target_refs.len(), 16);
        for (i, r) in target_refs.iter().enumerate() {
            v.index(i, |v| {
                validate_target_ref_schema(v, r);
                validate_target_ref_kind(v, r);
            });
        }
    });
}

/// Istio rejects the `istio.io/dry-run` annotation on every kind but AuthorizationPolicy
/// (`checkDryRunAnnotation`). Call at the resource root. (Belongs in `validate::meta` for all
/// Istio kinds; kept here until it moves.)
pub fn reject_dry_run_annotation(v: &mut Validator) {
    const DRY_RUN: &str = "istio.io/dry-run";
    if v.ctx.annotations.contains_key(DRY_RUN) {
        let msg = format!(
            "{}/{} has unsupported annotation {DRY_RUN}, please remove the annotation: only AuthorizationPolicy supports dry runs",
            v.ctx.namespace, v.ctx.name
        );
        v.field("metadata", |v| {
            v.field("annotations", |v| v.error_at(DRY_RUN, msg))
        });
    }
}

/// Go's `url.ParseRequestURI`, which Kubernetes' CEL `isURL`/`url()` use: an absolute URL
/// or an absolute path, no control characters, valid `%` escapes, a valid host and port.
/// Returns the scheme (lower case; empty for a bare path).
pub fn parse_request_uri(s: &str) -> Result<String, String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL".into());
    }
    let (scheme, rest) = split_scheme(s)?;
    if !rest.starts_with('/') {
        if scheme.is_empty() {
            return Err(format!("invalid URI for request: \"{s}\""));
        }
        return Ok(scheme); // opaque form, e.g. `urn:x`
    }
    let path = if !scheme.is_empty() && rest.starts_with("//") {
        let after = &rest[2..];
        let end = after.find('/').unwrap_or(after.len());
        check_authority(&after[..end])?;
        &after[end..]
    } else {
        rest
    };
    check_escapes(path)?;
    Ok(scheme)
}

fn split_scheme(s: &str) -> Result<(String, &str), String> {
    for (i, c) in s.char_indices() {
        if c.is_ascii_alphabetic() {
            continue;
        }
        if c.is_ascii_digit() || c == '+' || c == '-' || c == '.' {
            if i == 0 {
                return Ok((String::new(), s));
            }
            continue;
        }
        if c == ':' {
            if i == 0 {
                return Err("missing protocol scheme".into());
            }
            return Ok((s[..i].to_ascii_lowercase(), &s[i + 1..]));
        }
        return Ok((String::new(), s));
    }
    Ok((String::new(), s))
}

fn check_authority(authority: &str) -> Result<(), String> {
    let host = match authority.rfind('@') {
        Some(i) => {
            let userinfo = &authority[..i];
            let ok = userinfo
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
            if !ok {
                return Err("invalid userinfo".into());
            }
            check_escapes(userinfo)?;
            &authority[i + 1..]
        }
        None => authority,
    };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let close = rest.find(']').ok_or("missing ']' in host")?;
        (&rest[..close], &rest[close + 1..])
    } else {
        match host.rfind(':') {
            Some(i) => (&host[..i], &host[i..]),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return Err(format!("invalid port \"{port}\" after host"));
    }
    if !host.starts_with('[') {
        for b in name.bytes() {
            let ok =
                b >= 0x80 || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"%".contains(&b);
            if !ok {
                return Err(format!("invalid character {:?} in host name", b as char));
            }
        }
    }
    check_escapes(name)
}

fn check_escapes(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                let end = (i + 3).min(b.len());
                return Err(format!(
                    "invalid URL escape \"{}\"",
                    String::from_utf8_lossy(&b[i..end])
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Test helper for the kinds' unit tests: loads one resource (header plus `spec:` lines)
/// and returns its error and warning lines, as users would see them.
#[cfg(test)]
pub(crate) fn check_spec(api_version: &str, kind: &str, spec: &str) -> (Vec<String>, Vec<String>) {
    check_doc(&format!(
        "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: t, namespace: foo}}\nspec:\n{spec}"
    ))
}

/// Like [`check_spec`] for a whole document.
#[cfg(test)]
pub(crate) fn check_doc(text: &str) -> (Vec<String>, Vec<String>) {
    use crate::{Level, LoadOptions, load_str, validate_resources};
    let loaded = load_str(text, "t.yaml", &LoadOptions::default());
    let mut diags = loaded.diagnostics;
    diags.extend(validate_resources(&loaded.resources, "istio-system"));
    let pick = |l: Level| {
        diags
            .iter()
            .filter(|d| d.level == l)
            .map(|d| d.to_string())
            .collect()
    };
    (pick(Level::Error), pick(Level::Warning))
}

#[cfg(test)]
mod sec_tests {
    use super::*;

    #[test]
    fn request_uris_like_go() {
        assert_eq!(
            parse_request_uri("https://example.com/.well-known/jwks.json"),
            Ok("https".into())
        );
        assert_eq!(
            parse_request_uri("HTTP://example.com:8080/x"),
            Ok("http".into())
        );
        assert_eq!(
            parse_request_uri("file:///opt/filters/a.wasm"),
            Ok("file".into())
        );
        assert_eq!(parse_request_uri("fake://example.com"), Ok("fake".into()));
        assert_eq!(parse_request_uri("/just/a/path"), Ok(String::new()));
        assert!(parse_request_uri("test").is_err());
        assert!(parse_request_uri("#%blah$#@").is_err());
        assert!(parse_request_uri("http://#%blah$#@").is_err());
        assert!(parse_request_uri("hTPp\\\u{8}lah").is_err());
        assert!(parse_request_uri("http://a b/").is_err());
        assert!(parse_request_uri("http://host:80x/").is_err());
        assert!(parse_request_uri("http://host/%zz").is_err());
        assert!(parse_request_uri(":foo").is_err());
    }
}

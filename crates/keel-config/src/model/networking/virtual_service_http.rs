//! The parts of an HTTP route Istio validates one by one: header operations, CORS, fault
//! injection, retries, redirects, direct responses and rewrites (`validation.go`).

use super::net_rules as r;
use super::virtual_service::*;
use super::virtual_service_validate::{check, check_duration, check_here};
use crate::validate::Validator;
use crate::validate::common::{validate_duration, validate_port};

/// Envoy retry conditions Istio accepts in `retryOn` (besides HTTP status codes).
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Status codes Go's `http.StatusText` knows, which Istio accepts as `retryOn` entries.
const HTTP_STATUS_CODES: &[u16] = &[
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 510, 511,
];

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

const GRPC_STATUSES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Header manipulation: request `set`/`add` may target the authority; nothing may touch
/// other pseudo-headers or (in responses and removals) `Host`.
pub(super) fn validate_headers(v: &mut Validator, h: &Headers) {
    if let Some(req) = &h.request {
        v.field("request", |v| validate_header_ops(v, req, true));
    }
    if let Some(resp) = &h.response {
        v.field("response", |v| validate_header_ops(v, resp, false));
    }
}

fn validate_header_ops(v: &mut Validator, ops: &HeaderOperations, request: bool) {
    let name_rule = |name: &str| {
        if request {
            r::validate_header_op_name_with_authority(name)
        } else {
            r::validate_header_op_name(name)
        }
    };
    for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
        v.field(field, |v| {
            for (name, value) in map {
                v.field(name, |v| {
                    check_here(v, name_rule(name));
                    check_here(v, r::validate_header_value(value));
                });
            }
        });
    }
    v.field("remove", |v| {
        for (i, name) in ops.remove.iter().enumerate() {
            if let Err(e) = r::validate_header_op_name(name) {
                v.index(i, |v| v.error(e));
            }
        }
    });
}

/// `validateAuthorityRewrite`: the authority may be rewritten in one place only.
pub(super) fn validate_authority_rewrite(v: &mut Validator, http: &HttpRoute) {
    let mut current = http
        .rewrite
        .as_ref()
        .map(|r| r.authority.clone())
        .unwrap_or_default();
    let Some(req) = http.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    for map in [&req.set, &req.add] {
        for (k, val) in map.iter().filter(|(k, _)| r::is_authority_header(k)) {
            if !current.is_empty() {
                v.field("headers", |v| {
                    v.error(format!(
                        "authority header cannot be set multiple times: have {current:?}, attempting to set {val:?} (via {k})"
                    ))
                });
                return;
            }
            current = val.clone();
        }
    }
}

pub(super) fn validate_cors(v: &mut Validator, c: &CorsPolicy) {
    v.each("allowOrigins", &c.allow_origins, |v, o| {
        r::string_match_oneof(v, o);
        let value = o
            .exact
            .as_deref()
            .or(o.prefix.as_deref())
            .or(o.regex.as_deref())
            .unwrap_or_default();
        if value.is_empty() {
            v.error(format!(
                "'{value}' is not a valid match type for CORS allow origins"
            ));
            return;
        }
        check_here(v, r::string_match_regexp(o, "corsPolicy.allowOrigins"));
    });
    v.field("allowMethods", |v| {
        for (i, m) in c.allow_methods.iter().enumerate() {
            if !HTTP_METHODS.contains(&m.as_str()) {
                v.index(i, |v| {
                    v.error(format!("{m:?} is not a supported HTTP method"))
                });
            }
        }
    });
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        v.field(field, |v| {
            for (i, name) in list.iter().enumerate() {
                if let Err(e) = r::validate_cors_header_name(name) {
                    v.index(i, |v| v.error(e));
                }
            }
        });
    }
    if let Some(age) = &c.max_age {
        v.field("maxAge", |v| {
            check_here(v, validate_duration(age));
            if age.nanos % 1_000_000_000 != 0 {
                v.error("max_age duration is accurate only to seconds precision");
            }
        });
    }
}

pub(super) fn validate_fault(v: &mut Validator, f: &HttpFaultInjection) {
    if f.abort.is_none() && f.delay.is_none() {
        v.error("HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(a) = &f.abort {
        v.field("abort", |v| {
            if let Some(p) = &a.percentage {
                check(v, "percentage", r::validate_percentage(p));
            }
            let set = [a.http_status.is_some(), a.grpc_status.is_some(), a.http2_error.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if set > 1 {
                v.error("only one of httpStatus, grpcStatus or http2Error may be set");
            }
            if let Some(s) = &a.grpc_status {
                if !GRPC_STATUSES.contains(&s.as_str()) {
                    v.error_at("grpcStatus", format!(
                        "gRPC status {s:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md \
                         for a list of supported codes, for example 'NOT_FOUND'"
                    ));
                }
            } else if a.http2_error.is_some() {
                v.error_at("http2Error", "HTTP/2 abort fault injection not supported yet");
            } else if let Some(s) = a.http_status {
                check(v, "httpStatus", validate_http_status(i64::from(s)));
            } else {
                v.warn("abort configured, but error type not set");
            }
        });
    }
    if let Some(d) = &f.delay {
        v.field("delay", |v| {
            if let Some(p) = &d.percentage {
                check(v, "percentage", r::validate_percentage(p));
            }
            // Istio no longer range-checks the deprecated integer percent; Envoy caps it.
            if let Err(e) = r::validate_int_percent(i64::from(d.percent)) {
                v.warn_at("percent", format!("{e}; use percentage instead"));
            }
            if d.fixed_delay.is_some() && d.exponential_delay.is_some() {
                v.error("only one of fixedDelay or exponentialDelay may be set");
            }
            if let Some(fd) = &d.fixed_delay {
                check(v, "fixedDelay", validate_duration(fd));
            } else if let Some(ed) = &d.exponential_delay {
                check(v, "exponentialDelay", validate_duration(ed));
                v.error_at(
                    "exponentialDelay",
                    "exponentialDelay not supported yet: use fixedDelay",
                );
            }
        });
    }
}

/// `validateHTTPStatus` (Istio accepts 600 too).
fn validate_http_status(status: i64) -> Result<(), String> {
    if !(200..=600).contains(&status) {
        return Err(format!("HTTP status {status} is not in range 200-599"));
    }
    Ok(())
}

pub(super) fn validate_retry(v: &mut Validator, rt: &HttpRetry) {
    if rt.attempts < 0 {
        v.error_at("attempts", "attempts cannot be negative");
    }
    if rt.attempts == 0
        && (rt.per_try_timeout.is_some()
            || !rt.retry_on.is_empty()
            || rt.retry_remote_localities.is_some())
    {
        v.error("http retry policy configured when attempts are set to 0 (disabled)");
    }
    check_duration(v, "perTryTimeout", &rt.per_try_timeout);
    check_duration(v, "backoff", &rt.backoff);
    if !rt.retry_on.is_empty() {
        v.field("retryOn", |v| {
            for policy in rt.retry_on.split(',') {
                let code = policy.parse::<u16>().unwrap_or(0);
                if !HTTP_STATUS_CODES.contains(&code) && !RETRY_ON_POLICIES.contains(&policy) {
                    v.error(format!(
                        "{policy:?} is not a valid retryOn policy; use Envoy retry conditions ({}) or HTTP status codes, comma-separated without spaces",
                        RETRY_ON_POLICIES.join(", ")
                    ));
                }
            }
        });
    }
}

/// `validateHTTPRedirect` (Istio reports only the first problem).
pub(super) fn validate_redirect(v: &mut Validator, rd: &HttpRedirect) {
    if rd.port.is_some() && rd.derive_port.is_some() {
        v.error("only one of port or derivePort may be set");
    }
    if rd.uri.is_empty()
        && rd.authority.is_empty()
        && rd.port.is_none()
        && rd.derive_port.is_none()
        && rd.scheme.is_empty()
    {
        v.error("redirect must specify URI, authority, scheme, or port");
        return;
    }
    if rd.redirect_code != 0 && !(300..=399).contains(&rd.redirect_code) {
        v.error_at(
            "redirectCode",
            format!(
                "{} is not a valid redirect code, must be 3xx",
                rd.redirect_code
            ),
        );
        return;
    }
    if !rd.scheme.is_empty() && rd.scheme != "http" && rd.scheme != "https" {
        v.error_at(
            "scheme",
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
        return;
    }
    if let Some(p) = rd.port.filter(|p| *p > 0) {
        check(v, "port", validate_port(i64::from(p)));
    }
}

pub(super) fn validate_direct_response(v: &mut Validator, d: &HttpDirectResponse) {
    if let Some(body) = &d.body {
        v.field("body", |v| {
            if body.string.is_some() && body.bytes.is_some() {
                v.error("only one of string or bytes may be set");
            }
            let size = match (&body.string, &body.bytes) {
                (Some(s), _) => s.len(),
                (None, Some(b)) => match decode_base64_len(b) {
                    Some(n) => n,
                    None => {
                        v.error_at("bytes", "bytes must be base64-encoded (illegal base64 data)");
                        0
                    }
                },
                (None, None) => 0,
            };
            if size > 1024 * 1024 {
                v.error("large direct_responses may impact control plane performance, must be less than 1MB");
            } else if size > 100 * 1024 {
                v.warn("large direct_responses may impact control plane performance");
            }
        });
    }
    check(v, "status", validate_http_status(i64::from(d.status)));
}

/// Length of standard base64 data once decoded, or `None` if it is not valid base64.
fn decode_base64_len(s: &str) -> Option<usize> {
    let s = s.trim_end_matches('=');
    let padding = s.len() % 4;
    if padding == 1
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return None;
    }
    Some(s.len() / 4 * 3 + padding.saturating_sub(1))
}

pub(super) fn validate_rewrite(v: &mut Validator, rw: &HttpRewrite) {
    if !rw.uri.is_empty() && rw.uri_regex_rewrite.is_some() {
        v.error("rewrite may only contain one of URI or UriRegexRewrite");
        return;
    }
    if rw.uri.is_empty() && rw.uri_regex_rewrite.is_none() && rw.authority.is_empty() {
        v.error("rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified");
        return;
    }
    if let Some(rr) = &rw.uri_regex_rewrite {
        v.field("uriRegexRewrite", |v| {
            if rr.r#match.is_empty() || rr.rewrite.is_empty() {
                v.error("UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified");
            } else if let Err(e) = r::validate_regexp(&rr.r#match, "HTTPRewrite.UriRegexRewrite.Match") {
                v.error_at("match", format!("UriRegexRewrite has errors: {e}"));
            }
        });
    }
}

//! Request timeouts (`http[].timeout`) and the gRPC deadline a request carries.
//!
//! Istio's `setTimeout` gives Envoy the route's `timeout` (0 = none when unset, overriding
//! Envoy's 15 s default) and the same value as `max_grpc_timeout`, so a gRPC request's own
//! `grpc-timeout` header sets its deadline, capped by the route timeout when there is one.
//! The timeout covers the whole request: every attempt and every back-off between them.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use keel_snapshot::RoutePolicy;

use super::flags;
use crate::error::ProxyError;

/// A route's time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTimeouts {
    /// `timeout`; none when unset or `0s`.
    pub route: Option<Duration>,
}

impl RouteTimeouts {
    pub fn from_route(policy: Option<&RoutePolicy>) -> RouteTimeouts {
        RouteTimeouts {
            route: policy
                .and_then(|p| p.timeout)
                .map(|d| d.to_std())
                .filter(|d| !d.is_zero()),
        }
    }

    /// The deadline of one request (Envoy's `FilterUtility::finalTimeout`): for gRPC, the
    /// `grpc-timeout` header capped by the route timeout (a missing or zero header means the
    /// route timeout); otherwise the route timeout. `None`: no limit.
    pub fn for_request(&self, headers: &HeaderMap, grpc: bool) -> Option<Duration> {
        if !grpc {
            return self.route;
        }
        let header = headers
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .filter(|d| !d.is_zero());
        match (header, self.route) {
            (Some(h), Some(max)) => Some(h.min(max)),
            (Some(h), None) => Some(h),
            (None, route) => route,
        }
    }

    /// The limit of one attempt: the per-try timeout, but never past what is left of the
    /// request's deadline.
    pub fn attempt(remaining: Option<Duration>, per_try: Option<Duration>) -> Option<Duration> {
        match (remaining, per_try) {
            (Some(r), Some(p)) => Some(r.min(p)),
            (r, p) => r.or(p),
        }
    }
}

/// gRPC's `grpc-timeout`: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    // ASCII only, so splitting off the last byte is a char boundary.
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// 504 `UT` when a request's deadline passes (Envoy's body: `upstream request timeout`). For a
/// gRPC request the answer carries `grpc-status` 14 (`http_to_grpc_status(504)`).
pub fn timeout_error(route: &str, cluster: &str, timeout: Duration) -> ProxyError {
    ProxyError {
        status: StatusCode::GATEWAY_TIMEOUT,
        flag: flags::UT,
        detail: format!(
            "upstream request timeout: route {route} to {cluster} got no response within {timeout:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use keel_config::types::Duration as IstioDuration;

    fn route(timeout: Option<IstioDuration>) -> RouteTimeouts {
        RouteTimeouts::from_route(Some(&RoutePolicy {
            timeout,
            ..Default::default()
        }))
    }

    fn grpc_headers(timeout: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", HeaderValue::from_str(timeout).unwrap());
        h
    }

    #[test]
    fn no_timeout_unless_the_route_sets_one() {
        assert_eq!(RouteTimeouts::from_route(None).route, None);
        assert_eq!(route(None).route, None);
        assert_eq!(route(Some(IstioDuration::from_secs(0))).route, None);
        let t = route(Some(IstioDuration::from_millis(500)));
        assert_eq!(
            t.for_request(&HeaderMap::new(), false),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn grpc_deadlines_are_honoured_and_capped_by_the_route() {
        let none = route(None);
        assert_eq!(
            none.for_request(&grpc_headers("250m"), true),
            Some(Duration::from_millis(250))
        );
        assert_eq!(none.for_request(&HeaderMap::new(), true), None);
        let capped = route(Some(IstioDuration::from_secs(1)));
        assert_eq!(
            capped.for_request(&grpc_headers("5S"), true),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            capped.for_request(&grpc_headers("100m"), true),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            capped.for_request(&grpc_headers("0m"), true),
            Some(Duration::from_secs(1))
        );
        // Not a gRPC request: the header means nothing.
        assert_eq!(none.for_request(&grpc_headers("250m"), false), None);
    }

    #[test]
    fn grpc_timeout_syntax() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("4m"), Some(Duration::from_millis(4)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("6n"), Some(Duration::from_nanos(6)));
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S", "1µ"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_attempt_gets_the_smaller_of_per_try_and_what_is_left() {
        let s = Duration::from_secs;
        assert_eq!(RouteTimeouts::attempt(Some(s(3)), Some(s(2))), Some(s(2)));
        assert_eq!(RouteTimeouts::attempt(Some(s(1)), Some(s(2))), Some(s(1)));
        assert_eq!(RouteTimeouts::attempt(None, Some(s(2))), Some(s(2)));
        assert_eq!(RouteTimeouts::attempt(Some(s(3)), None), Some(s(3)));
        assert_eq!(RouteTimeouts::attempt(None, None), None);
    }

    #[test]
    fn timeouts_answer_504_ut() {
        let e = timeout_error(
            "reviews.default.0",
            "outbound|9080||reviews",
            Duration::from_secs(3),
        );
        assert_eq!(e.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(e.flag, "UT");
        assert!(
            e.detail
                .starts_with("upstream request timeout: route reviews.default.0")
        );
        assert_eq!(super::super::http_to_grpc_status(e.status.as_u16()), 14);
    }
}

//! Which incoming headers an app copies onto its outgoing calls — what lets the mesh stitch the
//! hops of one request into one trace and route by user. The lists are Istio's Bookinfo ones
//! (`getForwardHeaders` in productpage.py, `headers_to_propagate` in reviews'
//! LibertyRestEndpoint.java), plus the single-header `b3` and SkyWalking's `sw8` everywhere.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Trace context: request id, B3 (multi and single header), W3C, Lightstep, Datadog, Cloud
/// Trace, gRPC binary, SkyWalking.
pub const TRACE_HEADERS: &[&str] = &[
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
];

/// What productpage forwards besides trace context (its `end-user` comes from the sign-in).
pub const PRODUCTPAGE_EXTRA: &[&str] = &["user-agent", "cookie", "authorization", "jwt"];

/// What reviews forwards to ratings besides trace context.
pub const REVIEWS_EXTRA: &[&str] = &["end-user", "user-agent"];

/// Copies every header named in `names` (all values) from `from` into `to`.
pub fn copy(from: &HeaderMap, names: &[&str], to: &mut HeaderMap) {
    for name in names {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in from.get_all(&name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Starts a trace when the request brought none, as productpage's OpenTracing tracer does:
/// a fresh 64-bit `x-b3-traceid` and `x-b3-spanid`, sampled. Requests that carry B3 context
/// (multi-header or `b3`) are left alone, so their context passes through verbatim.
pub fn ensure_b3(headers: &mut HeaderMap) {
    if headers.contains_key("x-b3-traceid") || headers.contains_key("b3") {
        return;
    }
    let trace = format!("{:016x}", rand::random::<u64>());
    let span = format!("{:016x}", rand::random::<u64>());
    for (name, value) in [("x-b3-traceid", trace), ("x-b3-spanid", span)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    headers.insert("x-b3-sampled", HeaderValue::from_static("1"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_only_listed_headers_with_all_values() {
        let mut from = HeaderMap::new();
        from.insert("x-request-id", HeaderValue::from_static("abc"));
        from.append("tracestate", HeaderValue::from_static("a=1"));
        from.append("tracestate", HeaderValue::from_static("b=2"));
        from.insert("x-private", HeaderValue::from_static("no"));
        let mut to = HeaderMap::new();
        copy(&from, TRACE_HEADERS, &mut to);
        assert_eq!(
            to.get("x-request-id").map(|v| v.as_bytes()),
            Some(&b"abc"[..])
        );
        assert_eq!(to.get_all("tracestate").iter().count(), 2);
        assert!(!to.contains_key("x-private"));
    }

    #[test]
    fn b3_is_started_only_when_missing() {
        let mut h = HeaderMap::new();
        ensure_b3(&mut h);
        let trace = h.get("x-b3-traceid").cloned();
        assert_eq!(trace.as_ref().map(|v| v.len()), Some(16));
        assert_eq!(h.get("x-b3-sampled").map(|v| v.as_bytes()), Some(&b"1"[..]));
        ensure_b3(&mut h);
        assert_eq!(h.get("x-b3-traceid").cloned(), trace);
        let mut single = HeaderMap::new();
        single.insert(
            "b3",
            HeaderValue::from_static("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        );
        ensure_b3(&mut single);
        assert!(!single.contains_key("x-b3-traceid"));
    }
}

//! Istio resources → [`Snapshot`](crate::Snapshot).
//!
//! - [`registry`]: the services and their endpoints (ServiceEntry, WorkloadEntry, Kubernetes
//!   Service + Endpoints/EndpointSlice).
//! - [`policy`]: DestinationRules: which applies to a host, subsets, the merged traffic policy.
//! - [`routes`]: VirtualService HTTP/TCP/TLS routes → route entries and the clusters they need
//!   (field-by-field parts in `route_parts`).
//! - [`delegate`]: delegate VirtualServices merged into the routes delegating to them.
//! - [`gateway`]: a gateway's listeners from Gateway servers.
//! - [`sidecar`]: a sidecar's outbound (15001) and inbound (15006) listeners.
//! - [`visibility`]: `exportTo`, which resources a sidecar's namespace sees.
//! - [`authz`]: the AuthorizationPolicies that apply to a workload, compiled for evaluation.
//! - [`jwt`]: the RequestAuthentication JWT rules that apply to a workload.

pub mod authz;
pub mod delegate;
pub mod gateway;
pub mod gateway_tls;
pub mod jwt;
pub mod peer_authn;
pub mod policy;
pub mod registry;
mod route_parts;
pub mod routes;
pub mod sidecar;
mod sidecar_inbound;
pub mod visibility;

#[cfg(test)]
mod authz_tests;
#[cfg(test)]
mod gateway_tests;

/// The Kubernetes cluster domain Istio assumes.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// The mesh's trust domain: workload identities are `spiffe://cluster.local/ns/NS/sa/SA`.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// A problem found while compiling that the proxy can run without (reported to the user,
/// e.g. a route to a host that is in no registry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `Kind namespace/name` of the resource concerned.
    pub resource: String,
    pub message: String,
}

/// `reviews` in namespace `default` → `reviews.default.svc.cluster.local`; names with a dot
/// and wildcards stay as written (Istio's `ResolveShortnameToFQDN`).
pub fn fqdn(host: &str, namespace: &str, domain: &str) -> String {
    if host.contains('.') || host.starts_with('*') || namespace.is_empty() {
        host.to_ascii_lowercase()
    } else {
        format!("{}.{namespace}.svc.{domain}", host.to_ascii_lowercase())
    }
}

/// Istio host matching: `a` and `b` name overlapping sets (either may be a `*.` wildcard).
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    if a == "*" || b == "*" {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb) || sb.ends_with(sa),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a.eq_ignore_ascii_case(b),
    }
}

/// `narrow` is within `wide` (`foo.example.com` within `*.example.com`, anything within `*`).
pub fn host_within(narrow: &str, wide: &str) -> bool {
    if wide == "*" {
        return true;
    }
    match wide.strip_prefix('*') {
        Some(suffix) => narrow.ends_with(suffix),
        None => narrow.eq_ignore_ascii_case(wide),
    }
}

/// Standard base64 (padding optional); `None` when malformed (validation rejects those).
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            fqdn("reviews", "default", DEFAULT_DOMAIN),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(
            fqdn("api.example.com", "default", DEFAULT_DOMAIN),
            "api.example.com"
        );
        assert!(hosts_overlap("*.example.com", "a.example.com"));
        assert!(hosts_overlap("*", "a"));
        assert!(!hosts_overlap("a.example.com", "b.example.com"));
        assert!(host_within("a.example.com", "*.example.com"));
        assert!(!host_within("*.example.com", "a.example.com"));
        assert_eq!(
            decode_base64("aGVsbG8gYnl0ZXM=").as_deref(),
            Some(&b"hello bytes"[..])
        );
        assert_eq!(decode_base64("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("a-b"), None);
    }
}

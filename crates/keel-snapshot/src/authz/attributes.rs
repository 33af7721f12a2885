//! What the proxy knows about a connection or request, borrowed for one evaluation.
//!
//! A plain struct of references so that the proxy fills it from what it already holds (socket
//! addresses, the peer certificate's SPIFFE id, the request head, the verified JWT payload)
//! without copying; nothing here allocates. Headers come through a small trait so the proxy
//! can answer from its own header map.

use std::borrow::Cow;
use std::net::IpAddr;

/// The attributes of one connection (TCP) or request (HTTP).
#[derive(Clone, Copy)]
pub struct Attributes<'a> {
    /// The connection's peer address (Envoy's `direct_remote_ip`).
    pub source_ip: IpAddr,
    /// The original client from X-Forwarded-For or the PROXY protocol; `None`: the same as
    /// `source_ip` (Envoy's `remote_ip` falls back to it).
    pub remote_ip: Option<IpAddr>,
    /// The local address the connection was accepted on.
    pub destination_ip: IpAddr,
    /// The port the connection was addressed to: for a sidecar the application's (target)
    /// port, for a gateway the port it listens on (8080, not the Service's 80), as in Istio.
    pub destination_port: u16,
    /// The mTLS peer; `None` for plaintext, where principal, namespace and service-account
    /// fields never match (and their `not` forms always do).
    pub peer: Option<PeerIdentity<'a>>,
    /// The TLS server name the client asked for.
    pub sni: Option<&'a str>,
    /// `None`: a plain TCP connection, decided by Istio's rule for HTTP-only attributes.
    /// Traffic the proxy serves as HTTP is decided per request, never per connection: Istio
    /// applies only its HTTP RBAC filter there.
    pub http: Option<HttpAttributes<'a>>,
}

/// The request-level attributes.
#[derive(Clone, Copy)]
pub struct HttpAttributes<'a> {
    /// `:authority` / Host, as sent (a port included).
    pub host: &'a str,
    pub method: &'a str,
    /// The normalized path as the proxy will forward it; a query string is ignored.
    pub path: &'a str,
    pub headers: &'a dyn RequestHeaders,
    /// The payload of the request's JWT, verified by RequestAuthentication; `None` without one.
    pub jwt: Option<&'a serde_json::Value>,
}

/// Request headers by lower-case name. Several values of one header come back joined with
/// `,`, as Envoy's header matchers see them.
pub trait RequestHeaders {
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// Headers as `(name, value)` pairs, names compared case-insensitively: for tests and callers
/// without a header map.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderList<'a>(pub &'a [(&'a str, &'a str)]);

impl RequestHeaders for HeaderList<'_> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut found = self.0.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let (_, first) = found.next()?;
        match found.next() {
            None => Some(Cow::Borrowed(first)),
            Some((_, second)) => {
                let mut joined = format!("{first},{second}");
                for (_, v) in found {
                    joined.push(',');
                    joined.push_str(v);
                }
                Some(Cow::Owned(joined))
            }
        }
    }
}

/// The mTLS peer's identity, the parts of `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity<'a> {
    /// The id without `spiffe://`, the form policies name (`cluster.local/ns/foo/sa/bar`).
    pub principal: &'a str,
    pub trust_domain: &'a str,
    /// From a Kubernetes-style path (`/ns/<ns>/sa/<sa>`); `None` for other SPIFFE ids.
    pub namespace: Option<&'a str>,
    pub service_account: Option<&'a str>,
}

impl<'a> PeerIdentity<'a> {
    /// Parses a SPIFFE id (the certificate's URI SAN); `None` if it isn't one.
    pub fn from_spiffe(uri: &'a str) -> Option<PeerIdentity<'a>> {
        let principal = uri.strip_prefix("spiffe://")?;
        let (trust_domain, path) = principal.split_once('/').unwrap_or((principal, ""));
        if trust_domain.is_empty() {
            return None;
        }
        let mut namespace = None;
        let mut service_account = None;
        let mut segments = path.split('/');
        // Istio's service-account regex allows other key/value pairs around ns and sa.
        while let Some(key) = segments.next() {
            let value = segments.next();
            match (key, value) {
                ("ns", Some(v)) if namespace.is_none() => namespace = Some(v),
                ("sa", Some(v)) if service_account.is_none() => service_account = Some(v),
                _ => {}
            }
        }
        Some(PeerIdentity {
            principal,
            trust_domain,
            namespace,
            service_account,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids() {
        let p = PeerIdentity::from_spiffe("spiffe://cluster.local/ns/foo/sa/sleep").expect("id");
        assert_eq!(p.principal, "cluster.local/ns/foo/sa/sleep");
        assert_eq!(p.trust_domain, "cluster.local");
        assert_eq!(p.namespace, Some("foo"));
        assert_eq!(p.service_account, Some("sleep"));
        let other = PeerIdentity::from_spiffe("spiffe://example.org/workload-1").expect("id");
        assert_eq!((other.namespace, other.service_account), (None, None));
        assert!(PeerIdentity::from_spiffe("cluster.local/ns/foo/sa/sleep").is_none());
        assert!(PeerIdentity::from_spiffe("spiffe:///ns/foo").is_none());
    }

    #[test]
    fn headers_join_repeated_values() {
        let h = HeaderList(&[("X-A", "1"), ("x-b", "2"), ("x-a", "3")]);
        assert_eq!(h.get("x-a").as_deref(), Some("1,3"));
        assert_eq!(h.get("x-b").as_deref(), Some("2"));
        assert_eq!(h.get("x-c"), None);
    }
}

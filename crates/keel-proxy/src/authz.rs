//! AuthorizationPolicy on the data path: the listener carries the policies compiled for its
//! workload (`keel_snapshot::authz`), and each TCP connection — or, for traffic served as
//! HTTP, each request — is decided by Istio's rules before it is routed. A denied request
//! gets Istio's `403 RBAC: access denied`; a denied TCP connection is closed.

use keel_snapshot::authz::{
    Attributes, Evaluation, HttpAttributes, PeerIdentity, RequestHeaders, WorkloadPolicies,
};

use crate::server::ConnInfo;

/// The original client's address (`remote.ip`, `remoteIpBlocks`) from a request's
/// `X-Forwarded-For` as it arrived, by Envoy's rules as Istio configures them: a gateway
/// trusts `n` proxies in front of it (`numTrustedProxies`) and takes the n-th address from the
/// right (none trusted: the peer itself); a sidecar takes the last address. `None`: the peer.
pub fn remote_ip(conn: &ConnInfo, xff: Option<&str>) -> Option<std::net::IpAddr> {
    let xff = xff?;
    let from_right = match conn.gateway_trusted_hops {
        Some(0) => return None,
        Some(n) => usize::from(n),
        None => 1,
    };
    let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
    let i = entries.len().checked_sub(from_right)?;
    entries.get(i)?.parse().ok()
}

/// The connection-level attributes of `conn` (`http` to be filled per request).
pub fn attributes<'a>(conn: &'a ConnInfo, http: Option<HttpAttributes<'a>>) -> Attributes<'a> {
    let destination = conn.original_dst.unwrap_or(conn.local);
    let remote = http
        .as_ref()
        .and_then(|h| remote_ip(conn, h.headers.get("x-forwarded-for").as_deref()));
    Attributes {
        source_ip: conn.remote.ip(),
        remote_ip: remote,
        destination_ip: destination.ip(),
        destination_port: conn.destination_port(),
        peer: conn
            .peer_identity
            .as_deref()
            .and_then(PeerIdentity::from_spiffe),
        sni: None,
        http,
    }
}

/// What the proxy does with an evaluation: `Err` with the sentence for the log (and the
/// `x-keel-error` header) when denied. Dry-run and AUDIT results, and CUSTOM policies that
/// are not enforced, are logged.
pub fn enforce(ev: &Evaluation<'_>, what: &str, conn: &ConnInfo) -> Result<(), String> {
    if let Some(m) = &ev.custom_unsupported {
        tracing::warn!(listener = %conn.listener, downstream = %conn.remote,
            "AuthorizationPolicy {}/{} is CUSTOM (external authorization), which Keel does not support yet: ignored", m.namespace, m.name);
    }
    if let Some(m) = &ev.audit {
        tracing::info!(listener = %conn.listener, downstream = %conn.remote,
            "AUDIT: {what} matched AuthorizationPolicy {}/{} rule {}", m.namespace, m.name, m.rule);
    }
    for shadow in [ev.dry_run.deny, ev.dry_run.allow].into_iter().flatten() {
        let by = shadow
            .policy
            .map(|p| format!(" (AuthorizationPolicy {}/{})", p.namespace, p.name))
            .unwrap_or_default();
        tracing::info!(listener = %conn.listener, downstream = %conn.remote,
            "dry-run: {what} would be {}{by}", if shadow.allowed { "allowed" } else { "denied" });
    }
    if ev.decision.allowed {
        return Ok(());
    }
    let by = match ev.decision.policy {
        Some(p) => format!("ns[{}]-policy[{}]-rule[{}]", p.namespace, p.name, p.rule),
        None => "none (no ALLOW policy matched)".to_string(),
    };
    Err(format!("RBAC access denied: matched policy {by}"))
}

/// Decides a TCP connection (no HTTP attributes: Istio's rule for HTTP-only fields applies),
/// with the TLS server name it asked for, if any.
pub fn check_connection(
    policies: &WorkloadPolicies,
    conn: &ConnInfo,
    sni: Option<&str>,
) -> Result<(), String> {
    let mut attrs = attributes(conn, None);
    attrs.sni = sni;
    let ev = policies.evaluate(&attrs);
    enforce(&ev, "TCP connection", conn)
}

/// Decides a request: `host` (`:authority`), `method`, `path`, its headers and the payload
/// of its JWT, verified by RequestAuthentication.
pub fn check_request(
    policies: &WorkloadPolicies,
    conn: &ConnInfo,
    host: &str,
    method: &str,
    path: &str,
    headers: &dyn RequestHeaders,
    jwt: Option<&serde_json::Value>,
) -> Result<(), String> {
    let attrs = attributes(
        conn,
        Some(HttpAttributes {
            host,
            method,
            path,
            headers,
            jwt,
        }),
    );
    let ev = policies.evaluate(&attrs);
    enforce(&ev, &format!("{method} {path}"), conn)
}

/// Request headers from an `http::HeaderMap`, several values joined with `,`.
pub struct HeaderMapHeaders<'a>(pub &'a http::HeaderMap);

impl RequestHeaders for HeaderMapHeaders<'_> {
    fn get(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let mut values = self.0.get_all(name).iter();
        let first = values.next()?.to_str().ok()?;
        match values.next() {
            None => Some(std::borrow::Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first},{}", second.to_str().unwrap_or_default());
                for v in values {
                    joined.push(',');
                    joined.push_str(v.to_str().unwrap_or_default());
                }
                Some(std::borrow::Cow::Owned(joined))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(gateway_trusted_hops: Option<u8>) -> ConnInfo {
        let a = "10.0.0.9:1234".parse().expect("addr");
        ConnInfo {
            listener: "l".into(),
            local: a,
            remote: a,
            original_dst: None,
            tls: false,
            reporter: crate::telemetry::Reporter::Source,
            peer_identity: None,
            peer_workload: None,
            client_cert: None,
            gateway_trusted_hops,
            forwarded_for: None,
        }
    }

    #[test]
    fn the_original_client_follows_envoys_x_forwarded_for_rules() {
        let xff = Some("192.0.2.10, 203.0.113.1");
        let ip = |s: &str| Some(s.parse().expect("ip"));
        // A gateway trusting nobody: the peer (None falls back to it).
        assert_eq!(remote_ip(&conn(Some(0)), xff), None);
        // One trusted proxy: the address it appended (Envoy's documented example).
        assert_eq!(remote_ip(&conn(Some(1)), xff), ip("203.0.113.1"));
        assert_eq!(remote_ip(&conn(Some(2)), xff), ip("192.0.2.10"));
        // More trusted than listed: the peer.
        assert_eq!(remote_ip(&conn(Some(3)), xff), None);
        // A sidecar: the last address; garbage there is no address.
        assert_eq!(remote_ip(&conn(None), xff), ip("203.0.113.1"));
        assert_eq!(remote_ip(&conn(None), Some("1.2.3.4, junk")), None);
        assert_eq!(remote_ip(&conn(None), None), None);
    }
}

//! AuthorizationPolicy on the data path: the listener carries the policies compiled for its
//! workload (`keel_snapshot::authz`), and each TCP connection — or, for traffic served as
//! HTTP, each request — is decided by Istio's rules before it is routed. A denied request
//! gets Istio's `403 RBAC: access denied`; a denied TCP connection is closed.

use keel_snapshot::authz::{
    Attributes, Evaluation, HttpAttributes, PeerIdentity, RequestHeaders, WorkloadPolicies,
};

use crate::server::ConnInfo;

/// The connection-level attributes of `conn` (`http` to be filled per request).
pub fn attributes<'a>(conn: &'a ConnInfo, http: Option<HttpAttributes<'a>>) -> Attributes<'a> {
    let destination = conn.original_dst.unwrap_or(conn.local);
    Attributes {
        source_ip: conn.remote.ip(),
        remote_ip: None,
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

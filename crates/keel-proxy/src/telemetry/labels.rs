//! Istio's standard metric labels, computed the way Istio's stats filter computes them
//! (istio/proxy `source/extensions/filters/http/istio_stats/istio_stats.cc`): this proxy's
//! identity on its own side, the peer's on the other, `unknown` for what is not known, `latest`
//! for an unknown canonical revision.
//!
//! Label names are listed in the order Istio emits them, so our exposition reads like a
//! sidecar's (Prometheus itself does not care about order).

use std::borrow::Cow;

use super::record::{Peer, ProxyIdentity, Reporter, ServiceRef};

const UNKNOWN: &str = "unknown";
const LATEST: &str = "latest";

/// Labels common to HTTP and TCP metrics, in Istio's order.
pub const PEER_LABEL_NAMES: [&str; 20] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
];

/// Labels of `istio_requests_total` and the request histograms.
pub const HTTP_LABEL_NAMES: [&str; 25] = concat_names([
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
]);

/// Labels of `istio_tcp_*`.
pub const TCP_LABEL_NAMES: [&str; 23] = concat_names([
    "request_protocol",
    "response_flags",
    "connection_security_policy",
]);

const fn concat_names<const N: usize, const M: usize>(
    tail: [&'static str; N],
) -> [&'static str; M] {
    let mut out = [""; M];
    let mut i = 0;
    while i < PEER_LABEL_NAMES.len() {
        out[i] = PEER_LABEL_NAMES[i];
        i += 1;
    }
    while i < M {
        out[i] = tail[i - PEER_LABEL_NAMES.len()];
        i += 1;
    }
    out
}

/// The facts about one hop that decide the peer labels.
pub struct Hop<'a> {
    pub reporter: Reporter,
    pub peer: &'a Peer,
    pub service: Option<&'a ServiceRef>,
    /// Host header fallback for the destination service (HTTP only; empty for TCP).
    pub authority: &'a str,
    pub upstream_cluster: Option<&'a str>,
}

/// Envoy's catch-all clusters, which Istio reports as `destination_service_name`.
const SPECIAL_CLUSTERS: [&str; 5] = [
    "BlackHoleCluster",
    "PassthroughCluster",
    "InboundPassthroughCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

/// One workload's labels with Istio's defaults applied.
struct Side<'a> {
    workload: &'a str,
    canonical_service: &'a str,
    canonical_revision: &'a str,
    namespace: &'a str,
    principal: &'a str,
    app: &'a str,
    version: &'a str,
    cluster: &'a str,
}

impl<'a> Side<'a> {
    /// `id` is `None` for an unknown peer. `principal` is the certificate SAN, if any.
    fn new(id: Option<&'a ProxyIdentity>, principal: Option<&'a str>) -> Side<'a> {
        let field = |f: fn(&'a ProxyIdentity) -> &'a str| id.map(f).filter(|v| !v.is_empty());
        let namespace = principal
            .and_then(namespace_from_principal)
            .or(field(|i| i.namespace.as_str()));
        Side {
            workload: field(|i| i.workload.as_str()).unwrap_or(UNKNOWN),
            canonical_service: field(|i| i.canonical_service.as_str())
                .or(field(|i| i.app.as_str()))
                .or(field(|i| i.workload.as_str()))
                .unwrap_or(UNKNOWN),
            canonical_revision: field(|i| i.canonical_revision.as_str())
                .or(field(|i| i.version.as_str()))
                .unwrap_or(LATEST),
            namespace: namespace.unwrap_or(UNKNOWN),
            principal: principal.filter(|p| !p.is_empty()).unwrap_or(UNKNOWN),
            app: field(|i| i.app.as_str()).unwrap_or(UNKNOWN),
            version: field(|i| i.version.as_str()).unwrap_or(UNKNOWN),
            cluster: field(|i| i.cluster.as_str()).unwrap_or(UNKNOWN),
        }
    }
}

/// The namespace in a SPIFFE id `spiffe://<td>/ns/<ns>/sa/<sa>`, as Istio prefers it over
/// peer metadata.
pub fn namespace_from_principal(principal: &str) -> Option<&str> {
    let start = principal.find("/ns/")? + "/ns/".len();
    let rest = &principal[start..];
    let ns = rest.split('/').next().unwrap_or(rest);
    (!ns.is_empty()).then_some(ns)
}

/// The 20 peer labels for `hop`, seen from `proxy`.
pub fn peer_labels<'a>(proxy: &'a ProxyIdentity, hop: &Hop<'a>) -> [&'a str; 20] {
    let mtls = hop.peer.principal.is_some();
    let local_principal = mtls.then_some(proxy.principal.as_str());
    let local = Side::new(Some(proxy), local_principal);
    let remote = Side::new(hop.peer.workload.as_deref(), hop.peer.principal.as_deref());
    let (source, destination) = match hop.reporter {
        Reporter::Source => (&local, &remote),
        Reporter::Destination => (&remote, &local),
    };
    // When nothing names the service, Istio's client side says `unknown` and its server side
    // names its own canonical service.
    let fallback = match hop.reporter {
        Reporter::Source => UNKNOWN,
        Reporter::Destination => local.canonical_service,
    };
    let authority = (!hop.authority.is_empty()).then_some(hop.authority);
    let service_host = hop
        .service
        .map(|s| s.host.as_str())
        .filter(|h| !h.is_empty());
    let special = hop
        .upstream_cluster
        .filter(|c| SPECIAL_CLUSTERS.contains(c));
    let service_name = special
        .or(hop
            .service
            .map(|s| s.name.as_str())
            .filter(|n| !n.is_empty()))
        .or(service_host.and_then(|h| h.split('.').next()))
        .or(authority)
        .unwrap_or(fallback);
    let service_namespace = hop
        .service
        .map(|s| s.namespace.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(destination.namespace);
    [
        hop.reporter.as_str(),
        source.workload,
        source.canonical_service,
        source.canonical_revision,
        source.namespace,
        source.principal,
        source.app,
        source.version,
        source.cluster,
        destination.workload,
        destination.namespace,
        destination.principal,
        destination.app,
        destination.version,
        service_host.or(authority).unwrap_or(fallback),
        destination.canonical_service,
        destination.canonical_revision,
        service_name,
        service_namespace,
        destination.cluster,
    ]
}

/// `connection_security_policy`: known only to the server side, as in Istio.
pub fn security_policy(reporter: Reporter, peer: &Peer) -> &'static str {
    match (reporter, peer.principal.is_some()) {
        (Reporter::Source, _) => UNKNOWN,
        (Reporter::Destination, true) => "mutual_tls",
        (Reporter::Destination, false) => "none",
    }
}

/// `response_flags`: `-` when there are none, as Envoy prints it.
pub fn flags(flags: &str) -> &str {
    if flags.is_empty() { "-" } else { flags }
}

/// `response_code`: the status as digits, `0` when no response was sent.
pub fn response_code(code: u16) -> Cow<'static, str> {
    /// "100" to "999" as bytes, so that common codes need no allocation.
    static THREE_DIGITS: [[u8; 3]; 900] = {
        let mut table = [[0u8; 3]; 900];
        let mut i = 0;
        while i < 900 {
            let n = i + 100;
            table[i] = [
                b'0' + (n / 100) as u8,
                b'0' + (n / 10 % 10) as u8,
                b'0' + (n % 10) as u8,
            ];
            i += 1;
        }
        table
    };
    let digits = usize::from(code)
        .checked_sub(100)
        .and_then(|i| THREE_DIGITS.get(i))
        .and_then(|d| std::str::from_utf8(d).ok());
    match (code, digits) {
        (0, _) => Cow::Borrowed("0"),
        (_, Some(d)) => Cow::Borrowed(d),
        (_, None) => Cow::Owned(code.to_string()),
    }
}

/// `grpc_response_status`: empty unless the call is gRPC and a status is known.
pub fn grpc_status(grpc: bool, status: Option<u32>) -> Cow<'static, str> {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    match status.filter(|_| grpc) {
        None => Cow::Borrowed(""),
        Some(s) => match usize::try_from(s).ok().and_then(|i| CODES.get(i)) {
            Some(code) => Cow::Borrowed(code),
            None => Cow::Owned(s.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn named(labels: &[&str; 20]) -> Vec<(&'static str, String)> {
        PEER_LABEL_NAMES
            .iter()
            .zip(labels)
            .map(|(n, v)| (*n, v.to_string()))
            .collect()
    }

    fn reviews() -> ProxyIdentity {
        ProxyIdentity {
            workload: "reviews-v2".into(),
            namespace: "default".into(),
            app: "reviews".into(),
            version: "v2".into(),
            canonical_service: "reviews".into(),
            canonical_revision: "v2".into(),
            principal: "spiffe://cluster.local/ns/default/sa/bookinfo-reviews".into(),
            ..ProxyIdentity::default()
        }
    }

    #[test]
    fn nothing_known_gives_istio_defaults() {
        let proxy = ProxyIdentity::default();
        let peer = Peer::default();
        let hop = Hop {
            reporter: Reporter::Source,
            peer: &peer,
            service: None,
            authority: "",
            upstream_cluster: None,
        };
        let labels = peer_labels(&proxy, &hop);
        let expect = [
            "source",
            "unknown",
            "unknown",
            "latest",
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "Kubernetes",
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "unknown",
            "latest",
            "unknown",
            "unknown",
            "unknown",
        ];
        assert_eq!(labels, expect);
        assert_eq!(security_policy(Reporter::Source, &peer), "unknown");
        assert_eq!(security_policy(Reporter::Destination, &peer), "none");
        assert_eq!(flags(""), "-");
        assert_eq!(response_code(0), "0");
        assert_eq!(response_code(100), "100");
        assert_eq!(response_code(204), "204");
        assert_eq!(response_code(999), "999");
        assert_eq!(response_code(1000), "1000");
        assert_eq!(response_code(42), "42");
        assert_eq!(grpc_status(false, Some(14)), "");
        assert_eq!(grpc_status(true, None), "");
        assert_eq!(grpc_status(true, Some(14)), "14");
        assert_eq!(grpc_status(true, Some(99)), "99");
    }

    #[test]
    fn destination_side_reports_itself_as_destination_and_mtls_peer_as_source() {
        let proxy = reviews();
        let peer = Peer {
            workload: Some(Arc::new(ProxyIdentity {
                workload: "productpage-v1".into(),
                namespace: "metadata-ns-is-overridden-by-san".into(),
                app: "productpage".into(),
                version: "v1".into(),
                ..ProxyIdentity::default()
            })),
            principal: Some("spiffe://cluster.local/ns/frontend/sa/bookinfo-productpage".into()),
        };
        let hop = Hop {
            reporter: Reporter::Destination,
            peer: &peer,
            service: None,
            authority: "reviews:9080",
            upstream_cluster: Some("inbound|9080||"),
        };
        let labels = named(&peer_labels(&proxy, &hop));
        let get = |n: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("reporter"), Some("destination"));
        assert_eq!(get("source_workload"), Some("productpage-v1"));
        assert_eq!(get("source_canonical_service"), Some("productpage"));
        assert_eq!(get("source_canonical_revision"), Some("v1"));
        assert_eq!(get("source_workload_namespace"), Some("frontend"));
        assert_eq!(
            get("source_principal"),
            Some("spiffe://cluster.local/ns/frontend/sa/bookinfo-productpage")
        );
        assert_eq!(get("destination_workload"), Some("reviews-v2"));
        assert_eq!(
            get("destination_principal"),
            Some("spiffe://cluster.local/ns/default/sa/bookinfo-reviews")
        );
        assert_eq!(get("destination_service"), Some("reviews:9080"));
        assert_eq!(get("destination_service_name"), Some("reviews:9080"));
        assert_eq!(get("destination_service_namespace"), Some("default"));
        assert_eq!(get("destination_cluster"), Some("Kubernetes"));
        assert_eq!(security_policy(Reporter::Destination, &peer), "mutual_tls");
    }

    #[test]
    fn plaintext_hides_own_principal_and_service_names_come_from_the_route() {
        let proxy = reviews();
        let peer = Peer::default();
        let service = ServiceRef {
            host: "ratings.default.svc.cluster.local".into(),
            name: String::new(),
            namespace: "default".into(),
        };
        let hop = Hop {
            reporter: Reporter::Source,
            peer: &peer,
            service: Some(&service),
            authority: "ratings:9080",
            upstream_cluster: Some("outbound|9080||ratings.default.svc.cluster.local"),
        };
        let labels = peer_labels(&proxy, &hop);
        assert_eq!(labels[5], "unknown", "source_principal without mTLS");
        assert_eq!(labels[14], "ratings.default.svc.cluster.local");
        assert_eq!(labels[17], "ratings");
        assert_eq!(labels[18], "default");

        let hop = Hop {
            upstream_cluster: Some("PassthroughCluster"),
            service: None,
            authority: "example.com",
            ..hop
        };
        let labels = peer_labels(&proxy, &hop);
        assert_eq!(labels[14], "example.com");
        assert_eq!(labels[17], "PassthroughCluster");
    }

    #[test]
    fn namespace_is_read_from_spiffe_ids() {
        let ns = namespace_from_principal;
        assert_eq!(ns("spiffe://cluster.local/ns/foo/sa/bar"), Some("foo"));
        assert_eq!(ns("spiffe://td/ns/foo"), Some("foo"));
        assert_eq!(ns("spiffe://td/sa/bar"), None);
        assert_eq!(ns("spiffe://td/ns//sa/x"), None);
    }

    #[test]
    fn label_name_lists_extend_the_peer_labels() {
        assert_eq!(HTTP_LABEL_NAMES[..20], PEER_LABEL_NAMES);
        assert_eq!(HTTP_LABEL_NAMES[24], "connection_security_policy");
        assert_eq!(
            TCP_LABEL_NAMES[20..],
            [
                "request_protocol",
                "response_flags",
                "connection_security_policy"
            ]
        );
    }
}

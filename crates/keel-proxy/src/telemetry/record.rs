//! What the request path hands to telemetry: who this proxy is, and one record per finished
//! HTTP request or TCP connection.
//!
//! Records carry facts, not labels: empty strings and `None` mean "not known", and the label
//! code turns them into Istio's defaults (`unknown`, `latest`, `-`). Values that stay the same
//! for many requests (the peer workload, the destination service) are `Arc`s so that building
//! a record copies pointers, not strings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A workload's identity as Istio labels it: this proxy's own (given once to
/// [`Telemetry::new`](super::Telemetry::new)) or a peer's (learned from endpoint metadata or
/// metadata exchange). Empty fields are reported as `unknown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    /// Workload name, e.g. the Deployment `reviews-v1`.
    pub workload: String,
    pub namespace: String,
    /// The `app` label.
    pub app: String,
    /// The `version` label.
    pub version: String,
    /// `service.istio.io/canonical-name`; when empty, `app`, then `workload`, as Istio's injector
    /// defaults it.
    pub canonical_service: String,
    /// `service.istio.io/canonical-revision`; when empty, `version`, then `latest`.
    pub canonical_revision: String,
    /// Istio's cluster ID; `Kubernetes` by default, as in Istio.
    pub cluster: String,
    /// SPIFFE identity, `spiffe://cluster.local/ns/<ns>/sa/<sa>`. Reported only for hops that
    /// actually used mutual TLS, as Istio reports the certificate's SAN, not a claim.
    pub principal: String,
    pub mesh_id: String,
}

impl Default for ProxyIdentity {
    fn default() -> ProxyIdentity {
        ProxyIdentity {
            workload: String::new(),
            namespace: String::new(),
            app: String::new(),
            version: String::new(),
            canonical_service: String::new(),
            canonical_revision: String::new(),
            cluster: "Kubernetes".to_string(),
            principal: String::new(),
            mesh_id: String::new(),
        }
    }
}

/// Which end of the hop reports: the client's proxy (`source`: outbound listeners and
/// gateways, as in Istio) or the server's (`destination`: inbound listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reporter {
    #[default]
    Source,
    Destination,
}

impl Reporter {
    /// The `reporter` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// Access-log encoding, switchable at runtime (meshConfig `accessLogFile` empty, or
/// `accessLogEncoding: TEXT | JSON`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLogFormat {
    #[default]
    Off,
    Text,
    Json,
}

/// The mesh service a request was routed to, from the route's cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRef {
    /// Fully qualified host, e.g. `reviews.default.svc.cluster.local` (`destination_service`).
    pub host: String,
    /// Short name, e.g. `reviews` (`destination_service_name`); empty: the host's first label.
    pub name: String,
    /// `destination_service_namespace`.
    pub namespace: String,
}

/// Identity facts about one hop shared by HTTP and TCP records.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The workload at the other end: the chosen endpoint's workload for `source`, the
    /// calling workload for `destination`. `None`: not known (all its labels `unknown`).
    pub workload: Option<Arc<ProxyIdentity>>,
    /// The URI SAN of the peer's certificate when the hop used mutual TLS; `None` for
    /// plaintext. Decides `*_principal` and, for `destination`, `connection_security_policy`.
    pub principal: Option<String>,
}

/// One finished HTTP request (or gRPC call): everything Istio's standard metrics and the
/// default access log need. Build with `..Default::default()` and fill what is known.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub reporter: Reporter,
    pub peer: Peer,
    /// The service the route chose; `None` falls back to `authority`, as Istio falls back to
    /// the Host header.
    pub service: Option<Arc<ServiceRef>>,

    /// When the first request byte arrived (`%START_TIME%`).
    pub start_time: SystemTime,
    /// First request byte to last response byte (`%DURATION%`, the duration histogram).
    pub duration: Duration,
    /// `None`: the request was refused before its request line could be read (`DPE`).
    pub method: Option<http::Method>,
    /// Path and query as the client sent them, before any rewrite
    /// (`%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`).
    pub path: String,
    /// `%PROTOCOL%`: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`.
    pub version: http::Version,
    /// gRPC call (`content-type: application/grpc*`): `request_protocol="grpc"`.
    pub grpc: bool,
    /// `:authority` / Host, as received.
    pub authority: String,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub forwarded_for: Option<String>,

    /// Request body bytes received from downstream (`%BYTES_RECEIVED%`).
    pub bytes_received: u64,
    /// Response body bytes sent downstream (`%BYTES_SENT%`).
    pub bytes_sent: u64,
    /// Request header bytes from downstream. Istio's `istio_request_bytes` observes what the
    /// downstream connection carried for the request, headers included: body + this.
    pub header_bytes_received: u64,
    /// Response header bytes to downstream; `istio_response_bytes` observes body + this.
    pub header_bytes_sent: u64,
    /// gRPC messages each way (`istio_request_messages_total`/`istio_response_messages_total`).
    pub grpc_request_messages: u64,
    pub grpc_response_messages: u64,

    /// Status sent downstream; 0 when none was (`response_code="0"`, as Envoy).
    pub response_code: u16,
    /// `grpc-status` from trailers (or trailers-only headers); `None`: not gRPC or absent.
    pub grpc_status: Option<u32>,
    /// Envoy short flags, comma separated (`UF,URX`); empty: none (`-`).
    pub response_flags: String,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`, e.g. `via_upstream`, `route_not_found`.
    pub response_code_details: std::borrow::Cow<'static, str>,
    pub connection_termination_details: Option<String>,
    pub upstream_transport_failure_reason: Option<String>,
    /// Keel's one-line account of a proxy-made failure, e.g.
    /// `upstream connect failed: reviews-v2 127.0.0.1:9082 connection refused`.
    pub error: Option<String>,
    /// Time to the upstream's response headers (`x-envoy-upstream-service-time`).
    pub upstream_service_time: Option<Duration>,

    pub upstream_host: Option<SocketAddr>,
    /// `outbound|9080|v1|reviews.default.svc.cluster.local`, `inbound|9080||`, ...
    pub upstream_cluster: Option<Arc<str>>,
    pub upstream_local_address: Option<SocketAddr>,
    pub downstream_local_address: Option<SocketAddr>,
    pub downstream_remote_address: Option<SocketAddr>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<Arc<str>>,
}

impl Default for RequestRecord {
    fn default() -> RequestRecord {
        RequestRecord {
            reporter: Reporter::default(),
            peer: Peer::default(),
            service: None,
            start_time: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            method: None,
            path: String::new(),
            version: http::Version::HTTP_11,
            grpc: false,
            authority: String::new(),
            user_agent: None,
            request_id: None,
            forwarded_for: None,
            bytes_received: 0,
            bytes_sent: 0,
            header_bytes_received: 0,
            header_bytes_sent: 0,
            grpc_request_messages: 0,
            grpc_response_messages: 0,
            response_code: 0,
            grpc_status: None,
            response_flags: String::new(),
            response_code_details: std::borrow::Cow::Borrowed(""),
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            error: None,
            upstream_service_time: None,
            upstream_host: None,
            upstream_cluster: None,
            upstream_local_address: None,
            downstream_local_address: None,
            downstream_remote_address: None,
            requested_server_name: None,
            route_name: None,
        }
    }
}

/// One proxied TCP connection, kept by the request path for the connection's life.
///
/// Istio fixes a connection's label set when it is reported open, so keep the label fields
/// unchanged between `tcp_opened`, `tcp_bytes` and `tcp_closed` (a connection that fails before
/// it is reported open can be reported open at close, with its flags). `tcp_closed` also writes
/// the connection's access-log line, as Istio's TCP proxy does.
#[derive(Debug, Clone)]
pub struct TcpRecord {
    pub reporter: Reporter,
    pub peer: Peer,
    pub service: Option<Arc<ServiceRef>>,
    /// Envoy short flags (`UF`, `UO`, ...); empty: none.
    pub response_flags: String,

    pub start_time: SystemTime,
    /// Connection lifetime, for the access log at close.
    pub duration: Duration,
    /// Totals so far: bytes sent to and received from downstream. At `tcp_closed`, whatever
    /// part of these `tcp_bytes` has not already reported is added to the counters.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// What `tcp_bytes` has reported for this connection; start from `Default`.
    pub reported: ReportedBytes,

    pub connection_termination_details: Option<String>,
    pub upstream_transport_failure_reason: Option<String>,
    /// Keel's one-line account of a proxy-made failure.
    pub error: Option<String>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<String>,
    pub upstream_local_address: Option<SocketAddr>,
    pub downstream_local_address: Option<SocketAddr>,
    pub downstream_remote_address: Option<SocketAddr>,
    pub requested_server_name: Option<String>,
    pub route_name: Option<String>,
}

impl Default for TcpRecord {
    fn default() -> TcpRecord {
        TcpRecord {
            reporter: Reporter::default(),
            peer: Peer::default(),
            service: None,
            response_flags: String::new(),
            start_time: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
            reported: ReportedBytes::default(),
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            error: None,
            upstream_host: None,
            upstream_cluster: None,
            upstream_local_address: None,
            downstream_local_address: None,
            downstream_remote_address: None,
            requested_server_name: None,
            route_name: None,
        }
    }
}

/// Bytes of one connection already added to `istio_tcp_*_bytes_total`, so that the final
/// report at close adds only the remainder.
#[derive(Debug, Default)]
pub struct ReportedBytes {
    sent: AtomicU64,
    received: AtomicU64,
}

impl ReportedBytes {
    pub(crate) fn add(&self, sent: u64, received: u64) {
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.received.fetch_add(received, Ordering::Relaxed);
    }

    /// Marks the totals reported; returns the part that was not yet.
    pub(crate) fn settle(&self, sent_total: u64, received_total: u64) -> (u64, u64) {
        let sent = self.sent.fetch_max(sent_total, Ordering::Relaxed);
        let received = self.received.fetch_max(received_total, Ordering::Relaxed);
        (
            sent_total.saturating_sub(sent),
            received_total.saturating_sub(received),
        )
    }
}

impl Clone for ReportedBytes {
    fn clone(&self) -> ReportedBytes {
        ReportedBytes {
            sent: AtomicU64::new(self.sent.load(Ordering::Relaxed)),
            received: AtomicU64::new(self.received.load(Ordering::Relaxed)),
        }
    }
}

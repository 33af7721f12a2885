//! Clusters: the upstream endpoints a route forwards to, and how to balance over them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One destination service port (and subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `outbound|9080|v1|reviews.default.svc.cluster.local`.
    pub name: String,
    /// The service host (FQDN for Kubernetes services, as written for ServiceEntries).
    pub service: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// `namespace` of the service (for metrics' `destination_service_namespace`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub lb: LbPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb: Option<LocalityLb>,
    pub protocol: UpstreamProtocol,
    pub endpoints: Vec<Endpoint>,
    /// The DestinationRule traffic policy that applies (merged subset/port level), carried as
    /// written for the resilience layer (connection pools, outlier detection, TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<keel_config::model::networking::destination_rule::TrafficPolicy>,
    /// The Secret the traffic policy's `tls.credentialName` names, resolved in the proxy's
    /// namespace when compiled (the proxy reads no Secrets itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_credential: Option<crate::tls::ClientCredential>,
}

/// One upstream instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub address: EndpointAddress,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `region/zone/subzone`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// Relative weight (ServiceEntry/WorkloadEntry `weight`, default 1).
    pub weight: u32,
    /// Workload name and namespace, for metrics (`destination_workload`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `spiffe://...` identity expected behind it: its service account's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity: String,
    /// The workload behind it accepts Istio mTLS: it has a sidecar (label
    /// `security.istio.io/tlsMode: istio`, as Istio's injector sets) and its PeerAuthentication
    /// for this port is not DISABLE. Auto mTLS sends mTLS to it and plaintext to the others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mtls: bool,
}

/// An IP endpoint, or a DNS name the proxy resolves (ServiceEntry `resolution: DNS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointAddress {
    Socket(SocketAddr),
    Dns { host: String, port: u16 },
}

impl std::fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAddress::Socket(a) => write!(f, "{a}"),
            EndpointAddress::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Load balancing, Istio's `LoadBalancerSettings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Istio's default: power of two random choices, fewer active requests wins.
    LeastRequest,
    RoundRobin,
    Random,
    /// Forward to the address the caller asked for (original destination).
    Passthrough,
    ConsistentHash {
        key: HashKey,
        maglev: bool,
        table_size: u64,
    },
}

/// What a consistent hash is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    Header(String),
    /// Hash a cookie; when absent the proxy sets one with this path and TTL (seconds).
    Cookie {
        name: String,
        path: String,
        ttl_secs: Option<u64>,
    },
    SourceIp,
    QueryParam(String),
}

/// Locality-weighted distribution (`localityLbSetting.distribute`) or failover.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LocalityLb {
    /// The proxy's own locality (`region/zone/subzone`).
    pub local: String,
    /// `(from, [(to, weight)])` with `*` wildcards, as in Istio.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<(String, Vec<(String, u32)>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<(String, String)>,
}

/// How to speak HTTP to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    Http1,
    /// h2c (gRPC, HTTP2 ports).
    Http2,
    /// Whatever the downstream spoke (`useClientProtocol`, and unknown ports).
    SameAsDownstream,
    /// Opaque TCP.
    Tcp,
}

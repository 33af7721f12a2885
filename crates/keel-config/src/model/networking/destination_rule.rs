//! `DestinationRule` (networking.istio.io v1, v1beta1, v1alpha3): policies for traffic to a
//! service after routing — load balancing, connection pools, outlier detection, client TLS,
//! subsets.
//!
//! The model follows `networking/v1alpha3/destination_rule.proto`; the rules Istio's webhook
//! and CRD schema apply are in `destination_rule_validate.rs`. `TrafficPolicy` and its parts
//! are shared with Sidecar and other kinds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::virtual_service::PortSelector;
use crate::istio_enum;
use crate::model::common::WorkloadSelector;
use crate::types::Duration;
use crate::validate::{Validate, Validator};

/// `DestinationRule` spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DestinationRule {
    /// The service the rule applies to (short names resolve in the rule's namespace).
    pub host: String,
    /// Policies for every port and subset, unless overridden.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of endpoints (versions), selectable in routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Namespaces the rule is visible to (`.` its own, `*` all); empty means all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Restricts the rule to these workloads in the rule's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

/// `TrafficPolicy`: load balancing, connection pool, outlier detection and TLS settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TrafficPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS for connections to the upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides; settings are not inherited from the outer policy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel TCP over HTTP CONNECT or POST to the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// Send a PROXY protocol header upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Limit on concurrent retries relative to active requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// `TrafficPolicy.PortTrafficPolicy`: a policy for one port of the service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PortTrafficPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// `TrafficPolicy.TunnelSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// FQDN or IP the connection is tunneled to (required).
    pub target_host: String,
    /// Port the connection is tunneled to (required).
    pub target_port: u32,
}

/// `TrafficPolicy.ProxyProtocol`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ProxyProtocol {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<ProxyProtocolVersion>,
}

istio_enum! {
    /// `TrafficPolicy.ProxyProtocol.VERSION`.
    pub enum ProxyProtocolVersion {
        /// Human-readable header (default).
        V1 = "V1" = 0,
        /// Binary header.
        V2 = "V2" = 1,
    }
}

/// `TrafficPolicy.RetryBudget`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RetryBudget {
    /// Concurrent retries as a percentage (0–100) of active plus pending requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Retries always allowed regardless of the percentage.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub min_retry_concurrency: u32,
}

/// `Subset`: a named group of the service's endpoints, with optional policy overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Subset {
    /// Referenced by routes (`destination.subset`); a DNS label (required).
    pub name: String,
    /// Endpoint labels that select the subset.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `LoadBalancerSettings`: one of `simple` and `consistentHash`, plus locality and warmup.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LoadBalancerSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Overrides the mesh-wide locality settings entirely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Deprecated: use `warmup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start for new endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

istio_enum! {
    /// `LoadBalancerSettings.SimpleLB`.
    pub enum SimpleLb {
        /// Istio picks (LEAST_REQUEST).
        Unspecified = "UNSPECIFIED" = 0,
        /// Deprecated alias of LEAST_REQUEST.
        LeastConn = "LEAST_CONN" = 1,
        Random = "RANDOM" = 2,
        /// Forward to the original destination address without load balancing.
        Passthrough = "PASSTHROUGH" = 3,
        RoundRobin = "ROUND_ROBIN" = 4,
        LeastRequest = "LEAST_REQUEST" = 5,
    }
}

/// `WarmupConfiguration`: traffic to new endpoints ramps up over `duration`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WarmupConfiguration {
    /// Length of the warmup window (required, ≥ 1ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Share of normal traffic a new endpoint starts with (0–100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    /// How fast traffic increases (≥ 0; 1 is linear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

/// `LoadBalancerSettings.ConsistentHashLB`: session affinity by header, cookie, source IP or
/// query parameter (one of them), with a ring-hash or Maglev table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ConsistentHashLb {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated: use `ringHash.minimumRingSize`.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub minimum_ring_size: u64,
}

/// `ConsistentHashLB.RingHash`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RingHash {
    /// Virtual nodes on the ring (default 1024).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub minimum_ring_size: u64,
}

/// `ConsistentHashLB.MagLev`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MagLev {
    /// A prime below 5000011 (default 65537).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub table_size: u64,
}

/// `ConsistentHashLB.HTTPCookie`: hash on a cookie, generated with `ttl` if absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpCookie {
    /// Cookie name (required).
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Lifetime of a generated cookie; `0s` makes a session cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Extra attributes for a generated cookie.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<CookieAttribute>,
}

/// `ConsistentHashLB.HTTPCookie.Attribute`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CookieAttribute {
    /// Attribute name (required).
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// `LocalityLoadBalancerSetting`: locality weights or failover (one of `distribute`,
/// `failover`, `failoverPriority` in principle).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LocalityLoadBalancerSetting {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<LocalityDistribute>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Labels ordering endpoints into failover priorities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// Turns locality load balancing on or off for this destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`: weights (summing to 100) by destination locality.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LocalityDistribute {
    /// Source locality, `region/zone/subzone`, a trailing `*` allowed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u32>,
}

/// `LocalityLoadBalancerSetting.Failover`: region to fail over to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LocalityFailover {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub to: String,
}

/// `ConnectionPoolSettings`: limits on connections and requests to each upstream host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ConnectionPoolSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TcpSettings {
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub max_connections: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// `ConnectionPoolSettings.TCPSettings.TcpKeepalive`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TcpKeepalive {
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub probes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpSettings {
    #[serde(
        rename = "http1MaxPendingRequests",
        skip_serializing_if = "is_zero_i32"
    )]
    pub http1_max_pending_requests: i32,
    #[serde(rename = "http2MaxRequests", skip_serializing_if = "is_zero_i32")]
    pub http2_max_requests: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub max_requests_per_connection: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub max_retries: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    #[serde(rename = "h2UpgradePolicy", skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Keep the client's protocol upstream (disables h2 upgrade).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_client_protocol: bool,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub max_concurrent_streams: i32,
    /// HTTP/2 PING keepalive on upstream connections.
    #[serde(rename = "http2KeepAlive", skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

/// HTTP/2 keepalive: send a PING every `interval`, close if unanswered within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Http2KeepAlive {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

istio_enum! {
    /// `ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy`.
    pub enum H2UpgradePolicy {
        /// The mesh-wide default.
        Default = "DEFAULT" = 0,
        DoNotUpgrade = "DO_NOT_UPGRADE" = 1,
        Upgrade = "UPGRADE" = 2,
    }
}

/// `OutlierDetection`: eject hosts that keep failing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct OutlierDetection {
    /// Deprecated: use `consecutive5xxErrors` or `consecutiveGatewayErrors`.
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub consecutive_errors: i32,
    /// Count local-origin failures (connect errors, timeouts) separately.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub split_external_local_origin_errors: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(
        rename = "consecutive5xxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// Time between ejection sweeps (≥ 1ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection time (≥ 1ms), multiplied by the number of ejections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub max_ejection_percent: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub min_health_percent: i32,
}

/// `ClientTLSSettings`: TLS the proxy originates to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ClientTlsSettings {
    pub mode: TlsMode,
    /// File with the client certificate (MUTUAL without `credentialName`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_certificate: String,
    /// File with the client's private key (MUTUAL without `credentialName`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// File with CA certificates to verify the server.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    /// Secret holding client certificate, key and CA (gateways, or sidecars with a
    /// `workloadSelector`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    /// SANs accepted in the server certificate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// SNI sent in the handshake.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// Skip verifying the server certificate's CA signature and SAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// File with a certificate revocation list.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
}

istio_enum! {
    /// `ClientTLSSettings.TLSmode`.
    pub enum TlsMode {
        /// Plaintext to the upstream.
        Disable = "DISABLE" = 0,
        /// Originate TLS.
        Simple = "SIMPLE" = 1,
        /// Originate mutual TLS with the given client certificate.
        Mutual = "MUTUAL" = 2,
        /// Mutual TLS with Istio's workload certificates.
        IstioMutual = "ISTIO_MUTUAL" = 3,
    }
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl Validate for DestinationRule {
    fn validate(&self, v: &mut Validator) {
        super::destination_rule_validate::validate(self, v);
    }
}

#[cfg(test)]
#[path = "destination_rule_tests.rs"]
mod tests;

//! `VirtualService` (networking.istio.io v1, v1beta1, v1alpha3): how requests to a set of
//! hosts are matched and routed (HTTP, TLS by SNI, and opaque TCP).
//!
//! The model follows `networking/v1alpha3/virtual_service.proto` field for field; the rules
//! Istio's webhook applies are in `virtual_service_validate.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::types::{Duration, Percent, StringMatch};
use crate::validate::{Validate, Validator};

pub use super::net_rules::jwt_claim_route;

/// `VirtualService` spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct VirtualService {
    /// Hosts traffic is addressed to: DNS names (short names resolve in the rule's namespace),
    /// wildcard prefixes (`*.example.com`) or IPs. Empty only for a delegate VirtualService.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Gateways (`<namespace>/<name>`) and/or the reserved `mesh` the routes apply to;
    /// empty means `mesh` (every sidecar).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Ordered HTTP routes; the first match wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// Ordered routes for unterminated TLS (and HTTPS) traffic, matched by SNI.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// Ordered routes for opaque TCP traffic.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces this VirtualService is visible to (`.` its own, `*` all); empty means all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

/// `Destination`: a service (and optionally a subset and port) traffic is sent to. Shared by
/// other kinds (Sidecar's egress proxy, mirrors).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Destination {
    /// A service registry name (Kubernetes Service or ServiceEntry host).
    pub host: String,
    /// A subset defined in the host's DestinationRule.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// The port on the host; needed only when the service exposes several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// `PortSelector`: a port by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PortSelector {
    pub number: u32,
}

/// `HTTPRoute`: match conditions and what to do with matching HTTP/1.1, HTTP/2 and gRPC traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpRoute {
    /// Route name, for debugging and stats.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Conditions, ORed; empty matches everything.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<HttpMatchRequest>,
    /// Weighted destinations (forwarding).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Answer with a redirect instead of forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer directly with a fixed response instead of forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand the rest of the routing to another (delegate) VirtualService.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite the path and/or authority before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout (unset: disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection on the client side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror traffic to another destination as well (fire and forget).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Several mirror destinations, each with its own percentage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated: use `mirrorPercentage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u32>,
    /// Deprecated spelling of `mirrorPercent` that Istio's CRD also accepts.
    #[serde(rename = "mirror_percent", skip_serializing_if = "Option::is_none")]
    pub mirror_percent_snake: Option<u32>,
    /// Share of traffic mirrored by `mirror` (default 100%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation for this route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// `Delegate`: the VirtualService a root route hands matching requests to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Delegate {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Defaults to the root VirtualService's namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `Headers`: header manipulation for requests and responses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Headers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// `Headers.HeaderOperations`: overwrite, append and remove headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HeaderOperations {
    /// Overwrite these headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append to these headers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// `TLSRoute`: SNI-based routing for TLS traffic that is passed through unterminated.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsRoute {
    /// Conditions, ORed; at least one is required.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<TlsMatchAttributes>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// `TCPRoute`: routing for opaque TCP traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TcpRoute {
    /// Conditions, ORed; empty matches everything.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<L4MatchAttributes>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// `HTTPMatchRequest`: conditions ANDed together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpMatchRequest {
    /// Match name, appended to the route name in logs and stats.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Header matches (keys lower case); an empty match tests presence. Keys of the form
    /// `@request.auth.claims.<name>` match JWT claims (gateways only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Destination port of the request.
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u32,
    /// Labels of the client workload.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Restricts the match to these gateways (overrides the VirtualService's `gateways`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Case-insensitive URI matching (exact and prefix only).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_uri_case: bool,
    /// Headers that must not match.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace of the client workload.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
    /// Prefix for the stats emitted for this route.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stat_prefix: String,
}

/// `HTTPRouteDestination`: a weighted destination with its own header manipulation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpRouteDestination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Relative share of traffic; weights need not sum to 100.
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub weight: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// `RouteDestination`: a weighted destination for TLS and TCP routes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RouteDestination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub weight: i32,
}

/// `L4MatchAttributes`: TCP match conditions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct L4MatchAttributes {
    /// Destination IPs or CIDR blocks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u32,
    /// Deprecated and ignored by Istio.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_subnet: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

/// `TLSMatchAttributes`: TLS match conditions (SNI is required).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct TlsMatchAttributes {
    /// SNI values; each must be covered by one of the VirtualService's hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub port: u32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

/// `HTTPRedirect`: answer with a 3xx pointing elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpRedirect {
    /// Replaces the path (the whole path, even for prefix matches).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Replaces the authority/host.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// Replaces the port (one of `port` and `derivePort`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Derives the port from the protocol or the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<RedirectPortSelection>,
    /// Replaces the scheme (`http` or `https`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    /// Status code (default 301).
    #[serde(skip_serializing_if = "is_zero")]
    pub redirect_code: u32,
}

istio_enum! {
    /// `HTTPRedirect.RedirectPortSelection`.
    pub enum RedirectPortSelection {
        /// 80 for HTTP, 443 for HTTPS.
        FromProtocolDefault = "FROM_PROTOCOL_DEFAULT" = 0,
        /// The port of the request.
        FromRequestPort = "FROM_REQUEST_PORT" = 1,
    }
}

/// `HTTPDirectResponse`: a fixed response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpDirectResponse {
    /// HTTP status (required).
    pub status: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// `HTTPBody`: a response body given as text or base64 bytes (one of them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Base64-encoded bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
}

/// `HTTPRewrite`: path and authority rewriting before forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpRewrite {
    /// Replaces the matched prefix (or the whole path for exact/regex matches).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// Regex-based path rewrite (one of `uri` and `uriRegexRewrite`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`: RE2 pattern and replacement (with `\1` style groups).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RegexRewrite {
    #[serde(rename = "match", skip_serializing_if = "String::is_empty")]
    pub r#match: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rewrite: String,
}

/// `HTTPRetry`: retry policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpRetry {
    /// Number of retries; 0 disables retries.
    pub attempts: i32,
    /// Timeout per attempt (≥ 1ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy retry conditions and/or HTTP status codes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub retry_on: String,
    /// Retry to endpoints in other localities.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    /// Avoid hosts already tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval between retries (≥ 1ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

/// `CorsPolicy`: Cross-Origin Resource Sharing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CorsPolicy {
    /// Deprecated: use `allowOrigins`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long preflight results may be cached (whole seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Whether preflights from origins that do not match are forwarded upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

istio_enum! {
    /// `CorsPolicy.UnmatchedPreflights`.
    pub enum UnmatchedPreflights {
        /// Default: FORWARD.
        Unspecified = "UNSPECIFIED" = 0,
        Forward = "FORWARD" = 1,
        /// Answer unmatched preflights without forwarding them.
        Ignore = "IGNORE" = 2,
    }
}

/// `HTTPFaultInjection`: delays and/or aborts injected on the client side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpFaultInjection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// `HTTPFaultInjection.Delay`: one of `fixedDelay` and `exponentialDelay`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FaultDelay {
    /// Deprecated: use `percentage`.
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub percent: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<Duration>,
    /// Not supported by Istio yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// `HTTPFaultInjection.Abort`: one of `httpStatus`, `grpcStatus` and `http2Error`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct FaultAbort {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// A gRPC status name such as `UNAVAILABLE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// Not supported by Istio yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// `HTTPMirrorPolicy`: one mirror destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpMirrorPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Share of traffic mirrored (default 100%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

impl Validate for VirtualService {
    fn validate(&self, v: &mut Validator) {
        super::virtual_service_validate::validate(self, v);
    }
}

#[cfg(test)]
#[path = "virtual_service_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "virtual_service_http_tests.rs"]
mod http_tests;

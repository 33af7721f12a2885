//! HTTP route tables and TCP/TLS routes, compiled from VirtualServices.
//!
//! Matching semantics are Istio's: virtual hosts by domain (exact, then the longest wildcard,
//! then `*`), routes in order, first match wins; within a route the matches are ORed and the
//! fields of one match ANDed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// HTTP routing for one listener.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RouteTable {
    pub virtual_hosts: Vec<VirtualHost>,
}

/// The routes for a set of domains (a VirtualService's hosts, as bound to this listener).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VirtualHost {
    /// `namespace/name` of the VirtualService (or a generated name for default routes).
    pub name: String,
    /// Lower-case host names, `*.suffix` wildcards or `*`. A request's `:authority` without
    /// its port is matched against these.
    pub domains: Vec<String>,
    pub routes: Vec<HttpRoute>,
}

/// One VirtualService `http[]` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HttpRoute {
    /// The route's `name`, or `<vs>.<index>`.
    pub name: String,
    /// ORed; empty matches every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RequestMatch>,
    pub action: RouteAction,
    /// `headers.request` / `headers.response` of the route.
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<keel_config::model::networking::virtual_service::CorsPolicy>,
    /// The resilience settings of the route, carried as Istio wrote them (timeout, retries,
    /// fault, mirrors), for the data plane's resilience layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RoutePolicy>,
}

/// Timeouts, retries, faults and mirroring as Istio declares them on the route.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RoutePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<keel_config::types::Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<keel_config::model::networking::virtual_service::HttpRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<keel_config::model::networking::virtual_service::HttpFaultInjection>,
    /// Mirror targets with the cluster each resolves to and the percentage to copy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<(String, f64)>,
}

/// What a matched route does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    /// Forward to one of the weighted clusters.
    Forward {
        clusters: Vec<WeightedCluster>,
        rewrite: Option<Rewrite>,
    },
    Redirect(Redirect),
    DirectResponse {
        status: u16,
        body: Option<String>,
    },
}

impl Default for RouteAction {
    fn default() -> Self {
        RouteAction::DirectResponse {
            status: 404,
            body: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WeightedCluster {
    pub cluster: String,
    /// Relative weight; a single destination without a weight gets 100.
    pub weight: u32,
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub request_headers: HeaderOps,
    #[serde(default, skip_serializing_if = "HeaderOps::is_empty")]
    pub response_headers: HeaderOps,
}

/// `HTTPRewrite`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rewrite {
    /// Replaces the part of the path the `uri` match matched (prefix) or the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// `(regex, replacement)` over the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex: Option<(String, String)>,
}

/// `HTTPRedirect`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Redirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `FROM_REQUEST_PORT`: the port the request came in on. Compilation also writes that
    /// port into `port` (the route's listener or service port, as Istio does); the proxy
    /// uses the port the client addressed when `port` is unset.
    #[serde(default)]
    pub port_from_request: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// 301 unless set.
    pub code: u16,
}

/// One `HTTPMatchRequest`; every present field must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatcher>,
    /// Header conditions, including `withoutHeaders` (inverted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatcher>,
    /// JWT claim conditions: `headers` and `withoutHeaders` keys `@request.auth.claims.*`
    /// (Istio's claim-based routing), matched against the token the listener's
    /// RequestAuthentication verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimMatcher>,
    /// Query parameters: `None` tests presence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<(String, Option<StringMatcher>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Labels the calling workload must carry (sidecars only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// A header condition. `matcher: None` tests presence (`{}` in Istio); `invert` comes from
/// `withoutHeaders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderMatcher {
    /// Lower-case header name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<StringMatcher>,
    #[serde(default)]
    pub invert: bool,
}

/// A claim condition. As Istio generates it (Envoy's metadata matcher on the verified
/// payload, `list_match.one_of` or `string_match`): a string claim matches when the value
/// does, a list claim when one of its string elements does; other types and a missing claim
/// never match. `matcher: None` (`{}`) tests that the claim is present. `invert` comes from
/// `withoutHeaders` (a request without a token then matches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimMatcher {
    /// The claim and the nested claims within it (`groups`; `nested.key` → `[nested, key]`).
    pub path: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<StringMatcher>,
    #[serde(default)]
    pub invert: bool,
}

/// Istio's `StringMatch`, compiled: regexes are RE2 syntax and must match the whole value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// Header operations (`set` replaces, `add` appends, `remove` deletes).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HeaderOps {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// A VirtualService `tcp[]` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TcpRoute {
    pub name: String,
    /// Destination IPs/CIDRs the connection must be addressed to (ORed with other matches'
    /// conditions as in Istio: each entry is one match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4Match>,
    pub clusters: Vec<WeightedCluster>,
    /// The destinations this route's matches select are declared opaque TCP (a port whose
    /// protocol is TCP, MySQL, Mongo, Redis): an `Auto` listener sends connections it takes
    /// straight to TCP without sniffing, so server-first protocols never wait.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opaque: bool,
}

/// A VirtualService `tls[]` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TlsRoute {
    pub name: String,
    pub matches: Vec<L4Match>,
    pub clusters: Vec<WeightedCluster>,
}

/// An L4 or TLS match: every present field must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct L4Match {
    /// SNI names (exact or `*.suffix`), TLS routes only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

pub use L4Match as L4;

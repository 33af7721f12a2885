//! Resilience: timeouts, retries, fault injection, mirroring, circuit breakers and outlier
//! detection, with Istio's semantics and Envoy's behaviour underneath them.
//!
//! This module is the *policy core*: pure types built once per snapshot from the snapshot's
//! models (`RoutePolicy` on a route, `Cluster::traffic_policy` on a cluster) and small
//! lock-free state machines the request path consults. Nothing here opens a socket, spawns a
//! task or reads a clock: time is passed in (`now: Instant`, durations to sleep are returned)
//! and randomness is a `rand::RngCore` the caller supplies, so every rule is unit-tested on
//! fake time and seeded draws.
//!
//! # How the pieces plug into the request path
//!
//! Built off the hot path, when a snapshot is installed:
//!
//! * per route: [`RetryPolicy::from_route`], [`FaultPolicy::from_route`],
//!   [`MirrorPolicy::from_route`] and [`RouteTimeouts::from_route`];
//! * per cluster: [`CircuitBreakers`] from [`PoolLimits::from_traffic_policy`] (which also owns
//!   the cluster's [`RetryBudget`]) and an [`OutlierDetector`] from
//!   [`OutlierConfig::from_traffic_policy`]. Across snapshots, keep the same `CircuitBreakers`
//!   while the cluster's `PoolLimits` are equal (requests in flight stay counted), and carry
//!   ejections over with [`OutlierDetector::rebuild`], mapping endpoints by address like
//!   `Balancer::rebuild`.
//!
//! Per request, in the order Envoy's filter chain applies them (fault filter before router):
//!
//! 1. **Fault** ([`FaultPolicy::decide`]): sleep the delay (flag `DI`), then answer the abort
//!    (flag `FI`) without going upstream. Istio's reference says "timeouts or retries will not
//!    be enabled when faults are enabled on the client side", and Keel does exactly that
//!    ([`RoutePolicies::new`]): a route with a fault has no timeout and no retries. What
//!    istiod generates is narrower (Envoy's fault filter runs before the router, so a request
//!    that is only delayed is still forwarded with the route's timeout and retries); the
//!    difference is listed in docs/proxy.md.
//! 2. **Mirror** ([`MirrorPolicy::pick`]): for each chosen mirror, spawn a copy of the request
//!    (Host per [`ShadowHost`]) and forget it; its failures are logged, never returned.
//! 3. **Timeout** ([`RouteTimeouts::for_request`]): one deadline for the whole request,
//!    covering every attempt and backoff; on expiry 504 `UT` ([`timeout_error`]). gRPC requests
//!    answer with the matching `grpc-status` ([`http_to_grpc_status`]).
//! 4. **Attempt loop** ([`RetryState`]): per attempt, `CircuitBreakers::try_request` (and
//!    `try_pending` / `try_connection` inside the pool) fail fast with 503 `UO`
//!    ([`Overflow::to_proxy_error`]); the balancer picks an endpoint, excluding hosts already
//!    tried when [`RetryPolicy::ignore_previous_hosts`] says so; the attempt runs under
//!    `min(perTryTimeout, time left)`; its result ([`AttemptResult`]) goes to
//!    [`OutlierDetector::report`] (an [`Ejection`] marks the endpoint unhealthy in the balancer)
//!    and to [`RetryState::decide`], which answers retry-after-backoff, give up with `URX`, or
//!    give up with `UO` when the retry budget is spent. Only requests whose body was buffered
//!    whole (up to [`RETRY_BUFFER_LIMIT`]) can be replayed.
//!
//! Off the request path, a task per cluster calls [`OutlierDetector::sweep`] every
//! [`OutlierConfig::interval`] and marks the returned endpoints healthy again. When every
//! endpoint of a cluster is ejected the balancer finds no host: [`all_ejected_error`] explains
//! the 503 `UH`, including why a weighted route keeps sending a share of requests there.
//!
//! Every locally generated answer is a [`ProxyError`] whose `flag` is one of [`flags`], so the
//! `x-keel-error` header, the access log and the `response_flags` label say which policy fired.

mod budget;
mod fault;
mod mirror;
mod outlier;
mod policies;
mod pool;
mod retry;
mod timeout;

pub use budget::{
    DEFAULT_BUDGET_PERCENT, DEFAULT_MIN_RETRY_CONCURRENCY, RetryBudget, RetryGuard, RetryLimit,
};
pub use fault::{Abort, FaultDecision, FaultPolicy};
pub use mirror::{MirrorPolicy, MirrorTarget, ShadowHost, shadow_authority};
pub use outlier::{
    DEFAULT_BASE_EJECTION_TIME, DEFAULT_CONSECUTIVE_5XX, DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES,
    DEFAULT_INTERVAL, DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MAX_EJECTION_TIME, Ejection,
    EjectionReason, EndpointOutlierState, Outcome, OutlierConfig, OutlierDetector, OutlierSnapshot,
};
pub use policies::{ClusterPolicies, RoutePolicies};
pub use pool::{
    CircuitBreakers, ConnectionGuard, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_STREAMS, H2Upgrade, Limit, Overflow, PendingGuard, PoolLimits,
    PoolSnapshot, RequestGuard, TcpKeepalive,
};
pub use retry::{
    AttemptResult, Backoff, DEFAULT_BACKOFF_BASE, DEFAULT_NUM_RETRIES, DEFAULT_RETRY_ON,
    HOST_SELECTION_MAX_ATTEMPTS, RetryDecision, RetryOn, RetryPolicy, RetryState, exhausted_flag,
    parse_retry_on,
};
pub use timeout::{RouteTimeouts, parse_grpc_timeout, timeout_error};

use http::StatusCode;

use crate::error::ProxyError;

/// Envoy's response flags for the failures this module produces (Envoy's access-log names).
/// `error.rs` writes its own flags as literals; these are the resilience ones.
pub mod flags {
    /// Upstream request timeout (route timeout or the last per-try timeout): 504.
    pub const UT: &str = "UT";
    /// Upstream retry limit exceeded: the last attempt's answer is returned.
    pub const URX: &str = "URX";
    /// Upstream overflow: a circuit breaker (connections, pending, requests, retries) is full.
    pub const UO: &str = "UO";
    /// No healthy upstream: every endpoint is ejected (or there are none).
    pub const UH: &str = "UH";
    /// The request was delayed by fault injection.
    pub const DI: &str = "DI";
    /// The request was aborted by fault injection.
    pub const FI: &str = "FI";
    /// Downstream connection terminated.
    pub const DC: &str = "DC";
    /// Upstream protocol error.
    pub const UPE: &str = "UPE";
    /// Upstream connection failure (also in `error.rs` as a literal).
    pub const UF: &str = "UF";
    /// Upstream connection termination (also in `error.rs` as a literal).
    pub const UC: &str = "UC";
}

/// Largest request body Keel buffers to be able to replay it on a retry or copy it to a
/// mirror; a bigger body streams and its request is not retried. Envoy's default per-connection
/// buffer limit (1 MiB), which is what bounds its retry buffering.
pub const RETRY_BUFFER_LIMIT: usize = 1 << 20;

/// A fraction as Envoy's `FractionalPercent`: `numerator / denominator`, drawn as
/// `random % denominator < numerator` like Envoy's `featureEnabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    pub const NEVER: Fraction = Fraction {
        numerator: 0,
        denominator: 100,
    };
    pub const ALWAYS: Fraction = Fraction {
        numerator: 100,
        denominator: 100,
    };

    /// Istio's `translatePercentToFractionalPercent`: `Percent{value}` → `value × 10000` per
    /// million, truncated (so 0.00001 % is never).
    pub fn from_percent(value: f64) -> Fraction {
        let per_million = (value * 10_000.0).clamp(0.0, 1_000_000.0) as u32;
        Fraction {
            numerator: per_million,
            denominator: 1_000_000,
        }
    }

    /// Istio's `translateIntegerToFractionalPercent`: an integer percent per hundred.
    pub fn from_integer_percent(value: i32) -> Fraction {
        Fraction {
            numerator: value.clamp(0, 100) as u32,
            denominator: 100,
        }
    }

    pub fn is_never(&self) -> bool {
        self.numerator == 0
    }

    /// One draw: true with probability `numerator / denominator` (capped at 1).
    pub fn hit(&self, rng: &mut impl rand::RngCore) -> bool {
        if self.numerator == 0 || self.denominator == 0 {
            return false;
        }
        if self.numerator >= self.denominator {
            return true;
        }
        rng.next_u64() % u64::from(self.denominator) < u64::from(self.numerator)
    }

    /// As a percentage, for messages (`12.5`).
    pub fn percent(&self) -> f64 {
        if self.denominator == 0 {
            return 0.0;
        }
        f64::from(self.numerator) * 100.0 / f64::from(self.denominator)
    }
}

/// gRPC status codes by the names Istio accepts in `abort.grpcStatus`
/// (`istio.io/istio/pkg/util/grpc.SupportedGRPCStatus`).
pub const GRPC_STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code of a gRPC status name (`UNAVAILABLE` → 14); case-sensitive, as Istio's webhook.
pub fn grpc_status_code(name: &str) -> Option<u32> {
    GRPC_STATUS_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32)
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus` (the gRPC project's HTTP→gRPC mapping): the
/// `grpc-status` a locally generated reply to a gRPC request carries.
pub fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// Envoy's `Grpc::Utility::grpcToHttpStatus`: the HTTP status a `grpc-status` counts as for
/// outlier detection (a gRPC error answered as HTTP 200 is still an upstream error).
pub fn grpc_to_http_status(grpc_status: u32) -> u16 {
    match grpc_status {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500, // UNKNOWN, INTERNAL, DATA_LOSS and codes gRPC does not define
    }
}

/// 503 `UH` for a cluster whose endpoints are all ejected by outlier detection, saying why.
///
/// `route_share` is the percentage of the route's traffic the weighted route sends to this
/// cluster, when it is one of several: Istio picks the weighted destination *before* looking
/// at endpoint health and never re-picks another subset, so that share of requests fails for
/// as long as the ejections last (the "half the requests get 503" warning).
pub fn all_ejected_error(
    cluster: &str,
    snapshot: &OutlierSnapshot,
    route_share: Option<f64>,
) -> ProxyError {
    let total = snapshot.endpoints.len();
    let ejected = snapshot.endpoints.iter().filter(|e| e.ejected).count();
    let mut detail = format!(
        "no healthy upstream: all {ejected} of {total} endpoints of cluster {cluster} are ejected by outlier detection"
    );
    if let Some(next) = snapshot.next_return() {
        detail.push_str(&format!(
            "; the first returns in {}s",
            next.as_secs().max(1)
        ));
    }
    if let Some(share) = route_share.filter(|s| *s < 100.0) {
        detail.push_str(&format!(
            "; the route still sends it {share}% of requests by weight, as Istio does (a weighted destination is chosen before endpoint health and never re-chosen)"
        ));
    }
    ProxyError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        flag: flags::UH,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn percentages_translate_as_istio_does() {
        assert_eq!(Fraction::from_percent(0.1).numerator, 1_000);
        assert_eq!(Fraction::from_percent(100.0).numerator, 1_000_000);
        assert_eq!(Fraction::from_percent(150.0).numerator, 1_000_000);
        assert!(Fraction::from_percent(0.0).is_never());
        assert_eq!(
            Fraction::from_integer_percent(10),
            Fraction {
                numerator: 10,
                denominator: 100
            }
        );
        assert_eq!(Fraction::from_percent(12.5).percent(), 12.5);
    }

    #[test]
    fn fraction_draws_match_their_probability() {
        let mut rng = StdRng::seed_from_u64(1);
        let f = Fraction::from_percent(25.0);
        let hits = (0..10_000).filter(|_| f.hit(&mut rng)).count();
        assert!((2_300..2_700).contains(&hits), "{hits}");
        assert!(!Fraction::NEVER.hit(&mut rng));
        assert!(Fraction::ALWAYS.hit(&mut rng));
    }

    #[test]
    fn grpc_names_and_http_mapping() {
        assert_eq!(grpc_status_code("UNAVAILABLE"), Some(14));
        assert_eq!(grpc_status_code("OK"), Some(0));
        assert_eq!(grpc_status_code("UNAUTHENTICATED"), Some(16));
        assert_eq!(grpc_status_code("unavailable"), None);
        assert_eq!(http_to_grpc_status(504), 14);
        assert_eq!(http_to_grpc_status(404), 12);
        assert_eq!(http_to_grpc_status(500), 2);
        assert_eq!(grpc_to_http_status(14), 503);
        assert_eq!(grpc_to_http_status(0), 200);
        assert_eq!(grpc_to_http_status(4), 504);
        assert_eq!(grpc_to_http_status(99), 500);
    }
}

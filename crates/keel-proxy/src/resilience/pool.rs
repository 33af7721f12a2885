//! Connection pool settings and circuit breakers (`trafficPolicy.connectionPool`).
//!
//! [`PoolLimits::from_traffic_policy`] is istiod's `applyConnectionPool` and `applyH2Upgrade`
//! (`pilot/pkg/networking/core/cluster_traffic_policy.go`): every limit Istio leaves unset is
//! 2^32-1, i.e. unlimited, and a value ≤ 0 means unset. [`CircuitBreakers`] are Envoy's
//! per-cluster resource counters: shared by every request to the cluster (all its endpoints),
//! checked before use, failing fast with 503 `UO` when full — no queue behind a breaker.
//!
//! How the HTTP/1.1 pool uses them, as Envoy's `ConnPoolImplBase` does:
//!
//! * every upstream request holds a [`RequestGuard`] (`http2MaxRequests`, which applies to
//!   HTTP/1.1 too) from its start until its response ends;
//! * a request that finds no idle connection is *pending* until it gets one — including while
//!   a new connection is being established — and holds a [`PendingGuard`]
//!   (`http1MaxPendingRequests`, which applies to HTTP/2 too);
//! * a new connection needs a [`ConnectionGuard`] (`tcp.maxConnections`); when none is free
//!   the request stays pending for the next connection to come free, it is not rejected;
//! * `maxRequestsPerConnection` closes a connection after that many requests (1 disables
//!   keep-alive).
//!
//! So with `maxConnections: 1` and `http1MaxPendingRequests: 1` (Istio's circuit-breaking
//! task), of 20 requests arriving together one gets the connection, one waits, and 18 are
//! answered 503 `UO` at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use keel_config::model::networking::destination_rule::{
    ConnectionPoolSettings, H2UpgradePolicy, TrafficPolicy,
};

use super::budget::{RetryBudget, RetryLimit};
use super::flags;
use crate::error::ProxyError;

/// Istio's (and the mesh config's) default `connectTimeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Envoy's default upstream idle timeout (`common_http_protocol_options.idle_timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default HTTP/2 `max_concurrent_streams`.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = (1 << 31) - 1;

/// `h2UpgradePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum H2Upgrade {
    /// The mesh-wide `h2UpgradePolicy` decides.
    #[default]
    Default,
    DoNotUpgrade,
    Upgrade,
}

/// `tcpKeepalive`; a `None` field keeps the OS setting (Linux: 9 probes, 7200 s, 75 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpKeepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

/// A cluster's connection pool settings, with Istio's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolLimits {
    /// `tcp.maxConnections`: connections to all endpoints of the cluster.
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection.
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests`: requests in flight (HTTP/1.1 and HTTP/2).
    pub max_requests: u32,
    /// `http.maxRequestsPerConnection`; `None` is unlimited (0).
    pub max_requests_per_connection: Option<u32>,
    /// `tcp.connectTimeout` (10 s).
    pub connect_timeout: Duration,
    /// Upstream HTTP connections: `http.idleTimeout`, else `tcp.idleTimeout`, else 1 h; `None`
    /// when set to 0 (disabled).
    pub idle_timeout: Option<Duration>,
    /// Proxied TCP connections (no bytes either way): `tcp.idleTimeout`, else 1 h; `None` when
    /// set to 0.
    pub tcp_idle_timeout: Option<Duration>,
    /// `tcp.maxConnectionDuration`; none by default.
    pub max_connection_duration: Option<Duration>,
    pub tcp_keepalive: Option<TcpKeepalive>,
    pub h2_upgrade: H2Upgrade,
    /// `http.useClientProtocol`: speak the downstream's protocol (never upgrade).
    pub use_client_protocol: bool,
    /// `http.maxConcurrentStreams` per HTTP/2 connection (Istio applies it to HTTP/2
    /// upstreams only).
    pub max_concurrent_streams: u32,
    /// `http.maxRetries`, or `retryBudget` which replaces it.
    pub retries: RetryLimit,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits::from_traffic_policy(None)
    }
}

impl PoolLimits {
    pub fn from_traffic_policy(policy: Option<&TrafficPolicy>) -> PoolLimits {
        let pool = policy.and_then(|p| p.connection_pool.as_ref());
        let mut limits = PoolLimits::from_connection_pool(pool);
        limits.retries = RetryLimit::from_traffic_policy(policy);
        limits
    }

    /// The pool settings alone (the retry limit from `http.maxRetries` only).
    pub fn from_connection_pool(pool: Option<&ConnectionPoolSettings>) -> PoolLimits {
        let http = pool.and_then(|p| p.http.as_ref());
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let limit = |v: Option<i32>| v.filter(|v| *v > 0).map_or(u32::MAX, |v| v as u32);
        let idle = http
            .and_then(|h| h.idle_timeout)
            .or(tcp.and_then(|t| t.idle_timeout))
            .map_or(DEFAULT_IDLE_TIMEOUT, |d| d.to_std());
        PoolLimits {
            max_connections: limit(tcp.map(|t| t.max_connections)),
            max_pending_requests: limit(http.map(|h| h.http1_max_pending_requests)),
            max_requests: limit(http.map(|h| h.http2_max_requests)),
            max_requests_per_connection: http
                .map(|h| h.max_requests_per_connection)
                .filter(|n| *n > 0)
                .map(|n| n as u32),
            connect_timeout: tcp
                .and_then(|t| t.connect_timeout)
                .map(|d| d.to_std())
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            idle_timeout: Some(idle).filter(|d| !d.is_zero()),
            tcp_idle_timeout: Some(
                tcp.and_then(|t| t.idle_timeout)
                    .map_or(DEFAULT_IDLE_TIMEOUT, |d| d.to_std()),
            )
            .filter(|d| !d.is_zero()),
            max_connection_duration: tcp
                .and_then(|t| t.max_connection_duration)
                .map(|d| d.to_std())
                .filter(|d| !d.is_zero()),
            tcp_keepalive: tcp
                .and_then(|t| t.tcp_keepalive.as_ref())
                .map(|k| TcpKeepalive {
                    probes: (k.probes > 0).then_some(k.probes),
                    time: k.time.map(|d| d.to_std()),
                    interval: k.interval.map(|d| d.to_std()),
                }),
            h2_upgrade: match http.and_then(|h| h.h2_upgrade_policy) {
                Some(H2UpgradePolicy::Upgrade) => H2Upgrade::Upgrade,
                Some(H2UpgradePolicy::DoNotUpgrade) => H2Upgrade::DoNotUpgrade,
                _ => H2Upgrade::Default,
            },
            use_client_protocol: http.is_some_and(|h| h.use_client_protocol),
            max_concurrent_streams: http
                .map(|h| h.max_concurrent_streams)
                .filter(|n| *n > 0)
                .map_or(DEFAULT_MAX_CONCURRENT_STREAMS, |n| n as u32),
            retries: RetryLimit::MaxRetries(limit(http.map(|h| h.max_retries))),
        }
    }

    /// istiod's `shouldH2Upgrade`: never with `useClientProtocol`; the destination rule's
    /// `UPGRADE` / `DO_NOT_UPGRADE` wins; otherwise only ports declared HTTP (not sniffed)
    /// follow the mesh's `h2UpgradePolicy` (default `DO_NOT_UPGRADE`).
    pub fn upgrades_to_h2(&self, mesh_upgrades: bool, port_declared_http: bool) -> bool {
        if self.use_client_protocol {
            return false;
        }
        match self.h2_upgrade {
            H2Upgrade::Upgrade => true,
            H2Upgrade::DoNotUpgrade => false,
            H2Upgrade::Default => port_declared_http && mesh_upgrades,
        }
    }
}

/// Which circuit breaker is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Connections,
    PendingRequests,
    Requests,
    Retries,
}

impl Limit {
    /// The Istio field that sets it.
    pub fn field(&self) -> &'static str {
        match self {
            Limit::Connections => "tcp.maxConnections",
            Limit::PendingRequests => "http.http1MaxPendingRequests",
            Limit::Requests => "http.http2MaxRequests",
            Limit::Retries => "http.maxRetries",
        }
    }
}

/// A circuit breaker refused: fail fast with 503 `UO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overflow {
    pub cluster: Arc<str>,
    pub limit: Limit,
    pub max: u32,
}

impl Overflow {
    /// `UO upstream overflow: outbound|8000||httpbin... connectionPool.http.http1MaxPendingRequests 1 reached ...`
    pub fn to_proxy_error(&self) -> ProxyError {
        let why = match self.limit {
            Limit::Connections => "",
            Limit::PendingRequests => {
                " (that many requests already wait for a connection; connections are capped by tcp.maxConnections)"
            }
            Limit::Requests => " (that many requests are already in flight)",
            Limit::Retries => " (that many retries are already in flight)",
        };
        ProxyError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            flag: flags::UO,
            detail: format!(
                "upstream overflow: {} connectionPool.{} {} reached{why}",
                self.cluster,
                self.limit.field(),
                self.max
            ),
        }
    }
}

#[derive(Debug, Default)]
struct Gauge {
    active: AtomicU64,
    overflows: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    cluster: Arc<str>,
    limits: PoolLimits,
    connections: Gauge,
    pending: Gauge,
    requests: Gauge,
    retries: Arc<RetryBudget>,
    /// Woken when one of the cluster's connections closes or becomes idle, for requests
    /// waiting for one (pending).
    released: tokio::sync::Notify,
}

/// One cluster's circuit breakers (cheap to clone; clones share the counters).
#[derive(Debug, Clone)]
pub struct CircuitBreakers {
    inner: Arc<Inner>,
}

macro_rules! guard {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            inner: Arc<Inner>,
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.inner.$field.active.fetch_sub(1, Ordering::AcqRel);
                if stringify!($field) == "connections" {
                    // A connection slot is free: a pending request may open one.
                    self.inner.released.notify_waiters();
                }
            }
        }
    };
}

guard!(
    /// One open upstream connection of the cluster; counted until dropped.
    ConnectionGuard,
    connections
);
guard!(
    /// One request waiting for a connection; counted until dropped.
    PendingGuard,
    pending
);
guard!(
    /// One request in flight; drop it when the response has ended.
    RequestGuard,
    requests
);

impl CircuitBreakers {
    pub fn new(cluster: &str, limits: PoolLimits) -> CircuitBreakers {
        let retries = Arc::new(RetryBudget::new(limits.retries));
        CircuitBreakers {
            inner: Arc::new(Inner {
                cluster: Arc::from(cluster),
                limits,
                connections: Gauge::default(),
                pending: Gauge::default(),
                requests: Gauge::default(),
                retries,
                released: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Identifies this cluster's breakers (and so its connection pool) while it lives.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Says that a connection of the cluster became idle (a waiting request may take it).
    pub fn connection_idle(&self) {
        self.inner.released.notify_waiters();
    }

    /// Waits until a connection of the cluster closes or becomes idle. Register interest
    /// before checking the pool again (`let wait = cb.released(); ...; wait.await`) so a
    /// release in between is not missed.
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.released.notified()
    }

    pub fn limits(&self) -> &PoolLimits {
        &self.inner.limits
    }

    /// The cluster's retry budget, for [`RetryState::decide`](super::RetryState::decide).
    pub fn retry_budget(&self) -> &Arc<RetryBudget> {
        &self.inner.retries
    }

    pub fn try_connection(&self) -> Result<ConnectionGuard, Overflow> {
        let i = &self.inner;
        self.acquire(&i.connections, Limit::Connections, i.limits.max_connections)?;
        Ok(ConnectionGuard {
            inner: Arc::clone(i),
        })
    }

    pub fn try_pending(&self) -> Result<PendingGuard, Overflow> {
        let i = &self.inner;
        self.acquire(
            &i.pending,
            Limit::PendingRequests,
            i.limits.max_pending_requests,
        )?;
        Ok(PendingGuard {
            inner: Arc::clone(i),
        })
    }

    pub fn try_request(&self) -> Result<RequestGuard, Overflow> {
        let i = &self.inner;
        self.acquire(&i.requests, Limit::Requests, i.limits.max_requests)?;
        Ok(RequestGuard {
            inner: Arc::clone(i),
        })
    }

    /// Requests active plus pending: what the retry budget is a percentage of.
    pub fn active_requests(&self) -> u64 {
        self.inner.requests.active.load(Ordering::Relaxed)
            + self.inner.pending.active.load(Ordering::Relaxed)
    }

    /// Increments first and undoes on overflow, so concurrent callers never both take the
    /// last slot (Envoy's check-then-increment may briefly exceed a limit; Keel never does).
    fn acquire(&self, gauge: &Gauge, limit: Limit, max: u32) -> Result<(), Overflow> {
        let previous = gauge.active.fetch_add(1, Ordering::AcqRel);
        if previous >= u64::from(max) {
            gauge.active.fetch_sub(1, Ordering::AcqRel);
            gauge.overflows.fetch_add(1, Ordering::Relaxed);
            return Err(self.overflow(limit, max));
        }
        Ok(())
    }

    fn overflow(&self, limit: Limit, max: u32) -> Overflow {
        Overflow {
            cluster: Arc::clone(&self.inner.cluster),
            limit,
            max,
        }
    }

    /// The overflow a refused retry reports (`RetryDecision::Overflow`), for its message.
    pub fn retry_overflow(&self) -> Overflow {
        let max = match self.inner.limits.retries {
            RetryLimit::MaxRetries(m) => m,
            RetryLimit::Budget { .. } => {
                let active = self.active_requests();
                u32::try_from(self.inner.limits.retries.max(active)).unwrap_or(u32::MAX)
            }
        };
        self.overflow(Limit::Retries, max)
    }

    /// Occupancy and overflow counts for the admin `/clusters` page.
    pub fn snapshot(&self) -> PoolSnapshot {
        let i = &self.inner;
        let load = |g: &Gauge| {
            (
                g.active.load(Ordering::Relaxed),
                g.overflows.load(Ordering::Relaxed),
            )
        };
        let (connections, overflow_connections) = load(&i.connections);
        let (pending, overflow_pending) = load(&i.pending);
        let (requests, overflow_requests) = load(&i.requests);
        PoolSnapshot {
            connections,
            pending,
            requests,
            retries: i.retries.active(),
            max_connections: i.limits.max_connections,
            max_pending_requests: i.limits.max_pending_requests,
            max_requests: i.limits.max_requests,
            max_retries: i.limits.retries.max(requests + pending),
            overflow_connections,
            overflow_pending,
            overflow_requests,
            overflow_retries: i.retries.overflows(),
        }
    }
}

/// Circuit-breaker occupancy of a cluster (Envoy's `circuit_breakers` and `upstream_*_overflow`
/// stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub connections: u64,
    pub pending: u64,
    pub requests: u64,
    pub retries: u64,
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    /// The retry limit now (a budget moves with the load).
    pub max_retries: u64,
    /// Connections refused (Envoy's `upstream_cx_overflow`): requests kept waiting.
    pub overflow_connections: u64,
    /// Requests refused for the pending limit (`upstream_rq_pending_overflow`).
    pub overflow_pending: u64,
    /// Requests refused for the request limit (`upstream_rq_overflow`).
    pub overflow_requests: u64,
    /// Retries refused (`upstream_rq_retry_overflow`).
    pub overflow_retries: u64,
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;

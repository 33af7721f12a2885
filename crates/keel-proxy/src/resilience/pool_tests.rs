//! Connection pool settings and circuit breakers.

use std::sync::atomic::AtomicUsize;

use keel_config::Spec;
use keel_config::model::networking::destination_rule::{
    HttpSettings, RetryBudget as RetryBudgetSpec, TcpKeepalive as TcpKeepaliveSpec, TcpSettings,
};
use keel_config::types::Duration as IstioDuration;

use super::*;

const CLUSTER: &str = "outbound|8000||httpbin.default.svc.cluster.local";

fn http(h: HttpSettings) -> TrafficPolicy {
    TrafficPolicy {
        connection_pool: Some(ConnectionPoolSettings {
            http: Some(h),
            tcp: None,
        }),
        ..Default::default()
    }
}

fn with_tcp(mut p: TrafficPolicy, t: TcpSettings) -> TrafficPolicy {
    if let Some(pool) = p.connection_pool.as_mut() {
        pool.tcp = Some(t);
    }
    p
}

/// Istio's circuit-breaking task DestinationRule
/// (tasks/traffic-management/circuit-breaking/snip_configuring_the_circuit_breaker_1.yaml).
fn circuit_breaking_task() -> TrafficPolicy {
    let yaml = "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata:\n  name: httpbin\nspec:\n  host: httpbin\n  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: 1\n      http:\n        http1MaxPendingRequests: 1\n        maxRequestsPerConnection: 1\n    outlierDetection:\n      consecutive5xxErrors: 1\n      interval: 1s\n      baseEjectionTime: 3m\n      maxEjectionPercent: 100\n";
    let loaded = keel_config::load_str(yaml, "dr.yaml", &Default::default());
    match &loaded.resources[0].spec {
        Spec::DestinationRule(dr) => dr.traffic_policy.clone().unwrap(),
        other => panic!("not a DestinationRule: {other:?}"),
    }
}

#[test]
fn unset_limits_are_unlimited_with_istios_timeouts() {
    let l = PoolLimits::from_traffic_policy(None);
    assert_eq!(
        (l.max_connections, l.max_pending_requests, l.max_requests),
        (u32::MAX, u32::MAX, u32::MAX)
    );
    assert_eq!(l.max_requests_per_connection, None);
    assert_eq!(l.connect_timeout, Duration::from_secs(10));
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(l.tcp_idle_timeout, Some(Duration::from_secs(3600)));
    assert_eq!(l.max_connection_duration, None);
    assert_eq!(l.tcp_keepalive, None);
    assert_eq!(l.h2_upgrade, H2Upgrade::Default);
    assert!(!l.use_client_protocol);
    assert_eq!(l.max_concurrent_streams, 2_147_483_647);
    assert_eq!(l.retries, RetryLimit::MaxRetries(u32::MAX));
    assert_eq!(l, PoolLimits::default());
}

#[test]
fn the_circuit_breaking_task_sets_one_connection_and_one_pending_request() {
    let l = PoolLimits::from_traffic_policy(Some(&circuit_breaking_task()));
    assert_eq!(l.max_connections, 1);
    assert_eq!(l.max_pending_requests, 1);
    assert_eq!(l.max_requests, u32::MAX);
    assert_eq!(l.max_requests_per_connection, Some(1));
}

#[test]
fn zero_or_negative_values_mean_unset() {
    let l = PoolLimits::from_traffic_policy(Some(&with_tcp(
        http(HttpSettings {
            http1_max_pending_requests: -1,
            http2_max_requests: 0,
            max_requests_per_connection: -5,
            max_retries: 0,
            max_concurrent_streams: -1,
            ..Default::default()
        }),
        TcpSettings {
            max_connections: -3,
            ..Default::default()
        },
    )));
    assert_eq!(l, PoolLimits::default());
}

#[test]
fn every_field_is_read() {
    let s = IstioDuration::from_secs;
    let p = with_tcp(
        http(HttpSettings {
            http1_max_pending_requests: 10,
            http2_max_requests: 100,
            max_requests_per_connection: 5,
            max_retries: 3,
            idle_timeout: Some(s(30)),
            h2_upgrade_policy: Some(H2UpgradePolicy::Upgrade),
            max_concurrent_streams: 50,
            ..Default::default()
        }),
        TcpSettings {
            max_connections: 7,
            connect_timeout: Some(IstioDuration::from_millis(250)),
            tcp_keepalive: Some(TcpKeepaliveSpec {
                probes: 3,
                time: Some(s(60)),
                interval: None,
            }),
            max_connection_duration: Some(s(600)),
            idle_timeout: Some(s(90)),
        },
    );
    let l = PoolLimits::from_traffic_policy(Some(&p));
    assert_eq!(
        (l.max_connections, l.max_pending_requests, l.max_requests),
        (7, 10, 100)
    );
    assert_eq!(l.max_requests_per_connection, Some(5));
    assert_eq!(l.retries, RetryLimit::MaxRetries(3));
    assert_eq!(l.connect_timeout, Duration::from_millis(250));
    assert_eq!(
        l.idle_timeout,
        Some(Duration::from_secs(30)),
        "http wins over tcp"
    );
    assert_eq!(l.max_connection_duration, Some(Duration::from_secs(600)));
    assert_eq!(
        l.tcp_keepalive,
        Some(TcpKeepalive {
            probes: Some(3),
            time: Some(Duration::from_secs(60)),
            interval: None
        })
    );
    assert_eq!(l.h2_upgrade, H2Upgrade::Upgrade);
    assert_eq!(l.max_concurrent_streams, 50);
}

#[test]
fn tcp_idle_timeout_applies_when_http_has_none_and_zero_disables() {
    let tcp_only = with_tcp(
        http(HttpSettings::default()),
        TcpSettings {
            idle_timeout: Some(IstioDuration::from_secs(90)),
            ..Default::default()
        },
    );
    let l = PoolLimits::from_traffic_policy(Some(&tcp_only));
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(90)));
    let off = http(HttpSettings {
        idle_timeout: Some(IstioDuration::from_secs(0)),
        ..Default::default()
    });
    assert_eq!(
        PoolLimits::from_traffic_policy(Some(&off)).idle_timeout,
        None
    );
}

#[test]
fn a_retry_budget_replaces_max_retries() {
    let mut p = http(HttpSettings {
        max_retries: 2,
        ..Default::default()
    });
    p.retry_budget = Some(RetryBudgetSpec::default());
    let l = PoolLimits::from_traffic_policy(Some(&p));
    assert_eq!(
        l.retries,
        RetryLimit::Budget {
            percent: 20.0,
            min_concurrency: 3
        }
    );
}

#[test]
fn h2_upgrade_follows_istio() {
    let mut l = PoolLimits::default();
    assert!(
        !l.upgrades_to_h2(false, true),
        "mesh default is DO_NOT_UPGRADE"
    );
    assert!(l.upgrades_to_h2(true, true));
    assert!(
        !l.upgrades_to_h2(true, false),
        "sniffed ports are never upgraded by default"
    );
    l.h2_upgrade = H2Upgrade::Upgrade;
    assert!(l.upgrades_to_h2(false, false), "the rule's UPGRADE wins");
    l.h2_upgrade = H2Upgrade::DoNotUpgrade;
    assert!(!l.upgrades_to_h2(true, true));
    l.h2_upgrade = H2Upgrade::Upgrade;
    l.use_client_protocol = true;
    assert!(
        !l.upgrades_to_h2(true, true),
        "useClientProtocol never upgrades"
    );
}

/// What the HTTP/1.1 pool does with one request when no connection is idle. The guards are
/// held for what they count.
enum Admitted {
    Connected { _connection: ConnectionGuard },
    Waiting { _pending: PendingGuard },
}

fn admit(cb: &CircuitBreakers) -> Result<(RequestGuard, Admitted), Overflow> {
    let request = cb.try_request()?;
    // Pending from the moment it asks the pool, including while a connection is made.
    let pending = cb.try_pending()?;
    match cb.try_connection() {
        Ok(conn) => {
            drop(pending);
            Ok((request, Admitted::Connected { _connection: conn }))
        }
        Err(_) => Ok((request, Admitted::Waiting { _pending: pending })),
    }
}

#[test]
fn twenty_concurrent_requests_on_one_connection_and_one_pending_slot() {
    let cb = CircuitBreakers::new(
        CLUSTER,
        PoolLimits::from_traffic_policy(Some(&circuit_breaking_task())),
    );
    let results: Vec<_> = (0..20).map(|_| admit(&cb)).collect();
    let connected = results
        .iter()
        .filter(|r| matches!(r, Ok((_, Admitted::Connected { .. }))))
        .count();
    let waiting = results
        .iter()
        .filter(|r| matches!(r, Ok((_, Admitted::Waiting { .. }))))
        .count();
    let rejected: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!((connected, waiting, rejected.len()), (1, 1, 18));
    let e = rejected[0].to_proxy_error();
    assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(e.flag, "UO");
    assert!(
        e.detail.starts_with(
            "upstream overflow: outbound|8000||httpbin.default.svc.cluster.local connectionPool.http.http1MaxPendingRequests 1 reached"
        ),
        "{}",
        e.detail
    );
    let snap = cb.snapshot();
    assert_eq!((snap.connections, snap.pending, snap.requests), (1, 1, 2));
    assert_eq!((snap.overflow_pending, snap.overflow_connections), (18, 1));
    assert_eq!(cb.active_requests(), 3, "requests plus pending");
    drop(results);
    let snap = cb.snapshot();
    assert_eq!((snap.connections, snap.pending, snap.requests), (0, 0, 0));
}

#[test]
fn max_requests_fails_fast_and_frees_with_the_response() {
    let cb = CircuitBreakers::new(
        CLUSTER,
        PoolLimits::from_traffic_policy(Some(&http(HttpSettings {
            http2_max_requests: 2,
            ..Default::default()
        }))),
    );
    let a = cb.try_request().unwrap();
    let _b = cb.try_request().unwrap();
    let over = cb.try_request().unwrap_err();
    assert_eq!(over.limit, Limit::Requests);
    assert_eq!(
        over.to_proxy_error().header_value(),
        "UO upstream overflow: outbound|8000||httpbin.default.svc.cluster.local connectionPool.http.http2MaxRequests 2 reached (that many requests are already in flight)"
    );
    drop(a);
    assert!(cb.try_request().is_ok());
    assert_eq!(cb.snapshot().overflow_requests, 1);
}

#[test]
fn retry_overflow_names_the_retry_limit() {
    let cb = CircuitBreakers::new(
        CLUSTER,
        PoolLimits::from_traffic_policy(Some(&http(HttpSettings {
            max_retries: 1,
            ..Default::default()
        }))),
    );
    let held = cb.retry_budget().try_acquire(0);
    assert!(held.is_some());
    assert!(cb.retry_budget().try_acquire(0).is_none());
    let e = cb.retry_overflow().to_proxy_error();
    assert!(
        e.detail
            .contains("connectionPool.http.maxRetries 1 reached"),
        "{}",
        e.detail
    );
    let snap = cb.snapshot();
    assert_eq!(
        (snap.retries, snap.max_retries, snap.overflow_retries),
        (1, 1, 1)
    );
}

#[test]
fn limits_hold_under_concurrency() {
    let cb = CircuitBreakers::new(
        CLUSTER,
        PoolLimits::from_traffic_policy(Some(&http(HttpSettings {
            http2_max_requests: 4,
            ..Default::default()
        }))),
    );
    // Count the guards actually held: the gauge itself may read one over the limit for an
    // instant while an overflowing caller undoes its increment.
    let peak = AtomicUsize::new(0);
    let held = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..2_000 {
                    if let Ok(g) = cb.try_request() {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::Relaxed);
                        held.fetch_sub(1, Ordering::SeqCst);
                        drop(g);
                    }
                }
            });
        }
    });
    assert!(peak.load(Ordering::Relaxed) <= 4);
    assert_eq!(cb.snapshot().requests, 0);
}

#[test]
fn clones_share_counters() {
    let cb = CircuitBreakers::new(CLUSTER, PoolLimits::default());
    let other = cb.clone();
    let _c = cb.try_connection().unwrap();
    assert_eq!(other.snapshot().connections, 1);
    assert_eq!(other.limits().max_connections, u32::MAX);
}

//! Outlier detection: Istio's mapping and Envoy's detector, on fake time.

use http::{HeaderMap, HeaderValue};
use keel_config::types::Duration as IstioDuration;
use keel_snapshot::{Cluster, Endpoint, EndpointAddress, LbPolicy, UpstreamProtocol};

use super::*;
use crate::balance::{Balancer, PickContext};
use crate::resilience::all_ejected_error;

const S: fn(u64) -> Duration = Duration::from_secs;

fn od(f: impl FnOnce(&mut OutlierDetection)) -> OutlierConfig {
    let mut o = OutlierDetection::default();
    f(&mut o);
    OutlierConfig::from_outlier_detection(&o)
}

/// `consecutive5xxErrors: n`, `maxEjectionPercent: 100`.
fn five_xx(n: u32) -> OutlierConfig {
    od(|o| {
        o.consecutive_5xx_errors = Some(n);
        o.max_ejection_percent = 100;
    })
}

fn fail(d: &OutlierDetector, e: usize, times: usize, status: u16, now: Instant) -> Vec<Ejection> {
    (0..times)
        .filter_map(|_| d.report(e, Outcome::Response(status), now))
        .collect()
}

#[test]
fn an_empty_outlier_detection_gets_envoys_defaults() {
    let c = od(|_| {});
    assert_eq!(c.consecutive_5xx, Some(5));
    assert_eq!(c.consecutive_gateway, None);
    assert_eq!(c.consecutive_local_origin, None);
    assert_eq!(c.interval, S(10));
    assert_eq!(c.base_ejection_time, S(30));
    assert_eq!(c.max_ejection_time, S(300));
    assert_eq!(c.max_ejection_percent, 10);
    assert_eq!(c.min_health_percent, 0);
    assert!(c.warnings.is_empty());
    assert_eq!(OutlierConfig::from_traffic_policy(None), None);
}

#[test]
fn istios_fields_map_as_istiod_writes_them() {
    let c = od(|o| {
        o.consecutive_5xx_errors = Some(0);
        o.consecutive_gateway_errors = Some(3);
        o.interval = Some(IstioDuration::from_secs(1));
        o.base_ejection_time = Some(IstioDuration::from_secs(600));
        o.max_ejection_percent = 100;
        o.min_health_percent = 30;
    });
    assert_eq!(c.consecutive_5xx, None, "0 disables");
    assert_eq!(c.consecutive_gateway, Some(3));
    assert_eq!(c.interval, S(1));
    assert_eq!(c.max_ejection_time, S(600), "never below the base");
    assert_eq!((c.max_ejection_percent, c.min_health_percent), (100, 30));
    let split = od(|o| o.split_external_local_origin_errors = true);
    assert_eq!(split.consecutive_local_origin, Some(5));
    let ignored = od(|o| {
        o.consecutive_local_origin_failures = Some(2);
        o.consecutive_errors = 3;
    });
    assert_eq!(ignored.consecutive_local_origin, None);
    assert_eq!(ignored.warnings.len(), 2, "{:?}", ignored.warnings);
}

#[test]
fn consecutive_5xx_ejects_at_the_threshold_and_a_success_resets_the_count() {
    let d = OutlierDetector::new(five_xx(3), 4);
    let t = Instant::now();
    assert!(fail(&d, 0, 2, 500, t).is_empty());
    assert_eq!(d.report(0, Outcome::Response(200), t), None);
    assert!(fail(&d, 0, 2, 503, t).is_empty());
    let e = d.report(0, Outcome::Response(500), t).unwrap();
    assert_eq!(e.endpoint, 0);
    assert_eq!(e.reason, EjectionReason::Consecutive5xx);
    assert_eq!((e.duration, e.ejections), (S(30), 1));
    assert!(d.is_ejected(0) && !d.is_ejected(1));
    // 4xx answers are not errors.
    assert!(fail(&d, 1, 10, 404, t).is_empty());
}

#[test]
fn max_ejection_percent_counts_the_next_ejection_as_envoy_does() {
    let t = Instant::now();
    // Default 10 % of 2 endpoints: ejecting one would be 50 %, so nothing is ever ejected.
    let d = OutlierDetector::new(od(|_| {}), 2);
    assert!(fail(&d, 0, 20, 500, t).is_empty());
    assert_eq!(
        d.snapshot(t).ejections_overflow,
        4,
        "every 5th error tried, and the count restarted"
    );
    // 10 % of 10 endpoints: one.
    let d = OutlierDetector::new(od(|_| {}), 10);
    assert_eq!(fail(&d, 0, 5, 500, t).len(), 1);
    assert!(fail(&d, 1, 5, 500, t).is_empty());
    // 50 % of 2 endpoints: one, never both.
    let d = OutlierDetector::new(
        od(|o| {
            o.consecutive_5xx_errors = Some(1);
            o.max_ejection_percent = 50;
        }),
        2,
    );
    assert_eq!(fail(&d, 0, 1, 500, t).len(), 1);
    assert!(fail(&d, 1, 3, 500, t).is_empty());
    assert_eq!(d.snapshot(t).ejections_active, 1);
}

#[test]
fn gateway_errors_count_502_to_504_and_other_5xx_reset_them() {
    let d = OutlierDetector::new(
        od(|o| {
            o.consecutive_5xx_errors = Some(0);
            o.consecutive_gateway_errors = Some(3);
            o.max_ejection_percent = 100;
        }),
        3,
    );
    let t = Instant::now();
    assert!(fail(&d, 0, 2, 502, t).is_empty());
    assert!(
        fail(&d, 0, 1, 500, t).is_empty(),
        "a 500 is no gateway error"
    );
    assert!(fail(&d, 0, 2, 504, t).is_empty());
    let e = d.report(0, Outcome::Response(503), t).unwrap();
    assert_eq!(e.reason, EjectionReason::ConsecutiveGatewayErrors);
}

#[test]
fn without_split_local_failures_count_as_503_and_504() {
    let d = OutlierDetector::new(
        od(|o| {
            o.consecutive_gateway_errors = Some(3);
            o.max_ejection_percent = 100;
        }),
        2,
    );
    let t = Instant::now();
    assert_eq!(d.report(0, Outcome::ConnectFailed, t), None);
    assert_eq!(d.report(0, Outcome::Reset, t), None);
    let e = d.report(0, Outcome::Timeout, t).unwrap();
    assert_eq!(e.reason, EjectionReason::ConsecutiveGatewayErrors);
    assert_eq!(
        d.snapshot(t).endpoints[0].consecutive_5xx,
        3,
        "counted as 5xx too"
    );
}

#[test]
fn with_split_local_failures_have_their_own_count() {
    let d = OutlierDetector::new(
        od(|o| {
            o.split_external_local_origin_errors = true;
            o.consecutive_local_origin_failures = Some(2);
            o.consecutive_5xx_errors = Some(2);
            o.max_ejection_percent = 100;
        }),
        2,
    );
    let t = Instant::now();
    assert_eq!(d.report(0, Outcome::ConnectFailed, t), None);
    // An answer (even a 500) proves the connection works: the local count restarts.
    assert_eq!(d.report(0, Outcome::Response(500), t), None);
    assert_eq!(d.report(0, Outcome::Timeout, t), None);
    let e = d.report(0, Outcome::Reset, t).unwrap();
    assert_eq!(e.reason, EjectionReason::ConsecutiveLocalOriginFailures);
    assert_eq!(
        d.snapshot(t).endpoints[0].consecutive_5xx,
        1,
        "only the 500"
    );
}

#[test]
fn ejected_endpoints_return_on_the_first_sweep_after_their_time() {
    let d = OutlierDetector::new(five_xx(1), 2);
    let t0 = Instant::now();
    fail(&d, 1, 1, 500, t0);
    assert!(d.sweep(t0 + S(10)).is_empty());
    assert!(d.sweep(t0 + S(29)).is_empty());
    assert_eq!(d.snapshot(t0 + S(29)).endpoints[1].returns_in, Some(S(1)));
    assert_eq!(d.sweep(t0 + S(30)), vec![1]);
    assert!(!d.is_ejected(1));
    let snap = d.snapshot(t0 + S(30));
    assert_eq!(snap.endpoints[1].consecutive_5xx, 0);
    assert_eq!(snap.ejections_active, 0);
}

#[test]
fn the_multiplier_grows_with_ejections_and_shrinks_while_healthy() {
    let d = OutlierDetector::new(five_xx(1), 2);
    let t0 = Instant::now();
    assert_eq!(fail(&d, 0, 1, 500, t0)[0].duration, S(30));
    assert_eq!(d.sweep(t0 + S(30)), vec![0]);
    // Fails again at once: twice as long.
    let again = fail(&d, 0, 1, 500, t0 + S(31));
    assert_eq!((again[0].duration, again[0].ejections), (S(60), 2));
    assert!(d.sweep(t0 + S(61)).is_empty());
    assert_eq!(d.sweep(t0 + S(91)), vec![0]);
    // Healthy: one step down per sweep an interval after its return, down to zero.
    for (k, expected) in [(1u64, 1u32), (2, 0), (3, 0)] {
        d.sweep(t0 + S(91 + 10 * k));
        assert_eq!(
            d.snapshot(t0).endpoints[0].multiplier,
            expected,
            "sweep {k}"
        );
    }
    assert_eq!(fail(&d, 0, 1, 500, t0 + S(200))[0].duration, S(30));
}

#[test]
fn ejection_time_is_capped_at_the_max() {
    let d = OutlierDetector::new(five_xx(1), 2);
    let mut t = Instant::now();
    let mut last = Duration::ZERO;
    for _ in 0..15 {
        last = fail(&d, 0, 1, 500, t)[0].duration;
        t += last;
        assert_eq!(d.sweep(t), vec![0]);
    }
    assert_eq!(last, S(300));
    assert!(d.snapshot(t).endpoints[0].multiplier <= 11);
}

#[test]
fn errors_from_requests_still_in_flight_to_an_ejected_endpoint_are_ignored() {
    let d = OutlierDetector::new(five_xx(1), 2);
    let t = Instant::now();
    assert_eq!(fail(&d, 0, 1, 500, t).len(), 1);
    assert!(fail(&d, 0, 3, 500, t).is_empty());
    assert_eq!(d.snapshot(t).ejections_total, 1);
    assert_eq!(
        d.report(9, Outcome::Response(500), t),
        None,
        "unknown endpoint"
    );
}

#[test]
fn grpc_statuses_count_as_their_http_equivalent() {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from_static("14"));
    let attempt = AttemptResult::Response {
        status: 200,
        headers: &h,
    };
    assert_eq!(
        Outcome::from_attempt(&attempt, true),
        Some(Outcome::Response(503))
    );
    assert_eq!(
        Outcome::from_attempt(&attempt, false),
        Some(Outcome::Response(200))
    );
    assert_eq!(Outcome::from_attempt(&AttemptResult::Overflow, false), None);
    assert_eq!(
        Outcome::from_attempt(&AttemptResult::PerTryTimeout, false),
        Some(Outcome::Timeout)
    );
    assert_eq!(
        Outcome::from_attempt(&AttemptResult::RefusedStream, false),
        Some(Outcome::Reset)
    );
}

fn endpoint(ip: &str) -> Endpoint {
    Endpoint {
        address: EndpointAddress::Socket(ip.parse().unwrap()),
        labels: Default::default(),
        locality: String::new(),
        weight: 1,
        workload: String::new(),
        namespace: String::new(),
        identity: String::new(),
        mtls: false,
    }
}

fn cluster(ips: &[&str], outlier: OutlierDetection) -> Cluster {
    Cluster {
        name: "outbound|9080|v1|reviews.default.svc.cluster.local".into(),
        service: "reviews.default.svc.cluster.local".into(),
        port: 9080,
        subset: "v1".into(),
        namespace: "default".into(),
        lb: LbPolicy::RoundRobin,
        locality_lb: None,
        protocol: UpstreamProtocol::Http1,
        endpoints: ips.iter().map(|ip| endpoint(ip)).collect(),
        traffic_policy: Some(TrafficPolicy {
            outlier_detection: Some(outlier),
            ..Default::default()
        }),
        client_credential: None,
    }
}

/// The scenario: two endpoints, one always 500, `consecutive5xxErrors: 1`,
/// `baseEjectionTime: 1m`, `maxEjectionPercent: 100`; a request every 100 ms for 130 s of
/// fake time through the real balancer, sweeping every `interval`.
#[test]
fn one_error_then_only_good_answers_for_a_minute() {
    let c = cluster(
        &["10.0.0.1:9080", "10.0.0.2:9080"],
        OutlierDetection {
            consecutive_5xx_errors: Some(1),
            base_ejection_time: Some(IstioDuration::from_secs(60)),
            max_ejection_percent: 100,
            ..Default::default()
        },
    );
    let bad = 1;
    let balancer = Balancer::seeded(&c, "", 7);
    let config = OutlierConfig::from_traffic_policy(c.traffic_policy.as_ref()).unwrap();
    let interval = config.interval;
    let detector = OutlierDetector::new(config, c.endpoints.len());
    let headers = HeaderMap::new();
    let t0 = Instant::now();
    let mut next_sweep = t0 + interval;
    let mut errors = Vec::new();
    for step in 0..1_300u32 {
        let now = t0 + Duration::from_millis(100) * step;
        while next_sweep <= now {
            for e in detector.sweep(next_sweep) {
                balancer.set_healthy(e, true);
            }
            next_sweep += interval;
        }
        let pick = balancer.pick(&PickContext::new(&headers)).unwrap();
        let status = if pick.index == bad { 500 } else { 200 };
        if status == 500 {
            errors.push(now - t0);
        }
        if let Some(e) = detector.report(pick.index, Outcome::Response(status), now) {
            balancer.set_healthy(e.endpoint, false);
        }
    }
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0] < Duration::from_millis(200), "{errors:?}");
    // Back on the first sweep a minute or more after its ejection (sweeps are 10 s apart),
    // then ejected for two minutes.
    let out = errors[1] - errors[0];
    assert!(
        (S(60)..S(70) + Duration::from_millis(200)).contains(&out),
        "{errors:?}"
    );
    let snap = detector.snapshot(t0 + S(130));
    assert!(snap.endpoints[bad].ejected);
    assert_eq!(snap.endpoints[bad].ejections, 2);
    assert_eq!(snap.endpoints[bad].multiplier, 2);
}

#[test]
fn a_fully_ejected_cluster_answers_uh_and_says_why() {
    let c = cluster(
        &["10.0.0.3:9080"],
        OutlierDetection {
            consecutive_5xx_errors: Some(1),
            max_ejection_percent: 100,
            ..Default::default()
        },
    );
    let balancer = Balancer::seeded(&c, "", 1);
    let detector = OutlierDetector::new(
        OutlierConfig::from_traffic_policy(c.traffic_policy.as_ref()).unwrap(),
        1,
    );
    let t0 = Instant::now();
    let e = detector.report(0, Outcome::Response(500), t0).unwrap();
    balancer.set_healthy(e.endpoint, false);
    let headers = HeaderMap::new();
    assert!(balancer.pick(&PickContext::new(&headers)).is_none());
    let err = all_ejected_error(&c.name, &detector.snapshot(t0 + S(5)), Some(50.0));
    assert_eq!(err.flag, "UH");
    assert_eq!(
        err.detail,
        "no healthy upstream: all 1 of 1 endpoints of cluster outbound|9080|v1|reviews.default.svc.cluster.local are ejected by outlier detection; the first returns in 25s; the route still sends it 50% of requests by weight, as Istio does (a weighted destination is chosen before endpoint health and never re-chosen)"
    );
}

#[test]
fn concurrent_reports_eject_exactly_once() {
    let d = OutlierDetector::new(five_xx(100), 4);
    let t = Instant::now();
    let ejections = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    if d.report(2, Outcome::Response(503), t).is_some() {
                        ejections.fetch_add(1, Ordering::Relaxed);
                    }
                    assert_eq!(d.report(0, Outcome::Response(200), t), None);
                }
            });
        }
    });
    assert_eq!(ejections.load(Ordering::Relaxed), 1);
    assert!(d.is_ejected(2));
}

#[test]
fn rebuilding_keeps_the_state_of_endpoints_that_stay() {
    let d = OutlierDetector::new(five_xx(2), 3);
    let t = Instant::now();
    fail(&d, 1, 2, 500, t);
    fail(&d, 2, 1, 500, t);
    // Endpoint 0 left; old 1 and 2 are now 0 and 1; a new endpoint is 2.
    let next = d.rebuild(five_xx(2), &[Some(1), Some(2), None]);
    assert!(next.is_ejected(0));
    let snap = next.snapshot(t);
    assert_eq!(snap.ejections_active, 1);
    assert_eq!(snap.endpoints[0].ejections, 1);
    assert_eq!(snap.endpoints[1].consecutive_5xx, 1);
    assert_eq!(
        snap.endpoints[2],
        EndpointOutlierState {
            ejected: false,
            returns_in: None,
            reason: None,
            consecutive_5xx: 0,
            consecutive_gateway_errors: 0,
            consecutive_local_origin_failures: 0,
            ejections: 0,
            multiplier: 0,
        }
    );
    assert_eq!(
        next.report(1, Outcome::Response(500), t)
            .map(|e| e.endpoint),
        Some(1)
    );
    assert_eq!(next.sweep(t + S(30)), vec![0, 1]);
}

//! Fault injection: Istio's translation and the statistics of its draws.

use keel_config::Spec;
use keel_config::types::{Duration as IstioDuration, Percent};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const SAMPLES: usize = 10_000;

fn delay(fixed_ms: i64, percentage: Option<f64>, percent: i32) -> HttpFaultInjection {
    HttpFaultInjection {
        delay: Some(FaultDelay {
            fixed_delay: Some(IstioDuration::from_millis(fixed_ms)),
            percentage: percentage.map(|value| Percent { value }),
            percent,
            ..Default::default()
        }),
        abort: None,
    }
}

fn http_abort(status: i32, percentage: Option<f64>) -> HttpFaultInjection {
    HttpFaultInjection {
        delay: None,
        abort: Some(FaultAbort {
            http_status: Some(status),
            percentage: percentage.map(|value| Percent { value }),
            ..Default::default()
        }),
    }
}

/// How many of `SAMPLES` decisions delay and abort.
fn count(policy: &FaultPolicy, seed: u64) -> (usize, usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut delayed, mut aborted, mut both) = (0, 0, 0);
    for _ in 0..SAMPLES {
        let d = policy.decide(&mut rng);
        delayed += usize::from(d.delay.is_some());
        aborted += usize::from(d.abort.is_some());
        both += usize::from(d.delay.is_some() && d.abort.is_some());
    }
    (delayed, aborted, both)
}

/// The first route's fault of a VirtualService written in YAML.
fn fault_of(yaml: &str) -> HttpFaultInjection {
    let loaded = keel_config::load_str(yaml, "vs.yaml", &Default::default());
    match &loaded.resources[0].spec {
        Spec::VirtualService(vs) => vs.http[0].fault.clone().unwrap(),
        other => panic!("not a VirtualService: {other:?}"),
    }
}

#[test]
fn no_fault_injects_nothing() {
    let p = FaultPolicy::from_route(None);
    assert!(!p.is_active());
    assert!(p.decide(&mut StdRng::seed_from_u64(0)).is_empty());
}

#[test]
fn bookinfo_delay_task_delays_every_request_by_seven_seconds() {
    // samples/bookinfo/networking/virtual-service-ratings-test-delay.yaml
    let fault = fault_of(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\nspec:\n  hosts: [ratings]\n  http:\n  - fault:\n      delay:\n        percentage: {value: 100.0}\n        fixedDelay: 7s\n    route:\n    - destination: {host: ratings, subset: v1}\n",
    );
    let p = FaultPolicy::from_route(Some(&fault));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let (delayed, aborted, _) = count(&p, 1);
    assert_eq!((delayed, aborted), (SAMPLES, 0));
    let d = p.decide(&mut StdRng::seed_from_u64(0));
    assert_eq!(d.delay, Some(Duration::from_secs(7)));
    assert_eq!(d.flags(), "DI");
}

#[test]
fn bookinfo_abort_task_answers_500_with_fi() {
    // samples/bookinfo/networking/virtual-service-ratings-test-abort.yaml
    let fault = fault_of(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\nspec:\n  hosts: [ratings]\n  http:\n  - fault:\n      abort:\n        percentage: {value: 100.0}\n        httpStatus: 500\n    route:\n    - destination: {host: ratings, subset: v1}\n",
    );
    let p = FaultPolicy::from_route(Some(&fault));
    let d = p.decide(&mut StdRng::seed_from_u64(0));
    assert_eq!(d.abort, Some(Abort::Http(500)));
    let e = p.abort_error("ratings.default.0", Abort::Http(500));
    assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(e.flag, "FI");
    assert_eq!(
        e.header_value(),
        "FI fault filter abort: route ratings.default.0 aborts 100% of requests with HTTP 500 (VirtualService fault.abort)"
    );
}

#[test]
fn percentages_hold_over_ten_thousand_requests() {
    for (pct, lo, hi) in [(10.0, 900, 1_100), (50.0, 4_800, 5_200), (0.1, 2, 25)] {
        let p = FaultPolicy::from_route(Some(&delay(100, Some(pct), 0)));
        let (delayed, _, _) = count(&p, 7);
        assert!((lo..=hi).contains(&delayed), "{pct}%: {delayed}");
    }
}

#[test]
fn the_deprecated_integer_percent_still_works() {
    let p = FaultPolicy::from_route(Some(&delay(5_000, None, 10)));
    assert_eq!(p.delay.unwrap().1, Fraction::from_integer_percent(10));
    let (delayed, _, _) = count(&p, 11);
    assert!((900..=1_100).contains(&delayed), "{delayed}");
    // `percentage` wins over `percent` when both are set.
    let p = FaultPolicy::from_route(Some(&delay(5_000, Some(100.0), 10)));
    assert_eq!(count(&p, 11).0, SAMPLES);
}

#[test]
fn a_missing_percentage_means_never_as_in_istio() {
    let p = FaultPolicy::from_route(Some(&delay(5_000, None, 0)));
    assert!(p.is_active(), "Istio still configures the filter");
    assert_eq!(count(&p, 3).0, 0);
    assert!(p.warnings[0].contains("0% of requests"), "{:?}", p.warnings);
    let p = FaultPolicy::from_route(Some(&http_abort(503, None)));
    assert_eq!(count(&p, 3).1, 0);
    assert!(
        p.warnings[0].contains("istio/istio#36303"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn delay_and_abort_are_drawn_independently() {
    let fault = HttpFaultInjection {
        delay: delay(10, Some(50.0), 0).delay,
        abort: http_abort(503, Some(25.0)).abort,
    };
    let p = FaultPolicy::from_route(Some(&fault));
    let (delayed, aborted, both) = count(&p, 5);
    assert!((4_800..=5_200).contains(&delayed), "{delayed}");
    assert!((2_300..=2_700).contains(&aborted), "{aborted}");
    // Independent: P(both) = 0.5 × 0.25.
    assert!((1_100..=1_400).contains(&both), "{both}");
    let d = FaultDecision {
        delay: Some(Duration::from_millis(10)),
        abort: Some(Abort::Http(503)),
    };
    assert_eq!(d.flags(), "DI,FI");
}

#[test]
fn grpc_aborts_answer_200_with_the_named_status() {
    let fault = HttpFaultInjection {
        delay: None,
        abort: Some(FaultAbort {
            grpc_status: Some("UNAVAILABLE".into()),
            percentage: Some(Percent { value: 100.0 }),
            ..Default::default()
        }),
    };
    let p = FaultPolicy::from_route(Some(&fault));
    let abort = p.decide(&mut StdRng::seed_from_u64(0)).abort.unwrap();
    assert_eq!(abort, Abort::Grpc(14));
    assert_eq!(abort.http_status(), StatusCode::OK);
    assert_eq!(abort.grpc_status(false), Some(14));
    // An HTTP abort on a gRPC request carries the mapped grpc-status.
    assert_eq!(Abort::Http(503).grpc_status(true), Some(14));
    assert_eq!(Abort::Http(503).grpc_status(false), None);
}

#[test]
fn unsupported_faults_are_dropped_with_a_reason() {
    let cases = [
        FaultAbort {
            http2_error: Some("REFUSED_STREAM".into()),
            ..Default::default()
        },
        FaultAbort {
            grpc_status: Some("NOPE".into()),
            ..Default::default()
        },
        FaultAbort {
            http_status: Some(99),
            ..Default::default()
        },
        FaultAbort::default(),
    ];
    for a in cases {
        let p = FaultPolicy::from_route(Some(&HttpFaultInjection {
            delay: None,
            abort: Some(a.clone()),
        }));
        assert!(!p.is_active(), "{a:?}");
        assert_eq!(p.warnings.len(), 1, "{a:?}");
    }
    let exponential = HttpFaultInjection {
        delay: Some(FaultDelay {
            exponential_delay: Some(IstioDuration::from_secs(1)),
            percentage: Some(Percent { value: 100.0 }),
            ..Default::default()
        }),
        abort: None,
    };
    let p = FaultPolicy::from_route(Some(&exponential));
    assert!(!p.is_active());
    assert!(p.warnings[0].contains("exponentialDelay"));
}

#[test]
fn sub_millisecond_delays_are_skipped_like_envoy() {
    let fault = HttpFaultInjection {
        delay: Some(FaultDelay {
            fixed_delay: Some(IstioDuration { nanos: 500_000 }),
            percentage: Some(Percent { value: 100.0 }),
            ..Default::default()
        }),
        abort: None,
    };
    let p = FaultPolicy::from_route(Some(&fault));
    assert!(p.delay.is_none());
    assert_eq!(p.warnings.len(), 1);
}

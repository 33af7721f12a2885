//! Retry policy: Istio's conversion, Envoy's classifier, back-off and per-request state.

use http::{HeaderMap, HeaderValue};
use keel_config::types::Duration as IstioDuration;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::super::budget::RetryLimit;
use super::*;

/// A generator that always returns the same value, to pin back-off draws.
struct Fixed(u64);

impl rand::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        self.0 as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0);
    }
}

fn retry(attempts: i32, retry_on: &str) -> HttpRetry {
    HttpRetry {
        attempts,
        retry_on: retry_on.into(),
        ..Default::default()
    }
}

fn response(status: u16, headers: &HeaderMap) -> AttemptResult<'_> {
    AttemptResult::Response { status, headers }
}

fn grpc(status: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from_str(status).unwrap());
    h
}

fn unlimited() -> Arc<RetryBudget> {
    Arc::new(RetryBudget::new(RetryLimit::MaxRetries(u32::MAX)))
}

#[test]
fn no_retries_field_gives_istios_mesh_default() {
    let p = RetryPolicy::from_route(None);
    assert_eq!(p.num_retries, 2);
    assert_eq!(
        p.retry_on.names(),
        "connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable"
    );
    assert!(
        p.retriable_status_codes.is_empty(),
        "503 is excluded by default"
    );
    assert_eq!(p.per_try_timeout, None);
    assert_eq!(
        (p.backoff_base.as_millis(), p.backoff_max.as_millis()),
        (25, 250)
    );
    assert!(p.ignore_previous_hosts(false));
    assert!(!p.retry_remote_localities);
    assert!(p.warnings.is_empty());
    let none = HeaderMap::new();
    assert!(p.should_retry(&AttemptResult::ConnectFailure));
    assert!(p.should_retry(&AttemptResult::RefusedStream));
    assert!(p.should_retry(&response(200, &grpc("14"))));
    assert!(p.should_retry(&response(200, &grpc("1"))));
    assert!(!p.should_retry(&response(200, &grpc("4"))));
    assert!(!p.should_retry(&response(503, &none)));
    assert!(!p.should_retry(&response(500, &none)));
    assert!(!p.should_retry(&AttemptResult::Reset { request_sent: true }));
    assert!(!p.should_retry(&AttemptResult::PerTryTimeout));
}

#[test]
fn zero_or_negative_attempts_disable_retries() {
    for attempts in [0, -1] {
        let p = RetryPolicy::from_route(Some(&retry(attempts, "5xx")));
        assert!(!p.is_enabled());
        let mut state = RetryState::new(&p);
        let d = state.decide(
            &p,
            &AttemptResult::ConnectFailure,
            &unlimited(),
            0,
            &mut Fixed(0),
        );
        assert_eq!(d, RetryDecision::Done);
    }
}

#[test]
fn attempts_without_retry_on_keep_the_default_conditions() {
    let p = RetryPolicy::from_route(Some(&retry(5, "")));
    assert_eq!(p.num_retries, 5);
    assert_eq!(p.retry_on, RetryPolicy::from_route(None).retry_on);
}

#[test]
fn retry_on_replaces_conditions_as_in_istios_example() {
    let p = RetryPolicy::from_route(Some(&retry(
        3,
        "gateway-error,connect-failure,refused-stream",
    )));
    let none = HeaderMap::new();
    for s in [502, 503, 504] {
        assert!(p.should_retry(&response(s, &none)), "{s}");
    }
    assert!(!p.should_retry(&response(500, &none)));
    assert!(
        !p.should_retry(&response(200, &grpc("14"))),
        "unavailable was replaced"
    );
    // gateway-error counts resets and per-try timeouts as gateway errors, like Envoy.
    assert!(p.should_retry(&AttemptResult::Reset { request_sent: true }));
    assert!(p.should_retry(&AttemptResult::PerTryTimeout));
}

#[test]
fn five_xx_retries_every_5xx_and_every_failure_without_response() {
    let p = RetryPolicy::from_route(Some(&retry(1, "5xx")));
    let none = HeaderMap::new();
    assert!(p.should_retry(&response(500, &none)));
    assert!(p.should_retry(&response(599, &none)));
    assert!(!p.should_retry(&response(499, &none)));
    assert!(p.should_retry(&AttemptResult::ConnectFailure));
    assert!(p.should_retry(&AttemptResult::RefusedStream));
    assert!(p.should_retry(&AttemptResult::Reset { request_sent: true }));
    assert!(p.should_retry(&AttemptResult::PerTryTimeout));
    assert!(
        !p.should_retry(&AttemptResult::Overflow),
        "overflow is never retried"
    );
}

#[test]
fn bare_status_codes_become_retriable_status_codes() {
    let p = RetryPolicy::from_route(Some(&retry(2, " 503 , retriable-4xx,,429")));
    assert_eq!(p.retriable_status_codes, vec![503, 429]);
    assert!(p.retry_on.contains(RetryOn::RETRIABLE_STATUS_CODES));
    assert!(p.retry_on.contains(RetryOn::RETRIABLE_4XX));
    let none = HeaderMap::new();
    for s in [503, 429, 409] {
        assert!(p.should_retry(&response(s, &none)), "{s}");
    }
    assert!(!p.should_retry(&response(502, &none)));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn unknown_conditions_and_unknown_codes_are_ignored_with_a_warning() {
    let p = RetryPolicy::from_route(Some(&retry(2, "5xx,5XX,599,not-a-thing")));
    assert_eq!(p.retry_on, RetryOn::FIVE_XX);
    assert!(
        p.retriable_status_codes.is_empty(),
        "599 is no Go status text"
    );
    assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
    assert!(p.warnings[2].contains("\"not-a-thing\""));
    assert!(p.warnings[2].contains("reset-before-request"));
    // Only unknown tokens: nothing to retry on, so retries are off.
    let p = RetryPolicy::from_route(Some(&retry(2, "bogus")));
    assert!(!p.is_enabled());
}

#[test]
fn every_grpc_condition_matches_its_status_in_the_headers() {
    let cases = [
        ("cancelled", "1"),
        ("deadline-exceeded", "4"),
        ("resource-exhausted", "8"),
        ("internal", "13"),
        ("unavailable", "14"),
    ];
    for (name, code) in cases {
        let p = RetryPolicy::from_route(Some(&retry(1, name)));
        assert!(p.should_retry(&response(200, &grpc(code))), "{name}");
        for (_, other) in cases.iter().filter(|(n, _)| *n != name) {
            assert!(
                !p.should_retry(&response(200, &grpc(other))),
                "{name} {other}"
            );
        }
        assert!(!p.should_retry(&response(200, &grpc("0"))));
        assert!(!p.should_retry(&AttemptResult::ConnectFailure), "{name}");
    }
}

#[test]
fn reset_before_request_only_retries_what_never_left() {
    let p = RetryPolicy::from_route(Some(&retry(1, "reset-before-request")));
    assert!(p.should_retry(&AttemptResult::Reset {
        request_sent: false
    }));
    assert!(!p.should_retry(&AttemptResult::Reset { request_sent: true }));
    assert!(p.should_retry(&AttemptResult::ConnectFailure));
    assert!(!p.should_retry(&AttemptResult::PerTryTimeout));
    let p = RetryPolicy::from_route(Some(&retry(1, "reset")));
    assert!(p.should_retry(&AttemptResult::Reset { request_sent: true }));
    assert!(p.should_retry(&AttemptResult::PerTryTimeout));
    assert!(!p.should_retry(&response(503, &HeaderMap::new())));
}

#[test]
fn connect_failure_and_refused_stream_are_narrow() {
    let p = RetryPolicy::from_route(Some(&retry(1, "connect-failure")));
    assert!(p.should_retry(&AttemptResult::ConnectFailure));
    assert!(!p.should_retry(&AttemptResult::RefusedStream));
    assert!(!p.should_retry(&AttemptResult::Reset {
        request_sent: false
    }));
    let p = RetryPolicy::from_route(Some(&retry(1, "refused-stream")));
    assert!(p.should_retry(&AttemptResult::RefusedStream));
    assert!(!p.should_retry(&AttemptResult::ConnectFailure));
}

#[test]
fn rate_limited_answers_are_retried_only_when_asked() {
    let mut limited = HeaderMap::new();
    limited.insert("x-envoy-ratelimited", HeaderValue::from_static("true"));
    let p = RetryPolicy::from_route(Some(&retry(1, "5xx")));
    assert!(!p.should_retry(&response(503, &limited)));
    let p = RetryPolicy::from_route(Some(&retry(1, "envoy-ratelimited")));
    assert!(p.should_retry(&response(429, &limited)));
}

#[test]
fn retriable_headers_need_names_which_istio_cannot_set() {
    let mut h = HeaderMap::new();
    h.insert("x-try-again", HeaderValue::from_static("1"));
    let mut p = RetryPolicy::from_route(Some(&retry(1, "retriable-headers")));
    assert!(!p.should_retry(&response(200, &h)));
    p.retriable_headers = vec![HeaderName::from_static("x-try-again")];
    assert!(p.should_retry(&response(200, &h)));
    assert!(!p.should_retry(&response(200, &HeaderMap::new())));
}

#[test]
fn per_try_timeout_backoff_and_host_flags_come_from_the_route() {
    let r = HttpRetry {
        attempts: 3,
        per_try_timeout: Some(IstioDuration::from_millis(2000)),
        backoff: Some(IstioDuration::from_millis(100)),
        retry_remote_localities: Some(true),
        retry_ignore_previous_hosts: Some(false),
        ..Default::default()
    };
    let p = RetryPolicy::from_route(Some(&r));
    assert_eq!(p.per_try_timeout, Some(Duration::from_secs(2)));
    assert_eq!(p.backoff_base, Duration::from_millis(100));
    assert_eq!(p.backoff_max, Duration::from_secs(1));
    assert!(p.retry_remote_localities);
    assert!(!p.ignore_previous_hosts(false));
    let tiny = HttpRetry {
        attempts: 1,
        backoff: Some(IstioDuration { nanos: 10 }),
        ..Default::default()
    };
    assert_eq!(
        RetryPolicy::from_route(Some(&tiny)).backoff_base,
        Duration::from_millis(1)
    );
}

#[test]
fn consistent_hashing_keeps_retries_on_the_hashed_host_unless_told_otherwise() {
    let default = RetryPolicy::from_route(None);
    assert!(default.ignore_previous_hosts(false));
    assert!(!default.ignore_previous_hosts(true));
    let explicit = RetryPolicy::from_route(Some(&HttpRetry {
        attempts: 1,
        retry_ignore_previous_hosts: Some(true),
        ..Default::default()
    }));
    assert!(explicit.ignore_previous_hosts(true));
}

#[test]
fn backoff_doubles_from_the_base_up_to_ten_times_it() {
    let mut b = Backoff::new(Duration::from_millis(25), Duration::from_millis(250));
    // 249 % interval pins each draw to the top of its range: [0,25) [0,50) [0,100) [0,200)
    // then [0,250) for good.
    let waits: Vec<u128> = (0..7)
        .map(|_| b.next(&mut Fixed(249)).as_millis())
        .collect();
    assert_eq!(waits, vec![24, 49, 49, 49, 249, 249, 249]);
    b.reset();
    assert_eq!(b.next(&mut Fixed(249)).as_millis(), 24);
}

#[test]
fn backoff_is_fully_jittered() {
    let mut rng = StdRng::seed_from_u64(3);
    let first: Vec<u128> = (0..2_000)
        .map(|_| {
            Backoff::new(Duration::from_millis(25), Duration::from_millis(250))
                .next(&mut rng)
                .as_millis()
        })
        .collect();
    assert!(first.iter().all(|w| *w < 25));
    assert!(first.contains(&0) && first.contains(&24));
    let mean = first.iter().sum::<u128>() as f64 / first.len() as f64;
    assert!((11.0..13.0).contains(&mean), "{mean}");
}

#[test]
fn retries_are_counted_per_request_and_exhaust_with_urx() {
    let p = RetryPolicy::from_route(None);
    let budget = unlimited();
    let mut state = RetryState::new(&p);
    let mut rng = Fixed(7);
    for _ in 0..2 {
        state.start_attempt(0);
        let d = state.decide(&p, &AttemptResult::ConnectFailure, &budget, 1, &mut rng);
        assert!(matches!(d, RetryDecision::Retry { .. }), "{d:?}");
    }
    state.start_attempt(1);
    let last = AttemptResult::ConnectFailure;
    assert_eq!(
        state.decide(&p, &last, &budget, 1, &mut rng),
        RetryDecision::RetriesExhausted
    );
    assert_eq!(state.attempts(), 3);
    assert_eq!(exhausted_flag(&last), "UF,URX");
    assert_eq!(
        budget.active(),
        0,
        "no retry is held after the last decision"
    );
}

#[test]
fn a_success_or_a_final_failure_ends_the_request() {
    let p = RetryPolicy::from_route(Some(&retry(3, "5xx")));
    let budget = unlimited();
    let mut state = RetryState::new(&p);
    let ok = HeaderMap::new();
    assert_eq!(
        state.decide(&p, &response(200, &ok), &budget, 1, &mut Fixed(0)),
        RetryDecision::Done
    );
    assert_eq!(
        state.decide(&p, &response(404, &ok), &budget, 1, &mut Fixed(0)),
        RetryDecision::Done
    );
}

#[test]
fn the_retry_slot_is_held_until_the_next_decision() {
    let p = RetryPolicy::from_route(Some(&retry(5, "5xx")));
    let budget = Arc::new(RetryBudget::new(RetryLimit::MaxRetries(1)));
    let none = HeaderMap::new();
    let mut a = RetryState::new(&p);
    let mut b = RetryState::new(&p);
    let fail = response(503, &none);
    assert!(matches!(
        a.decide(&p, &fail, &budget, 2, &mut Fixed(0)),
        RetryDecision::Retry { .. }
    ));
    // Another request's retry overflows while `a`'s retry is in flight: flag UO.
    assert_eq!(
        b.decide(&p, &fail, &budget, 2, &mut Fixed(0)),
        RetryDecision::Overflow
    );
    assert_eq!(budget.overflows(), 1);
    // `a`'s retry answered: its slot is free again.
    assert_eq!(
        a.decide(&p, &response(200, &none), &budget, 2, &mut Fixed(0)),
        RetryDecision::Done
    );
    assert!(matches!(
        b.decide(&p, &fail, &budget, 2, &mut Fixed(0)),
        RetryDecision::Retry { .. }
    ));
    drop(b);
    assert_eq!(budget.active(), 0, "dropping the state frees the slot");
}

#[test]
fn previous_hosts_are_excluded_when_the_policy_says_so() {
    let p = RetryPolicy::from_route(None);
    let mut state = RetryState::new(&p);
    state.start_attempt(2);
    state.start_attempt(0);
    state.start_attempt(2);
    assert_eq!(state.exclude(&p, false), &[2, 0]);
    assert!(state.exclude(&p, true).is_empty());
}

#[test]
fn exhausted_flags_name_the_last_failure() {
    let h = HeaderMap::new();
    assert_eq!(exhausted_flag(&response(503, &h)), "URX");
    assert_eq!(exhausted_flag(&AttemptResult::PerTryTimeout), "UT,URX");
    assert_eq!(exhausted_flag(&AttemptResult::RefusedStream), "UC,URX");
    assert_eq!(
        exhausted_flag(&AttemptResult::Reset {
            request_sent: false
        }),
        "UC,URX"
    );
    assert_eq!(exhausted_flag(&AttemptResult::Overflow), "UO");
}

#[test]
fn inbound_retries_only_what_never_reached_the_application() {
    let p = RetryPolicy::inbound_default(false);
    assert_eq!(p.num_retries, 2);
    assert!(p.should_retry(&AttemptResult::Reset {
        request_sent: false
    }));
    assert!(p.should_retry(&AttemptResult::ConnectFailure));
    assert!(!p.should_retry(&AttemptResult::Reset { request_sent: true }));
    assert!(!p.should_retry(&response(503, &HeaderMap::new())));
    assert!(!RetryPolicy::inbound_default(true).is_enabled());
}

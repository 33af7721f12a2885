//! The cache's rules on made-up instants: no clock, no network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use keel_snapshot::compile::jwt::JwksResolver;
use keel_snapshot::jwt::{JwksSource, WantedJwks};
use tokio::time::Instant;

use super::*;
use crate::resolve::Fetched;

const A: &str = r#"{"keys":[{"kid":"a","kty":"EC"}]}"#;
const A_REORDERED: &str = r#"{ "keys": [ {"kty": "EC", "kid": "a"} ] }"#;
const B: &str = r#"{"keys":[{"kid":"b","kty":"EC"},{"kid":"c","kty":"EC"}]}"#;

fn uri(u: &str) -> JwksSource {
    JwksSource::Uri(u.to_string())
}

fn want(sources: &[JwksSource]) -> Vec<WantedJwks> {
    sources
        .iter()
        .map(|s| WantedJwks {
            source: s.clone(),
            timeout_ms: None,
        })
        .collect()
}

fn ok(jwks: &str) -> Result<Fetched, String> {
    Ok(Fetched {
        jwks: jwks.to_string(),
        jwks_uri: None,
    })
}

const WALL: SystemTime = SystemTime::UNIX_EPOCH;

#[tokio::test]
async fn a_new_source_is_fetched_at_once_then_every_refresh_interval() {
    let t0 = Instant::now();
    let mut c = Cache::new(Timing::default());
    let s = uri("https://issuer.example/keys");
    c.set_wanted(&want(std::slice::from_ref(&s)), t0);
    assert_eq!(c.take_due(t0), vec![(s.clone(), Duration::from_secs(5))]);
    assert!(c.take_due(t0).is_empty(), "not again while in flight");
    assert_eq!(c.next_due(), None);
    assert!(!c.all_attempted(std::slice::from_ref(&s)));

    let out = c.on_result(&s, ok(A), t0, WALL);
    assert!(out.keys_changed);
    let report = out.report.unwrap();
    assert!(!report.warning);
    assert_eq!(
        report.message,
        "fetched 1 keys from jwksUri https://issuer.example/keys"
    );
    assert!(c.all_attempted(std::slice::from_ref(&s)));
    assert_eq!(c.remote().resolve(&s).unwrap(), A);
    let refresh = t0 + Duration::from_secs(20 * 60);
    assert_eq!(c.next_due(), Some(refresh));
    assert!(c.take_due(refresh - Duration::from_secs(1)).is_empty());
    assert_eq!(c.take_due(refresh).len(), 1);

    // The same keys in another order and layout: nothing to push.
    let out = c.on_result(&s, ok(A_REORDERED), refresh, WALL);
    assert_eq!(out, Outcome::default());
    assert_eq!(c.remote().resolve(&s).unwrap(), A, "the first text is kept");

    // Rotated keys: push.
    let later = refresh + Duration::from_secs(20 * 60);
    c.take_due(later);
    let out = c.on_result(&s, ok(B), later, WALL);
    assert!(out.keys_changed);
    assert!(out.report.unwrap().message.contains("changed (2 now)"));
    assert_eq!(c.remote().resolve(&s).unwrap(), B);
}

#[tokio::test]
async fn a_failure_keeps_the_last_good_keys_and_retries_with_backoff() {
    let t0 = Instant::now();
    let mut c = Cache::new(Timing::default());
    let s = uri("https://issuer.example/keys");
    c.set_wanted(&want(std::slice::from_ref(&s)), t0);
    c.take_due(t0);
    c.on_result(&s, ok(A), t0, WALL);

    let mut now = t0 + Duration::from_secs(20 * 60);
    let mut delays = Vec::new();
    for _ in 0..9 {
        assert_eq!(c.take_due(now).len(), 1);
        let out = c.on_result(&s, Err("connection refused".into()), now, WALL);
        assert!(!out.keys_changed, "the last good keys stay");
        let report = out.report.unwrap();
        assert!(report.warning);
        assert!(
            report.message.contains("connection refused")
                && report
                    .message
                    .contains("the keys fetched before stay in use"),
            "{}",
            report.message
        );
        let next = c.next_due().unwrap();
        delays.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    let remote = c.remote();
    assert_eq!(remote.resolve(&s).unwrap(), A);
    assert_eq!(
        remote.get(&s).unwrap().error.as_deref(),
        Some("connection refused")
    );
    let status = &c.status(now, WALL)[0];
    assert_eq!(status.state, "failing");
    assert_eq!(status.consecutive_failures, 9);
    assert_eq!(status.keys, Some(1));

    // Back: the keys are unchanged, so no push, but it's said.
    c.take_due(now);
    let out = c.on_result(&s, ok(A), now, WALL);
    assert!(!out.keys_changed);
    assert!(out.report.unwrap().message.contains("answers again"));
    assert_eq!(c.status(now, WALL)[0].state, "fetched");
}

#[tokio::test]
async fn a_source_never_fetched_has_no_keys_so_compiles_get_none() {
    let t0 = Instant::now();
    let mut c = Cache::new(Timing::default());
    let s = uri("https://down.example/keys");
    c.set_wanted(&want(std::slice::from_ref(&s)), t0);
    assert_eq!(c.status(t0, WALL)[0].state, "pending");
    assert_eq!(c.remote().resolve(&s).unwrap_err(), "not fetched yet");
    c.take_due(t0);
    let out = c.on_result(&s, Err("status 503".into()), t0, WALL);
    assert!(!out.keys_changed);
    let msg = out.report.unwrap().message;
    assert!(
        msg.contains("refused with 401 until a fetch succeeds"),
        "{msg}"
    );
    assert_eq!(c.remote().resolve(&s).unwrap_err(), "status 503");
    assert_eq!(c.status(t0, WALL)[0].state, "unavailable");
    assert!(
        c.all_attempted(std::slice::from_ref(&s)),
        "an answer, if a bad one"
    );
}

#[tokio::test]
async fn keys_not_refreshed_for_a_week_are_dropped() {
    let t0 = Instant::now();
    let mut c = Cache::new(Timing::default());
    let s = uri("https://issuer.example/keys");
    c.set_wanted(&want(std::slice::from_ref(&s)), t0);
    c.take_due(t0);
    c.on_result(&s, ok(A), t0, WALL);
    let day = Duration::from_secs(24 * 3600);
    c.take_due(t0 + day * 6);
    assert!(
        !c.on_result(&s, Err("down".into()), t0 + day * 6, WALL)
            .keys_changed
    );
    c.take_due(t0 + day * 7);
    let out = c.on_result(&s, Err("down".into()), t0 + day * 7, WALL);
    assert!(
        out.keys_changed,
        "dropping the keys changes what proxies get"
    );
    assert!(out.report.unwrap().message.contains("are dropped"));
    assert!(c.remote().resolve(&s).is_err());
}

#[tokio::test]
async fn sources_follow_the_configuration() {
    let t0 = Instant::now();
    let mut c = Cache::new(Timing::default());
    let (a, b) = (uri("https://a.example/k"), uri("https://b.example/k"));
    c.set_wanted(
        &[
            WantedJwks {
                source: a.clone(),
                timeout_ms: Some(1500),
            },
            WantedJwks {
                source: b.clone(),
                timeout_ms: None,
            },
        ],
        t0,
    );
    let due = c.take_due(t0);
    assert_eq!(
        due,
        vec![
            (a.clone(), Duration::from_millis(1500)),
            (b.clone(), Duration::from_secs(5))
        ]
    );
    c.on_result(&a, ok(A), t0, WALL);
    // b is dropped from the configuration while its fetch is in flight: its answer is
    // ignored, a keeps its keys and schedule.
    c.set_wanted(&want(std::slice::from_ref(&a)), t0);
    assert_eq!(c.on_result(&b, ok(B), t0, WALL), Outcome::default());
    assert!(c.remote().get(&b).is_none());
    assert_eq!(c.remote().resolve(&a).unwrap(), A);
    assert!(c.take_due(t0).is_empty());
    assert!(c.all_attempted(&[a.clone(), b.clone()]));
}

#[tokio::test]
async fn discovery_records_the_uri_it_found() {
    let t0 = Instant::now();
    let mut c = Cache::new(Timing::default());
    let s = JwksSource::Issuer("https://issuer.example".into());
    c.set_wanted(&want(std::slice::from_ref(&s)), t0);
    c.take_due(t0);
    c.on_result(
        &s,
        Ok(Fetched {
            jwks: A.into(),
            jwks_uri: Some("https://issuer.example/jwks".into()),
        }),
        t0,
        WALL,
    );
    let remote = c.remote();
    assert_eq!(remote.resolve(&s).unwrap(), A);
    assert_eq!(
        remote.discovered_uri("https://issuer.example").as_deref(),
        Some("https://issuer.example/jwks")
    );
    let status = serde_json::to_value(c.status(t0, WALL)).unwrap();
    assert_eq!(status[0]["issuer"], "https://issuer.example");
    assert_eq!(status[0]["state"], "fetched");
}

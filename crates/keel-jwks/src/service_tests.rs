//! The service on a fake fetcher and Tokio's paused clock: what a compile sees after
//! success, timeout, failure and discovery, and when a push is signalled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use keel_config::{LoadOptions, load_str};
use keel_snapshot::compile::authz::AuthzWorkload;
use keel_snapshot::compile::jwt::{JwksResolver, for_workload_with, remote_sources};

use super::*;
use crate::fetch::BoxFuture;

const A: &str = r#"{"keys":[{"kid":"a","kty":"EC"}]}"#;
const B: &str = r#"{"keys":[{"kid":"b","kty":"EC"}]}"#;

#[derive(Clone)]
enum Answer {
    Body(&'static str),
    Fail(&'static str),
    /// Never answers: the resolver's timeout decides.
    Hang,
}

/// Answers by URL, in order; the last answer repeats.
#[derive(Default)]
struct Fake {
    answers: Mutex<HashMap<String, VecDeque<Answer>>>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn with(answers: &[(&str, &[Answer])]) -> Arc<Fake> {
        let fake = Fake::default();
        for (url, list) in answers {
            fake.set(url, list);
        }
        Arc::new(fake)
    }

    fn set(&self, url: &str, list: &[Answer]) {
        self.answers
            .lock()
            .unwrap()
            .insert(url.to_string(), list.iter().cloned().collect());
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Fetcher for Fake {
    fn get(&self, url: &str) -> BoxFuture<Result<Vec<u8>, String>> {
        self.calls.lock().unwrap().push(url.to_string());
        let answer = {
            let mut answers = self.answers.lock().unwrap();
            match answers.get_mut(url) {
                Some(list) if list.len() > 1 => list.pop_front(),
                Some(list) => list.front().cloned(),
                None => None,
            }
        };
        Box::pin(async move {
            match answer {
                Some(Answer::Body(b)) => Ok(b.as_bytes().to_vec()),
                Some(Answer::Fail(why)) => Err(why.to_string()),
                Some(Answer::Hang) => std::future::pending().await,
                None => Err("status 404 Not Found".into()),
            }
        })
    }
}

fn uri(u: &str) -> JwksSource {
    JwksSource::Uri(u.to_string())
}

fn wanted(sources: &[JwksSource]) -> Vec<WantedJwks> {
    sources
        .iter()
        .map(|s| WantedJwks {
            source: s.clone(),
            timeout_ms: None,
        })
        .collect()
}

const KEYS: &str = "https://issuer.example/keys";

#[tokio::test(start_paused = true)]
async fn a_first_fetch_is_awaited_and_published() {
    let fake = Fake::with(&[(KEYS, &[Answer::Body(A)])]);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let handle = JwksHandle::spawn(
        fake.clone(),
        Settings {
            reporter: Some(Arc::new(move |r: &Report| {
                seen.lock().unwrap().push(r.message.clone())
            })),
            ..Settings::default()
        },
    );
    let mut rx = handle.subscribe();
    handle
        .want(&wanted(&[uri(KEYS)]), Duration::from_secs(5))
        .await;
    assert_eq!(handle.current().resolve(&uri(KEYS)).unwrap(), A);
    assert!(rx.has_changed().unwrap(), "new keys wake subscribers");
    rx.borrow_and_update();
    assert_eq!(fake.calls(), [KEYS]);
    assert_eq!(
        reports.lock().unwrap().as_slice(),
        ["fetched 1 keys from jwksUri https://issuer.example/keys"]
    );
    assert_eq!(handle.stats().success.load(Ordering::Relaxed), 1);

    // Twenty minutes on, the same keys: fetched again, nobody woken.
    tokio::time::sleep(Duration::from_secs(20 * 60 + 1)).await;
    assert_eq!(fake.calls().len(), 2);
    assert!(!rx.has_changed().unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_fetch_that_never_answers_times_out_and_leaves_no_keys() {
    let fake = Fake::with(&[(KEYS, &[Answer::Hang])]);
    let handle = JwksHandle::spawn(fake, Settings::default());
    let started = Instant::now();
    handle
        .want(&wanted(&[uri(KEYS)]), Duration::from_secs(30))
        .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "Istio's 5 s timeout"
    );
    let why = handle.current().resolve(&uri(KEYS)).unwrap_err();
    assert!(why.contains("no answer within 5s"), "{why}");
    let status = &handle.status()[0];
    assert_eq!(status.state, "unavailable");
    assert_eq!(handle.stats().fail.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rules_timeout_bounds_its_fetch_and_want_waits_no_longer_than_asked() {
    let fake = Fake::with(&[(KEYS, &[Answer::Hang])]);
    let handle = JwksHandle::spawn(fake, Settings::default());
    let started = Instant::now();
    handle
        .want(
            &[WantedJwks {
                source: uri(KEYS),
                timeout_ms: Some(1500),
            }],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
    let started = Instant::now();
    let other = uri("https://other.example/keys");
    let fake2 = Fake::with(&[("https://other.example/keys", &[Answer::Hang])]);
    let handle2 = JwksHandle::spawn(fake2, Settings::default());
    handle2
        .want(
            &wanted(std::slice::from_ref(&other)),
            Duration::from_secs(1),
        )
        .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "want's own bound"
    );
    assert_eq!(
        handle2.current().resolve(&other).unwrap_err(),
        "not fetched yet"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_last_keys_and_a_change_wakes_subscribers() {
    let fake = Fake::with(&[(
        KEYS,
        &[
            Answer::Body(A),
            Answer::Fail("connection refused"),
            Answer::Fail("connection refused"),
            Answer::Body("<html>oops</html>"),
            Answer::Body(B),
        ],
    )]);
    let handle = JwksHandle::spawn(fake.clone(), Settings::default());
    let mut rx = handle.subscribe();
    handle
        .want(&wanted(&[uri(KEYS)]), Duration::from_secs(5))
        .await;
    rx.borrow_and_update();
    // The refresh at 20 min fails, and so do the retries 1 s and 2 s later (the last not
    // even a key set): the keys stay, nobody is woken.
    tokio::time::sleep(Duration::from_secs(20 * 60) + Duration::from_millis(3500)).await;
    assert_eq!(fake.calls().len(), 4);
    assert!(!rx.has_changed().unwrap());
    let remote = handle.current();
    assert_eq!(remote.resolve(&uri(KEYS)).unwrap(), A);
    let error = remote.get(&uri(KEYS)).unwrap().error.clone().unwrap();
    assert!(error.contains("not a JSON Web Key Set"), "{error}");
    assert_eq!(handle.status()[0].state, "failing");
    // 4 s after that, new keys: subscribers are woken with them.
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(rx.borrow_and_update().resolve(&uri(KEYS)).unwrap(), B);
}

#[tokio::test(start_paused = true)]
async fn openid_discovery_finds_the_jwks_uri() {
    let fake = Fake::with(&[
        (
            "https://issuer.example/.well-known/openid-configuration",
            &[Answer::Body(
                r#"{"issuer":"https://issuer.example/","jwks_uri":"https://keys.example/jwks"}"#,
            )],
        ),
        ("https://keys.example/jwks", &[Answer::Body(A)]),
    ]);
    let handle = JwksHandle::spawn(fake.clone(), Settings::default());
    // The issuer's trailing slash is not doubled.
    let source = JwksSource::Issuer("https://issuer.example/".into());
    handle
        .want(
            &wanted(std::slice::from_ref(&source)),
            Duration::from_secs(5),
        )
        .await;
    let remote = handle.current();
    assert_eq!(remote.resolve(&source).unwrap(), A);
    assert_eq!(
        remote.discovered_uri("https://issuer.example/").as_deref(),
        Some("https://keys.example/jwks")
    );
    assert_eq!(
        fake.calls(),
        [
            "https://issuer.example/.well-known/openid-configuration",
            "https://keys.example/jwks"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn discovery_failures_say_what_to_do() {
    let fake = Fake::with(&[(
        "https://issuer.example/.well-known/openid-configuration",
        &[Answer::Body(r#"{"issuer":"https://issuer.example"}"#)],
    )]);
    let handle = JwksHandle::spawn(fake, Settings::default());
    let no_uri = JwksSource::Issuer("https://issuer.example".into());
    let not_url = JwksSource::Issuer("testing@secure.istio.io".into());
    handle
        .want(
            &wanted(&[no_uri.clone(), not_url.clone()]),
            Duration::from_secs(5),
        )
        .await;
    let remote = handle.current();
    let e = remote.resolve(&no_uri).unwrap_err();
    assert!(
        e.contains("has no jwks_uri") && e.contains("give the rule a jwksUri"),
        "{e}"
    );
    let e = remote.resolve(&not_url).unwrap_err();
    assert!(e.contains("is not an http(s) URL"), "{e}");
}

/// Istio's rule, end to end through the compile: while a jwksUri has never been fetched the
/// rule carries no keys (the proxy refuses its tokens with 401), and once fetched it carries
/// them.
#[tokio::test(start_paused = true)]
async fn a_compile_gets_no_keys_until_the_first_fetch_succeeds() {
    let yaml = format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwksUri: {KEYS}
  - issuer: https://issuer.example
"
    );
    let loaded = load_str(&yaml, "jwt.yaml", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let resources = loaded.resources;
    let sources = remote_sources(&resources);
    assert_eq!(
        sources.iter().map(|w| w.source.clone()).collect::<Vec<_>>(),
        [
            JwksSource::Uri(KEYS.into()),
            JwksSource::Issuer("https://issuer.example".into())
        ]
    );
    let fake = Fake::with(&[(KEYS, &[Answer::Fail("connection refused"), Answer::Body(A)])]);
    let handle = JwksHandle::spawn(fake, Settings::default());
    handle.want(&sources, Duration::from_secs(5)).await;
    let w = AuthzWorkload::new("istio-system", BTreeMap::new());
    let compiled = for_workload_with(&resources, &w, &*handle.current());
    assert_eq!(compiled.rules.rules[0].jwks, None, "never fetched: no keys");
    assert!(
        compiled.warnings[0].message.contains("connection refused")
            && compiled.warnings[0].message.contains("refused with 401"),
        "{:?}",
        compiled.warnings
    );
    // The retry a second later succeeds.
    let mut rx = handle.subscribe();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("woken")
        .unwrap();
    let compiled = for_workload_with(&resources, &w, &*handle.current());
    assert_eq!(compiled.rules.rules[0].jwks.as_deref(), Some(A));
}

#[tokio::test(start_paused = true)]
async fn the_task_stops_with_the_last_handle() {
    let fake = Fake::with(&[(KEYS, &[Answer::Body(A)])]);
    let handle = JwksHandle::spawn(fake.clone(), Settings::default());
    handle
        .want(&wanted(&[uri(KEYS)]), Duration::from_secs(5))
        .await;
    drop(handle);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(fake.calls().len(), 1, "no refresh after the handle is gone");
    assert_eq!(Arc::strong_count(&fake), 1, "the fetcher is released");
}

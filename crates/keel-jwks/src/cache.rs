//! The key cache as a state machine, time given by the caller: which sources the
//! configuration wants, when each is due, and what an attempt's result changes. No I/O and
//! no clock of its own, so every rule is tested with made-up instants.
//!
//! Istio's rules (`pilot/pkg/model/jwks_resolver.go`), per source:
//! - a new source is fetched at once;
//! - after a success, again after the refresh interval (`PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`,
//!   20 minutes);
//! - after a failure, the last good keys stay in use and the source is tried again, after
//!   1 s doubling to 1 minute (istiod retries 7 times a second apart, then every minute,
//!   doubling to an hour; Keel stays at a minute so a recovered issuer is seen soon);
//! - keys not refreshed successfully for 7 days (`JwtPubKeyEvictionDuration`) are dropped:
//!   tokens are refused again rather than checked against keys that old;
//! - a changed key set (compared by content, not order) is what triggers a push.
//!
//! Where Keel differs: a source no longer named by any RequestAuthentication is forgotten at
//! once (istiod keeps unused entries for 7 days), and sources are keyed by URI or issuer
//! alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use keel_snapshot::jwt::{JwksSource, RemoteJwks, RemoteKeys, WantedJwks};
use serde::Serialize;
use tokio::time::Instant;

use crate::resolve::{Fetched, human, same_key_set};

/// The schedule's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between successful refreshes.
    pub refresh: Duration,
    /// The first retry after a failure; doubled per further failure...
    pub retry_min: Duration,
    /// ...up to this.
    pub retry_max: Duration,
    /// Keys not refreshed successfully for this long are dropped.
    pub stale_after: Duration,
    /// A GET's timeout when the rule gives none.
    pub timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            refresh: Duration::from_secs(20 * 60),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            stale_after: Duration::from_secs(7 * 24 * 3600),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The last good key set, as served.
    keys: Option<String>,
    jwks_uri: Option<String>,
    last_error: Option<String>,
    /// Failures since the last success.
    failures: u32,
    /// Attempts finished since the source was wanted.
    attempts: u64,
    last_success: Option<Instant>,
    /// Wall-clock time of the last success, for people reading `/debug/jwksz`.
    last_success_wall: Option<SystemTime>,
    next_attempt: Instant,
    in_flight: bool,
    timeout: Duration,
}

/// What a caller should say about an attempt (the log, `keel up`'s output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub warning: bool,
    pub message: String,
}

/// What [`Cache::on_result`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The key set a compile would see changed: push.
    pub keys_changed: bool,
    pub report: Option<Report>,
}

/// One source, for `/debug/jwksz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    #[serde(flatten)]
    pub source: JwksSource,
    /// `pending` (no answer yet), `fetched`, `failing` (keys from an earlier fetch in use) or
    /// `unavailable` (never fetched: tokens are refused).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Keys in the set in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// Seconds since the last successful fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched_seconds_ago: Option<u64>,
    /// Seconds until the next attempt (0: now or in flight).
    pub next_attempt_in_seconds: u64,
}

/// The sources and their keys.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    timing: Timing,
    entries: BTreeMap<JwksSource, Entry>,
}

impl Cache {
    pub fn new(timing: Timing) -> Cache {
        Cache {
            timing,
            entries: BTreeMap::new(),
        }
    }

    /// The configuration now needs exactly `wanted`: new sources are due at once, the
    /// others keep their keys and schedule, sources no longer named are forgotten.
    pub fn set_wanted(&mut self, wanted: &[WantedJwks], now: Instant) {
        let names: BTreeSet<&JwksSource> = wanted.iter().map(|w| &w.source).collect();
        self.entries.retain(|source, _| names.contains(source));
        for w in wanted {
            let timeout = w
                .timeout_ms
                .map_or(self.timing.timeout, Duration::from_millis);
            let entry = self.entries.entry(w.source.clone()).or_insert(Entry {
                keys: None,
                jwks_uri: None,
                last_error: None,
                failures: 0,
                attempts: 0,
                last_success: None,
                last_success_wall: None,
                next_attempt: now,
                in_flight: false,
                timeout,
            });
            entry.timeout = timeout;
        }
    }

    /// The sources due at `now` that aren't being fetched, with their timeouts; marked in
    /// flight until [`on_result`](Self::on_result).
    pub fn take_due(&mut self, now: Instant) -> Vec<(JwksSource, Duration)> {
        let mut due = Vec::new();
        for (source, e) in &mut self.entries {
            if !e.in_flight && e.next_attempt <= now {
                e.in_flight = true;
                due.push((source.clone(), e.timeout));
            }
        }
        due
    }

    /// When the next source falls due (`None`: nothing to wait for).
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.in_flight)
            .map(|e| e.next_attempt)
            .min()
    }

    /// Records an attempt's result.
    pub fn on_result(
        &mut self,
        source: &JwksSource,
        result: Result<Fetched, String>,
        now: Instant,
        wall: SystemTime,
    ) -> Outcome {
        let timing = self.timing;
        // Forgotten while in flight: the configuration no longer wants it.
        let Some(e) = self.entries.get_mut(source) else {
            return Outcome::default();
        };
        e.in_flight = false;
        e.attempts += 1;
        match result {
            Ok(fetched) => {
                let recovered = e.failures > 0;
                e.failures = 0;
                e.last_error = None;
                e.last_success = Some(now);
                e.last_success_wall = Some(wall);
                e.next_attempt = now + timing.refresh;
                let first = e.keys.is_none();
                let same = e
                    .keys
                    .as_deref()
                    .is_some_and(|old| same_key_set(old, &fetched.jwks))
                    && e.jwks_uri == fetched.jwks_uri;
                if !same {
                    e.keys = Some(fetched.jwks);
                    e.jwks_uri = fetched.jwks_uri;
                }
                let keys = e.keys.as_deref().map_or(0, count_keys);
                let message = if first {
                    Some(format!("fetched {keys} keys from {source}"))
                } else if !same {
                    Some(format!(
                        "the keys from {source} changed ({keys} now); pushing them"
                    ))
                } else if recovered {
                    Some(format!("{source} answers again; its keys are unchanged"))
                } else {
                    None
                };
                Outcome {
                    keys_changed: !same,
                    report: message.map(|message| Report {
                        warning: false,
                        message,
                    }),
                }
            }
            Err(why) => {
                e.failures = e.failures.saturating_add(1);
                let shift = (e.failures - 1).min(16);
                let delay = timing
                    .retry_min
                    .saturating_mul(1u32 << shift)
                    .min(timing.retry_max);
                e.next_attempt = now + delay;
                let stale = e
                    .last_success
                    .is_some_and(|t| now.saturating_duration_since(t) >= timing.stale_after);
                let mut keys_changed = false;
                let consequence = match (&e.keys, stale) {
                    (Some(_), true) => {
                        e.keys = None;
                        e.jwks_uri = None;
                        keys_changed = true;
                        format!(
                            "its keys were last fetched {} ago and are dropped: tokens checked against them are refused with 401 until a fetch succeeds",
                            human(timing.stale_after)
                        )
                    }
                    (Some(_), false) => "the keys fetched before stay in use".to_string(),
                    (None, _) => {
                        "no keys yet: tokens checked against them are refused with 401 until a fetch succeeds".to_string()
                    }
                };
                let message = format!(
                    "cannot fetch {source}: {why}; {consequence} (attempt {}, next in {})",
                    e.failures,
                    human(delay)
                );
                e.last_error = Some(why);
                Outcome {
                    keys_changed,
                    report: Some(Report {
                        warning: true,
                        message,
                    }),
                }
            }
        }
    }

    /// Whether every source in `sources` has had an answer (or isn't wanted any more).
    pub fn all_attempted(&self, sources: &[JwksSource]) -> bool {
        sources
            .iter()
            .all(|s| self.entries.get(s).is_none_or(|e| e.attempts > 0))
    }

    /// What compiles read.
    pub fn remote(&self) -> RemoteJwks {
        let mut out = RemoteJwks::default();
        for (source, e) in &self.entries {
            *out.get_mut(source) = RemoteKeys {
                jwks: e.keys.clone(),
                jwks_uri: e.jwks_uri.clone(),
                error: e.last_error.clone(),
            };
        }
        out
    }

    /// Every source's state.
    pub fn status(&self, now: Instant, wall: SystemTime) -> Vec<SourceStatus> {
        self.entries
            .iter()
            .map(|(source, e)| SourceStatus {
                source: source.clone(),
                state: match (e.attempts, &e.keys, e.failures) {
                    (0, None, _) => "pending",
                    (_, Some(_), 0) => "fetched",
                    (_, Some(_), _) => "failing",
                    (_, None, _) => "unavailable",
                },
                jwks_uri: e.jwks_uri.clone(),
                keys: e.keys.as_deref().map(count_keys),
                last_error: e.last_error.clone(),
                consecutive_failures: e.failures,
                fetched_seconds_ago: e
                    .last_success_wall
                    .and_then(|t| wall.duration_since(t).ok())
                    .map(|d| d.as_secs()),
                next_attempt_in_seconds: e.next_attempt.saturating_duration_since(now).as_secs(),
            })
            .collect()
    }
}

fn count_keys(text: &str) -> usize {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(o)) => match o.get("keys") {
            Some(serde_json::Value::Array(keys)) => keys.len(),
            _ => 1,
        },
        _ => 0,
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;

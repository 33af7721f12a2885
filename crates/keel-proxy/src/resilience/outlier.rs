//! Outlier detection: eject endpoints that keep failing, bring them back after a while.
//!
//! [`OutlierConfig::from_traffic_policy`] is istiod's `applyOutlierDetection`
//! (`pilot/pkg/networking/core/cluster_traffic_policy.go`) read with Envoy's defaults;
//! [`OutlierDetector`] is Envoy's consecutive-error detector
//! (`source/common/upstream/outlier_detection_impl.cc`), one per cluster:
//!
//! * **Counting.** A 5xx answer counts toward `consecutive5xxErrors` (default 5; 0 disables);
//!   a 502/503/504 also toward `consecutiveGatewayErrors` (off unless set); any other answer
//!   resets both. gRPC answers count as the HTTP status of their `grpc-status`. Without
//!   `splitExternalLocalOriginErrors`, a connect failure or reset counts as a 503 and a
//!   timeout as a 504; with it, they count toward `consecutiveLocalOriginFailures` (default 5)
//!   instead, and a response resets that count.
//! * **Ejecting** happens as soon as a count *reaches* its threshold, if ejecting one more
//!   endpoint keeps the ejected share at or under `maxEjectionPercent` (default 10 %; Envoy
//!   computes `(ejected + 1) / total`, so with 2 endpoints only `maxEjectionPercent ≥ 50` ever
//!   ejects). Either way that count starts again from zero.
//! * **Returning** happens only on a sweep ([`OutlierDetector::sweep`], every `interval`,
//!   default 10 s): an endpoint returns once `min(baseEjectionTime × multiplier,
//!   max(300 s, baseEjectionTime))` has passed since its ejection. The multiplier grows by one
//!   per ejection and shrinks by one per sweep while the endpoint stays in (Envoy's
//!   `ejectTimeBackoff`), so a flapping host is kept out longer and longer.
//! * `minHealthPercent` (default 0 = panic mode off) is Envoy's healthy panic threshold: the
//!   balancer reads it (`Balancer` in `balance/`), the detector only reports it.
//!
//! The success path is a few relaxed atomic loads: counters are written only when they change,
//! and the lock is taken only to eject, to sweep and for the admin snapshot.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keel_config::model::networking::destination_rule::{OutlierDetection, TrafficPolicy};

use super::grpc_to_http_status;
use super::retry::AttemptResult;

/// Envoy's defaults, which apply to every field Istio leaves unset.
pub const DEFAULT_CONSECUTIVE_5XX: u32 = 5;
pub const DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES: u32 = 5;
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;

/// A cluster's outlier detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    /// `consecutive5xxErrors`; `None` when set to 0.
    pub consecutive_5xx: Option<u32>,
    /// `consecutiveGatewayErrors`; `None` unless set above 0.
    pub consecutive_gateway: Option<u32>,
    /// `consecutiveLocalOriginFailures`; only with `splitExternalLocalOriginErrors`.
    pub consecutive_local_origin: Option<u32>,
    pub split_external_local_origin_errors: bool,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    /// Envoy's `max_ejection_time`: 300 s, or `baseEjectionTime` when that is longer.
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// `minHealthPercent`, the healthy panic threshold the balancer applies.
    pub min_health_percent: u32,
    pub warnings: Vec<String>,
}

impl OutlierConfig {
    /// The cluster's detector settings; `None` without `outlierDetection` (no detector at all).
    pub fn from_traffic_policy(policy: Option<&TrafficPolicy>) -> Option<OutlierConfig> {
        policy
            .and_then(|p| p.outlier_detection.as_ref())
            .map(OutlierConfig::from_outlier_detection)
    }

    pub fn from_outlier_detection(o: &OutlierDetection) -> OutlierConfig {
        let mut warnings = Vec::new();
        if o.consecutive_errors != 0 {
            warnings.push(
                "outlierDetection.consecutiveErrors is deprecated and ignored by Istio; use consecutive5xxErrors or consecutiveGatewayErrors".into(),
            );
        }
        if o.consecutive_local_origin_failures.is_some() && !o.split_external_local_origin_errors {
            warnings.push(
                "outlierDetection.consecutiveLocalOriginFailures has no effect without splitExternalLocalOriginErrors: true".into(),
            );
        }
        let base = o
            .base_ejection_time
            .map(|d| d.to_std())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_BASE_EJECTION_TIME);
        OutlierConfig {
            consecutive_5xx: o
                .consecutive_5xx_errors
                .unwrap_or(DEFAULT_CONSECUTIVE_5XX)
                .into_nonzero(),
            consecutive_gateway: o
                .consecutive_gateway_errors
                .and_then(IntoNonzero::into_nonzero),
            consecutive_local_origin: o.split_external_local_origin_errors.then(|| {
                o.consecutive_local_origin_failures
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES)
            }),
            split_external_local_origin_errors: o.split_external_local_origin_errors,
            interval: o
                .interval
                .map(|d| d.to_std())
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_INTERVAL),
            base_ejection_time: base,
            max_ejection_time: base.max(DEFAULT_MAX_EJECTION_TIME),
            max_ejection_percent: if o.max_ejection_percent > 0 {
                o.max_ejection_percent.min(100) as u32
            } else {
                DEFAULT_MAX_EJECTION_PERCENT
            },
            min_health_percent: o.min_health_percent.clamp(0, 100) as u32,
            warnings,
        }
    }
}

trait IntoNonzero {
    fn into_nonzero(self) -> Option<u32>;
}

impl IntoNonzero for u32 {
    fn into_nonzero(self) -> Option<u32> {
        (self > 0).then_some(self)
    }
}

/// What happened to one request on an endpoint, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this HTTP status (a gRPC status already mapped).
    Response(u16),
    /// No connection could be made (refused, unreachable, connect timeout).
    ConnectFailed,
    /// The attempt timed out waiting for the endpoint.
    Timeout,
    /// The connection or stream broke before a response. Envoy reports these as local-origin
    /// connect failures.
    Reset,
}

impl Outcome {
    /// How an attempt counts: a gRPC request's `grpc-status` in the response headers counts as
    /// its HTTP equivalent (Envoy's router does this); a circuit-breaker overflow is not the
    /// endpoint's fault and is not reported (`None`).
    pub fn from_attempt(attempt: &AttemptResult<'_>, grpc_request: bool) -> Option<Outcome> {
        Some(match *attempt {
            AttemptResult::Response { status, headers } => {
                let grpc = grpc_request
                    .then(|| headers.get("grpc-status"))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u32>().ok());
                Outcome::Response(grpc.map_or(status, grpc_to_http_status))
            }
            AttemptResult::ConnectFailure => Outcome::ConnectFailed,
            AttemptResult::PerTryTimeout => Outcome::Timeout,
            AttemptResult::Reset { .. } | AttemptResult::RefusedStream => Outcome::Reset,
            AttemptResult::Overflow => return None,
        })
    }
}

/// Which count ejected an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionReason {
    Consecutive5xx,
    ConsecutiveGatewayErrors,
    ConsecutiveLocalOriginFailures,
}

impl EjectionReason {
    /// The Istio field that set the threshold.
    pub fn field(&self) -> &'static str {
        match self {
            EjectionReason::Consecutive5xx => "consecutive5xxErrors",
            EjectionReason::ConsecutiveGatewayErrors => "consecutiveGatewayErrors",
            EjectionReason::ConsecutiveLocalOriginFailures => "consecutiveLocalOriginFailures",
        }
    }
}

/// An endpoint just ejected: mark it unhealthy in the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    pub endpoint: usize,
    pub reason: EjectionReason,
    /// How long it stays out at least (it returns on the first sweep after that).
    pub duration: Duration,
    /// Times this endpoint has been ejected, this one included.
    pub ejections: u32,
}

/// Lock-free per-endpoint counters.
#[derive(Debug, Default)]
struct Counters {
    five_xx: AtomicU32,
    gateway: AtomicU32,
    local_origin: AtomicU32,
    ejected: AtomicBool,
}

/// Ejection bookkeeping of one endpoint, under the detector's lock.
#[derive(Debug, Clone, Default)]
struct History {
    ejections: u32,
    /// Envoy's `ejectTimeBackoff`: the multiplier of the base ejection time.
    multiplier: u32,
    last_ejection: Option<Instant>,
    last_unejection: Option<Instant>,
    reason: Option<EjectionReason>,
}

#[derive(Debug)]
struct Shared {
    history: Vec<History>,
    active: u32,
}

/// One cluster's outlier detector. See the [module docs](crate::resilience).
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    counters: Vec<Counters>,
    shared: Mutex<Shared>,
    overflows: AtomicU64,
    total_ejections: AtomicU64,
}

impl OutlierDetector {
    /// A detector for a cluster of `endpoints` endpoints (indexes as in the balancer).
    pub fn new(config: OutlierConfig, endpoints: usize) -> OutlierDetector {
        OutlierDetector {
            config,
            counters: (0..endpoints).map(|_| Counters::default()).collect(),
            shared: Mutex::new(Shared {
                history: vec![History::default(); endpoints],
                active: 0,
            }),
            overflows: AtomicU64::new(0),
            total_ejections: AtomicU64::new(0),
        }
    }

    /// The detector for the cluster's next snapshot: `previous[i]` is the index in `self` of
    /// new endpoint `i` (same address), or `None` for a new endpoint. Endpoints that stay keep
    /// their counts, ejection and multiplier, as Envoy keeps the monitors of hosts that remain
    /// after an endpoint update; the new `config` applies from now on.
    pub fn rebuild(&self, config: OutlierConfig, previous: &[Option<usize>]) -> OutlierDetector {
        let next = OutlierDetector::new(config, previous.len());
        let old = self.lock();
        let mut shared = next.lock();
        for (i, p) in previous.iter().enumerate() {
            let (Some(p), Some(new)) = (*p, next.counters.get(i)) else {
                continue;
            };
            let (Some(c), Some(h)) = (self.counters.get(p), old.history.get(p)) else {
                continue;
            };
            let copy = |from: &AtomicU32, to: &AtomicU32| {
                to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
            };
            copy(&c.five_xx, &new.five_xx);
            copy(&c.gateway, &new.gateway);
            copy(&c.local_origin, &new.local_origin);
            let ejected = c.ejected.load(Ordering::Acquire);
            new.ejected.store(ejected, Ordering::Release);
            shared.active += u32::from(ejected);
            if let Some(slot) = shared.history.get_mut(i) {
                *slot = h.clone();
            }
        }
        drop(shared);
        next.total_ejections.store(
            self.total_ejections.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        next.overflows
            .store(self.overflows.load(Ordering::Relaxed), Ordering::Relaxed);
        next
    }

    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Whether the endpoint is ejected now (it stays so until a sweep returns it).
    pub fn is_ejected(&self, endpoint: usize) -> bool {
        self.counters
            .get(endpoint)
            .is_some_and(|c| c.ejected.load(Ordering::Relaxed))
    }

    /// Counts one request's outcome; `Some` when it ejected the endpoint.
    pub fn report(&self, endpoint: usize, outcome: Outcome, now: Instant) -> Option<Ejection> {
        let c = self.counters.get(endpoint)?;
        let split = self.config.split_external_local_origin_errors;
        match outcome {
            Outcome::Response(status) => {
                if split {
                    reset(&c.local_origin);
                }
                self.external(endpoint, c, status, now)
            }
            Outcome::ConnectFailed | Outcome::Reset if !split => {
                self.external(endpoint, c, 503, now)
            }
            Outcome::Timeout if !split => self.external(endpoint, c, 504, now),
            Outcome::ConnectFailed | Outcome::Reset | Outcome::Timeout => {
                let n = increment(&c.local_origin);
                (Some(n) == self.config.consecutive_local_origin)
                    .then(|| {
                        self.try_eject(
                            endpoint,
                            EjectionReason::ConsecutiveLocalOriginFailures,
                            now,
                        )
                    })
                    .flatten()
            }
        }
    }

    /// Envoy's `putHttpResponseCode`.
    fn external(
        &self,
        endpoint: usize,
        c: &Counters,
        status: u16,
        now: Instant,
    ) -> Option<Ejection> {
        if !(500..600).contains(&status) {
            reset(&c.five_xx);
            reset(&c.gateway);
            return None;
        }
        let mut ejection = None;
        if matches!(status, 502..=504) {
            if Some(increment(&c.gateway)) == self.config.consecutive_gateway {
                ejection = self.try_eject(endpoint, EjectionReason::ConsecutiveGatewayErrors, now);
            }
        } else {
            reset(&c.gateway);
        }
        if Some(increment(&c.five_xx)) == self.config.consecutive_5xx && ejection.is_none() {
            ejection = self.try_eject(endpoint, EjectionReason::Consecutive5xx, now);
        }
        ejection
    }

    /// Envoy's `onConsecutiveErrorWorker` + `ejectHost`.
    fn try_eject(&self, endpoint: usize, reason: EjectionReason, now: Instant) -> Option<Ejection> {
        let c = self.counters.get(endpoint)?;
        let mut shared = self.lock();
        // Requests still in flight to an ejected endpoint may finish with errors: ignored, and
        // the count is not reset (the return resets every count).
        if c.ejected.load(Ordering::Acquire) {
            return None;
        }
        // The count that fired starts over whether or not the ejection happens.
        reset(match reason {
            EjectionReason::Consecutive5xx => &c.five_xx,
            EjectionReason::ConsecutiveGatewayErrors => &c.gateway,
            EjectionReason::ConsecutiveLocalOriginFailures => &c.local_origin,
        });
        let shared = &mut *shared;
        let h = shared.history.get_mut(endpoint)?;
        let total = self.counters.len() as f64;
        let share = 100.0 * f64::from(shared.active + 1) / total;
        if share > f64::from(self.config.max_ejection_percent) {
            self.overflows.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        shared.active += 1;
        c.ejected.store(true, Ordering::Release);
        self.total_ejections.fetch_add(1, Ordering::Relaxed);
        let (base, max) = (
            self.config.base_ejection_time,
            self.config.max_ejection_time,
        );
        h.ejections += 1;
        h.last_ejection = Some(now);
        h.reason = Some(reason);
        if base.saturating_mul(h.multiplier) < max.saturating_add(base) {
            h.multiplier += 1;
        }
        Some(Ejection {
            endpoint,
            reason,
            duration: ejection_time(base, max, h.multiplier),
            ejections: h.ejections,
        })
    }

    /// Envoy's interval timer: returns the endpoints whose ejection time has passed (mark them
    /// healthy again), and lowers the multiplier of endpoints that stayed in for an interval.
    pub fn sweep(&self, now: Instant) -> Vec<usize> {
        let (base, max) = (
            self.config.base_ejection_time,
            self.config.max_ejection_time,
        );
        let mut shared = self.lock();
        let mut returned = Vec::new();
        for (i, c) in self.counters.iter().enumerate() {
            let Some(h) = shared.history.get_mut(i) else {
                continue;
            };
            let due = h.last_ejection.is_some_and(|t| {
                now.saturating_duration_since(t) >= ejection_time(base, max, h.multiplier)
            });
            if c.ejected.load(Ordering::Acquire) && due {
                h.last_unejection = Some(now);
                reset(&c.five_xx);
                reset(&c.gateway);
                reset(&c.local_origin);
                c.ejected.store(false, Ordering::Release);
                returned.push(i);
            }
        }
        shared.active = shared.active.saturating_sub(returned.len() as u32);
        for (h, c) in shared.history.iter_mut().zip(&self.counters) {
            let stayed_in = h
                .last_unejection
                .is_some_and(|t| now.saturating_duration_since(t) >= self.config.interval);
            if !c.ejected.load(Ordering::Acquire) && stayed_in && h.multiplier > 0 {
                h.multiplier -= 1;
            }
        }
        returned
    }

    /// Per-endpoint state for the admin `/clusters` page.
    pub fn snapshot(&self, now: Instant) -> OutlierSnapshot {
        let (base, max) = (
            self.config.base_ejection_time,
            self.config.max_ejection_time,
        );
        let shared = self.lock();
        let endpoints = self
            .counters
            .iter()
            .zip(&shared.history)
            .map(|(c, h)| {
                let ejected = c.ejected.load(Ordering::Acquire);
                EndpointOutlierState {
                    ejected,
                    returns_in: h.last_ejection.filter(|_| ejected).map(|t| {
                        (t + ejection_time(base, max, h.multiplier)).saturating_duration_since(now)
                    }),
                    reason: h.reason.filter(|_| ejected),
                    consecutive_5xx: c.five_xx.load(Ordering::Relaxed),
                    consecutive_gateway_errors: c.gateway.load(Ordering::Relaxed),
                    consecutive_local_origin_failures: c.local_origin.load(Ordering::Relaxed),
                    ejections: h.ejections,
                    multiplier: h.multiplier,
                }
            })
            .collect();
        OutlierSnapshot {
            endpoints,
            ejections_active: shared.active,
            ejections_total: self.total_ejections.load(Ordering::Relaxed),
            ejections_overflow: self.overflows.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // The state stays consistent even if a holder panicked: every update is a few stores.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn ejection_time(base: Duration, max: Duration, multiplier: u32) -> Duration {
    base.saturating_mul(multiplier).min(max)
}

fn increment(counter: &AtomicU32) -> u32 {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            Some(n.saturating_add(1))
        })
        .map_or(u32::MAX, |n| n.saturating_add(1))
}

/// Zeroes a count, writing only if it is not zero already (the success path stays read-only).
fn reset(counter: &AtomicU32) {
    if counter.load(Ordering::Relaxed) != 0 {
        counter.store(0, Ordering::Relaxed);
    }
}

/// A cluster's outlier state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSnapshot {
    pub endpoints: Vec<EndpointOutlierState>,
    pub ejections_active: u32,
    /// Ejections so far (Envoy's `ejections_enforced_total`).
    pub ejections_total: u64,
    /// Ejections refused by `maxEjectionPercent` (Envoy's `ejections_overflow`).
    pub ejections_overflow: u64,
}

impl OutlierSnapshot {
    /// The soonest an ejected endpoint may return.
    pub fn next_return(&self) -> Option<Duration> {
        self.endpoints.iter().filter_map(|e| e.returns_in).min()
    }
}

/// One endpoint's outlier state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointOutlierState {
    pub ejected: bool,
    /// When ejected: time until it may return (at the first sweep after).
    pub returns_in: Option<Duration>,
    pub reason: Option<EjectionReason>,
    pub consecutive_5xx: u32,
    pub consecutive_gateway_errors: u32,
    pub consecutive_local_origin_failures: u32,
    /// Times ejected so far.
    pub ejections: u32,
    /// The current multiplier of `baseEjectionTime`.
    pub multiplier: u32,
}

#[cfg(test)]
#[path = "outlier_tests.rs"]
mod tests;

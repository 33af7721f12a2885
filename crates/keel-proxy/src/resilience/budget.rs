//! The cluster's retry circuit breaker: how many retries may be in flight at once.
//!
//! Two Envoy mechanisms, one type. By default Istio sets the `max_retries` threshold from
//! `connectionPool.http.maxRetries` (2^32-1 when unset, i.e. unlimited: Envoy's own default of
//! 3 caused 503s during rolling updates). With `trafficPolicy.retryBudget`, Envoy's
//! `retry_budget` replaces that threshold: concurrent retries may be `percent` of the active
//! plus pending requests, but never fewer than `minRetryConcurrency`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_config::model::networking::destination_rule::TrafficPolicy;

/// `retryBudget.percent` default (the Istio API's documented 20 %).
pub const DEFAULT_BUDGET_PERCENT: f64 = 20.0;
/// `retryBudget.minRetryConcurrency` default.
pub const DEFAULT_MIN_RETRY_CONCURRENCY: u32 = 3;

/// What bounds concurrent retries on a cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryLimit {
    /// `connectionPool.http.maxRetries` (Envoy's `max_retries` threshold).
    MaxRetries(u32),
    /// `retryBudget`: `max(percent % × active requests, min_concurrency)`.
    Budget { percent: f64, min_concurrency: u32 },
}

impl RetryLimit {
    /// From the cluster's merged traffic policy, as istiod's `applyConnectionPool` and
    /// `applyRetryBudget` set the thresholds.
    pub fn from_traffic_policy(policy: Option<&TrafficPolicy>) -> RetryLimit {
        if let Some(b) = policy.and_then(|p| p.retry_budget.as_ref()) {
            return RetryLimit::Budget {
                percent: b
                    .percent
                    .filter(|p| p.is_finite())
                    .unwrap_or(DEFAULT_BUDGET_PERCENT)
                    .clamp(0.0, 100.0),
                min_concurrency: if b.min_retry_concurrency > 0 {
                    b.min_retry_concurrency
                } else {
                    DEFAULT_MIN_RETRY_CONCURRENCY
                },
            };
        }
        let max_retries = policy
            .and_then(|p| p.connection_pool.as_ref())
            .and_then(|c| c.http.as_ref())
            .map(|h| h.max_retries)
            .filter(|m| *m > 0)
            .map_or(u32::MAX, |m| m as u32);
        RetryLimit::MaxRetries(max_retries)
    }

    /// The number of concurrent retries allowed while `active_requests` requests (active plus
    /// pending) are in flight on the cluster.
    pub fn max(&self, active_requests: u64) -> u64 {
        match *self {
            RetryLimit::MaxRetries(m) => u64::from(m),
            RetryLimit::Budget {
                percent,
                min_concurrency,
            } => {
                ((percent / 100.0 * active_requests as f64) as u64).max(u64::from(min_concurrency))
            }
        }
    }
}

/// Concurrent retries of one cluster, shared by every request to it.
#[derive(Debug)]
pub struct RetryBudget {
    limit: RetryLimit,
    active: AtomicU64,
    overflows: AtomicU64,
}

impl RetryBudget {
    pub fn new(limit: RetryLimit) -> RetryBudget {
        RetryBudget {
            limit,
            active: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    pub fn from_traffic_policy(policy: Option<&TrafficPolicy>) -> RetryBudget {
        RetryBudget::new(RetryLimit::from_traffic_policy(policy))
    }

    pub fn limit(&self) -> RetryLimit {
        self.limit
    }

    /// Takes a retry slot if fewer than the limit are in use (Envoy's `canCreate` then `inc`);
    /// `None` counts an overflow. The slot is released when the guard drops.
    pub fn try_acquire(self: &Arc<Self>, active_requests: u64) -> Option<RetryGuard> {
        let max = self.limit.max(active_requests);
        let previous = self.active.fetch_add(1, Ordering::AcqRel);
        if previous >= max {
            self.active.fetch_sub(1, Ordering::AcqRel);
            self.overflows.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(RetryGuard {
            budget: Arc::clone(self),
        })
    }

    /// Retries in flight now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Retries refused so far (Envoy's `upstream_rq_retry_overflow`).
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }
}

/// One retry in flight; frees its slot on drop.
#[derive(Debug)]
pub struct RetryGuard {
    budget: Arc<RetryBudget>,
}

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.budget.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::model::networking::destination_rule::{
        ConnectionPoolSettings, HttpSettings, RetryBudget as RetryBudgetSpec,
    };

    fn policy_with(max_retries: i32, budget: Option<RetryBudgetSpec>) -> TrafficPolicy {
        TrafficPolicy {
            connection_pool: Some(ConnectionPoolSettings {
                http: Some(HttpSettings {
                    max_retries,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            retry_budget: budget,
            ..Default::default()
        }
    }

    #[test]
    fn unset_max_retries_is_unlimited_as_istio_sets_it() {
        assert_eq!(
            RetryLimit::from_traffic_policy(None),
            RetryLimit::MaxRetries(u32::MAX)
        );
        assert_eq!(
            RetryLimit::from_traffic_policy(Some(&policy_with(0, None))),
            RetryLimit::MaxRetries(u32::MAX)
        );
        assert_eq!(
            RetryLimit::from_traffic_policy(Some(&policy_with(4, None))),
            RetryLimit::MaxRetries(4)
        );
    }

    #[test]
    fn a_retry_budget_replaces_max_retries_with_its_defaults() {
        let empty = RetryBudgetSpec::default();
        let limit = RetryLimit::from_traffic_policy(Some(&policy_with(1, Some(empty))));
        assert_eq!(
            limit,
            RetryLimit::Budget {
                percent: 20.0,
                min_concurrency: 3
            }
        );
        // 20 % of 100 active requests, and never below 3.
        assert_eq!(limit.max(100), 20);
        assert_eq!(limit.max(5), 3);
        let set = RetryBudgetSpec {
            percent: Some(50.0),
            min_retry_concurrency: 1,
        };
        let limit = RetryLimit::from_traffic_policy(Some(&policy_with(0, Some(set))));
        assert_eq!(limit.max(10), 5);
        assert_eq!(limit.max(0), 1);
    }

    #[test]
    fn max_retries_bounds_concurrent_retries_and_guards_free_slots() {
        let budget = Arc::new(RetryBudget::new(RetryLimit::MaxRetries(2)));
        let a = budget.try_acquire(0);
        let b = budget.try_acquire(0);
        assert!(a.is_some() && b.is_some());
        assert!(budget.try_acquire(0).is_none());
        assert_eq!((budget.active(), budget.overflows()), (2, 1));
        drop(a);
        assert!(budget.try_acquire(0).is_some());
        drop(b);
        assert_eq!(budget.active(), 0);
    }

    #[test]
    fn the_budget_grows_with_active_requests() {
        let budget = Arc::new(RetryBudget::new(RetryLimit::Budget {
            percent: 20.0,
            min_concurrency: 3,
        }));
        let held: Vec<_> = (0..3).filter_map(|_| budget.try_acquire(10)).collect();
        assert_eq!(held.len(), 3);
        assert!(
            budget.try_acquire(10).is_none(),
            "3 is the floor at 10 active"
        );
        assert!(budget.try_acquire(20).is_some(), "20 % of 20 = 4");
    }
}

//! The resilience settings of one route and one cluster, built once per snapshot and read by
//! the request path (`http::attempts`).

use std::sync::Arc;

use keel_snapshot::{Cluster, RoutePolicy};

use super::{
    CircuitBreakers, FaultPolicy, MirrorPolicy, OutlierConfig, OutlierDetector, PoolLimits,
    RetryPolicy, RouteTimeouts, ShadowHost,
};

/// A route's timeout, retries, fault and mirrors.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePolicies {
    pub retry: RetryPolicy,
    pub fault: FaultPolicy,
    pub mirror: MirrorPolicy,
    pub timeouts: RouteTimeouts,
}

impl RoutePolicies {
    /// The policies of a route with `policy` (the VirtualService's `timeout`, `retries`,
    /// `fault`, `mirror*`). Without `retries` the mesh default applies (2 retries on
    /// connect failures and refused streams, as istiod configures every route). With a fault
    /// the route has no timeout and no retries: Istio's reference says "timeouts or retries
    /// will not be enabled when faults are enabled", and Keel does exactly that.
    pub fn new(policy: Option<&RoutePolicy>) -> RoutePolicies {
        let fault = FaultPolicy::from_route(policy.and_then(|p| p.fault.as_ref()));
        let (retry, timeouts) = if fault.is_active() {
            (RetryPolicy::disabled(), RouteTimeouts::default())
        } else {
            (
                RetryPolicy::from_route(policy.and_then(|p| p.retries.as_ref())),
                RouteTimeouts::from_route(policy),
            )
        };
        RoutePolicies {
            retry,
            fault,
            // The copy's Host is chosen per proxy (`--mirror-host`), not per route.
            mirror: MirrorPolicy::from_route(policy, ShadowHost::Unchanged),
            timeouts,
        }
    }
}

impl RoutePolicies {
    /// What Keel reads differently from what the route says (e.g. a fault without a
    /// percentage applies to no request, as in Istio), to be shown to the user.
    pub fn warnings(&self) -> impl Iterator<Item = &String> {
        self.retry.warnings.iter().chain(&self.fault.warnings)
    }
}

impl Default for RoutePolicies {
    fn default() -> RoutePolicies {
        RoutePolicies::new(None)
    }
}

/// A cluster's circuit breakers and outlier detector.
#[derive(Debug)]
pub struct ClusterPolicies {
    pub breakers: CircuitBreakers,
    /// `None` without `outlierDetection`.
    pub outlier: Option<Arc<OutlierDetector>>,
}

impl ClusterPolicies {
    pub fn new(cluster: &Cluster) -> ClusterPolicies {
        let limits = PoolLimits::from_traffic_policy(cluster.traffic_policy.as_ref());
        ClusterPolicies {
            breakers: CircuitBreakers::new(&cluster.name, limits),
            outlier: OutlierConfig::from_traffic_policy(cluster.traffic_policy.as_ref())
                .map(|c| Arc::new(OutlierDetector::new(c, cluster.endpoints.len()))),
        }
    }

    /// The policies for the cluster's next snapshot: circuit breakers stay while their limits
    /// are unchanged (requests in flight stay counted), and endpoints that remain (same
    /// address) keep their outlier state.
    pub fn rebuild(&self, previous: &Cluster, next: &Cluster) -> ClusterPolicies {
        let limits = PoolLimits::from_traffic_policy(next.traffic_policy.as_ref());
        let breakers = if *self.breakers.limits() == limits {
            self.breakers.clone()
        } else {
            CircuitBreakers::new(&next.name, limits)
        };
        let outlier = OutlierConfig::from_traffic_policy(next.traffic_policy.as_ref()).map(|c| {
            let map: Vec<Option<usize>> = next
                .endpoints
                .iter()
                .map(|e| {
                    previous
                        .endpoints
                        .iter()
                        .position(|p| p.address == e.address)
                })
                .collect();
            Arc::new(match &self.outlier {
                Some(old) => old.rebuild(c, &map),
                None => OutlierDetector::new(c, next.endpoints.len()),
            })
        });
        ClusterPolicies { breakers, outlier }
    }
}

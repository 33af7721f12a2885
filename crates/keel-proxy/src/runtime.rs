//! The live configuration: a snapshot plus what the request path derives from it (compiled
//! route tables, balancers). Built off the request path and swapped atomically; requests in
//! flight keep the version they started with.

use std::collections::HashMap;
use std::sync::Arc;

use keel_snapshot::{Cluster, Endpoint, Snapshot};

use crate::balance::Balancer;
use crate::resilience::ClusterPolicies;
use crate::route::CompiledTable;
use crate::telemetry::{ProxyIdentity, ServiceRef};

/// Maps looked up on every request: foldhash (seeded per process) instead of SipHash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A cluster ready for picking endpoints.
pub struct ClusterRuntime {
    pub cluster: Cluster,
    /// `cluster.name`, shared with every request's telemetry record without copying.
    pub name: Arc<str>,
    pub balancer: Balancer,
    /// The destination service for telemetry, built once rather than per request.
    pub service: Arc<ServiceRef>,
    /// The workload behind each endpoint (by endpoint index), where the registry knows it.
    pub peers: Vec<Option<Arc<ProxyIdentity>>>,
    /// The registry knows a workload behind some endpoint: a mesh service (see
    /// [`ClusterRuntime::in_mesh`]), decided once rather than per request.
    in_mesh: bool,
    /// Circuit breakers and outlier detection (DestinationRule `connectionPool`,
    /// `outlierDetection`).
    pub policies: ClusterPolicies,
}

impl ClusterRuntime {
    pub fn new(cluster: Cluster, balancer: Balancer) -> ClusterRuntime {
        let policies = ClusterPolicies::new(&cluster);
        if let Some(o) = &policies.outlier {
            for w in &o.config().warnings {
                tracing::warn!(cluster = %cluster.name, "{w}");
            }
        }
        ClusterRuntime::with_policies(cluster, balancer, policies)
    }

    fn with_policies(
        cluster: Cluster,
        balancer: Balancer,
        policies: ClusterPolicies,
    ) -> ClusterRuntime {
        let service = Arc::new(ServiceRef {
            host: cluster.service.clone(),
            name: cluster
                .service
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string(),
            namespace: cluster.namespace.clone(),
        });
        let peers: Vec<_> = cluster.endpoints.iter().map(peer_identity).collect();
        let in_mesh = peers.iter().any(Option::is_some);
        // Endpoints that outlier detection still holds ejected stay out of the new balancer.
        if let Some(outlier) = &policies.outlier {
            for i in 0..cluster.endpoints.len() {
                if outlier.is_ejected(i) {
                    balancer.set_healthy(i, false);
                }
            }
        }
        ClusterRuntime {
            name: cluster.name.as_str().into(),
            cluster,
            balancer,
            service,
            peers,
            in_mesh,
            policies,
        }
    }

    /// The workload behind endpoint `index`, if known.
    pub fn peer(&self, index: usize) -> Option<Arc<ProxyIdentity>> {
        self.peers.get(index).cloned().flatten()
    }

    /// Whether the registry knows a workload behind any endpoint: a mesh service, which
    /// gets this proxy's peer metadata (an external one doesn't).
    pub fn in_mesh(&self) -> bool {
        self.in_mesh
    }
}

/// Outlier detection's interval timer for `cluster`: every `interval`, endpoints whose
/// ejection time has passed go back into the balancer. The task ends once the cluster is
/// replaced by another snapshot and no request holds it any more.
fn spawn_sweeper(cluster: Arc<ClusterRuntime>) -> Arc<ClusterRuntime> {
    let Some(outlier) = &cluster.policies.outlier else {
        return cluster;
    };
    // Snapshots built outside a runtime (some tests) have no timer to run.
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return cluster;
    };
    let interval = outlier
        .config()
        .interval
        .max(std::time::Duration::from_millis(1));
    let weak = Arc::downgrade(&cluster);
    handle.spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let Some(cluster) = weak.upgrade() else {
                break;
            };
            if let Some(outlier) = &cluster.policies.outlier {
                for i in outlier.sweep(tokio::time::Instant::now().into_std()) {
                    cluster.balancer.set_healthy(i, true);
                    tracing::info!(cluster = %cluster.name, endpoint = i, "outlier detection returned an endpoint");
                }
            }
        }
    });
    cluster
}

fn peer_identity(e: &Endpoint) -> Option<Arc<ProxyIdentity>> {
    if e.workload.is_empty() && e.labels.is_empty() {
        return None;
    }
    let label = |k: &str| e.labels.get(k).cloned().unwrap_or_default();
    Some(Arc::new(ProxyIdentity {
        workload: e.workload.clone(),
        namespace: e.namespace.clone(),
        app: label("app"),
        version: label("version"),
        canonical_service: label("service.istio.io/canonical-name"),
        canonical_revision: label("service.istio.io/canonical-revision"),
        ..Default::default()
    }))
}

pub struct Runtime {
    pub snapshot: Arc<Snapshot>,
    /// Route tables by listener name.
    pub tables: FastMap<String, Arc<CompiledTable>>,
    pub clusters: FastMap<String, Arc<ClusterRuntime>>,
    /// AuthorizationPolicies by listener name (only listeners that have some).
    pub authz: FastMap<String, Arc<keel_snapshot::authz::WorkloadPolicies>>,
    /// RequestAuthentication's JWT verifiers by listener name (only listeners that have rules).
    pub jwt: FastMap<String, Arc<crate::jwt::JwtVerifier>>,
}

impl Runtime {
    /// Prepares `snapshot`, reusing the balancers (and their load counters) of clusters
    /// that did not change since `previous`.
    pub fn new(snapshot: Snapshot, previous: Option<&Runtime>, locality: &str) -> Runtime {
        let clusters: FastMap<String, Arc<ClusterRuntime>> = snapshot
            .clusters
            .iter()
            .map(|(name, c)| {
                let old = previous.and_then(|p| p.clusters.get(name));
                let rt = match old {
                    Some(old) if old.cluster == *c => old.clone(),
                    // Changed cluster: endpoints that stay keep their counters and health.
                    Some(old) => spawn_sweeper(Arc::new(ClusterRuntime::with_policies(
                        c.clone(),
                        old.balancer.rebuild(c, locality),
                        old.policies.rebuild(&old.cluster, c),
                    ))),
                    None => spawn_sweeper(Arc::new(ClusterRuntime::new(
                        c.clone(),
                        Balancer::new(c, locality),
                    ))),
                };
                (name.clone(), rt)
            })
            .collect();
        // After the clusters: routes hold their destinations' clusters.
        let tables = snapshot
            .listeners
            .iter()
            .filter_map(|l| {
                l.http
                    .as_ref()
                    .map(|t| (l.name.clone(), Arc::new(CompiledTable::new(t, &clusters))))
            })
            .collect();
        let authz = snapshot
            .listeners
            .iter()
            .filter_map(|l| Some((l.name.clone(), Arc::new(l.authz.clone()?))))
            .collect();
        let jwt = snapshot
            .listeners
            .iter()
            .filter_map(|l| {
                let rules = l.jwt.as_ref().filter(|j| !j.rules.is_empty())?;
                Some((
                    l.name.clone(),
                    Arc::new(crate::jwt::JwtVerifier::new(rules)),
                ))
            })
            .collect();
        Runtime {
            snapshot: Arc::new(snapshot),
            tables,
            clusters,
            authz,
            jwt,
        }
    }

    pub fn empty() -> Runtime {
        Runtime {
            snapshot: Arc::new(Snapshot::default()),
            tables: FastMap::default(),
            clusters: FastMap::default(),
            authz: FastMap::default(),
            jwt: FastMap::default(),
        }
    }
}

//! The live configuration: a snapshot plus what the request path derives from it (compiled
//! route tables, balancers). Built off the request path and swapped atomically; requests in
//! flight keep the version they started with.

use std::collections::HashMap;
use std::sync::Arc;

use keel_snapshot::{Cluster, Snapshot};

use crate::balance::Balancer;
use crate::route::CompiledTable;

/// A cluster ready for picking endpoints.
pub struct ClusterRuntime {
    pub cluster: Cluster,
    pub balancer: Balancer,
}

pub struct Runtime {
    pub snapshot: Arc<Snapshot>,
    /// Route tables by listener name.
    pub tables: HashMap<String, Arc<CompiledTable>>,
    pub clusters: HashMap<String, Arc<ClusterRuntime>>,
}

impl Runtime {
    /// Prepares `snapshot`, reusing the balancers (and their load counters) of clusters
    /// that did not change since `previous`.
    pub fn new(snapshot: Snapshot, previous: Option<&Runtime>, locality: &str) -> Runtime {
        let tables = snapshot
            .listeners
            .iter()
            .filter_map(|l| {
                l.http
                    .as_ref()
                    .map(|t| (l.name.clone(), Arc::new(CompiledTable::new(t))))
            })
            .collect();
        let clusters = snapshot
            .clusters
            .iter()
            .map(|(name, c)| {
                let old = previous.and_then(|p| p.clusters.get(name));
                let rt = match old {
                    Some(old) if old.cluster == *c => old.clone(),
                    // Changed cluster: endpoints that stay keep their counters and health.
                    Some(old) => Arc::new(ClusterRuntime {
                        cluster: c.clone(),
                        balancer: old.balancer.rebuild(c, locality),
                    }),
                    None => Arc::new(ClusterRuntime {
                        cluster: c.clone(),
                        balancer: Balancer::new(c, locality),
                    }),
                };
                (name.clone(), rt)
            })
            .collect();
        Runtime {
            snapshot: Arc::new(snapshot),
            tables,
            clusters,
        }
    }

    pub fn empty() -> Runtime {
        Runtime {
            snapshot: Arc::new(Snapshot::default()),
            tables: HashMap::new(),
            clusters: HashMap::new(),
        }
    }
}

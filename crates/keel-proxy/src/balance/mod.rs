//! Load balancing over a cluster's endpoints. (Interim round robin; the full Istio policy
//! set lands from the `balance` branch with the same API.)

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use keel_snapshot::{Cluster, EndpointAddress};

pub struct Balancer {
    endpoints: Vec<(EndpointAddress, Arc<AtomicU64>, String, u32)>,
    next: AtomicUsize,
    /// PASSTHROUGH: the pick is the caller's original destination.
    passthrough: bool,
}

pub struct PickContext<'a> {
    pub headers: &'a http::HeaderMap,
    pub source_ip: Option<IpAddr>,
    pub query: Option<&'a str>,
    pub exclude: &'a [usize],
    pub original_dst: Option<SocketAddr>,
}

pub struct Pick {
    pub index: usize,
    pub address: EndpointAddress,
    pub guard: ActiveRequest,
    pub set_cookie: Option<String>,
}

pub struct ActiveRequest(Arc<AtomicU64>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct EndpointStats {
    pub address: String,
    pub weight: u32,
    pub locality: String,
    pub active_requests: u64,
    pub total_requests: u64,
}

impl Balancer {
    pub fn new(cluster: &Cluster, _local_locality: &str) -> Balancer {
        Balancer {
            endpoints: cluster
                .endpoints
                .iter()
                .map(|e| {
                    (
                        e.address.clone(),
                        Arc::new(AtomicU64::new(0)),
                        e.locality.clone(),
                        e.weight,
                    )
                })
                .collect(),
            next: AtomicUsize::new(0),
            passthrough: cluster.lb == keel_snapshot::LbPolicy::Passthrough,
        }
    }

    pub fn pick(&self, ctx: &PickContext<'_>) -> Option<Pick> {
        if self.passthrough {
            return ctx.original_dst.map(|dst| Pick {
                index: usize::MAX,
                address: EndpointAddress::Socket(dst),
                guard: ActiveRequest(Arc::new(AtomicU64::new(1))),
                set_cookie: None,
            });
        }
        if self.endpoints.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut index = n % self.endpoints.len();
        for k in 0..self.endpoints.len() {
            let i = (n + k) % self.endpoints.len();
            if !ctx.exclude.contains(&i) {
                index = i;
                break;
            }
        }
        let (address, active, _, _) = &self.endpoints[index];
        active.fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            index,
            address: address.clone(),
            guard: ActiveRequest(active.clone()),
            set_cookie: None,
        })
    }

    pub fn endpoint_stats(&self) -> Vec<EndpointStats> {
        self.endpoints
            .iter()
            .map(|(a, active, loc, w)| EndpointStats {
                address: a.to_string(),
                weight: *w,
                locality: loc.clone(),
                active_requests: active.load(Ordering::Relaxed),
                total_requests: 0,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

//! Load balancing: which endpoint of a cluster serves a request, with Istio/Envoy semantics.
//!
//! A [`Balancer`] is built once per snapshot per cluster and shared by every connection
//! (`Arc<Balancer>`; it is `Send + Sync`). A pick takes no lock: counters are atomics and
//! everything else was computed when the balancer was built.
//!
//! A pick runs in three steps, each in its own file:
//!
//! 1. **Priority level** (`locality.rs`): Istio's locality failover puts the proxy's own
//!    subzone, zone, region and the rest into priority levels; Envoy sends everything to the
//!    first level until its healthy share (× 1.4 overprovisioning) drops, then spills the
//!    difference to the next. With `distribute`, one level whose localities carry weights.
//! 2. **Host** in that level: `group.rs` for ROUND_ROBIN (smooth weighted, deterministic order),
//!    RANDOM (weighted) and LEAST_REQUEST (power of two choices on in-flight requests);
//!    `consistent.rs` for ring hash and Maglev tables, keyed by the request's hash from
//!    `request_hash.rs` (header, cookie, source IP or query parameter; XXH64 like Envoy).
//! 3. **Accounting**: the [`Pick`] carries an [`ActiveRequest`] guard that counts the request as
//!    in flight on the endpoint until dropped; LEAST_REQUEST reads those counts.
//!
//! PASSTHROUGH skips all of it and returns the request's original destination.
//!
//! Health: every endpoint has a healthy flag ([`Balancer::set_healthy`], for outlier detection)
//! that picks respect; Envoy's panic threshold (Istio: `outlierDetection.minHealthPercent`,
//! 0 by default, which disables it) decides when a level balances over unhealthy hosts too.
//!
//! ```
//! use keel_proxy::balance::{Balancer, PickContext};
//! use keel_snapshot::{Cluster, Endpoint, EndpointAddress, LbPolicy, UpstreamProtocol};
//!
//! let endpoint = |ip: &str, weight| Endpoint {
//!     address: EndpointAddress::Socket(ip.parse().unwrap()),
//!     labels: Default::default(),
//!     locality: "us-east/a".into(),
//!     weight,
//!     workload: String::new(),
//!     namespace: String::new(),
//!     identity: String::new(),
//!     mtls: false,
//! };
//! let cluster = Cluster {
//!     name: "outbound|80||web.default.svc.cluster.local".into(),
//!     service: "web.default.svc.cluster.local".into(),
//!     port: 80,
//!     subset: String::new(),
//!     namespace: "default".into(),
//!     lb: LbPolicy::RoundRobin,
//!     locality_lb: None,
//!     protocol: UpstreamProtocol::Http1,
//!     endpoints: vec![endpoint("10.0.0.1:80", 3), endpoint("10.0.0.2:80", 1)],
//!     traffic_policy: None,
//!     client_credential: None,
//! };
//! let balancer = Balancer::new(&cluster, "us-east/a/1");
//! let headers = http::HeaderMap::new();
//! let pick = balancer.pick(&PickContext::new(&headers)).unwrap();
//! assert_eq!(balancer.endpoint_stats()[pick.index].active_requests, 1);
//! drop(pick.guard);
//! assert_eq!(balancer.endpoint_stats()[pick.index].active_requests, 0);
//! ```

mod consistent;
mod group;
mod level;
mod locality;
mod request_hash;
mod rng;
mod xxhash;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use keel_snapshot::{Cluster, EndpointAddress, LbPolicy};

use group::{Group, Hosts, Simple};
use level::{EndpointFacts, Level, TableKind};
use locality::{LevelHealth, PriorityLoad};
use request_hash::KeySource;
use rng::SplitMix;

/// Envoy's default healthy panic threshold, used when no outlier detection is configured.
const DEFAULT_PANIC_THRESHOLD: u32 = 50;

/// Chooses endpoints of one cluster. See the [module docs](self).
#[derive(Debug)]
pub struct Balancer {
    policy: Policy,
    slots: Vec<Slot>,
    /// Priority levels, highest first (one level unless locality failover applies).
    levels: Vec<Level>,
    /// Percentage of healthy hosts under which a level balances over all of them.
    panic_threshold: u32,
    /// Endpoints currently unhealthy (0 = the fast path: all traffic to level 0).
    unhealthy: AtomicU32,
    rng: SplitMix,
}

/// What the caller knows about the request.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    pub headers: &'a http::HeaderMap,
    pub source_ip: Option<IpAddr>,
    /// The request's query string (without `?`), for `httpQueryParameterName` hashing.
    pub query: Option<&'a str>,
    /// Endpoint indexes to avoid (retries prefer other hosts); ignored if it would leave none.
    pub exclude: &'a [usize],
    /// For PASSTHROUGH: where the caller wanted to go.
    pub original_dst: Option<SocketAddr>,
    /// A retry with `retryRemoteLocalities`: prefer a priority level (locality) that holds
    /// none of the `exclude`d endpoints, as Envoy's `previous_priorities` retry priority does.
    pub other_levels: bool,
}

impl<'a> PickContext<'a> {
    /// A context with only headers (no source IP, query, exclusions or original destination).
    pub fn new(headers: &'a http::HeaderMap) -> PickContext<'a> {
        PickContext {
            headers,
            source_ip: None,
            query: None,
            exclude: &[],
            original_dst: None,
            other_levels: false,
        }
    }
}

/// The chosen endpoint.
#[derive(Debug)]
pub struct Pick {
    /// Index into the cluster's endpoints; `usize::MAX` for PASSTHROUGH.
    pub index: usize,
    /// As configured: a `Dns` address is returned as is, for the caller to resolve.
    pub address: EndpointAddress,
    /// Counts the request as active on the endpoint until dropped (LEAST_REQUEST uses it).
    pub guard: ActiveRequest,
    /// For cookie hashing when the request had no cookie: the full `Set-Cookie` value to add to
    /// the response (`name=value; Path=/p; Max-Age=N; HttpOnly`), like Envoy does with a ttl.
    pub set_cookie: Option<String>,
}

/// One request in flight on an endpoint; decrements the endpoint's active count on drop.
#[derive(Debug)]
pub struct ActiveRequest {
    counters: Option<Arc<Counters>>,
}

impl ActiveRequest {
    fn start(counters: &Arc<Counters>) -> ActiveRequest {
        counters.active.fetch_add(1, Ordering::Relaxed);
        counters.total.fetch_add(1, Ordering::Relaxed);
        ActiveRequest {
            counters: Some(Arc::clone(counters)),
        }
    }

    /// A guard that counts nothing (PASSTHROUGH has no endpoint to count on).
    pub fn untracked() -> ActiveRequest {
        ActiveRequest { counters: None }
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        if let Some(c) = &self.counters {
            c.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One endpoint as the admin `/clusters` page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    pub address: String,
    pub weight: u32,
    pub locality: String,
    pub active_requests: u64,
    pub total_requests: u64,
    /// Whether picks may choose it (outlier detection clears this).
    pub healthy: bool,
}

#[derive(Debug)]
enum Policy {
    Simple(Simple),
    Hash(KeySource),
    Passthrough,
}

/// Request counts of one endpoint, shared with the balancers of later snapshots (see
/// [`Balancer::rebuild`]) and with the guards of requests in flight.
#[derive(Debug, Default)]
struct Counters {
    active: AtomicU64,
    total: AtomicU64,
}

#[derive(Debug)]
struct Slot {
    address: EndpointAddress,
    weight: u32,
    locality: String,
    healthy: AtomicBool,
    counters: Arc<Counters>,
    /// `(level, group)`; `None` when locality `distribute` sends it no traffic.
    place: Option<(usize, usize)>,
}

impl Balancer {
    /// Builds the balancer of `cluster` for a proxy at `local_locality`
    /// (`region/zone/subzone`, "" when unknown — then `cluster.locality_lb.local` is used).
    pub fn new(cluster: &Cluster, local_locality: &str) -> Balancer {
        Balancer::build(cluster, local_locality, rand::random(), None)
    }

    /// Like [`Balancer::new`] with a fixed random seed: the same picks every run (tests).
    pub fn seeded(cluster: &Cluster, local_locality: &str, seed: u64) -> Balancer {
        Balancer::build(cluster, local_locality, seed, None)
    }

    /// The balancer for the next snapshot of this cluster. Endpoints whose address is unchanged
    /// keep their request counters (so requests still in flight keep counting for
    /// LEAST_REQUEST) and their health.
    pub fn rebuild(&self, cluster: &Cluster, local_locality: &str) -> Balancer {
        Balancer::build(cluster, local_locality, self.rng.next_u64(), Some(self))
    }

    fn build(cluster: &Cluster, local: &str, seed: u64, previous: Option<&Balancer>) -> Balancer {
        let rng = SplitMix::new(seed);
        // Weight 0 is not valid in EDS; Istio leaves it unset, which Envoy reads as 1.
        let weights: Vec<u32> = cluster.endpoints.iter().map(|e| e.weight.max(1)).collect();
        let (layout, panic_threshold) = locality_of(cluster, local, &weights);
        let mut slots = slots_of(cluster, &weights, previous);
        for (l, specs) in layout.levels.iter().enumerate() {
            for (g, spec) in specs.iter().enumerate() {
                for &e in &spec.members {
                    slots[e].place = Some((l, g));
                }
            }
        }
        let (policy, table) = match &cluster.lb {
            LbPolicy::LeastRequest => (Policy::Simple(Simple::LeastRequest), None),
            LbPolicy::RoundRobin => (Policy::Simple(Simple::RoundRobin), None),
            LbPolicy::Random => (Policy::Simple(Simple::Random), None),
            LbPolicy::Passthrough => (Policy::Passthrough, None),
            LbPolicy::ConsistentHash {
                key,
                maglev,
                table_size,
            } => {
                let table = if *maglev {
                    TableKind::Maglev { size: *table_size }
                } else {
                    TableKind::Ring {
                        min_size: *table_size,
                    }
                };
                (Policy::Hash(KeySource::new(key)), Some(table))
            }
        };
        let facts = EndpointFacts {
            weights: &weights,
            healthy: &|e| slots[e].healthy.load(Ordering::Relaxed),
            key: &|e| slots[e].address.to_string(),
        };
        let levels = layout
            .levels
            .iter()
            .map(|specs| Level::new(specs, &facts, table, layout.locality_weighted, &rng))
            .collect();
        let unhealthy = slots
            .iter()
            .filter(|s| !s.healthy.load(Ordering::Relaxed))
            .count();
        Balancer {
            policy,
            slots,
            levels,
            panic_threshold,
            unhealthy: AtomicU32::new(unhealthy as u32),
            rng,
        }
    }

    /// Chooses an endpoint; `None` when the cluster has no endpoints (or none left after
    /// `exclude`), or none is healthy and the panic threshold is 0.
    pub fn pick(&self, ctx: &PickContext<'_>) -> Option<Pick> {
        let (draw, set_cookie) = match &self.policy {
            Policy::Passthrough => {
                return ctx.original_dst.map(|dst| Pick {
                    index: usize::MAX,
                    address: EndpointAddress::Socket(dst),
                    guard: ActiveRequest::untracked(),
                    set_cookie: None,
                });
            }
            // No key in the request: a random point on the table, as Envoy does.
            Policy::Hash(key) => {
                let hashed = key.hash(ctx, &self.rng);
                (
                    hashed.hash.unwrap_or_else(|| self.rng.next_u64()),
                    hashed.set_cookie,
                )
            }
            Policy::Simple(_) => (self.rng.next_u64(), None),
        };
        let index = self.choose(draw, ctx.exclude, ctx.other_levels)?;
        let slot = &self.slots[index];
        Some(Pick {
            index,
            address: slot.address.clone(),
            guard: ActiveRequest::start(&slot.counters),
            set_cookie,
        })
    }

    /// Priority level first (by `draw`, so a hash keeps its level), then a host in it.
    fn choose(&self, draw: u64, exclude: &[usize], other_levels: bool) -> Option<usize> {
        if self.levels.is_empty() {
            return None;
        }
        let load = self.priority_load();
        let mut level = load.choose(draw).min(self.levels.len() - 1);
        if other_levels && !exclude.is_empty() {
            let tried = |l: usize| {
                exclude.iter().any(|&e| {
                    self.slots
                        .get(e)
                        .and_then(|s| s.place)
                        .is_some_and(|p| p.0 == l)
                })
            };
            if tried(level)
                && let Some(untried) = (0..self.levels.len()).find(|&l| {
                    !tried(l)
                        && self.has_candidates(
                            l,
                            &Usable {
                                slots: &self.slots,
                                healthy_only: true,
                                exclude: &[],
                            },
                        )
                })
            {
                level = untried;
            }
        }
        let usable = Usable {
            slots: &self.slots,
            healthy_only: !load.panic[level],
            exclude,
        };
        if !exclude.is_empty()
            && let Some(e) = self.choose_in_level(level, draw, &usable)
        {
            return Some(e);
        }
        let usable = Usable {
            exclude: &[],
            ..usable
        };
        if let Some(e) = self.choose_in_level(level, draw, &usable) {
            return Some(e);
        }
        // Health changed since the load was computed: any healthy host, closest level first.
        let usable = Usable {
            healthy_only: true,
            ..usable
        };
        (0..self.levels.len())
            .filter(|&l| l != level)
            .find_map(|l| self.choose_in_level(l, draw, &usable))
    }

    fn priority_load(&self) -> PriorityLoad {
        if self.unhealthy.load(Ordering::Relaxed) == 0 {
            return PriorityLoad::ALL_HEALTHY;
        }
        let mut health = [LevelHealth::default(); locality::MAX_LEVELS];
        for (h, level) in health.iter_mut().zip(&self.levels) {
            *h = LevelHealth {
                healthy: level.healthy.load(Ordering::Relaxed),
                total: level.total,
            };
        }
        locality::priority_load(
            &health[..self.levels.len().min(locality::MAX_LEVELS)],
            self.panic_threshold,
        )
    }

    fn choose_in_level(&self, l: usize, draw: u64, usable: &Usable<'_>) -> Option<usize> {
        let level = &self.levels[l];
        if !self.has_candidates(l, usable) {
            return None;
        }
        match (&self.policy, &level.table) {
            (Policy::Hash(_), Some(table)) => table.find(draw, &|e| usable.usable(e)),
            (Policy::Simple(policy), _) => {
                let first = self.choose_group(level, usable.healthy_only);
                std::iter::once(first)
                    .chain((0..level.groups.len()).filter(|&g| g != first))
                    .find_map(|g| {
                        let group = &level.groups[g];
                        let filtered = (usable.healthy_only
                            && (group.healthy.load(Ordering::Relaxed) as usize) < group.len())
                            || usable
                                .exclude
                                .iter()
                                .any(|&e| self.slots.get(e).and_then(|s| s.place) == Some((l, g)));
                        group.pick(*policy, usable, filtered, &self.rng)
                    })
            }
            _ => None,
        }
    }

    /// Whether level `l` has a usable endpoint, from counters (no scan of a 65537-entry table to
    /// find out that a retry has excluded every host).
    fn has_candidates(&self, l: usize, usable: &Usable<'_>) -> bool {
        let level = &self.levels[l];
        let available = if usable.healthy_only {
            level.healthy.load(Ordering::Relaxed)
        } else {
            level.total
        };
        let excluded = usable
            .exclude
            .iter()
            .enumerate()
            .filter(|&(i, e)| !usable.exclude[..i].contains(e))
            .filter(|&(_, &e)| {
                self.slots.get(e).is_some_and(|s| {
                    s.place.is_some_and(|(sl, _)| sl == l)
                        && (!usable.healthy_only || s.healthy.load(Ordering::Relaxed))
                })
            })
            .count();
        available as usize > excluded
    }

    /// With locality weights, a locality at random by weight × availability (Envoy's effective
    /// locality weight: `min(1, 1.4 × healthy / total)`; all hosts count in panic mode).
    fn choose_group(&self, level: &Level, healthy_only: bool) -> usize {
        if level.groups.len() < 2 {
            return 0;
        }
        let effective = |g: &Group| -> u64 {
            if !healthy_only {
                return g.locality_weight;
            }
            let available =
                u64::from(g.healthy.load(Ordering::Relaxed)) * locality::OVERPROVISIONING_PERCENT;
            let total = 100 * g.len() as u64;
            g.locality_weight * available.min(total) / total.max(1)
        };
        let sum: u64 = level.groups.iter().map(effective).sum();
        let mut point = self.rng.below(sum);
        for (i, g) in level.groups.iter().enumerate() {
            let w = effective(g);
            if point < w {
                return i;
            }
            point -= w;
        }
        0
    }

    /// Marks an endpoint healthy or not (outlier detection); `true` if that changed anything.
    pub fn set_healthy(&self, index: usize, healthy: bool) -> bool {
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        if slot.healthy.swap(healthy, Ordering::AcqRel) == healthy {
            return false;
        }
        let adjust = |counter: &AtomicU32, up: bool| {
            if up {
                counter.fetch_add(1, Ordering::AcqRel);
            } else {
                counter.fetch_sub(1, Ordering::AcqRel);
            }
        };
        if let Some((l, g)) = slot.place {
            adjust(&self.levels[l].healthy, healthy);
            adjust(&self.levels[l].groups[g].healthy, healthy);
        }
        adjust(&self.unhealthy, !healthy);
        true
    }

    pub fn is_healthy(&self, index: usize) -> bool {
        self.slots
            .get(index)
            .is_some_and(|s| s.healthy.load(Ordering::Relaxed))
    }

    /// Snapshot of every endpoint for the admin `/clusters` page.
    pub fn endpoint_stats(&self) -> Vec<EndpointStats> {
        self.slots
            .iter()
            .map(|s| EndpointStats {
                address: s.address.to_string(),
                weight: s.weight,
                locality: s.locality.clone(),
                active_requests: s.counters.active.load(Ordering::Relaxed),
                total_requests: s.counters.total.load(Ordering::Relaxed),
                healthy: s.healthy.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Number of endpoints (PASSTHROUGH clusters usually have none and still pick).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The cluster's priority levels and panic threshold, from its locality settings and outlier
/// detection as istiod would apply them.
fn locality_of(cluster: &Cluster, local: &str, weights: &[u32]) -> (locality::Layout, u32) {
    let traffic = cluster.traffic_policy.as_ref();
    let outlier = traffic.and_then(|t| t.outlier_detection.as_ref());
    let disabled = traffic
        .and_then(|t| t.load_balancer.as_ref())
        .and_then(|lb| lb.locality_lb_setting.as_ref())
        .and_then(|s| s.enabled)
        == Some(false);
    let local = match (&cluster.locality_lb, local) {
        (Some(l), "") => l.local.as_str(),
        _ => local,
    };
    let setting = cluster.locality_lb.as_ref().filter(|_| !disabled);
    let failover = outlier.is_some() && !disabled;
    let layout = locality::layout(&cluster.endpoints, weights, local, setting, failover);
    let panic_threshold = outlier.map_or(DEFAULT_PANIC_THRESHOLD, |o| {
        o.min_health_percent.clamp(0, 100) as u32
    });
    (layout, panic_threshold)
}

/// One slot per endpoint; counters and health carried over from `previous` by address.
fn slots_of(cluster: &Cluster, weights: &[u32], previous: Option<&Balancer>) -> Vec<Slot> {
    let before: HashMap<&EndpointAddress, &Slot> = previous
        .map(|p| p.slots.iter().map(|s| (&s.address, s)).collect())
        .unwrap_or_default();
    cluster
        .endpoints
        .iter()
        .zip(weights)
        .map(|(ep, &weight)| {
            let old = before.get(&ep.address);
            Slot {
                address: ep.address.clone(),
                weight,
                locality: ep.locality.clone(),
                healthy: AtomicBool::new(old.is_none_or(|s| s.healthy.load(Ordering::Relaxed))),
                counters: old.map(|s| Arc::clone(&s.counters)).unwrap_or_default(),
                place: None,
            }
        })
        .collect()
}

/// Which endpoints a pick may take: healthy ones (unless in panic), not excluded.
struct Usable<'a> {
    slots: &'a [Slot],
    healthy_only: bool,
    exclude: &'a [usize],
}

impl Hosts for Usable<'_> {
    fn usable(&self, e: usize) -> bool {
        (!self.healthy_only || self.slots[e].healthy.load(Ordering::Relaxed))
            && !self.exclude.contains(&e)
    }

    fn active(&self, e: usize) -> u64 {
        self.slots[e].counters.active.load(Ordering::Relaxed)
    }
}

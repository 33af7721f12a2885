//! Picking one host inside a group of endpoints: round robin, random and least request, all
//! weighted, all lock-free.
//!
//! A [`Group`] is built once per snapshot. Picks read it through a [`Hosts`] view that says which
//! endpoints are usable right now (healthy, not excluded by a retry) and how many requests each
//! has in flight. When every member is usable the pick is O(1) or O(log n); otherwise it runs
//! over the usable members only (O(n), the rare path of retries and ejections).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::rng::SplitMix;

/// The simple policies (consistent hashing has its own tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simple {
    RoundRobin,
    Random,
    LeastRequest,
}

/// What a pick needs to know about endpoints (by endpoint index) at this moment.
pub trait Hosts {
    /// Healthy enough for this pick and not excluded.
    fn usable(&self, endpoint: usize) -> bool;
    /// Requests in flight.
    fn active(&self, endpoint: usize) -> u64;
}

/// Schedules longer than this are scaled down (the weights' ratios are kept to within
/// 1 / `MAX_SCHEDULE` of the total).
const MAX_SCHEDULE: u64 = 4096;

/// Endpoints balanced together.
#[derive(Debug)]
pub struct Group {
    /// Endpoint indexes.
    pub members: Vec<usize>,
    weights: Vec<u32>,
    /// Prefix sums of `weights`; empty when all weights are equal.
    cumulative: Vec<u64>,
    /// Weighted round-robin order (member positions); empty when all weights are equal.
    schedule: Vec<u32>,
    cursor: AtomicUsize,
    /// Locality weight (distribute), 0 when the level has none.
    pub locality_weight: u64,
    /// Members currently healthy.
    pub healthy: AtomicU32,
}

impl Group {
    /// `weights` are per member and at least 1. `start` offsets the round-robin cursor so that
    /// proxies that load the same snapshot do not all begin with the same host (Envoy
    /// randomises its start the same way).
    pub fn new(
        members: Vec<usize>,
        weights: Vec<u32>,
        locality_weight: u64,
        healthy: u32,
        start: usize,
    ) -> Group {
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let (cumulative, schedule) = if uniform {
            (Vec::new(), Vec::new())
        } else {
            let cumulative = weights
                .iter()
                .scan(0u64, |acc, &w| {
                    *acc += u64::from(w);
                    Some(*acc)
                })
                .collect();
            (cumulative, edf_schedule(&weights))
        };
        let len = if schedule.is_empty() {
            members.len()
        } else {
            schedule.len()
        };
        let cursor = AtomicUsize::new(if len == 0 { 0 } else { start % len });
        Group {
            members,
            weights,
            cumulative,
            schedule,
            cursor,
            locality_weight,
            healthy: AtomicU32::new(healthy),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Sum of member weights.
    pub fn total_weight(&self) -> u64 {
        self.weights.iter().map(|&w| u64::from(w)).sum()
    }

    pub fn weight_of(&self, position: usize) -> u32 {
        self.weights[position]
    }

    /// One endpoint index, or `None` when no member is usable. `filtered` says some member may
    /// be unusable (otherwise every member is assumed usable, the fast path).
    pub fn pick(
        &self,
        policy: Simple,
        hosts: &dyn Hosts,
        filtered: bool,
        rng: &SplitMix,
    ) -> Option<usize> {
        if self.members.is_empty() {
            return None;
        }
        if policy == Simple::RoundRobin {
            return self.round_robin(hosts, filtered);
        }
        let candidates: Vec<usize>;
        let view = if filtered {
            candidates = (0..self.members.len())
                .filter(|&p| hosts.usable(self.members[p]))
                .collect();
            View::Some(&candidates)
        } else {
            View::All(self.members.len())
        };
        if view.len() == 0 {
            return None;
        }
        let position = match policy {
            Simple::Random => self.weighted_draw(&view, rng),
            _ => self.least_request(&view, hosts, rng),
        };
        Some(self.members[position])
    }

    /// Walks the schedule from the shared cursor, skipping members that are not usable.
    fn round_robin(&self, hosts: &dyn Hosts, filtered: bool) -> Option<usize> {
        let slot = self.cursor.fetch_add(1, Ordering::Relaxed);
        let len = if self.schedule.is_empty() {
            self.members.len()
        } else {
            self.schedule.len()
        };
        let member_at = |k: usize| {
            let s = (slot.wrapping_add(k)) % len;
            let position = if self.schedule.is_empty() {
                s
            } else {
                self.schedule[s] as usize
            };
            self.members[position]
        };
        if !filtered {
            return Some(member_at(0));
        }
        (0..len).map(member_at).find(|&e| hosts.usable(e))
    }

    /// A position drawn in proportion to weight (uniformly when weights are equal).
    fn weighted_draw(&self, view: &View<'_>, rng: &SplitMix) -> usize {
        match view {
            View::All(n) if self.cumulative.is_empty() => rng.below(*n as u64) as usize,
            View::All(_) => {
                let total = self.cumulative.last().copied().unwrap_or(0);
                let point = rng.below(total);
                self.cumulative.partition_point(|&c| c <= point)
            }
            View::Some(positions) => {
                let total: u64 = positions.iter().map(|&p| u64::from(self.weights[p])).sum();
                let mut point = rng.below(total);
                for &p in positions.iter() {
                    let w = u64::from(self.weights[p]);
                    if point < w {
                        return p;
                    }
                    point -= w;
                }
                positions[positions.len() - 1]
            }
        }
    }

    /// Power of two choices. Equal weights: two distinct members at random, the one with fewer
    /// active requests wins. Unequal weights: two weighted draws, the one with fewer active
    /// requests *per unit of weight* wins, ties to the first draw — so an idle cluster splits
    /// exactly by weight, and a loaded one keeps in-flight requests proportional to weight.
    fn least_request(&self, view: &View<'_>, hosts: &dyn Hosts, rng: &SplitMix) -> usize {
        let n = view.len();
        if n == 1 {
            return view.position(0);
        }
        let (a, b) = if self.cumulative.is_empty() {
            let first = rng.below(n as u64) as usize;
            let mut second = rng.below(n as u64 - 1) as usize;
            if second >= first {
                second += 1;
            }
            (view.position(first), view.position(second))
        } else {
            (self.weighted_draw(view, rng), self.weighted_draw(view, rng))
        };
        let load = |p: usize| u128::from(hosts.active(self.members[p]));
        let weight = |p: usize| u128::from(self.weights[p]);
        // active_b / weight_b < active_a / weight_a, without division.
        if load(b) * weight(a) < load(a) * weight(b) {
            b
        } else {
            a
        }
    }
}

/// The members to choose from: all of them, or the listed positions.
enum View<'a> {
    All(usize),
    Some(&'a [usize]),
}

impl View<'_> {
    fn len(&self) -> usize {
        match self {
            View::All(n) => *n,
            View::Some(p) => p.len(),
        }
    }

    fn position(&self, k: usize) -> usize {
        match self {
            View::All(_) => k,
            View::Some(p) => p[k],
        }
    }
}

/// Smooth weighted round robin as a fixed sequence. Like Envoy's EDF scheduler, each host's
/// k-th turn has a deadline advancing by `1 / weight` and the earliest deadline is served first
/// (ties by host order); Keel centres each deadline in its slot (`(k − ½) / weight`), which
/// spreads a heavy host's turns evenly (80/20 → `A A B A A`, as nginx's smooth WRR) instead of
/// bunching them at the start of the cycle. The order repeats every Σweight picks, so it is
/// precomputed once: a pick is an atomic increment and an array read. Weights are first
/// divided by their gcd and, if the sum is still large, scaled down.
fn edf_schedule(weights: &[u32]) -> Vec<u32> {
    let divisor = weights
        .iter()
        .fold(0u64, |g, &w| gcd(g, u64::from(w)))
        .max(1);
    let mut reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w) / divisor).collect();
    let total: u64 = reduced.iter().sum();
    let cap = MAX_SCHEDULE.max(4 * weights.len() as u64);
    if total > cap {
        reduced = reduced
            .iter()
            .map(|&w| (w * cap).div_ceil(total).max(1))
            .collect();
    }
    // Deadline of the k-th turn (from 1) of member p: (2k − 1) / 2w_p. Compare fractions exactly.
    let mut entries: Vec<(u64, u64, u32)> = Vec::new();
    for (p, &w) in reduced.iter().enumerate() {
        entries.extend((1..=w).map(|k| (2 * k - 1, w, p as u32)));
    }
    entries.sort_by(|x, y| {
        (u128::from(x.0) * u128::from(y.1))
            .cmp(&(u128::from(y.0) * u128::from(x.1)))
            .then(x.2.cmp(&y.2))
    });
    entries.into_iter().map(|(_, _, p)| p).collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    struct Fake {
        active: Vec<u64>,
        excluded: HashSet<usize>,
    }

    impl Fake {
        fn idle(n: usize) -> Fake {
            Fake {
                active: vec![0; n],
                excluded: HashSet::new(),
            }
        }
    }

    impl Hosts for Fake {
        fn usable(&self, e: usize) -> bool {
            !self.excluded.contains(&e)
        }
        fn active(&self, e: usize) -> u64 {
            self.active[e]
        }
    }

    fn group(weights: &[u32]) -> Group {
        Group::new(
            (0..weights.len()).collect(),
            weights.to_vec(),
            0,
            weights.len() as u32,
            0,
        )
    }

    fn counts(g: &Group, policy: Simple, hosts: &Fake, filtered: bool, picks: usize) -> Vec<usize> {
        let rng = SplitMix::new(42);
        let mut counts = vec![0; g.len()];
        for _ in 0..picks {
            counts[g.pick(policy, hosts, filtered, &rng).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn schedule_interleaves_smoothly() {
        assert_eq!(edf_schedule(&[80, 20]), vec![0, 0, 1, 0, 0]);
        assert_eq!(edf_schedule(&[1, 2, 3]), vec![2, 1, 0, 2, 1, 2]);
        let big = edf_schedule(&[1_000_000, 1]);
        assert_eq!(big.len(), 4097);
        assert_eq!(big.iter().filter(|&&p| p == 1).count(), 1);
    }

    #[test]
    fn round_robin_follows_the_schedule_and_skips_unusable() {
        let g = group(&[1, 1, 1]);
        let hosts = Fake::idle(3);
        let order: Vec<usize> = (0..6)
            .map(|_| g.round_robin(&hosts, false).unwrap())
            .collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
        let hosts = Fake {
            excluded: [1].into(),
            ..Fake::idle(3)
        };
        let order: Vec<usize> = (0..4)
            .map(|_| g.round_robin(&hosts, true).unwrap())
            .collect();
        assert_eq!(order, vec![0, 2, 2, 0]);
        let hosts = Fake {
            excluded: [0, 1, 2].into(),
            ..Fake::idle(3)
        };
        assert_eq!(g.round_robin(&hosts, true), None);
    }

    #[test]
    fn weighted_round_robin_is_exact_over_a_cycle() {
        let c = counts(
            &group(&[80, 20]),
            Simple::RoundRobin,
            &Fake::idle(2),
            false,
            1000,
        );
        assert_eq!(c, vec![800, 200]);
    }

    #[test]
    fn random_splits_by_weight() {
        let c = counts(
            &group(&[80, 20]),
            Simple::Random,
            &Fake::idle(2),
            false,
            10_000,
        );
        assert!((7800..8200).contains(&c[0]), "{c:?}");
        // Filtered path: same split over what is left.
        let hosts = Fake {
            excluded: [2].into(),
            ..Fake::idle(3)
        };
        let c = counts(&group(&[80, 20, 500]), Simple::Random, &hosts, true, 10_000);
        assert_eq!(c[2], 0);
        assert!((7800..8200).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn least_request_picks_two_distinct_and_prefers_the_idle_one() {
        let g = group(&[1, 1]);
        // Two hosts, distinct choices: the idle one always wins.
        let hosts = Fake {
            active: vec![5, 0],
            ..Fake::idle(2)
        };
        assert_eq!(
            counts(&g, Simple::LeastRequest, &hosts, false, 1000),
            vec![0, 1000]
        );
        // Four hosts, one busy: the two samples are distinct, so an idle host is always there to
        // beat it; the idle ones share evenly.
        let g = group(&[1, 1, 1, 1]);
        let hosts = Fake {
            active: vec![9, 0, 0, 0],
            ..Fake::idle(4)
        };
        let c = counts(&g, Simple::LeastRequest, &hosts, false, 9000);
        assert_eq!(c[0], 0);
        assert!(c[1..].iter().all(|&n| (2700..3300).contains(&n)), "{c:?}");
    }

    #[test]
    fn weighted_least_request_splits_by_weight_when_idle_and_by_load_per_weight() {
        let g = group(&[80, 20]);
        let c = counts(&g, Simple::LeastRequest, &Fake::idle(2), false, 10_000);
        assert!((7800..8200).contains(&c[0]), "{c:?}");
        // 8 in flight on the heavy host (0.1 per weight) vs 1 on the light one (0.05): light wins
        // every comparison it takes part in.
        let hosts = Fake {
            active: vec![8, 1],
            ..Fake::idle(2)
        };
        let c = counts(&g, Simple::LeastRequest, &hosts, false, 10_000);
        // Light is chosen unless both draws are heavy (0.8² = 64%).
        assert!((3400..3800).contains(&c[1]), "{c:?}");
    }

    #[test]
    fn least_request_with_a_single_usable_member() {
        let g = group(&[1, 1, 1]);
        let hosts = Fake {
            excluded: [0, 2].into(),
            ..Fake::idle(3)
        };
        assert_eq!(
            counts(&g, Simple::LeastRequest, &hosts, true, 10),
            vec![0, 10, 0]
        );
    }
}

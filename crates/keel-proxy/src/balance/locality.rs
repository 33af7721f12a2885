//! Where traffic may go by locality: priority levels, locality weights, and how load splits
//! over the levels as endpoints turn unhealthy.
//!
//! Istio expresses locality load balancing entirely through EDS: it gives every endpoint
//! group a *priority* (failover) or a *locality weight* (distribute), and Envoy does the rest.
//! [`layout`] reproduces what istiod would send (`ApplyLocalityLoadBalancer` in
//! `pilot/pkg/networking/core/loadbalancer`), and [`priority_load`] what Envoy then does with
//! it (`LoadBalancerBase::recalculatePerPriorityState` and the panic rules).
//!
//! * **distribute** — the first rule whose `from` matches the proxy's locality wins; each
//!   endpoint locality is claimed by the first `to` entry that matches it (more specific entries
//!   first), and its weight becomes `ceil(locality_weight × to_weight / Σ matched weights)`.
//!   Localities no entry claims receive no traffic. One priority level.
//! * **failover** (Istio's default, but only when outlier detection is configured — without
//!   it Envoy could never notice a dead locality, so istiod does not set priorities):
//!   priority 0 = same region/zone/subzone, 1 = same region/zone, 2 = same region, 3 = other
//!   regions, 4 = other regions that a `failover {from, to}` rule for the proxy's region does not
//!   name; empty levels are dropped.

use keel_snapshot::{Endpoint, LocalityLb};

/// Priority levels at most: Istio's locality failover assigns 0..=4.
pub const MAX_LEVELS: usize = 5;

/// Envoy's default overprovisioning factor (140%): a level keeps all its traffic until fewer
/// than 1/1.4 ≈ 71% of its hosts are healthy.
pub const OVERPROVISIONING_PERCENT: u64 = 140;

/// A parsed `region/zone/subzone` (missing parts are empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    pub fn parse(s: &str) -> Locality {
        let mut parts = s.splitn(3, '/');
        let mut next = || parts.next().unwrap_or_default().to_string();
        Locality {
            region: next(),
            zone: next(),
            subzone: next(),
        }
    }
}

/// Istio's `util.LocalityMatch`: each part of `rule` is `*`, equal, or (zone and subzone only)
/// empty, which matches anything.
pub fn locality_matches(locality: &Locality, rule: &str) -> bool {
    let rule = Locality::parse(rule);
    let part = |rule: &str, actual: &str, empty_matches: bool| {
        rule == "*" || (empty_matches && rule.is_empty()) || rule == actual
    };
    part(&rule.region, &locality.region, false)
        && part(&rule.zone, &locality.zone, true)
        && part(&rule.subzone, &locality.subzone, true)
}

/// How specific a `to` rule is: the number of parts that are neither empty nor `*`.
fn specificity(rule: &str) -> usize {
    rule.split('/')
        .filter(|p| !p.is_empty() && *p != "*")
        .count()
}

/// One group of endpoints balanced together, with its locality weight (`0` when the level is not
/// locality-weighted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub members: Vec<usize>,
    pub weight: u64,
}

/// The priority levels of a cluster, highest first, each a list of groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub levels: Vec<Vec<GroupSpec>>,
    /// Groups carry locality weights (distribute): pick a group first, then a host in it.
    pub locality_weighted: bool,
}

impl Layout {
    /// Every endpoint in one group of one level: no locality awareness.
    fn flat(n: usize) -> Layout {
        let levels = if n == 0 {
            vec![]
        } else {
            vec![vec![GroupSpec {
                members: (0..n).collect(),
                weight: 0,
            }]]
        };
        Layout {
            levels,
            locality_weighted: false,
        }
    }
}

/// Lays out `endpoints` (with their effective `weights`) for a proxy at `local`.
pub fn layout(
    endpoints: &[Endpoint],
    weights: &[u32],
    local: &str,
    setting: Option<&LocalityLb>,
    failover_enabled: bool,
) -> Layout {
    let local = Locality::parse(local);
    if let Some(setting) = setting.filter(|s| !s.distribute.is_empty()) {
        return distribute(endpoints, weights, &local, setting)
            .unwrap_or_else(|| Layout::flat(endpoints.len()));
    }
    if failover_enabled && !local.region.is_empty() {
        let failover = setting.map(|s| s.failover.as_slice()).unwrap_or_default();
        return failover_levels(endpoints, &local, failover);
    }
    Layout::flat(endpoints.len())
}

/// Istio's `applyLocalityWeights`; `None` when no rule's `from` matches the proxy.
fn distribute(
    endpoints: &[Endpoint],
    weights: &[u32],
    local: &Locality,
    setting: &LocalityLb,
) -> Option<Layout> {
    let (_, to) = setting
        .distribute
        .iter()
        .find(|(from, _)| locality_matches(local, from))?;
    // Endpoint localities, in first-seen order, with Istio's locality weight (Σ endpoint weights).
    let mut localities: Vec<(Locality, GroupSpec)> = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let loc = Locality::parse(&ep.locality);
        let weight = u64::from(weights[i]);
        match localities.iter_mut().find(|(l, _)| *l == loc) {
            Some((_, group)) => {
                group.members.push(i);
                group.weight += weight;
            }
            None => localities.push((
                loc,
                GroupSpec {
                    members: vec![i],
                    weight,
                },
            )),
        }
    }
    // Istio walks a map here (random order); Keel lets the most specific entry claim first.
    let mut rules: Vec<&(String, u32)> = to.iter().collect();
    rules.sort_by_key(|(rule, _)| std::cmp::Reverse(specificity(rule)));
    let mut claimed: Vec<Option<u64>> = vec![None; localities.len()];
    for (rule, to_weight) in rules {
        let matched: Vec<usize> = (0..localities.len())
            .filter(|&g| claimed[g].is_none() && locality_matches(&localities[g].0, rule))
            .collect();
        let total: u64 = matched.iter().map(|&g| localities[g].1.weight).sum();
        for g in matched {
            let share = localities[g].1.weight * u64::from(*to_weight);
            claimed[g] = Some(share.div_ceil(total.max(1)));
        }
    }
    let groups = localities
        .into_iter()
        .zip(claimed)
        .filter_map(|((_, group), weight)| match weight {
            Some(weight) if weight > 0 => Some(GroupSpec { weight, ..group }),
            _ => None,
        })
        .collect::<Vec<_>>();
    let levels = if groups.is_empty() {
        vec![]
    } else {
        vec![groups]
    };
    Some(Layout {
        levels,
        locality_weighted: true,
    })
}

/// Istio's `LbPriority` plus the region failover rules.
fn failover_priority(
    local: &Locality,
    endpoint: &Locality,
    failover: &[(String, String)],
) -> usize {
    if local.region != endpoint.region {
        return match failover.iter().find(|(from, _)| *from == local.region) {
            Some((_, to)) if *to != endpoint.region => 4,
            _ => 3,
        };
    }
    if local.zone != endpoint.zone {
        return 2;
    }
    if local.subzone != endpoint.subzone {
        1
    } else {
        0
    }
}

fn failover_levels(
    endpoints: &[Endpoint],
    local: &Locality,
    failover: &[(String, String)],
) -> Layout {
    let mut levels: Vec<Vec<usize>> = vec![Vec::new(); MAX_LEVELS];
    for (i, ep) in endpoints.iter().enumerate() {
        levels[failover_priority(local, &Locality::parse(&ep.locality), failover)].push(i);
    }
    let levels = levels
        .into_iter()
        .filter(|members| !members.is_empty())
        .map(|members| vec![GroupSpec { members, weight: 0 }])
        .collect();
    Layout {
        levels,
        locality_weighted: false,
    }
}

/// The health of one level: healthy and total hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelHealth {
    pub healthy: u32,
    pub total: u32,
}

/// Share of traffic (percent, summing to 100) per level, and whether a level is in panic mode
/// (balances over all its hosts, healthy or not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriorityLoad {
    pub load: [u32; MAX_LEVELS],
    pub panic: [bool; MAX_LEVELS],
}

impl PriorityLoad {
    /// All traffic to level 0, no panic: the state while every host is healthy.
    pub const ALL_HEALTHY: PriorityLoad = PriorityLoad {
        load: [100, 0, 0, 0, 0],
        panic: [false; MAX_LEVELS],
    };

    /// The level for a draw, as Envoy's `choosePriority` (`draw % 100` against the cumulative
    /// loads), so a hash always maps to the same level while health is unchanged.
    pub fn choose(&self, draw: u64) -> usize {
        let point = (draw % 100) as u32 + 1;
        let mut cumulative = 0;
        for (level, load) in self.load.iter().enumerate() {
            cumulative += load;
            if point <= cumulative {
                return level;
            }
        }
        0
    }
}

/// Envoy's per-priority load. `panic_threshold` is the healthy percentage under which a level
/// balances over all its hosts (Istio: outlier detection's `minHealthPercent`; 0 disables panic,
/// so a cluster with no healthy host serves nothing).
pub fn priority_load(levels: &[LevelHealth], panic_threshold: u32) -> PriorityLoad {
    let levels = &levels[..levels.len().min(MAX_LEVELS)];
    let mut out = PriorityLoad::default();
    let mut health = [0u32; MAX_LEVELS];
    for (i, level) in levels.iter().enumerate() {
        if level.total > 0 {
            let h = OVERPROVISIONING_PERCENT * u64::from(level.healthy) / u64::from(level.total);
            health[i] = h.min(100) as u32;
        }
    }
    let total_availability = health.iter().sum::<u32>().min(100);
    if total_availability == 0 && panic_threshold == 0 {
        out.load[0] = 100;
        return out;
    }
    if total_availability > 0 {
        let mut remaining = 100u32;
        for (i, h) in health.iter().enumerate() {
            out.load[i] = remaining.min((h * 100).checked_div(total_availability).unwrap_or(0));
            remaining -= out.load[i];
        }
        if let Some(first) = health.iter().position(|&h| h > 0) {
            out.load[first] += remaining;
        }
    }
    for (i, level) in levels.iter().enumerate() {
        let healthy_percent = if level.total == 0 {
            0
        } else {
            100 * u64::from(level.healthy) / u64::from(level.total)
        };
        out.panic[i] = total_availability == 0 || healthy_percent < u64::from(panic_threshold);
    }
    if out.panic[..levels.len()].iter().all(|&p| p) {
        // Total panic: split by host count, healthy or not.
        let hosts: u32 = levels.iter().map(|l| l.total).sum();
        out.load = [0; MAX_LEVELS];
        if hosts == 0 {
            out.load[0] = 100;
            return out;
        }
        let mut remaining = 100u32;
        for (i, level) in levels.iter().enumerate() {
            out.load[i] = 100 * level.total / hosts;
            remaining -= out.load[i];
        }
        if let Some(first) = levels.iter().position(|l| l.total > 0) {
            out.load[first] += remaining;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(locality: &str) -> Endpoint {
        Endpoint {
            address: keel_snapshot::EndpointAddress::Dns {
                host: "h".into(),
                port: 80,
            },
            labels: Default::default(),
            locality: locality.into(),
            weight: 1,
            workload: String::new(),
            namespace: String::new(),
            identity: String::new(),
            mtls: false,
        }
    }

    #[test]
    fn locality_match_follows_istio() {
        let loc = Locality::parse("us-west/zone1/sub1");
        assert!(locality_matches(&loc, "*"));
        assert!(locality_matches(&loc, "us-west/*"));
        assert!(locality_matches(&loc, "us-west"));
        assert!(locality_matches(&loc, "us-west/zone1/*"));
        assert!(locality_matches(&loc, "us-west/zone1/sub1"));
        assert!(!locality_matches(&loc, "us-west/zone2/*"));
        assert!(!locality_matches(&loc, "us-east/*"));
        assert!(!locality_matches(&Locality::default(), "us-west/*"));
    }

    #[test]
    fn failover_orders_by_closeness_and_drops_empty_levels() {
        let eps = [
            ep("r1/z1/s1"),
            ep("r1/z1/s2"),
            ep("r1/z2/s1"),
            ep("r2/z1/s1"),
            ep(""),
        ];
        let l = layout(&eps, &[1; 5], "r1/z1/s1", None, true);
        let members: Vec<Vec<usize>> = l.levels.iter().map(|lv| lv[0].members.clone()).collect();
        assert_eq!(members, vec![vec![0], vec![1], vec![2], vec![3, 4]]);
        // Skipped levels compact: nothing in the proxy's own subzone or zone.
        let l = layout(&eps[2..], &[1; 3], "r1/z1/s1", None, true);
        assert_eq!(l.levels.len(), 2);
    }

    #[test]
    fn failover_rule_demotes_regions_it_does_not_name() {
        let eps = [ep("r1/z1"), ep("r2/z1"), ep("r3/z1")];
        let setting = LocalityLb {
            failover: vec![("r1".into(), "r3".into())],
            ..Default::default()
        };
        let l = layout(&eps, &[1; 3], "r1/z1", Some(&setting), true);
        let members: Vec<Vec<usize>> = l.levels.iter().map(|lv| lv[0].members.clone()).collect();
        assert_eq!(members, vec![vec![0], vec![2], vec![1]]);
    }

    #[test]
    fn no_priorities_without_outlier_detection_or_local_locality() {
        let eps = [ep("r1/z1"), ep("r2/z1")];
        assert_eq!(layout(&eps, &[1; 2], "r1/z1", None, false).levels.len(), 1);
        assert_eq!(layout(&eps, &[1; 2], "", None, true).levels.len(), 1);
        assert!(layout(&[], &[], "r1/z1", None, true).levels.is_empty());
    }

    #[test]
    fn distribute_weights_and_drops_unclaimed_localities() {
        let eps = [
            ep("r1/z1"),
            ep("r1/z1"),
            ep("r1/z2"),
            ep("r2/z1"),
            ep("r3/z1"),
        ];
        let setting = LocalityLb {
            distribute: vec![
                ("r9/*".into(), vec![("r9/*".into(), 100)]),
                (
                    "r1/z1/*".into(),
                    vec![
                        ("r1/*".into(), 20),
                        ("r1/z1/*".into(), 70),
                        ("r2/*".into(), 10),
                    ],
                ),
            ],
            ..Default::default()
        };
        let l = layout(&eps, &[1; 5], "r1/z1/s1", Some(&setting), false);
        assert!(l.locality_weighted);
        let groups: Vec<(Vec<usize>, u64)> = l.levels[0]
            .iter()
            .map(|g| (g.members.clone(), g.weight))
            .collect();
        // r1/z1 (2 hosts) is claimed by the more specific `r1/z1/*` → 70; `r1/*` only gets r1/z2.
        assert_eq!(groups, vec![(vec![0, 1], 70), (vec![2], 20), (vec![3], 10)]);
    }

    #[test]
    fn distribute_splits_a_wildcard_share_by_locality_weight() {
        let eps = [ep("r1/z1"), ep("r1/z2"), ep("r1/z2"), ep("r2/z1")];
        let setting = LocalityLb {
            distribute: vec![("*".into(), vec![("r1/*".into(), 90), ("r2/*".into(), 10)])],
            ..Default::default()
        };
        let l = layout(&eps, &[1; 4], "r2/z1", Some(&setting), true);
        let weights: Vec<u64> = l.levels[0].iter().map(|g| g.weight).collect();
        assert_eq!(weights, vec![30, 60, 10]);
        // No matching `from`: everything flat.
        let l = layout(
            &eps,
            &[1; 4],
            "",
            Some(&LocalityLb {
                distribute: vec![("r5/*".into(), vec![])],
                ..Default::default()
            }),
            true,
        );
        assert!(!l.locality_weighted);
        assert_eq!(l.levels[0][0].members.len(), 4);
    }

    fn lh(healthy: u32, total: u32) -> LevelHealth {
        LevelHealth { healthy, total }
    }

    #[test]
    fn priority_load_spills_in_proportion_to_lost_health() {
        assert_eq!(
            priority_load(&[lh(10, 10), lh(5, 5)], 0).load[..2],
            [100, 0]
        );
        // 80% healthy × 1.4 = 112% → still 100%.
        assert_eq!(priority_load(&[lh(8, 10), lh(5, 5)], 0).load[..2], [100, 0]);
        // 50% × 1.4 = 70% stays, 30% spills.
        assert_eq!(priority_load(&[lh(5, 10), lh(5, 5)], 0).load[..2], [70, 30]);
        assert_eq!(priority_load(&[lh(0, 10), lh(5, 5)], 0).load[..2], [0, 100]);
        // Total health below 100: normalised (14 / 28 → 1/3, 2/3).
        let p = priority_load(&[lh(1, 10), lh(2, 10)], 0);
        assert_eq!(p.load[..2], [34, 66]);
        assert_eq!(p.panic[..2], [false, false]);
    }

    #[test]
    fn panic_threshold_balances_over_everything() {
        // Nothing healthy, panic disabled: level 0 nominally, no panic (the pick finds nobody).
        let p = priority_load(&[lh(0, 4), lh(0, 4)], 0);
        assert_eq!(p.load[..2], [100, 0]);
        assert_eq!(p.panic[..2], [false, false]);
        // Threshold 50: a level at 30% is in panic but keeps its health-based share.
        let p = priority_load(&[lh(3, 10), lh(10, 10)], 50);
        assert_eq!(p.load[..2], [42, 58]);
        assert_eq!(p.panic[..2], [true, false]);
        // Every level in panic: split by host count.
        let p = priority_load(&[lh(0, 3), lh(1, 9)], 50);
        assert_eq!(p.load[..2], [25, 75]);
        assert_eq!(p.panic[..2], [true, true]);
    }

    #[test]
    fn choose_maps_draws_onto_cumulative_load() {
        let p = PriorityLoad {
            load: [70, 30, 0, 0, 0],
            panic: [false; MAX_LEVELS],
        };
        assert_eq!(p.choose(0), 0);
        assert_eq!(p.choose(69), 0);
        assert_eq!(p.choose(70), 1);
        assert_eq!(p.choose(199), 1);
        assert_eq!(PriorityLoad::ALL_HEALTHY.choose(u64::MAX), 0);
    }
}

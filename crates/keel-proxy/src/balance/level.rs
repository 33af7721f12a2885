//! One priority level as picks see it: its groups of endpoints, its consistent-hash table, and
//! how many of its endpoints are healthy.

use std::sync::atomic::{AtomicU32, Ordering};

use super::consistent::{HashTable, TableHost};
use super::group::Group;
use super::locality::GroupSpec;
use super::rng::SplitMix;

/// Which consistent-hash table a level gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Ring { min_size: u64 },
    Maglev { size: u64 },
}

/// What the level builder needs to know about each endpoint (by index).
pub struct EndpointFacts<'a> {
    pub weights: &'a [u32],
    pub healthy: &'a dyn Fn(usize) -> bool,
    /// The string hashed to place the endpoint in tables (its address).
    pub key: &'a dyn Fn(usize) -> String,
}

#[derive(Debug)]
pub struct Level {
    pub groups: Vec<Group>,
    /// The consistent-hash table over the whole level (hash policies only).
    pub table: Option<HashTable>,
    pub healthy: AtomicU32,
    pub total: u32,
}

impl Level {
    /// Builds a level from its groups; `rng` staggers each group's round-robin start.
    pub fn new(
        specs: &[GroupSpec],
        facts: &EndpointFacts<'_>,
        table: Option<TableKind>,
        locality_weighted: bool,
        rng: &SplitMix,
    ) -> Level {
        let groups: Vec<Group> = specs
            .iter()
            .map(|spec| {
                let weights = spec.members.iter().map(|&e| facts.weights[e]).collect();
                let healthy = spec.members.iter().filter(|&&e| (facts.healthy)(e)).count();
                let start = rng.next_u64() as usize;
                Group::new(
                    spec.members.clone(),
                    weights,
                    spec.weight,
                    healthy as u32,
                    start,
                )
            })
            .collect();
        let table = table.map(|kind| {
            let hosts = table_hosts(&groups, facts, locality_weighted);
            match kind {
                TableKind::Ring { min_size } => HashTable::ring(min_size, &hosts),
                TableKind::Maglev { size } => HashTable::maglev(size, &hosts),
            }
        });
        let healthy = groups
            .iter()
            .map(|g| g.healthy.load(Ordering::Relaxed))
            .sum();
        let total = groups.iter().map(|g| g.len() as u32).sum();
        Level {
            groups,
            table,
            healthy: AtomicU32::new(healthy),
            total,
        }
    }
}

/// The hosts of one level for its hash table, weights normalised to sum to 1 (with locality
/// weights: the locality's share, split within it by host weight — Envoy's rule).
fn table_hosts(
    groups: &[Group],
    facts: &EndpointFacts<'_>,
    locality_weighted: bool,
) -> Vec<TableHost> {
    let locality_total: u64 = groups.iter().map(|g| g.locality_weight).sum();
    let level_total: u64 = groups.iter().map(Group::total_weight).sum();
    let mut hosts = Vec::new();
    for group in groups {
        let (share, within) = if locality_weighted {
            (
                group.locality_weight as f64 / locality_total.max(1) as f64,
                group.total_weight(),
            )
        } else {
            (1.0, level_total)
        };
        for (p, &e) in group.members.iter().enumerate() {
            let weight = share * f64::from(group.weight_of(p)) / within.max(1) as f64;
            hosts.push(TableHost {
                endpoint: e,
                key: (facts.key)(e),
                weight,
            });
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_weights_follow_locality_share_then_host_weight() {
        let specs = [
            GroupSpec {
                members: vec![0, 1],
                weight: 75,
            },
            GroupSpec {
                members: vec![2],
                weight: 25,
            },
        ];
        let facts = EndpointFacts {
            weights: &[3, 1, 5],
            healthy: &|e| e != 1,
            key: &|e| format!("10.0.0.{e}:80"),
        };
        let level = Level::new(&specs, &facts, None, true, &SplitMix::new(1));
        assert_eq!((level.total, level.healthy.load(Ordering::Relaxed)), (3, 2));
        let weights: Vec<f64> = table_hosts(&level.groups, &facts, true)
            .iter()
            .map(|h| h.weight)
            .collect();
        assert_eq!(weights, vec![0.5625, 0.1875, 0.25]);
        let flat: Vec<f64> = table_hosts(&level.groups, &facts, false)
            .iter()
            .map(|h| h.weight)
            .collect();
        assert_eq!(flat, vec![3.0 / 9.0, 1.0 / 9.0, 5.0 / 9.0]);
    }
}

//! Consistent hashing tables: Envoy's ring hash (Ketama) and Maglev, built once per priority
//! level and looked up with the request's 64-bit hash.
//!
//! Both are built the way Envoy builds them — points named `address_i` hashed with XXH64 for
//! the ring; `XXH64(address)` offsets and `XXH64(address, seed 1)` skips for Maglev, with hosts in
//! address order — so a key lands on the same host behind a Keel proxy as behind an Envoy given the
//! same endpoints and weights.
//!
//! Envoy rebuilds its tables without unhealthy hosts; Keel keeps one table per snapshot and,
//! when the host at a key's place is unhealthy or excluded for a retry, walks on to the next
//! usable one. On the ring that is the successor point, the classic consistent-hashing rule; in
//! a Maglev table the next slot belongs to an effectively random host, so the displaced keys
//! spread evenly. Either way keys of healthy hosts never move while health changes.

use super::xxhash::xxh64;

/// The largest ring (Envoy's default maximum is 8M points; Keel stops at 1M, 12 MiB).
const MAX_RING: f64 = 1_048_576.0;
/// The largest Maglev table (a prime above 2^22; 16 MiB).
const MAX_MAGLEV: u64 = 4_194_319;
const EMPTY: u32 = u32::MAX;

/// A host as the tables see it.
#[derive(Debug, Clone)]
pub struct TableHost {
    pub endpoint: usize,
    /// What is hashed: the endpoint address as Envoy prints it (`10.0.0.1:80`, `[::1]:80`).
    pub key: String,
    /// Weight normalised so that all hosts of the table sum to 1.
    pub weight: f64,
}

#[derive(Debug)]
pub enum HashTable {
    Ring { hashes: Vec<u64>, owners: Vec<u32> },
    Maglev { table: Vec<u32> },
}

impl HashTable {
    /// A ring of at least `min_size` points, each host's share proportional to its weight.
    pub fn ring(min_size: u64, hosts: &[TableHost]) -> HashTable {
        let min_weight = hosts.iter().map(|h| h.weight).fold(f64::INFINITY, f64::min);
        if hosts.is_empty() || min_weight.is_nan() || min_weight <= 0.0 {
            return HashTable::Ring {
                hashes: vec![],
                owners: vec![],
            };
        }
        // Envoy: the lightest host gets at least ceil(weight × min_size) points.
        let scale = ((min_weight * min_size.max(1) as f64).ceil() / min_weight).min(MAX_RING);
        let mut points: Vec<(u64, u32)> = Vec::with_capacity(scale as usize + hosts.len());
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for host in hosts {
            target += scale * host.weight;
            let mut i = 0u64;
            while current < target {
                points.push((
                    xxh64(format!("{}_{i}", host.key).as_bytes(), 0),
                    host.endpoint as u32,
                ));
                i += 1;
                current += 1.0;
            }
        }
        points.sort_unstable();
        let (hashes, owners) = points.into_iter().unzip();
        HashTable::Ring { hashes, owners }
    }

    /// A Maglev table of `size` entries (rounded up to a prime, as the algorithm needs).
    pub fn maglev(size: u64, hosts: &[TableHost]) -> HashTable {
        if hosts.is_empty() {
            return HashTable::Maglev { table: vec![] };
        }
        let m = next_prime(size.max(hosts.len() as u64).clamp(2, MAX_MAGLEV));
        let mut sorted: Vec<&TableHost> = hosts.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let max_weight = sorted.iter().map(|h| h.weight).fold(0.0f64, f64::max);
        struct Build {
            endpoint: u32,
            position: u64,
            skip: u64,
            weight: f64,
            target: f64,
        }
        let mut build: Vec<Build> = sorted
            .iter()
            .map(|h| Build {
                endpoint: h.endpoint as u32,
                position: xxh64(h.key.as_bytes(), 0) % m,
                skip: xxh64(h.key.as_bytes(), 1) % (m - 1) + 1,
                weight: h.weight,
                target: 0.0,
            })
            .collect();
        let mut table = vec![EMPTY; m as usize];
        let mut filled = 0u64;
        let mut iteration = 1u64;
        while filled < m {
            for entry in build.iter_mut() {
                if filled == m {
                    break;
                }
                // A host of the largest weight places an entry every iteration; one of a third
                // of it every third iteration.
                if (iteration as f64) * entry.weight < entry.target {
                    continue;
                }
                entry.target += max_weight;
                while table[entry.position as usize] != EMPTY {
                    entry.position = (entry.position + entry.skip) % m;
                }
                table[entry.position as usize] = entry.endpoint;
                entry.position = (entry.position + entry.skip) % m;
                filled += 1;
            }
            iteration += 1;
        }
        HashTable::Maglev { table }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            HashTable::Ring { hashes, .. } => hashes.len(),
            HashTable::Maglev { table } => table.len(),
        }
    }

    /// The endpoint owning `hash` — or, if that one is not `usable`, the next usable one along
    /// the ring / table. `None` when nothing is usable.
    pub fn find(&self, hash: u64, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let (start, owners): (usize, &[u32]) = match self {
            HashTable::Ring { hashes, owners } => {
                // First point at or after the hash, wrapping (Envoy's Ketama search).
                let at = hashes.partition_point(|&h| h < hash);
                (if at == hashes.len() { 0 } else { at }, owners)
            }
            HashTable::Maglev { table } if !table.is_empty() => {
                ((hash % table.len() as u64) as usize, table)
            }
            HashTable::Maglev { .. } => return None,
        };
        let len = owners.len();
        (0..len)
            .map(|k| owners[(start + k) % len] as usize)
            .find(|&e| usable(e))
    }
}

/// The smallest prime ≥ `n` (trial division; `n` is at most a few million).
pub fn next_prime(n: u64) -> u64 {
    let is_prime = |c: u64| {
        c >= 2
            && (2..)
                .take_while(|d| d * d <= c)
                .all(|d| !c.is_multiple_of(d))
    };
    (n.max(2)..).find(|&c| is_prime(c)).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<TableHost> {
        (0..n)
            .map(|i| TableHost {
                endpoint: i,
                key: format!("10.0.0.{}:8080", i + 1),
                weight: 1.0 / n as f64,
            })
            .collect()
    }

    fn owner(table: &HashTable, key: u64) -> usize {
        table.find(key, &|_| true).unwrap()
    }

    /// Keys spread over hosts, measured on `keys` evenly spaced hashes.
    fn shares(table: &HashTable, n: usize, keys: u64) -> Vec<u64> {
        let mut c = vec![0; n];
        for k in 0..keys {
            c[owner(table, xxh64(&k.to_le_bytes(), 0))] += 1;
        }
        c
    }

    #[test]
    fn next_prime_rounds_up() {
        assert_eq!(next_prime(65537), 65537);
        assert_eq!(next_prime(1000), 1009);
        assert_eq!(next_prime(0), 2);
    }

    #[test]
    fn ring_has_at_least_the_minimum_size_and_balances() {
        let ring = HashTable::ring(1024, &hosts(4));
        assert!(ring.len() >= 1024);
        let c = shares(&ring, 4, 20_000);
        assert!(c.iter().all(|&n| (3500..6500).contains(&n)), "{c:?}");
    }

    #[test]
    fn maglev_fills_a_prime_table_evenly() {
        let table = HashTable::maglev(65537, &hosts(5));
        assert_eq!(table.len(), 65537);
        let HashTable::Maglev { table: t } = &table else {
            unreachable!()
        };
        let mut per = [0u32; 5];
        for &e in t {
            per[e as usize] += 1;
        }
        // Maglev's guarantee: entry counts differ by at most one between equal hosts.
        assert!(
            per.iter().max().unwrap() - per.iter().min().unwrap() <= 1,
            "{per:?}"
        );
        assert_eq!(HashTable::maglev(100, &hosts(3)).len(), 101);
    }

    #[test]
    fn weights_shape_both_tables() {
        let weighted = vec![
            TableHost {
                endpoint: 0,
                key: "10.0.0.1:80".into(),
                weight: 0.8,
            },
            TableHost {
                endpoint: 1,
                key: "10.0.0.2:80".into(),
                weight: 0.2,
            },
        ];
        for table in [
            HashTable::ring(1024, &weighted),
            HashTable::maglev(65537, &weighted),
        ] {
            let c = shares(&table, 2, 20_000);
            assert!((15_000..17_000).contains(&c[0]), "{c:?}");
        }
    }

    #[test]
    fn removing_a_host_moves_few_other_keys() {
        for maglev in [false, true] {
            let build = |hs: &[TableHost]| {
                if maglev {
                    HashTable::maglev(10007, hs)
                } else {
                    HashTable::ring(1024, hs)
                }
            };
            let all = hosts(10);
            let before = build(&all);
            let mut fewer = all.clone();
            fewer.remove(3);
            let fewer = fewer
                .iter()
                .map(|h| TableHost {
                    weight: 1.0 / 9.0,
                    ..h.clone()
                })
                .collect::<Vec<_>>();
            let after = build(&fewer);
            let (mut others, mut moved) = (0, 0);
            for k in 0..5000u64 {
                let h = xxh64(&k.to_le_bytes(), 0);
                let (a, b) = (owner(&before, h), owner(&after, h));
                if a != 3 {
                    others += 1;
                    moved += usize::from(a != b);
                }
            }
            // The ring moves a few: each remaining host gains points, as the minimum ring size is
            // spread over fewer hosts (Envoy's ring does the same). Maglev's disruption is small.
            assert!(
                moved * 10 < others,
                "maglev={maglev}: {moved} of {others} keys of healthy hosts moved"
            );
        }
    }

    #[test]
    fn unusable_hosts_pass_their_keys_on_and_nothing_else_moves() {
        for table in [
            HashTable::ring(1024, &hosts(6)),
            HashTable::maglev(65537, &hosts(6)),
        ] {
            let mut spread = [0u32; 6];
            for k in 0..6000u64 {
                let h = xxh64(&k.to_le_bytes(), 0);
                let owner = owner(&table, h);
                let now = table.find(h, &|e| e != 2).unwrap();
                if owner == 2 {
                    spread[now] += 1;
                } else {
                    assert_eq!(owner, now);
                }
            }
            assert_eq!(spread[2], 0);
            assert_eq!(table.find(1, &|_| false), None);
        }
    }
}

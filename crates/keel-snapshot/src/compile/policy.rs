//! DestinationRules: which one applies to a host, its subsets, and the traffic policy for a
//! (port, subset), merged as Istio merges it.

use keel_config::model::networking::destination_rule::{
    DestinationRule, LoadBalancerSettings, SimpleLb, Subset, TrafficPolicy,
};
use keel_config::{Resource, Spec};

use super::{DEFAULT_DOMAIN, fqdn, host_within};
use crate::cluster::{HashKey, LbPolicy, LocalityLb};

/// The DestinationRules, with their hosts resolved.
pub struct Policies<'a> {
    rules: Vec<(String, &'a Resource, &'a DestinationRule)>,
}

impl<'a> Policies<'a> {
    pub fn build(resources: &'a [Resource]) -> Self {
        let rules = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::DestinationRule(dr) => {
                    Some((fqdn(&dr.host, r.namespace(), DEFAULT_DOMAIN), r, &**dr))
                }
                _ => None,
            })
            .collect();
        Policies { rules }
    }

    /// The rule for `host`: an exact host wins, else the most specific wildcard (Istio's
    /// "most specific host" rule); among equals, the first read.
    pub fn for_host(&self, host: &str) -> Option<&'a DestinationRule> {
        let host = host.to_ascii_lowercase();
        if let Some((_, _, dr)) = self.rules.iter().find(|(h, _, _)| *h == host) {
            return Some(dr);
        }
        self.rules
            .iter()
            .filter(|(h, _, _)| h.starts_with('*') && host_within(&host, h))
            .max_by_key(|(h, _, _)| h.len())
            .map(|(_, _, dr)| *dr)
    }
}

/// A subset of the rule by name.
pub fn subset<'a>(dr: Option<&'a DestinationRule>, name: &str) -> Option<&'a Subset> {
    dr?.subsets.iter().find(|s| s.name == name)
}

/// Istio's `MergeTrafficPolicy`: the subset's policy replaces the rule's field by field, and
/// port-level settings (the subset's first) replace them for that port.
pub fn merged_policy(
    dr: Option<&DestinationRule>,
    subset: Option<&Subset>,
    port: u16,
) -> Option<TrafficPolicy> {
    let base = dr.and_then(|d| d.traffic_policy.clone());
    let sub = subset.and_then(|s| s.traffic_policy.clone());
    let mut merged = match (base.clone(), sub.clone()) {
        (None, None) => return None,
        (Some(b), None) => b,
        (None, Some(s)) => s,
        (Some(b), Some(s)) => TrafficPolicy {
            load_balancer: s.load_balancer.or(b.load_balancer),
            connection_pool: s.connection_pool.or(b.connection_pool),
            outlier_detection: s.outlier_detection.or(b.outlier_detection),
            tls: s.tls.or(b.tls),
            tunnel: s.tunnel.or(b.tunnel),
            proxy_protocol: s.proxy_protocol.or(b.proxy_protocol),
            retry_budget: s.retry_budget.or(b.retry_budget),
            port_level_settings: Vec::new(),
        },
    };
    let port_level = sub
        .iter()
        .chain(base.iter())
        .flat_map(|p| p.port_level_settings.iter())
        .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)))
        .cloned();
    if let Some(p) = port_level {
        merged.load_balancer = p.load_balancer.or(merged.load_balancer);
        merged.connection_pool = p.connection_pool.or(merged.connection_pool);
        merged.outlier_detection = p.outlier_detection.or(merged.outlier_detection);
        merged.tls = p.tls.or(merged.tls);
    }
    merged.port_level_settings.clear();
    Some(merged)
}

/// The load-balancing policy of a merged traffic policy (LEAST_REQUEST by default).
pub fn lb_policy(policy: Option<&TrafficPolicy>) -> (LbPolicy, Option<LocalityLb>) {
    let Some(lb) = policy.and_then(|p| p.load_balancer.as_ref()) else {
        return (LbPolicy::LeastRequest, None);
    };
    (simple_or_hash(lb), locality(lb))
}

fn simple_or_hash(lb: &LoadBalancerSettings) -> LbPolicy {
    if let Some(ch) = &lb.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            HashKey::Header(h.to_ascii_lowercase())
        } else if let Some(c) = &ch.http_cookie {
            HashKey::Cookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl_secs: c.ttl.map(|d| (d.nanos / 1_000_000_000).max(0) as u64),
            }
        } else if ch.use_source_ip == Some(true) {
            HashKey::SourceIp
        } else if let Some(q) = &ch.http_query_parameter_name {
            HashKey::QueryParam(q.clone())
        } else {
            HashKey::SourceIp
        };
        let (maglev, table_size) = match (&ch.maglev, &ch.ring_hash) {
            (Some(m), _) => (
                true,
                if m.table_size == 0 {
                    65537
                } else {
                    m.table_size
                },
            ),
            (None, Some(r)) => (
                false,
                if r.minimum_ring_size == 0 {
                    1024
                } else {
                    r.minimum_ring_size
                },
            ),
            (None, None) if ch.minimum_ring_size > 0 => (false, ch.minimum_ring_size),
            // Istio's default for consistent hashing is a ring of 1024 entries.
            (None, None) => (false, 1024),
        };
        return LbPolicy::ConsistentHash {
            key,
            maglev,
            table_size,
        };
    }
    match lb.simple.unwrap_or_default() {
        SimpleLb::RoundRobin => LbPolicy::RoundRobin,
        SimpleLb::Random => LbPolicy::Random,
        SimpleLb::Passthrough => LbPolicy::Passthrough,
        SimpleLb::Unspecified | SimpleLb::LeastConn | SimpleLb::LeastRequest => {
            LbPolicy::LeastRequest
        }
    }
}

fn locality(lb: &LoadBalancerSettings) -> Option<LocalityLb> {
    let l = lb.locality_lb_setting.as_ref()?;
    if l.enabled == Some(false) {
        return None;
    }
    Some(LocalityLb {
        local: String::new(),
        distribute: l
            .distribute
            .iter()
            .map(|d| {
                (
                    d.from.clone(),
                    d.to.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                )
            })
            .collect(),
        failover: l
            .failover
            .iter()
            .map(|f| (f.from.clone(), f.to.clone()))
            .collect(),
    })
}

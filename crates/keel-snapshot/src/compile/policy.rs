//! DestinationRules: which one applies to a host, its subsets, and the traffic policy for a
//! (port, subset), merged as Istio merges it.

use keel_config::model::networking::destination_rule::{
    DestinationRule, LoadBalancerSettings, SimpleLb, Subset, TrafficPolicy,
};
use std::collections::BTreeMap;

use keel_config::{Resource, Spec};

use super::visibility::exported_to;
use super::{DEFAULT_DOMAIN, fqdn, host_within};
use crate::cluster::{HashKey, LbPolicy, LocalityLb};

/// The DestinationRules, with their hosts resolved, and whom they are looked up for.
pub struct Policies<'a> {
    rules: Vec<Rule<'a>>,
    client: Option<Client>,
}

struct Rule<'a> {
    host: String,
    namespace: &'a str,
    dr: &'a DestinationRule,
}

/// The proxy DestinationRules are chosen for: its namespace, labels (for rules with a
/// `workloadSelector`) and the mesh's root namespace.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub root_namespace: String,
}

impl<'a> Policies<'a> {
    /// Every rule, chosen by host alone (gateways: the proxy's namespace is not known).
    pub fn build(resources: &'a [Resource]) -> Self {
        Policies::build_for(resources, None)
    }

    /// The rules as a proxy `client` sees them (Istio's `exportTo` and precedence).
    pub fn build_for(resources: &'a [Resource], client: Option<Client>) -> Self {
        let rules = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::DestinationRule(dr) => Some(Rule {
                    host: fqdn(&dr.host, r.namespace(), DEFAULT_DOMAIN),
                    namespace: r.namespace(),
                    dr,
                }),
                _ => None,
            })
            .collect();
        Policies { rules, client }
    }

    /// The rule for `host` of a service in `service_namespace`.
    ///
    /// Without a client: an exact host wins, else the most specific wildcard; among equals,
    /// the first read. For a sidecar, Istio's `PushContext.destinationRule` order: a rule in
    /// the proxy's own namespace (one whose `workloadSelector` selects the proxy before one
    /// without), else one the service's namespace exports to the proxy's, else one the root
    /// namespace exports to it — each time the most specific host first.
    pub fn for_host(&self, host: &str, service_namespace: &str) -> Option<&'a DestinationRule> {
        let host = host.to_ascii_lowercase();
        let Some(c) = &self.client else {
            return most_specific(&host, self.rules.iter());
        };
        let own = self.rules.iter().filter(|r| {
            r.namespace == c.namespace
                && exported_to(&r.dr.export_to, r.namespace, &c.namespace)
                && r.dr.workload_selector.as_ref().is_none_or(|s| {
                    s.match_labels
                        .iter()
                        .all(|(k, v)| c.labels.get(k) == Some(v))
                })
        });
        let selecting = own.clone().filter(|r| r.dr.workload_selector.is_some());
        if c.namespace != c.root_namespace
            && let Some(dr) = most_specific(&host, selecting).or_else(|| most_specific(&host, own))
        {
            return Some(dr);
        }
        let exported_from = |ns: &str| {
            let ns = ns.to_string();
            self.rules.iter().filter(move |r| {
                r.namespace == ns
                    && r.dr.workload_selector.is_none()
                    && exported_to(&r.dr.export_to, r.namespace, &c.namespace)
            })
        };
        most_specific(&host, exported_from(service_namespace))
            .or_else(|| most_specific(&host, exported_from(&c.root_namespace)))
    }
}

/// Istio's `MostSpecificHostMatch` over `rules`: the exact host, else the longest wildcard
/// covering it; the first read among equals.
fn most_specific<'a, 'r>(
    host: &str,
    rules: impl Iterator<Item = &'r Rule<'a>> + Clone,
) -> Option<&'a DestinationRule>
where
    'a: 'r,
{
    if let Some(r) = rules.clone().find(|r| r.host == host) {
        return Some(r.dr);
    }
    rules
        .filter(|r| r.host.starts_with('*') && host_within(host, &r.host))
        .fold(None::<&Rule<'a>>, |best, r| match best {
            Some(b) if b.host.len() >= r.host.len() => Some(b),
            _ => Some(r),
        })
        .map(|r| r.dr)
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

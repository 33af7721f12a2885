//! `gateway.ConflictingGatewayAnalyzer`: IST0145 when Gateways for the same workload (the same
//! selector, or overlapping selectors that select a common pod) declare the same host on the
//! same port with the same `bind` — Envoy then keeps only one of them.
//!
//! Hosts are compared as exact strings. As in Istio, a server whose hosts do not clash with
//! another Gateway's is remembered as part of that Gateway from then on (Istio's
//! `CheckDuplicates` adds them to the known hosts), which can flag later Gateways; Keel visits
//! Gateways in input order and selector/port groups in sorted order, where Istio's order is
//! random.
//!
//! IST0101 `Referenced selector not found` is reported for a Gateway with a non-empty selector
//! that no group matches (only possible when it has no servers).

use std::collections::BTreeMap;

use super::Analyzer;
use super::util_an1::{
    gateway_selector_path, resource_full_name, selector_matches, selector_string,
};
use crate::context::AnalysisContext;
use crate::messages::{CONFLICTING_GATEWAYS, Message, REFERENCED_RESOURCE_NOT_FOUND, q};

pub struct ConflictingGatewayAnalyzer;

/// host → bind, per Gateway, per `<selector>~<port>`; Gateways in input order.
type GatewayHosts = BTreeMap<String, Vec<(String, BTreeMap<String, String>)>>;

fn split_key(key: &str) -> (&str, &str) {
    let parts: Vec<&str> = key.split('~').collect();
    match parts.as_slice() {
        [sel, port] => (sel, port),
        _ => ("", ""),
    }
}

/// `parseSelectorFromString`: `k=v` pairs; malformed pairs are dropped.
fn parse_selector(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|pair| {
            let kv: Vec<&str> = pair.split('=').collect();
            match kv.as_slice() {
                [k, v] => Some((k.to_string(), v.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// `model.CheckDuplicates`: the hosts already known with the same bind; when there are none,
/// the hosts become known (with this bind).
fn check_duplicates(hosts: &[String], bind: &str, known: &mut BTreeMap<String, String>) -> bool {
    let dup = hosts
        .iter()
        .any(|h| known.get(h).is_some_and(|b| b == bind));
    if !dup {
        for h in hosts {
            known.insert(h.clone(), bind.to_string());
        }
    }
    dup
}

impl Analyzer for ConflictingGatewayAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.ConflictingGatewayAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway's selector, port number and hosts"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let mut map: GatewayHosts = BTreeMap::new();
        for (r, gw) in ctx.gateways() {
            let name = resource_full_name(r);
            let sel = selector_string(&gw.selector);
            for server in &gw.servers {
                let port = server.port.as_ref().map_or(0, |p| p.number);
                let hosts: BTreeMap<String, String> = server
                    .hosts
                    .iter()
                    .map(|h| (h.clone(), server.bind.clone()))
                    .collect();
                let group = map.entry(format!("{sel}~{port}")).or_default();
                match group.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, hb)) => *hb = hosts,
                    None => group.push((name.clone(), hosts)),
                }
            }
        }

        for (r, gw) in ctx.gateways() {
            let name = resource_full_name(r);
            let sel = selector_string(&gw.selector);
            let hits: Vec<String> = map
                .keys()
                .filter(|key| {
                    let (x, _) = split_key(key);
                    if x == sel {
                        return true;
                    }
                    if !(x.contains(sel.as_str()) || sel.contains(x)) {
                        return false;
                    }
                    let x_sel = parse_selector(x);
                    ctx.pods().any(|(p, _)| {
                        selector_matches(&gw.selector, &p.meta.labels)
                            && selector_matches(&x_sel, &p.meta.labels)
                    })
                })
                .cloned()
                .collect();
            if !sel.is_empty() && hits.is_empty() {
                out.push(ctx.message(
                    REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    gateway_selector_path(&sel).as_deref(),
                    format!("Referenced selector not found: {}", q(&sel)),
                ));
                continue;
            }
            for server in &gw.servers {
                let port = server.port.as_ref().map_or(0, |p| p.number).to_string();
                let mut conflicting: Vec<String> = Vec::new();
                for key in &hits {
                    if split_key(key).1 != port {
                        continue;
                    }
                    let Some(group) = map.get_mut(key) else {
                        continue;
                    };
                    for (other, known) in group.iter_mut() {
                        if *other != name && check_duplicates(&server.hosts, &server.bind, known) {
                            conflicting.push(other.clone());
                        }
                    }
                }
                if conflicting.is_empty() {
                    continue;
                }
                conflicting.sort();
                out.push(ctx.message(
                    CONFLICTING_GATEWAYS,
                    r,
                    None,
                    format!(
                        "Conflict with gateways {} (workload selector {sel}, port {port}, hosts {}).",
                        conflicting.join(","),
                        server.hosts.join(",")
                    ),
                ));
            }
        }
    }
}

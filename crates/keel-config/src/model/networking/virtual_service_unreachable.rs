//! The warnings Istio's VirtualService validation returns for rules that can never match:
//! a rule without matches that is not last, matches repeated from earlier rules, and prefix
//! matches covered by an earlier, shorter prefix (`analyzeUnreachable*Rules`).

use std::collections::BTreeMap;

use super::virtual_service::{HttpMatchRequest, HttpRoute, VirtualService};
use crate::validate::Validator;

fn rule_name(name: &str, i: usize) -> String {
    if name.is_empty() {
        format!("#{i}")
    } else {
        format!("{name:?}")
    }
}

fn unused(v: &mut Validator, section: &str, i: usize, rule: &str, reason: &str) {
    v.field(section, |v| {
        v.index(i, |v| {
            v.warn_analysis(
                format!("virtualService rule {rule} not used ({reason})"),
                "IST0130",
                format!("VirtualService rule {rule} not used ({reason})."),
            )
        })
    });
}

fn ineffective(
    v: &mut Validator,
    section: &str,
    i: usize,
    m: usize,
    rule: &str,
    matchn: &str,
    dup: &str,
) {
    v.field(section, |v| {
        v.index(i, |v| {
            v.field("match", |v| {
                v.index(m, |v| {
                    v.warn_analysis(
                        format!("virtualService rule {rule} match {matchn} is not used (duplicate/overlapping match in rule {dup})"),
                        "IST0131",
                        format!("VirtualService rule {rule} match {matchn} is not used (duplicate/overlapping match in rule {dup})."),
                    )
                })
            })
        })
    });
}

pub(super) fn analyze(v: &mut Validator, vs: &VirtualService) {
    analyze_http(v, &vs.http);
    let tcp: Vec<(String, Vec<String>)> = vs
        .tcp
        .iter()
        .map(|r| (String::new(), r.r#match.iter().map(key).collect()))
        .collect();
    analyze_l4(v, "tcp", &tcp);
    let tls: Vec<(String, Vec<String>)> = vs
        .tls
        .iter()
        .map(|r| (String::new(), r.r#match.iter().map(key).collect()))
        .collect();
    analyze_l4(v, "tls", &tls);
}

fn key<T: serde::Serialize>(m: &T) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

fn analyze_l4(v: &mut Validator, section: &str, routes: &[(String, Vec<String>)]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut empty_seen = false;
    for (i, (name, matches)) in routes.iter().enumerate() {
        let rule = rule_name(name, i);
        if matches.is_empty() {
            if empty_seen {
                unused(
                    v,
                    section,
                    i,
                    &rule,
                    "only the last rule can have no matches",
                );
            }
            empty_seen = true;
            continue;
        }
        let mut dups = 0;
        for (m, k) in matches.iter().enumerate() {
            if let Some(&d) = seen.get(k.as_str()) {
                ineffective(
                    v,
                    section,
                    i,
                    m,
                    &rule,
                    &format!("#{m}"),
                    &rule_name(&routes[d].0, d),
                );
                dups += 1;
            } else {
                seen.insert(k, i);
            }
        }
        if dups == matches.len() {
            unused(v, section, i, &rule, "all matches used by prior rules");
        }
    }
}

/// A prefix match reduced to the fields Istio compares for overlap.
struct PrefixMatch {
    route: String,
    matchn: String,
    route_index: usize,
    match_index: usize,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    without: BTreeMap<String, String>,
}

fn exact_or_prefix(m: Option<&crate::types::StringMatch>) -> String {
    match m {
        Some(m) if m.exact.as_deref().is_some_and(|s| !s.is_empty()) => {
            format!("exact:{}", m.exact.as_deref().unwrap_or_default())
        }
        Some(m) if m.prefix.as_deref().is_some_and(|s| !s.is_empty()) => {
            format!("prefix:{}", m.prefix.as_deref().unwrap_or_default())
        }
        _ => String::new(),
    }
}

fn prefix_match(
    route: &HttpRoute,
    m: &HttpMatchRequest,
    i: usize,
    j: usize,
) -> Option<PrefixMatch> {
    let prefix = m.uri.as_ref()?.prefix.clone().filter(|p| !p.is_empty())?;
    let mut method = exact_or_prefix(m.method.as_ref());
    if method.is_empty() {
        method = "exact:GET".into();
    }
    let map = |h: &BTreeMap<String, crate::types::StringMatch>| {
        h.iter()
            .map(|(k, sm)| (k.clone(), exact_or_prefix(Some(sm))))
            .collect::<BTreeMap<_, _>>()
    };
    Some(PrefixMatch {
        route: rule_name(&route.name, i),
        matchn: rule_name(&m.name, j),
        route_index: i,
        match_index: j,
        prefix,
        port: m.port,
        method,
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: map(&m.headers),
        query: map(&m.query_params),
        without: map(&m.without_headers),
    })
}

fn maps_covered(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, va)| {
            b.get(k)
                .is_some_and(|vb| va == vb || va.starts_with(vb.as_str()))
        })
}

/// `coveredValidation`: whether the earlier match `a` catches everything the later `b` does.
fn covered(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && (a.method == b.method || a.method.starts_with(&b.method))
        && (a.authority == b.authority || a.authority.starts_with(&b.authority))
        && maps_covered(&a.headers, &b.headers)
        && maps_covered(&a.query, &b.query)
        && maps_covered(&a.without, &b.without)
}

fn analyze_http(v: &mut Validator, routes: &[HttpRoute]) {
    let mut seen: Vec<(HttpMatchRequest, usize)> = Vec::new();
    let mut empty_seen = false;
    let mut prefixes = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let rule = rule_name(&route.name, i);
        if route.r#match.is_empty() {
            if empty_seen {
                unused(
                    v,
                    "http",
                    i,
                    &rule,
                    "only the last rule can have no matches",
                );
            }
            empty_seen = true;
            continue;
        }
        let mut dups = 0;
        for (j, m) in route.r#match.iter().enumerate() {
            let unnamed = HttpMatchRequest {
                name: String::new(),
                ..m.clone()
            };
            if let Some((_, d)) = seen.iter().find(|(s, _)| *s == unnamed) {
                let dup = rule_name(&routes[*d].name, *d);
                ineffective(v, "http", i, j, &rule, &rule_name(&m.name, j), &dup);
                dups += 1;
                continue;
            }
            seen.push((unnamed, i));
            if let Some(p) = prefix_match(route, m, i, j) {
                prefixes.push(p);
            }
        }
        if dups == route.r#match.len() {
            unused(v, "http", i, &rule, "all matches used by prior rules");
        }
    }
    for (a_i, a) in prefixes.iter().enumerate() {
        for b in &prefixes[a_i + 1..] {
            if b.prefix == a.prefix {
                continue;
            }
            if covered(a, b) {
                let this = format!("{} of prefix {}", b.matchn, b.prefix);
                let by = format!("{} of prefix {} on {}", a.matchn, a.prefix, a.route);
                ineffective(
                    v,
                    "http",
                    b.route_index,
                    b.match_index,
                    &b.route,
                    &this,
                    &by,
                );
            }
        }
    }
}

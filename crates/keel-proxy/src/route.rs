//! Route lookup: virtual host by authority, then the first route whose matches hold.
//! Regexes are compiled once per snapshot, never on the request path.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;
use keel_snapshot::{HeaderMatcher, HttpRoute, RequestMatch, RouteTable, StringMatcher};
use regex::Regex;

use crate::runtime::{ClusterRuntime, FastMap};

/// A route table ready for lookups.
#[derive(Debug)]
pub struct CompiledTable {
    hosts: Vec<CompiledHost>,
    /// Exact domain → host index.
    exact: crate::runtime::FastMap<String, usize>,
    /// `(suffix, host index)` for `*.suffix` / `*suffix`, longest first.
    wildcards: Vec<(String, usize)>,
    any: Option<usize>,
    /// Some exact domains carry a port (`reviews:9080`, as sidecar tables list them).
    port_domains: bool,
}

#[derive(Debug)]
struct CompiledHost {
    name: String,
    routes: Vec<CompiledRoute>,
}

/// A route with its matchers compiled.
#[derive(Debug)]
pub struct CompiledRoute {
    pub route: HttpRoute,
    /// `(index of the virtual host's VirtualService, matches)`; empty matches everything.
    matches: Vec<CompiledMatch>,
    /// The VirtualService this route came from (`namespace/name`).
    pub virtual_host: String,
    /// `route.name`, shared with every request's telemetry record without copying.
    pub name: std::sync::Arc<str>,
    /// `rewrite.uriRegexRewrite`'s pattern, compiled once.
    pub rewrite_regex: Option<Regex>,
    /// Timeout, retries, fault and mirrors, ready for the request path.
    pub policies: crate::resilience::RoutePolicies,
    /// The clusters of a forwarding route's destinations, in their order.
    pub destinations: Destinations,
}

/// The clusters a forwarding route's destinations name, looked up once per snapshot (the
/// table and the clusters are compiled together, so they agree) rather than by name on
/// every request. `None`: the snapshot has no such cluster (the request gets `NC`).
#[derive(Default)]
pub struct Destinations(Vec<Option<Arc<ClusterRuntime>>>);

impl Destinations {
    fn resolve(route: &HttpRoute, clusters: &FastMap<String, Arc<ClusterRuntime>>) -> Self {
        match &route.action {
            keel_snapshot::RouteAction::Forward { clusters: wcs, .. } => Destinations(
                wcs.iter()
                    .map(|w| clusters.get(&w.cluster).cloned())
                    .collect(),
            ),
            _ => Destinations::default(),
        }
    }

    /// The cluster of the `i`-th destination.
    pub fn get(&self, i: usize) -> Option<&Arc<ClusterRuntime>> {
        self.0.get(i)?.as_ref()
    }
}

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|c| c.as_ref().map(|c| &*c.name)))
            .finish()
    }
}

#[derive(Debug)]
struct CompiledMatch {
    uri: Option<Matcher>,
    /// `ignoreUriCase`: exact/prefix patterns were lower-cased; the path is lowered to compare.
    ignore_uri_case: bool,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Vec<(String, Option<Matcher>, bool)>,
    /// `@request.auth.claims.*`: (claim path, matcher, inverted).
    claims: Vec<(Vec<String>, Option<Matcher>, bool)>,
    query: Vec<(String, Option<Matcher>)>,
    port: Option<u16>,
    source_labels: BTreeMap<String, String>,
    source_namespace: Option<String>,
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    /// A regex that didn't compile (validation rejects these; a snapshot from elsewhere
    /// might still carry one): matches nothing.
    Never,
}

impl Matcher {
    fn new(m: &StringMatcher, ignore_case: bool) -> Matcher {
        match m {
            StringMatcher::Exact(s) if ignore_case => Matcher::Exact(s.to_ascii_lowercase()),
            StringMatcher::Prefix(s) if ignore_case => Matcher::Prefix(s.to_ascii_lowercase()),
            StringMatcher::Exact(s) => Matcher::Exact(s.clone()),
            StringMatcher::Prefix(s) => Matcher::Prefix(s.clone()),
            StringMatcher::Regex(r) => {
                // Envoy's safe_regex matches the whole value.
                let pattern = if ignore_case {
                    format!("(?i)^(?:{r})$")
                } else {
                    format!("^(?:{r})$")
                };
                Regex::new(&pattern).map_or(Matcher::Never, Matcher::Regex)
            }
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => value == s,
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(value),
            Matcher::Never => false,
        }
    }
}

/// What routing needs to know about the request beyond its head.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo<'a> {
    /// The listener's port (`match.port`).
    pub port: u16,
    pub scheme: &'a str,
    /// Labels and namespace of the calling workload (sidecar outbound only).
    pub source_labels: Option<&'a BTreeMap<String, String>>,
    pub source_namespace: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
    /// The payload of the JWT the listener's RequestAuthentication verified, for
    /// `@request.auth.claims.*` matches.
    pub jwt: Option<&'a serde_json::Value>,
}

impl CompiledTable {
    /// Compiles `table`; its routes' destinations are looked up in `clusters`.
    pub fn new(
        table: &RouteTable,
        clusters: &FastMap<String, Arc<ClusterRuntime>>,
    ) -> CompiledTable {
        let mut hosts = Vec::new();
        let mut exact = crate::runtime::FastMap::default();
        let mut wildcards = Vec::new();
        let mut any = None;
        for vh in &table.virtual_hosts {
            let idx = hosts.len();
            let routes: Vec<CompiledRoute> = vh
                .routes
                .iter()
                .map(|r| CompiledRoute {
                    route: r.clone(),
                    matches: r.matches.iter().map(compile_match).collect(),
                    virtual_host: vh.name.clone(),
                    name: r.name.as_str().into(),
                    rewrite_regex: rewrite_regex(r),
                    policies: crate::resilience::RoutePolicies::new(r.policy.as_ref()),
                    destinations: Destinations::resolve(r, clusters),
                })
                .collect();
            // Policy readings the user should know about, logged once per snapshot.
            for r in &routes {
                for w in r.policies.warnings() {
                    tracing::warn!(route = %r.name, "{w}");
                }
            }
            hosts.push(CompiledHost {
                name: vh.name.clone(),
                routes,
            });
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                if d == "*" {
                    any.get_or_insert(idx);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    wildcards.push((suffix.to_string(), idx));
                } else {
                    exact.entry(d).or_insert(idx);
                }
            }
        }
        // Most specific first; earlier virtual hosts win ties (stable sort).
        wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        let port_domains = exact.keys().any(|d| d.contains(':'));
        CompiledTable {
            hosts,
            exact,
            wildcards,
            any,
            port_domains,
        }
    }

    /// The first route matching the request, searching the virtual host its authority
    /// selects (exact domain, then the longest wildcard, then `*`). Where domains carry
    /// ports, `host:port` is tried first, the port being the authority's or, without one,
    /// the port the client addressed (`info.port`); then the bare host.
    pub fn find(
        &self,
        parts: &Parts,
        authority: &str,
        info: &RequestInfo<'_>,
    ) -> Option<(&CompiledRoute, Option<&StringMatcher>)> {
        // Hosts almost always arrive in lower case: then nothing is copied.
        let lower = if has_upper(authority.as_bytes()) {
            std::borrow::Cow::Owned(authority.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(authority)
        };
        let host = strip_port(&lower);
        let with_port = if !self.port_domains {
            None
        } else if host.len() != lower.len() {
            self.exact.get(&*lower).copied()
        } else {
            self.exact.get(&format!("{host}:{}", info.port)).copied()
        };
        let idx = with_port
            .or_else(|| self.exact.get(host).copied())
            .or_else(|| {
                self.wildcards
                    .iter()
                    .find(|(s, _)| host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.any)?;
        let vh = &self.hosts[idx];
        vh.routes.iter().find_map(|r| {
            if r.matches.is_empty() {
                return Some((r, None));
            }
            // The matched condition's `uri` decides how a prefix rewrite applies.
            let i = r
                .matches
                .iter()
                .position(|m| m.matches(parts, authority, info))?;
            Some((r, r.route.matches.get(i).and_then(|m| m.uri.as_ref())))
        })
    }

    /// Names of the virtual hosts, for diagnostics.
    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|h| h.name.as_str())
    }
}

fn compile_match(m: &RequestMatch) -> CompiledMatch {
    CompiledMatch {
        uri: m.uri.as_ref().map(|u| Matcher::new(u, m.ignore_uri_case)),
        ignore_uri_case: m.ignore_uri_case,
        scheme: m.scheme.as_ref().map(|s| Matcher::new(s, false)),
        method: m.method.as_ref().map(|s| Matcher::new(s, false)),
        authority: m.authority.as_ref().map(|s| Matcher::new(s, false)),
        headers: m
            .headers
            .iter()
            .map(|h: &HeaderMatcher| {
                (
                    h.name.clone(),
                    h.matcher.as_ref().map(|x| Matcher::new(x, false)),
                    h.invert,
                )
            })
            .collect(),
        claims: m
            .claims
            .iter()
            .map(|c| {
                (
                    c.path.clone(),
                    c.matcher.as_ref().map(|x| Matcher::new(x, false)),
                    c.invert,
                )
            })
            .collect(),
        query: m
            .query_params
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|x| Matcher::new(x, false))))
            .collect(),
        port: m.port,
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
    }
}

impl CompiledMatch {
    fn matches(&self, parts: &Parts, authority: &str, info: &RequestInfo<'_>) -> bool {
        if let Some(u) = &self.uri {
            let path = parts.uri.path();
            // Only `ignoreUriCase` lowers the path: a lower-case pattern alone must still
            // match case-sensitively (`/s` must not match `/Strict`). Regexes carry `(?i)`.
            let ok = match u {
                Matcher::Exact(_) | Matcher::Prefix(_) if self.ignore_uri_case => {
                    u.matches(&path.to_ascii_lowercase())
                }
                _ => u.matches(path),
            };
            if !ok {
                return false;
            }
        }
        if self
            .scheme
            .as_ref()
            .is_some_and(|m| !m.matches(info.scheme))
            || self
                .method
                .as_ref()
                .is_some_and(|m| !m.matches(parts.method.as_str()))
            || self
                .authority
                .as_ref()
                .is_some_and(|m| !m.matches(authority))
            || self.port.is_some_and(|p| p != info.port)
        {
            return false;
        }
        for (name, matcher, invert) in &self.headers {
            let values: Vec<&str> = parts
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let hit = match matcher {
                None => !values.is_empty(),
                // Envoy matches multiple values of a header joined with commas.
                Some(m) => !values.is_empty() && m.matches(&values.join(",")),
            };
            if hit == *invert {
                return false;
            }
        }
        for (path, matcher, invert) in &self.claims {
            if claim_matches(info.jwt, path, matcher.as_ref()) == *invert {
                return false;
            }
        }
        if !self.query.is_empty() {
            let query = parts.uri.query().unwrap_or("");
            for (key, matcher) in &self.query {
                let value = query_value(query, key);
                let hit = match (value, matcher) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(v), Some(m)) => m.matches(&v),
                };
                if !hit {
                    return false;
                }
            }
        }
        if !self.source_labels.is_empty() {
            let Some(labels) = info.source_labels else {
                return false;
            };
            if !self
                .source_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            {
                return false;
            }
        }
        if let Some(ns) = &self.source_namespace
            && info.source_namespace != Some(ns.as_str())
        {
            return false;
        }
        true
    }
}

/// Istio's claim routing as Envoy evaluates it (a metadata matcher on the verified payload:
/// `or_match` of `string_match` and `list_match.one_of`): the claim at `path` matches when
/// it is a string that matches, or a list with a string element that does; numbers,
/// booleans, objects and a missing claim (or no token) don't. Without a matcher (`{}`), the
/// claim need only be there.
fn claim_matches(jwt: Option<&serde_json::Value>, path: &[String], m: Option<&Matcher>) -> bool {
    let Some(claim) = jwt.and_then(|j| path.iter().try_fold(j, |v, key| v.get(key.as_str())))
    else {
        return false;
    };
    match (claim, m) {
        (serde_json::Value::Null, _) => false,
        (_, None) => true,
        (serde_json::Value::String(s), Some(m)) => m.matches(s),
        (serde_json::Value::Array(items), Some(m)) => items
            .iter()
            .filter_map(serde_json::Value::as_str)
            .any(|s| m.matches(s)),
        _ => false,
    }
}

/// The first value of `key` in a query string (percent-decoding `+` and `%XX`).
pub fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `s` has an ASCII upper-case letter, eight bytes at a time: hosts are shorter
/// than the vectorised loop the compiler makes of a byte check, which then never runs.
fn has_upper(s: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of the result: the byte is in `A..=Z`. With the high bits
    // cleared first, the additions carry into no other byte.
    let upper = |w: u64| {
        let low7 = w & !HIGH;
        let from_a = low7 + (0x80 - u64::from(b'A')) * LOW;
        let past_z = low7 + (0x80 - u64::from(b'Z') - 1) * LOW;
        (from_a & !past_z & !w & HIGH) != 0
    };
    let mut chunks = s.chunks_exact(8);
    let found = chunks
        .by_ref()
        .any(|c| upper(u64::from_le_bytes(c.try_into().unwrap_or_default())));
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    found || upper(u64::from_le_bytes(last))
}

/// `host:port` → `host` (IPv6 literals keep their brackets off).
pub fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    // By bytes: the `str` pattern searchers cost a few hundred instructions per request.
    let bytes = authority.as_bytes();
    let Some(colon) = bytes.iter().rposition(|b| *b == b':') else {
        return authority;
    };
    let (host, port) = (&bytes[..colon], &bytes[colon + 1..]);
    if port.iter().all(u8::is_ascii_digit) && !host.contains(&b':') {
        authority.get(..colon).unwrap_or(authority)
    } else {
        authority
    }
}

/// The compiled `uriRegexRewrite` pattern of a forwarding route (validation rejects bad ones;
/// one that still fails to compile rewrites nothing).
fn rewrite_regex(r: &HttpRoute) -> Option<Regex> {
    match &r.action {
        keel_snapshot::RouteAction::Forward {
            rewrite: Some(rw), ..
        } => rw
            .uri_regex
            .as_ref()
            .and_then(|(re, _)| Regex::new(re).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_with_ports_select_by_the_addressed_port() {
        let vh = |name: &str, domains: &[&str]| keel_snapshot::VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: vec![HttpRoute {
                name: name.into(),
                ..Default::default()
            }],
        };
        let table = CompiledTable::new(
            &RouteTable {
                virtual_hosts: vec![
                    vh("web80", &["reviews", "reviews:80"]),
                    vh("web9080", &["reviews:9080"]),
                ],
            },
            &FastMap::default(),
        );
        let (parts, ()) = http::Request::new(()).into_parts();
        let find = |authority: &str, port: u16| {
            let info = RequestInfo {
                port,
                ..Default::default()
            };
            table
                .find(&parts, authority, &info)
                .map(|(r, _)| r.route.name.clone())
        };
        assert_eq!(find("reviews:9080", 15001).as_deref(), Some("web9080"));
        assert_eq!(find("Reviews", 9080).as_deref(), Some("web9080"));
        assert_eq!(find("reviews", 15001).as_deref(), Some("web80"));
        assert_eq!(find("reviews:80", 15001).as_deref(), Some("web80"));
        // An unknown port falls back to the bare name.
        assert_eq!(find("reviews:1234", 15001).as_deref(), Some("web80"));
        assert_eq!(find("ratings", 80), None);
    }

    /// Istio's JWT claim routing, compiled from a VirtualService as a gateway gets it and
    /// matched against verified payloads: string and list claims, nested claims (dots or
    /// brackets), regex and prefix, presence, `withoutHeaders`, and no token at all.
    #[test]
    fn jwt_claim_matches() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - name: group1
    match: [{headers: {"@request.auth.claims.groups": {exact: group1}}}]
    route: [{destination: {host: a.example}}]
  - name: nested
    match: [{headers: {"@request.auth.claims.nested.key": {prefix: val}}}]
    route: [{destination: {host: a.example}}]
  - name: bracketed
    match: [{headers: {"@request.auth.claims[https://keel.test/role]": {regex: "adm.*"}}}]
    route: [{destination: {host: a.example}}]
  - name: not-jason
    match: [{uri: {prefix: /private}, withoutHeaders: {"@request.auth.claims.sub": {exact: jason}}}]
    route: [{destination: {host: a.example}}]
  - name: has-tier
    match: [{headers: {"@request.auth.claims.tier": {}}}]
    route: [{destination: {host: a.example}}]
  - name: default
    route: [{destination: {host: a.example}}]
"#;
        let loaded =
            keel_config::load_str(yaml, "claims.yaml", &keel_config::LoadOptions::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let compiled = keel_snapshot::compile::gateway::compile(
            &loaded.resources,
            &keel_snapshot::compile::gateway::GatewayOptions::default(),
        );
        let table = compiled.snapshot.listeners[0].http.clone().expect("routes");
        let claims = &table.virtual_hosts[0].routes[0].matches[0].claims;
        assert_eq!(claims[0].path, ["groups"], "a claim, not a header");
        assert!(
            table.virtual_hosts[0].routes[0].matches[0]
                .headers
                .is_empty()
        );
        let table = CompiledTable::new(&table, &FastMap::default());
        let route = |path: &str, jwt: Option<serde_json::Value>| {
            let (parts, ()) = http::Request::get(path).body(()).unwrap().into_parts();
            let info = RequestInfo {
                port: 80,
                jwt: jwt.as_ref(),
                ..Default::default()
            };
            table
                .find(&parts, "shop.example", &info)
                .map(|(r, _)| r.route.name.clone())
                .unwrap_or_default()
        };
        use serde_json::json;
        assert_eq!(
            route("/", Some(json!({"groups": ["group2", "group1"]}))),
            "group1"
        );
        assert_eq!(route("/", Some(json!({"groups": "group1"}))), "group1");
        assert_eq!(route("/", Some(json!({"groups": ["group2"]}))), "default");
        assert_eq!(
            route("/", Some(json!({"groups": 1}))),
            "default",
            "numbers never match"
        );
        assert_eq!(
            route("/", Some(json!({"nested": {"key": "value"}}))),
            "nested"
        );
        assert_eq!(route("/", Some(json!({"nested.key": "value"}))), "default");
        assert_eq!(
            route("/", Some(json!({"https://keel.test/role": ["admin"]}))),
            "bracketed"
        );
        assert_eq!(route("/", Some(json!({"tier": "gold"}))), "has-tier");
        assert_eq!(route("/", Some(json!({"tier": null}))), "default");
        assert_eq!(route("/", None), "default", "no token: no claim matches");
        assert_eq!(route("/private", Some(json!({"sub": "jason"}))), "default");
        assert_eq!(
            route("/private", Some(json!({"sub": "alice"}))),
            "not-jason"
        );
        assert_eq!(
            route("/private", None),
            "not-jason",
            "withoutHeaders: no token matches"
        );
    }

    #[test]
    fn authorities_and_queries() {
        for len in 0..20usize {
            for b in 0..=255u8 {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    let mut s = vec![b'a'; len];
                    if let Some(x) = s.get_mut(at) {
                        *x = b;
                    }
                    assert_eq!(has_upper(&s), s.iter().any(u8::is_ascii_uppercase), "{s:?}");
                }
            }
        }
        assert_eq!(strip_port("reviews:9080"), "reviews");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(
            query_value("a=1&user=ja%20son&b", "user").as_deref(),
            Some("ja son")
        );
        assert_eq!(query_value("a=1&b", "b").as_deref(), Some(""));
        assert_eq!(query_value("a=1", "c"), None);
        assert_eq!(percent_decode("%4"), "%4");
    }
}

//! `keel proxy-config`: what one proxy is running, like `istioctl proxy-config`.
//!
//! As istioctl reads Envoy's admin port rather than what istiod meant to send, this reads the
//! proxy's own admin API (`/config_dump`: its live snapshot; `/clusters`: endpoint health),
//! found through the control plane, which each proxy tells where its admin port is.

use keel_control::xds::ProxyStatus;
use keel_snapshot::{
    Cluster, Listener, ListenerKind, ListenerProtocol, RouteAction, Snapshot, StringMatcher,
};

use super::{remote, table};
use crate::cli::{ProxyConfigArgs, ProxyConfigSection};
use crate::exit;

pub fn run(args: &ProxyConfigArgs) -> u8 {
    let client = match remote::client(&args.server.server) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let proxies = match remote::block_on(client.proxies()) {
        Ok(Ok(r)) => r.proxies,
        Ok(Err(e)) => return remote::report(&e),
        Err(code) => return code,
    };
    let proxy = match find(&proxies, &args.proxy, args.namespace.as_deref()) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("error: {message}");
            return exit::FAILURE;
        }
    };
    let Some(admin) = proxy.admin.as_deref() else {
        eprintln!(
            "error: proxy \"{}\" did not say where its admin API is (a keel-proxy older than this keel?); read it directly: curl http://ADMIN/config_dump",
            proxy.name
        );
        return exit::FAILURE;
    };
    if args.section == ProxyConfigSection::Secret {
        return super::proxy_secret::run(admin, args.output.as_deref());
    }
    let fetched = remote::block_on(fetch(admin, args.section));
    let (snapshot, health) = match fetched {
        Ok(Ok(x)) => x,
        Ok(Err(message)) => {
            eprintln!("error: {message}");
            return exit::FAILURE;
        }
        Err(code) => return code,
    };
    let fqdn = args.fqdn.as_deref();
    if args.output.as_deref() == Some("json") {
        return print_json(&snapshot, &health, args.section, fqdn);
    }
    print!("{}", render(&snapshot, &health, args.section, fqdn));
    exit::OK
}

/// The proxy named `wanted`: an exact name, else the only name it prefixes.
fn find<'a>(
    proxies: &'a [ProxyStatus],
    wanted: &str,
    namespace: Option<&str>,
) -> Result<&'a ProxyStatus, String> {
    let candidates: Vec<&ProxyStatus> = proxies
        .iter()
        .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
        .collect();
    if let Some(p) = candidates.iter().find(|p| p.name == wanted) {
        return Ok(p);
    }
    let prefixed: Vec<&&ProxyStatus> = candidates
        .iter()
        .filter(|p| p.name.starts_with(wanted))
        .collect();
    match prefixed.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no proxy named \"{wanted}\" is connected (keel proxy-status lists them)"
        )),
        many => Err(format!(
            "\"{wanted}\" matches {} proxies ({}); give the whole name",
            many.len(),
            many.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Endpoint health by `(cluster, address)`, from the admin's `/clusters` lines
/// (`cluster::address::health_flags::healthy`).
type Health = Vec<(String, String, String)>;

async fn fetch(admin: &str, section: ProxyConfigSection) -> Result<(Snapshot, Health), String> {
    let client = keel_control::api::client::Client::new(&format!("http://{admin}"))
        .map_err(|e| e.to_string())?;
    let unreachable = |e: keel_control::api::client::ClientError| {
        format!("cannot read the proxy's admin API at {admin}: {e}")
    };
    let dump = client
        .get_bytes("/config_dump")
        .await
        .map_err(unreachable)?;
    let snapshot: Snapshot = serde_json::from_slice(&dump).map_err(|e| {
        format!("the proxy at {admin} sent a configuration this keel can't read ({e}); are keel and keel-proxy the same version?")
    })?;
    let health = if matches!(
        section,
        ProxyConfigSection::Endpoints | ProxyConfigSection::All
    ) {
        let text = client.get_bytes("/clusters").await.map_err(unreachable)?;
        parse_health(&String::from_utf8_lossy(&text))
    } else {
        Vec::new()
    };
    Ok((snapshot, health))
}

fn parse_health(text: &str) -> Health {
    text.lines()
        .filter_map(|l| {
            let (head, flags) = l.rsplit_once("::health_flags::")?;
            let (cluster, address) = head.split_once("::")?;
            Some((cluster.to_string(), address.to_string(), flags.to_string()))
        })
        .collect()
}

fn direction(c: &Cluster) -> &'static str {
    if c.name.starts_with("inbound|") {
        "inbound"
    } else if c.name.starts_with("outbound|") {
        "outbound"
    } else {
        "-"
    }
}

fn matches_fqdn(c: &Cluster, fqdn: Option<&str>) -> bool {
    fqdn.is_none_or(|f| c.service == f)
}

fn clusters<'a>(s: &'a Snapshot, fqdn: Option<&'a str>) -> impl Iterator<Item = &'a Cluster> {
    s.clusters.values().filter(move |c| matches_fqdn(c, fqdn))
}

fn render(
    s: &Snapshot,
    health: &Health,
    section: ProxyConfigSection,
    fqdn: Option<&str>,
) -> String {
    use ProxyConfigSection as S;
    let mut out = String::new();
    let all = section == S::All;
    let mut part = |title: &str, rows: Vec<Vec<String>>| {
        if all {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(title);
            out.push('\n');
        }
        out.push_str(&table::align(&rows));
    };
    if matches!(section, S::Listeners | S::All) {
        part("LISTENERS", listener_rows(s));
    }
    if matches!(section, S::Routes | S::All) {
        part("ROUTES", route_rows(s, fqdn));
    }
    if matches!(section, S::Clusters | S::All) {
        part("CLUSTERS", cluster_rows(s, fqdn));
    }
    if matches!(section, S::Endpoints | S::All) {
        part("ENDPOINTS", endpoint_rows(s, health, fqdn));
    }
    out
}

fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| c.to_string()).collect()
}

fn listener_rows(s: &Snapshot) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "NAME",
        "ADDRESS",
        "PORT",
        "KIND",
        "PROTOCOL",
        "DESTINATION",
    ])];
    for l in &s.listeners {
        rows.push(vec![
            l.name.clone(),
            l.address.ip().to_string(),
            l.address.port().to_string(),
            match &l.kind {
                ListenerKind::Gateway { .. } => "gateway",
                ListenerKind::SidecarOutbound => "outbound",
                ListenerKind::SidecarInbound => "inbound",
            }
            .to_string(),
            match l.protocol {
                ListenerProtocol::Http => "HTTP",
                ListenerProtocol::Tcp => "TCP",
                ListenerProtocol::TlsPassthrough => "TLS",
                ListenerProtocol::Auto => "auto",
            }
            .to_string(),
            listener_destination(l),
        ]);
    }
    rows
}

fn listener_destination(l: &Listener) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &l.http {
        parts.push(format!(
            "Route: {} virtual host{}",
            t.virtual_hosts.len(),
            if t.virtual_hosts.len() == 1 { "" } else { "s" }
        ));
    }
    let l4 = l.tcp.iter().flat_map(|r| &r.clusters);
    let tls = l.tls.iter().flat_map(|r| &r.clusters);
    let mut clusters: Vec<&str> = l4.chain(tls).map(|c| c.cluster.as_str()).collect();
    clusters.dedup();
    if !clusters.is_empty() {
        parts.push(format!("Cluster: {}", clusters.join(", ")));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join("; ")
    }
}

fn matcher(m: &StringMatcher) -> String {
    match m {
        StringMatcher::Exact(v) => v.clone(),
        StringMatcher::Prefix(v) => format!("{v}*"),
        StringMatcher::Regex(v) => format!("~{v}"),
    }
}

fn route_rows(s: &Snapshot, fqdn: Option<&str>) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "LISTENER",
        "VHOST NAME",
        "DOMAINS",
        "MATCH",
        "ROUTE",
        "DESTINATION",
    ])];
    for l in &s.listeners {
        let Some(t) = &l.http else { continue };
        for vh in &t.virtual_hosts {
            for r in &vh.routes {
                let destination = match &r.action {
                    RouteAction::Forward { clusters, .. } => clusters
                        .iter()
                        .map(|c| {
                            if clusters.len() > 1 {
                                format!("{} {}%", c.cluster, c.weight)
                            } else {
                                c.cluster.clone()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    RouteAction::Redirect(r) => format!("redirect {}", r.code),
                    RouteAction::DirectResponse { status, .. } => format!("direct {status}"),
                };
                if let Some(f) = fqdn
                    && !destination.contains(f)
                {
                    continue;
                }
                let first = r.matches.first();
                let mut m = first
                    .and_then(|m| m.uri.as_ref())
                    .map_or_else(|| "/*".to_string(), matcher);
                if let Some(first) = first
                    && !first.headers.is_empty()
                {
                    let names: Vec<&str> = first.headers.iter().map(|h| h.name.as_str()).collect();
                    m.push_str(&format!(" [{}]", names.join(", ")));
                }
                if r.matches.len() > 1 {
                    m.push_str(&format!(" (+{} more)", r.matches.len() - 1));
                }
                let domains = if vh.domains.len() > 3 {
                    format!(
                        "{} + {} more",
                        vh.domains[..3].join(", "),
                        vh.domains.len() - 3
                    )
                } else {
                    vh.domains.join(", ")
                };
                rows.push(vec![
                    l.name.clone(),
                    vh.name.clone(),
                    domains,
                    m,
                    if r.name.is_empty() {
                        "-".to_string()
                    } else {
                        r.name.clone()
                    },
                    destination,
                ]);
            }
        }
    }
    rows
}

fn cluster_rows(s: &Snapshot, fqdn: Option<&str>) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "SERVICE FQDN",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "LOAD BALANCING",
        "ENDPOINTS",
        "NAME",
    ])];
    for c in clusters(s, fqdn) {
        rows.push(vec![
            if c.service.is_empty() {
                "-".to_string()
            } else {
                c.service.clone()
            },
            c.port.to_string(),
            if c.subset.is_empty() {
                "-".to_string()
            } else {
                c.subset.clone()
            },
            direction(c).to_string(),
            lb(c),
            c.endpoints.len().to_string(),
            c.name.clone(),
        ]);
    }
    rows
}

fn lb(c: &Cluster) -> String {
    use keel_snapshot::LbPolicy;
    match &c.lb {
        LbPolicy::LeastRequest => "LEAST_REQUEST".into(),
        LbPolicy::RoundRobin => "ROUND_ROBIN".into(),
        LbPolicy::Random => "RANDOM".into(),
        LbPolicy::Passthrough => "PASSTHROUGH".into(),
        LbPolicy::ConsistentHash { maglev, .. } => {
            if *maglev {
                "MAGLEV".into()
            } else {
                "RING_HASH".into()
            }
        }
    }
}

fn endpoint_rows(s: &Snapshot, health: &Health, fqdn: Option<&str>) -> Vec<Vec<String>> {
    let mut rows = vec![header(&["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"])];
    for c in clusters(s, fqdn) {
        for e in &c.endpoints {
            let address = e.address.to_string();
            let flags = health
                .iter()
                .find(|(cluster, a, _)| *cluster == c.name && *a == address)
                .map(|(_, _, f)| f.as_str());
            let (status, outlier) = match flags {
                Some("healthy") => ("HEALTHY", "OK"),
                Some(f) if f.contains("failed_outlier_check") => ("HEALTHY", "FAILED"),
                Some(_) => ("UNHEALTHY", "OK"),
                None => ("UNKNOWN", "-"),
            };
            rows.push(vec![
                address,
                status.to_string(),
                outlier.to_string(),
                c.name.clone(),
            ]);
        }
    }
    rows
}

fn print_json(
    s: &Snapshot,
    health: &Health,
    section: ProxyConfigSection,
    fqdn: Option<&str>,
) -> u8 {
    use ProxyConfigSection as S;
    let clusters: Vec<&Cluster> = clusters(s, fqdn).collect();
    let value = match section {
        S::Listeners => serde_json::to_value(&s.listeners),
        S::Routes => serde_json::to_value(
            s.listeners
                .iter()
                .filter_map(|l| l.http.as_ref().map(|t| (l.name.clone(), t)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
        S::Clusters => serde_json::to_value(&clusters),
        S::Endpoints => Ok(serde_json::Value::Array(
            clusters
                .iter()
                .flat_map(|c| {
                    c.endpoints.iter().map(|e| {
                        let address = e.address.to_string();
                        let flags = health
                            .iter()
                            .find(|(cluster, a, _)| *cluster == c.name && *a == address)
                            .map(|(_, _, f)| f.clone());
                        serde_json::json!({
                            "cluster": c.name,
                            "address": address,
                            "health": flags,
                            "labels": e.labels,
                            "locality": e.locality,
                            "weight": e.weight,
                        })
                    })
                })
                .collect(),
        )),
        S::All => serde_json::to_value(s),
        S::Secret => Ok(serde_json::Value::Null),
    };
    match value.and_then(|v| serde_json::to_string_pretty(&v)) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]
    use super::*;

    fn snapshot() -> Snapshot {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, labels: {version: v1}}
  - {address: 127.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /v2}, headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - route:
    - {destination: {host: reviews.default.svc.cluster.local, subset: v1}, weight: 80}
    - {destination: {host: reviews.default.svc.cluster.local, subset: v2}, weight: 20}
"#;
        let loaded = keel_config::load_str(yaml, "t.yaml", &Default::default());
        keel_snapshot::compile::gateway::compile(
            &loaded.resources,
            &keel_snapshot::compile::gateway::GatewayOptions {
                bind: "127.0.0.1".parse().unwrap(),
                ..Default::default()
            },
        )
        .snapshot
    }

    #[test]
    fn tables_show_routes_clusters_and_endpoint_health() {
        let s = snapshot();
        let health = parse_health(
            "outbound|9080|v2|reviews.default.svc.cluster.local::127.0.0.2:9080::health_flags::/failed_outlier_check\n\
             outbound|9080|v1|reviews.default.svc.cluster.local::127.0.0.1:9080::health_flags::healthy\n",
        );
        let out = render(&s, &health, ProxyConfigSection::All, None);
        assert!(out.contains("LISTENERS\nNAME"), "{out}");
        assert!(out.contains("8080"), "{out}");
        assert!(out.contains("Route: 1 virtual host"), "{out}");
        // The first route: its prefix and header match, and its single destination.
        let jason = out
            .lines()
            .find(|l| l.contains("/v2* [end-user]"))
            .expect(&out);
        assert!(
            jason.contains("outbound|9080|v2|reviews.default.svc.cluster.local"),
            "{jason}"
        );
        // The weighted route lists both subsets with their weights.
        assert!(
            out.contains("v1|reviews.default.svc.cluster.local 80%"),
            "{out}"
        );
        let v1 = out
            .lines()
            .find(|l| l.starts_with("reviews.default.svc.cluster.local") && l.contains(" v1 "))
            .expect(&out);
        assert!(
            v1.contains("outbound") && v1.contains("LEAST_REQUEST"),
            "{v1}"
        );
        let ejected = out
            .lines()
            .find(|l| l.starts_with("127.0.0.2:9080"))
            .expect(&out);
        assert!(ejected.contains("FAILED"), "{ejected}");
        let ok = out
            .lines()
            .find(|l| l.starts_with("127.0.0.1:9080"))
            .expect(&out);
        assert!(ok.contains("HEALTHY") && ok.contains("OK"), "{ok}");
    }

    #[test]
    fn fqdn_filters_clusters_and_a_prefix_finds_one_proxy() {
        let s = snapshot();
        let out = render(
            &s,
            &Vec::new(),
            ProxyConfigSection::Clusters,
            Some("other.svc"),
        );
        assert_eq!(out.lines().count(), 1, "{out}");
        let p = |name: &str| ProxyStatus {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        };
        let proxies = vec![p("reviews-v1-0.default"), p("reviews-v2-0.default")];
        assert_eq!(
            find(&proxies, "reviews-v1", None).unwrap().name,
            "reviews-v1-0.default"
        );
        assert!(
            find(&proxies, "reviews", None)
                .unwrap_err()
                .contains("matches 2")
        );
        assert!(
            find(&proxies, "nope", None)
                .unwrap_err()
                .contains("no proxy named")
        );
        assert!(find(&proxies, "reviews-v1", Some("prod")).is_err());
    }
}

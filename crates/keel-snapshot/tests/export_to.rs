//! `exportTo` in sidecar compilation: Services (annotation), ServiceEntries,
//! VirtualServices and DestinationRules a namespace is not given are invisible to its
//! sidecars; DestinationRules are chosen from the proxy's namespace, then the service's,
//! then the root namespace. Fixture: tests/fixtures/export_to.yaml.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use keel_config::Level;
use keel_snapshot::compile::sidecar::{SidecarOptions, compile};
use keel_snapshot::{LbPolicy, RouteAction, Snapshot};

const FIXTURE: &str = include_str!("fixtures/export_to.yaml");

fn sidecar_in(namespace: &str) -> Snapshot {
    let loaded = keel_config::load_str(FIXTURE, "export_to.yaml", &Default::default());
    let mut errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .map(|d| d.to_string())
        .collect();
    errors.extend(
        keel_config::validate_resources(&loaded.resources, "istio-system")
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| d.to_string()),
    );
    assert!(errors.is_empty(), "{errors:#?}");
    compile(
        &loaded.resources,
        &SidecarOptions {
            namespace: namespace.into(),
            ..Default::default()
        },
    )
    .snapshot
}

/// The virtual host names of the outbound listener.
fn vhosts(s: &Snapshot) -> Vec<String> {
    s.listener("virtualOutbound")
        .and_then(|l| l.http.as_ref())
        .map(|t| t.virtual_hosts.iter().map(|v| v.name.clone()).collect())
        .unwrap_or_default()
}

/// The cluster the payments virtual host's first route forwards to.
fn payments_route(s: &Snapshot) -> String {
    let table = s
        .listener("virtualOutbound")
        .unwrap()
        .http
        .as_ref()
        .unwrap();
    let vh = table
        .virtual_hosts
        .iter()
        .find(|v| v.name == "payments.billing.svc.cluster.local:8080")
        .expect("payments virtual host");
    match &vh.routes[0].action {
        RouteAction::Forward { clusters, .. } => clusters[0].cluster.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn services_not_exported_to_the_namespace_are_invisible() {
    let shop = vhosts(&sidecar_in("shop"));
    let has = |v: &[String], name: &str| v.iter().any(|h| h == name);
    assert!(has(&shop, "payments.billing.svc.cluster.local:8080"));
    // `.`: billing only; `~`: nobody, billing included; a list: the namespaces named.
    assert!(!has(&shop, "internal.billing.svc.cluster.local:8080"));
    assert!(!has(&shop, "ledger.billing.svc.cluster.local:8080"));
    assert!(has(&shop, "audit.billing.svc.cluster.local:8080"));
    let billing = vhosts(&sidecar_in("billing"));
    assert!(has(&billing, "internal.billing.svc.cluster.local:8080"));
    assert!(!has(&billing, "ledger.billing.svc.cluster.local:8080"));
    assert!(!has(&billing, "audit.billing.svc.cluster.local:8080"));
    let other = vhosts(&sidecar_in("other"));
    assert!(has(&other, "audit.billing.svc.cluster.local:8080"));
}

#[test]
fn service_entries_honour_export_to() {
    let sni = |s: &Snapshot| -> Vec<String> {
        s.listener("virtualOutbound")
            .unwrap()
            .tls
            .iter()
            .flat_map(|r| r.matches.iter().flat_map(|m| m.sni_hosts.clone()))
            .collect()
    };
    let shop = sni(&sidecar_in("shop"));
    assert!(shop.contains(&"api.public.example".to_string()), "{shop:?}");
    assert!(
        !shop.contains(&"api.partner.example".to_string()),
        "{shop:?}"
    );
    let billing = sni(&sidecar_in("billing"));
    assert!(billing.contains(&"api.partner.example".to_string()));
    assert!(!billing.contains(&"api.public.example".to_string()));
}

#[test]
fn virtual_services_private_to_the_namespace_come_first() {
    // shop: its own private VirtualService; billing's private one is not visible.
    assert_eq!(
        payments_route(&sidecar_in("shop")),
        "outbound|8080|v2|payments.billing.svc.cluster.local"
    );
    // billing: its private one before the public one.
    assert_eq!(
        payments_route(&sidecar_in("billing")),
        "outbound|8080|v3|payments.billing.svc.cluster.local"
    );
    // Anyone else: the public one.
    assert_eq!(
        payments_route(&sidecar_in("other")),
        "outbound|8080|v1|payments.billing.svc.cluster.local"
    );
}

#[test]
fn destination_rules_proxy_namespace_then_service_namespace_then_root() {
    let lb = |s: &Snapshot, cluster: &str| {
        s.clusters
            .get(cluster)
            .unwrap_or_else(|| panic!("no cluster {cluster}: {:?}", s.clusters.keys()))
            .lb
            .clone()
    };
    // shop's own rule for payments wins over billing's.
    let shop = sidecar_in("shop");
    assert_eq!(
        lb(&shop, "outbound|8080|v2|payments.billing.svc.cluster.local"),
        LbPolicy::Random
    );
    // billing's rule for audit is exported to `other` only: shop gets the root namespace's.
    assert_eq!(
        lb(&shop, "outbound|8080||audit.billing.svc.cluster.local"),
        LbPolicy::Random
    );
    let other = sidecar_in("other");
    assert_eq!(
        lb(&other, "outbound|8080||audit.billing.svc.cluster.local"),
        LbPolicy::RoundRobin
    );
    // The service namespace's rule for payments, shop's being private to shop.
    assert_eq!(
        lb(
            &other,
            "outbound|8080|v1|payments.billing.svc.cluster.local"
        ),
        LbPolicy::RoundRobin
    );
    // And the subsets come from the rule that applies: billing's v3 for billing.
    let billing = sidecar_in("billing");
    let v3 = &billing.clusters["outbound|8080|v3|payments.billing.svc.cluster.local"];
    assert_eq!(v3.lb, LbPolicy::RoundRobin);
}

//! Gateway compilation from Istio YAML, checked on the snapshot it produces.

use keel_config::{LoadOptions, load_str};

use super::gateway::{GatewayOptions, compile};
use crate::{EndpointAddress, LbPolicy, ListenerProtocol, RouteAction, StringMatcher};

const BOOKSHOP: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop, namespace: web}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["web/shop.example.com", "*/*.api.example.com"]
  - port: {number: 9443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: shop-cert}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: web}
spec:
  hosts: [shop.example.com, other.example.com]
  gateways: [shop]
  http:
  - match: [{uri: {prefix: /api}, headers: {x-user: {exact: jason}}}]
    route:
    - destination: {host: reviews.web.svc.cluster.local, subset: v2}
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 302}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: passthrough, namespace: web}
spec:
  hosts: ["*.example.com"]
  gateways: [web/shop]
  tls:
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mesh-only, namespace: web}
spec:
  hosts: [shop.example.com]
  http:
  - route: [{destination: {host: reviews}}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: web}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: web}
spec: {address: 10.0.0.1, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-2, namespace: web}
spec: {address: 10.0.0.2, labels: {app: reviews, version: v2}, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: web}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: X-User}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: secure, namespace: web}
spec:
  hosts: [secure.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"#;

#[test]
fn gateway_listeners_routes_and_clusters() {
    let loaded = load_str(BOOKSHOP, "shop.yaml", &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let c = compile(&loaded.resources, &GatewayOptions::default());
    let s = &c.snapshot;
    // 8443 terminates TLS, which is not served yet: reported, not listened on.
    assert_eq!(
        s.listeners.len(),
        2,
        "{:?}",
        s.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("terminates TLS")),
        "{:?}",
        c.warnings
    );

    let http = s
        .listeners
        .iter()
        .find(|l| l.address.port() == 8080)
        .expect("8080");
    assert_eq!(http.protocol, ListenerProtocol::Http);
    let table = http.http.as_ref().expect("routes");
    // Only the VirtualService bound to the gateway, with only the hosts the server exposes.
    assert_eq!(table.virtual_hosts.len(), 1);
    let vh = &table.virtual_hosts[0];
    assert_eq!(vh.name, "web/shop");
    assert_eq!(vh.domains, vec!["shop.example.com".to_string()]);
    assert_eq!(vh.routes.len(), 3);
    let m = &vh.routes[0].matches[0];
    assert_eq!(m.uri, Some(StringMatcher::Prefix("/api".into())));
    assert_eq!(m.headers[0].name, "x-user");
    assert!(
        matches!(&vh.routes[1].action, RouteAction::Redirect(r) if r.code == 302 && r.uri.as_deref() == Some("/new"))
    );
    let RouteAction::Forward { clusters, .. } = &vh.routes[2].action else {
        panic!("forward")
    };
    assert_eq!(
        clusters
            .iter()
            .map(|c| (c.cluster.as_str(), c.weight))
            .collect::<Vec<_>>(),
        vec![
            ("outbound|9080|v1|reviews.web.svc.cluster.local", 90),
            ("outbound|9080|v2|reviews.web.svc.cluster.local", 10),
        ]
    );

    let v1 = &s.clusters["outbound|9080|v1|reviews.web.svc.cluster.local"];
    assert_eq!(v1.lb, LbPolicy::RoundRobin);
    assert_eq!(v1.endpoints.len(), 1);
    assert_eq!(
        v1.endpoints[0].address,
        EndpointAddress::Socket("10.0.0.1:9080".parse().expect("addr"))
    );
    let v2 = &s.clusters["outbound|9080|v2|reviews.web.svc.cluster.local"];
    assert!(
        matches!(&v2.lb, LbPolicy::ConsistentHash { key: crate::HashKey::Header(h), .. } if h == "x-user")
    );
    assert_eq!(v2.endpoints[0].weight, 3);

    let tls = s
        .listeners
        .iter()
        .find(|l| l.address.port() == 9443)
        .expect("9443");
    assert_eq!(tls.protocol, ListenerProtocol::TlsPassthrough);
    assert_eq!(
        tls.tls[0].matches[0].sni_hosts,
        vec!["secure.example.com".to_string()]
    );
    let secure = &s.clusters[&tls.tls[0].clusters[0].cluster];
    assert_eq!(
        secure.endpoints[0].address,
        EndpointAddress::Dns {
            host: "secure.example.com".into(),
            port: 443
        }
    );
}

#[test]
fn unknown_hosts_and_subsets_are_reported() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: nowhere.example.com, port: {number: 80}}}]
"#;
    let loaded = load_str(yaml, "t.yaml", &LoadOptions::default());
    let c = compile(&loaded.resources, &GatewayOptions::default());
    assert!(c.snapshot.clusters.is_empty());
    assert!(
        c.warnings[0]
            .message
            .contains("\"nowhere.example.com\" is in no ServiceEntry or Service"),
        "{:?}",
        c.warnings
    );
}

const TWO_GATEWAYS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress}
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 81, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [ingress, egress]
  http:
  - match: [{port: 80, uri: {prefix: /a}}]
    route: [{destination: {host: reviews.web.svc.cluster.local}}]
  - route: [{destination: {host: reviews.web.svc.cluster.local}}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: web}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"#;

#[test]
fn a_gateway_with_labels_serves_only_the_gateways_selecting_it() {
    let loaded = load_str(TWO_GATEWAYS, "t.yaml", &LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let ports = |opts: &GatewayOptions| -> Vec<u16> {
        let c = compile(&loaded.resources, opts);
        c.snapshot
            .listeners
            .iter()
            .map(|l| l.address.port())
            .collect()
    };
    // No labels: every Gateway, as `keel-proxy standalone` serves them.
    assert_eq!(ports(&GatewayOptions::default()), vec![80, 81]);
    let ingress = GatewayOptions {
        labels: [("istio".into(), "ingressgateway".into())].into(),
        ..Default::default()
    };
    assert_eq!(ports(&ingress), vec![80]);
    // Names given explicitly win over the labels.
    let named = GatewayOptions {
        gateways: vec!["default/egress".into()],
        ..ingress.clone()
    };
    assert_eq!(ports(&named), vec![81]);
}

#[test]
fn server_ports_can_listen_elsewhere_and_keep_their_port_matches() {
    let loaded = load_str(TWO_GATEWAYS, "t.yaml", &LoadOptions::default());
    let opts = GatewayOptions {
        ports: [(80, 18080)].into(),
        ..Default::default()
    };
    let c = compile(&loaded.resources, &opts);
    let l = &c.snapshot.listeners[0];
    assert_eq!(l.address.port(), 18080);
    assert_eq!(l.name, "0.0.0.0_18080");
    let routes = &l.http.as_ref().expect("routes").virtual_hosts[0].routes;
    // `match.port: 80` is the server port: requests arrive on 18080 now.
    assert_eq!(routes[0].matches[0].port, Some(18080));
    // Both server ports onto one local port: the second is reported, not served.
    let opts = GatewayOptions {
        ports: [(80, 18080), (81, 18080)].into(),
        ..Default::default()
    };
    let c = compile(&loaded.resources, &opts);
    assert_eq!(c.snapshot.listeners.len(), 1);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("server port 81 would listen on 18080")),
        "{:?}",
        c.warnings
    );
}

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
    // 8443 terminates TLS with a Secret that isn't there: listened on, but with no
    // certificate (handshakes fail), and reported.
    assert_eq!(
        s.listeners.len(),
        3,
        "{:?}",
        s.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
    );
    let https = s
        .listeners
        .iter()
        .find(|l| l.address.port() == 8443)
        .expect("8443");
    assert_eq!(https.protocol, ListenerProtocol::Http);
    assert_eq!(https.terminate_tls.len(), 1);
    assert!(https.terminate_tls[0].certificates.is_empty());
    assert!(
        c.warnings.iter().any(|w| w
            .message
            .contains("no Secret istio-system/shop-cert with tls.crt and tls.key")),
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

const TLS_GATEWAY: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: shop-cert, namespace: istio-system}
type: kubernetes.io/tls
stringData: {tls.crt: CHAIN, tls.key: KEY}
---
apiVersion: v1
kind: Secret
metadata: {name: shop-cert-cacert, namespace: istio-system}
stringData: {ca.crt: CLIENT-CA}
---
apiVersion: v1
kind: Secret
metadata: {name: elsewhere, namespace: web}
type: kubernetes.io/tls
stringData: {tls.crt: XCERT, tls.key: XKEY}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop, namespace: web}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["shop.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["web/shop.example.com"]
    tls: {mode: MUTUAL, credentialName: shop-cert, minProtocolVersion: TLSV1_3, cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256]}
  - port: {number: 443, name: https-files, protocol: HTTPS}
    hosts: ["*.files.example.com"]
    tls: {mode: SIMPLE, serverCertificate: /etc/certs/a.pem, privateKey: /etc/certs/a.key, minProtocolVersion: TLSV1_0}
  - port: {number: 8443, name: https-mesh, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 9443, name: https-elsewhere, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: elsewhere}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: web}
spec:
  hosts: [shop.example.com]
  gateways: [shop]
  http:
  - route: [{destination: {host: reviews.web.svc.cluster.local}}]
"#;

#[test]
fn terminated_tls_takes_istios_certificate_sources_and_http_redirects_to_https() {
    use crate::tls::{CertificatePair, Pem, ServerTlsMode, TlsVersion};
    let loaded = load_str(TLS_GATEWAY, "tls.yaml", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let c = compile(&loaded.resources, &GatewayOptions::default());
    let listener = |port: u16| {
        c.snapshot
            .listeners
            .iter()
            .find(|l| l.address.port() == port)
            .unwrap_or_else(|| panic!("listener {port}"))
    };
    // Port 80 redirects every request of the server's hosts to HTTPS.
    let http = listener(80);
    assert!(http.terminate_tls.is_empty());
    let routes = &http.http.as_ref().expect("routes").virtual_hosts[0].routes;
    assert_eq!(routes.len(), 1);
    match &routes[0].action {
        RouteAction::Redirect(r) => {
            assert_eq!(r.scheme.as_deref(), Some("https"));
            assert_eq!(r.code, 301);
        }
        other => panic!("{other:?}"),
    }
    // Port 443: two servers, certificates by SNI; HTTP inside.
    let https = listener(443);
    assert_eq!(https.protocol, ListenerProtocol::Http);
    assert_eq!(https.terminate_tls.len(), 2);
    let mutual = &https.terminate_tls[0];
    assert_eq!(mutual.server_names, vec!["shop.example.com".to_string()]);
    assert_eq!(mutual.mode, ServerTlsMode::Mutual);
    assert_eq!(
        mutual.certificates,
        vec![CertificatePair {
            chain: Pem::Inline("CHAIN".into()),
            key: Pem::Inline("KEY".into()),
        }]
    );
    assert_eq!(mutual.client_ca, Some(Pem::Inline("CLIENT-CA".into())));
    assert_eq!(mutual.min_version, Some(TlsVersion::Tls13));
    assert_eq!(
        mutual.cipher_suites,
        vec!["ECDHE-RSA-AES128-GCM-SHA256".to_string()]
    );
    assert_eq!(mutual.origin, "Gateway web/shop, port 443");
    let files = &https.terminate_tls[1];
    assert_eq!(
        files.certificates[0].chain,
        Pem::File("/etc/certs/a.pem".into())
    );
    assert_eq!(
        files.min_version,
        Some(TlsVersion::Tls12),
        "TLS 1.0 is raised to 1.2"
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("TLSV1_0 is not supported"))
    );
    // ISTIO_MUTUAL serves the workload certificate: no files, no Secret.
    let mesh = &listener(8443).terminate_tls[0];
    assert_eq!(mesh.mode, ServerTlsMode::IstioMutual);
    assert!(mesh.certificates.is_empty());
    // Secrets are read from the gateway's own namespace, not the Gateway's.
    assert!(listener(9443).terminate_tls[0].certificates.is_empty());
    let served_from_web = compile(
        &loaded.resources,
        &GatewayOptions {
            namespace: "web".into(),
            ..Default::default()
        },
    );
    let l = served_from_web
        .snapshot
        .listeners
        .iter()
        .find(|l| l.address.port() == 9443)
        .expect("9443");
    assert_eq!(l.terminate_tls[0].certificates.len(), 1);
}

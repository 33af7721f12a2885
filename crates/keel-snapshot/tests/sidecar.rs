//! `compile::sidecar`: what the outbound, per-port and inbound listeners contain.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use keel_snapshot::compile::sidecar::{InboundPort, SidecarOptions, compile};
use keel_snapshot::{Listener, ListenerProtocol, RouteAction, Snapshot};

const MESH: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 9080}, {name: http-alt, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: other}
spec:
  clusterIP: 10.96.0.12
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: tcp, port: 3306}, {name: dns, port: 53, protocol: UDP}, {name: web, port: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: headless-db, namespace: default}
spec:
  clusterIP: None
  ports: [{name: mongo, port: 27017}]
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080, targetPort: 8080}, {name: tcp-metrics, port: 9100}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}, headers: {x: {exact: "1"}}}]
    route: [{destination: {host: reviews, port: {number: 9080}}, weight: 100}]
  - match: [{sourceLabels: {app: somebody-else}}]
    route: [{destination: {host: details.other.svc.cluster.local}}]
  - match: [{port: 80}]
    route: [{destination: {host: reviews, port: {number: 80}}}]
  - route: [{destination: {host: reviews, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 3306, sourceNamespace: other}]
    route: [{destination: {host: details.other.svc.cluster.local}}]
  - match: [{port: 3306}]
    route: [{destination: {host: db, port: {number: 3306}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  tls:
  - match: [{sniHosts: [api.example.com]}]
    route: [{destination: {host: api.example.com}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gateway-only, namespace: default}
spec:
  hosts: [details.other.svc.cluster.local]
  gateways: [some-gateway]
  http:
  - route: [{destination: {host: reviews}}]
"#;

fn snapshot(opts: SidecarOptions) -> Snapshot {
    let loaded = keel_config::load_str(MESH, "mesh.yaml", &Default::default());
    let compiled = compile(&loaded.resources, &opts);
    compiled.snapshot
}

fn productpage() -> SidecarOptions {
    SidecarOptions {
        namespace: "default".into(),
        labels: [("app".to_string(), "productpage".to_string())].into(),
        ..Default::default()
    }
}

fn listener<'a>(s: &'a Snapshot, name: &str) -> &'a Listener {
    s.listener(name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

fn vhost_domains(l: &Listener, name: &str) -> Vec<String> {
    l.http
        .as_ref()
        .unwrap()
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
        .domains
        .clone()
}

#[test]
fn outbound_virtual_hosts_name_every_way_to_call_a_service() {
    let s = snapshot(productpage());
    let out = listener(&s, "virtualOutbound");
    assert_eq!(out.address.port(), 15001);
    assert_eq!(out.protocol, ListenerProtocol::Auto);
    // Port 80 takes the port-less names; 9080 only the port-qualified ones.
    let d80 = vhost_domains(out, "reviews.default.svc.cluster.local:80");
    for d in [
        "reviews",
        "reviews:80",
        "reviews.default",
        "reviews.default.svc.cluster.local",
    ] {
        assert!(d80.contains(&d.to_string()), "{d} in {d80:?}");
    }
    let d9080 = vhost_domains(out, "reviews.default.svc.cluster.local:9080");
    assert!(d9080.contains(&"reviews:9080".to_string()));
    assert!(!d9080.contains(&"reviews".to_string()));
    // Another namespace: no short name.
    let details = vhost_domains(out, "details.other.svc.cluster.local:9080");
    assert!(details.contains(&"details.other:9080".to_string()));
    assert!(!details.iter().any(|d| d.starts_with("details:")));
    // The catch-all sends unknown hosts to their original destination.
    let last = out.http.as_ref().unwrap().virtual_hosts.last().unwrap();
    assert_eq!(last.domains, vec!["*".to_string()]);
}

#[test]
fn mesh_routes_resolve_source_labels_and_ports_per_virtual_host() {
    let s = snapshot(productpage());
    let out = listener(&s, "virtualOutbound");
    let routes = |name: &str| {
        out.http
            .as_ref()
            .unwrap()
            .virtual_hosts
            .iter()
            .find(|v| v.name == name)
            .unwrap()
            .routes
            .clone()
    };
    let r9080 = routes("reviews.default.svc.cluster.local:9080");
    // The sourceLabels route holds for productpage (header condition kept, labels gone);
    // the one for somebody else and the port-80 one are gone on 9080.
    assert_eq!(r9080.len(), 2, "{r9080:#?}");
    assert!(r9080[0].matches[0].source_labels.is_empty());
    assert_eq!(r9080[0].matches[0].headers[0].name, "x");
    assert!(r9080[1].matches.is_empty());
    let r80 = routes("reviews.default.svc.cluster.local:80");
    assert_eq!(r80.len(), 3, "{r80:#?}");
    assert_eq!(r80[1].matches[0].port, None, "decided at compile time");
    // Gateway-bound VirtualServices don't apply: details keeps its default route.
    let d = routes("details.other.svc.cluster.local:9080");
    match &d[0].action {
        RouteAction::Forward { clusters, .. } => {
            assert_eq!(
                clusters[0].cluster,
                "outbound|9080||details.other.svc.cluster.local"
            )
        }
        other => panic!("{other:?}"),
    }
    // A different workload gets the other sourceLabels route instead.
    let s = snapshot(SidecarOptions {
        labels: [("app".to_string(), "somebody-else".to_string())].into(),
        ..productpage()
    });
    let out = listener(&s, "virtualOutbound");
    let vh = out
        .http
        .as_ref()
        .unwrap()
        .virtual_hosts
        .iter()
        .find(|v| v.name == "reviews.default.svc.cluster.local:9080")
        .unwrap();
    assert_eq!(vh.routes[0].name, "default.reviews.1", "{:#?}", vh.routes);
}

#[test]
fn tcp_routes_by_address_and_declared_ports_are_opaque() {
    let s = snapshot(productpage());
    let out = listener(&s, "virtualOutbound");
    let db: Vec<_> = out
        .tcp
        .iter()
        .filter(|r| r.matches.iter().any(|m| m.port == Some(3306)))
        .collect();
    // The sourceNamespace route is not for this workload; the other is narrowed to the VIP.
    assert_eq!(db.len(), 1, "{db:#?}");
    assert_eq!(
        db[0].matches[0].destination_subnets,
        vec!["10.96.0.20".to_string()]
    );
    assert!(db[0].opaque);
    // An undeclared port: sniffed (HTTP virtual host and a TCP fallback that is not opaque).
    let web = out
        .tcp
        .iter()
        .find(|r| r.matches.iter().any(|m| m.port == Some(8000)))
        .unwrap();
    assert!(!web.opaque);
    assert!(
        out.http
            .as_ref()
            .unwrap()
            .virtual_hosts
            .iter()
            .any(|v| v.name == "db.default.svc.cluster.local:8000")
    );
    // UDP is not proxied; a headless service matches by port alone, after every VIP route.
    assert!(
        !out.tcp
            .iter()
            .any(|r| r.matches.iter().any(|m| m.port == Some(53)))
    );
    let headless = out
        .tcp
        .iter()
        .position(|r| r.matches.iter().any(|m| m.port == Some(27017)))
        .unwrap();
    assert!(out.tcp[headless].matches[0].destination_subnets.is_empty());
    let by_address = out
        .tcp
        .iter()
        .take_while(|r| {
            r.matches
                .first()
                .is_some_and(|m| !m.destination_subnets.is_empty())
        })
        .count();
    assert!(by_address > 0 && by_address <= headless);
    assert!(out.tcp[by_address..].iter().all(|r| {
        r.matches
            .first()
            .is_none_or(|m| m.destination_subnets.is_empty())
    }));
    // TLS to a service without an address is told apart by SNI only, never by port alone.
    assert!(
        !out.tcp
            .iter()
            .any(|r| r.matches.iter().any(|m| m.port == Some(443)))
    );
    // Then everything else goes where it was addressed.
    let last = out.tcp.last().unwrap();
    assert!(last.matches.is_empty());
    assert_eq!(last.clusters[0].cluster, "PassthroughCluster");
    // TLS: SNI routes with the service port.
    assert_eq!(out.tls.len(), 1);
    assert_eq!(
        out.tls[0].matches[0].sni_hosts,
        vec!["api.example.com".to_string()]
    );
    assert_eq!(out.tls[0].matches[0].port, Some(443));
}

#[test]
fn per_port_listeners_take_the_protocol_of_their_services() {
    let s = snapshot(SidecarOptions {
        outbound_ports: vec![9080, 3306],
        bind: "127.0.0.1".parse().unwrap(),
        ..productpage()
    });
    let http = listener(&s, "127.0.0.1_9080");
    assert_eq!(http.protocol, ListenerProtocol::Http);
    // On a port's own listener the port-less names are there for every service on it.
    let d = vhost_domains(http, "reviews.default.svc.cluster.local:9080");
    assert!(d.contains(&"reviews".to_string()));
    let tcp = listener(&s, "127.0.0.1_3306");
    assert_eq!(tcp.protocol, ListenerProtocol::Tcp);
    assert!(tcp.http.is_none());
    assert_eq!(tcp.tcp.len(), 1);
}

#[test]
fn inbound_forwards_to_the_app_on_its_target_ports() {
    let s = snapshot(productpage());
    let inbound = listener(&s, "virtualInbound");
    assert_eq!(inbound.address.port(), 15006);
    let app = &s.clusters["inbound|8080||"];
    assert_eq!(app.endpoints[0].address.to_string(), "127.0.0.1:8080");
    assert_eq!(app.service, "productpage.default.svc.cluster.local");
    let routes = &inbound.http.as_ref().unwrap().virtual_hosts[0].routes;
    assert_eq!(routes[0].matches[0].port, Some(8080));
    assert_eq!(routes.last().unwrap().name, "InboundPassthroughCluster");
    let metrics = inbound
        .tcp
        .iter()
        .find(|r| r.name == "inbound|9100||")
        .unwrap();
    assert!(metrics.opaque);
    // Explicit app ports replace the Service-derived ones.
    let s = snapshot(SidecarOptions {
        inbound_ports: vec![InboundPort {
            port: 7000,
            protocol: "HTTP".into(),
            local: None,
        }],
        ..productpage()
    });
    assert!(s.clusters.contains_key("inbound|7000||"));
    assert!(!s.clusters.contains_key("inbound|8080||"));
}

/// tests/fixtures/ports.yaml compiled for the `web` workload.
fn ports_snapshot() -> (Snapshot, Vec<String>) {
    let yaml = include_str!("fixtures/ports.yaml");
    let loaded = keel_config::load_str(yaml, "ports.yaml", &Default::default());
    let validated = keel_config::validate_resources(&loaded.resources, "istio-system");
    assert!(
        loaded
            .diagnostics
            .iter()
            .chain(&validated)
            .all(|d| d.level != keel_config::Level::Error),
        "{:?} {validated:?}",
        loaded.diagnostics
    );
    let compiled = compile(
        &loaded.resources,
        &SidecarOptions {
            namespace: "default".into(),
            labels: [
                ("app".to_string(), "web".to_string()),
                ("version".to_string(), "v1".to_string()),
            ]
            .into(),
            ..Default::default()
        },
    );
    let warnings = compiled
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .collect();
    (compiled.snapshot, warnings)
}

#[test]
fn inbound_target_ports_by_container_port_name() {
    let (s, _) = ports_snapshot();
    // `http-web` is the Deployment's 8080, `admin` the Pod's 9901; a name no container of
    // this workload declares (another workload's doesn't count) stays the service port.
    for (cluster, port) in [
        ("inbound|8080||", 8080),
        ("inbound|9901||", 9901),
        ("inbound|9100||", 9100),
    ] {
        let c = s.clusters.get(cluster).unwrap_or_else(|| {
            panic!(
                "no {cluster} in {:?}",
                s.clusters.keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(
            c.endpoints[0].address.to_string(),
            format!("127.0.0.1:{port}")
        );
    }
    assert!(!s.clusters.contains_key("inbound|7777||"));
    assert!(!s.clusters.contains_key("inbound|80||"));
    let inbound = listener(&s, "virtualInbound");
    let routes = &inbound.http.as_ref().unwrap().virtual_hosts[0].routes;
    assert_eq!(routes[0].matches[0].port, Some(8080));
}

#[test]
fn routes_without_a_destination_port_use_the_port_they_serve() {
    let (s, warnings) = ports_snapshot();
    let out = listener(&s, "virtualOutbound");
    let vh = |name: &str| {
        out.http
            .as_ref()
            .unwrap()
            .virtual_hosts
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no virtual host {name}"))
            .routes
            .clone()
    };
    let forward = |r: &keel_snapshot::HttpRoute| match &r.action {
        RouteAction::Forward { clusters, .. } => clusters[0].cluster.clone(),
        other => panic!("{other:?}"),
    };
    for port in [80u16, 9090] {
        let routes = vh(&format!("web.default.svc.cluster.local:{port}"));
        // derivePort FROM_REQUEST_PORT is the port the route serves, not the Host header's.
        match &routes[0].action {
            RouteAction::Redirect(r) => {
                assert_eq!(r.port, Some(port));
                assert!(r.port_from_request);
            }
            other => panic!("{other:?}"),
        }
        // A service with one port: that port. Several: the route's own.
        assert_eq!(
            forward(&routes[1]),
            "outbound|7000||single.default.svc.cluster.local"
        );
        assert_eq!(
            forward(&routes[2]),
            format!("outbound|{port}||elsewhere.default.svc.cluster.local")
        );
        assert_eq!(
            forward(&routes[3]),
            format!("outbound|{port}||web.default.svc.cluster.local")
        );
    }
    // `elsewhere` has neither 80 nor 9090: no such cluster (503 NC, as in Istio), and a
    // warning that says to set destination.port.
    assert!(
        !s.clusters
            .contains_key("outbound|80||elsewhere.default.svc.cluster.local")
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("has no port 80") && w.contains("destination.port")),
        "{warnings:?}"
    );
}

#[test]
fn a_connection_addressed_to_the_inbound_listener_itself_goes_to_the_first_app_port() {
    // The local mesh (`keel up`) registers the inbound port as the endpoint: no iptables, so
    // connections arrive addressed to the listener itself, not to the app's port.
    let s = snapshot(SidecarOptions {
        inbound_port: 20006,
        inbound_ports: vec![
            InboundPort {
                port: 31000,
                protocol: "HTTP".into(),
                local: None,
            },
            InboundPort {
                port: 31001,
                protocol: "TCP".into(),
                local: None,
            },
        ],
        ..productpage()
    });
    let inbound = listener(&s, "virtualInbound");
    let routes = &inbound.http.as_ref().unwrap().virtual_hosts[0].routes;
    let first = routes
        .iter()
        .find(|r| r.name == "inbound|31000||")
        .expect("app route");
    let ports: Vec<_> = first.matches.iter().map(|m| m.port).collect();
    assert_eq!(ports, vec![Some(31000), Some(20006)]);
    // The other port keeps its own match only, and the TCP side has the same alias.
    assert!(
        inbound.tcp.iter().all(
            |r| r.name == "inbound|31000||" || !r.matches.iter().any(|m| m.port == Some(20006))
        )
    );
    assert!(
        inbound
            .tcp
            .iter()
            .any(|r| r.name == "inbound|31001||"
                && r.matches.iter().map(|m| m.port).eq([Some(31001)]))
    );
}

#[test]
fn a_workload_port_served_on_a_local_port_keeps_its_number_for_routes_and_clusters() {
    // `--app-port 8080=31000/HTTP`: the pod's 8080, served by the app on 31000 (the local mesh).
    let s = snapshot(SidecarOptions {
        inbound_port: 20006,
        inbound_ports: vec![InboundPort {
            port: 8080,
            protocol: "HTTP".into(),
            local: Some(31000),
        }],
        ..productpage()
    });
    let inbound = listener(&s, "virtualInbound");
    let routes = &inbound.http.as_ref().unwrap().virtual_hosts[0].routes;
    let route = routes
        .iter()
        .find(|r| r.name == "inbound|8080||")
        .expect("route named for the pod's port");
    let ports: Vec<_> = route.matches.iter().map(|m| m.port).collect();
    assert_eq!(ports, vec![Some(8080), Some(20006)]);
    let cluster = &s.clusters["inbound|8080||"];
    assert_eq!(
        cluster.endpoints[0].address.to_string(),
        "127.0.0.1:31000",
        "the app's own port"
    );
}

/// Auto mTLS: endpoints of workloads with a sidecar whose PeerAuthentication is not DISABLE
/// take mTLS, with their service account's identity; the inbound listener carries the
/// workload's own PeerAuthentication.
#[test]
fn auto_mtls_marks_endpoints_with_sidecars_and_the_inbound_listener_has_peer_authn() {
    const TEXT: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-0, namespace: foo}
spec:
  address: 10.0.0.1
  labels: {app: httpbin, version: v1, security.istio.io/tlsMode: istio}
  serviceAccount: httpbin
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-legacy, namespace: foo}
spec:
  address: 10.0.0.2
  labels: {app: httpbin, version: legacy}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-disabled, namespace: foo}
spec:
  address: 10.0.0.3
  labels: {app: httpbin, version: v3, security.istio.io/tlsMode: istio}
  serviceAccount: httpbin
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: v3-off, namespace: foo}
spec:
  selector: {matchLabels: {version: v3}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: foo}
spec:
  mtls: {mode: STRICT}
"#;
    let loaded = keel_config::load_str(TEXT, "mtls.yaml", &Default::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let client = SidecarOptions {
        namespace: "foo".into(),
        labels: [("app".to_string(), "sleep".to_string())].into(),
        ..Default::default()
    };
    let s = compile(&loaded.resources, &client).snapshot;
    let cluster = s
        .clusters
        .get("outbound|8000||httpbin.foo.svc.cluster.local")
        .expect("httpbin cluster");
    let mut eps: Vec<(String, bool, String)> = cluster
        .endpoints
        .iter()
        .map(|e| (e.address.to_string(), e.mtls, e.identity.clone()))
        .collect();
    eps.sort();
    let id = "spiffe://cluster.local/ns/foo/sa/httpbin".to_string();
    assert_eq!(
        eps,
        vec![
            ("10.0.0.1:8080".into(), true, id.clone()),
            ("10.0.0.2:8080".into(), false, String::new()),
            ("10.0.0.3:8080".into(), false, id),
        ]
    );
    // The inbound listener of a workload in foo: the namespace's STRICT, or DISABLE for v3.
    let inbound = |labels: &[(&str, &str)]| {
        let opts = SidecarOptions {
            namespace: "foo".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let s = compile(&loaded.resources, &opts).snapshot;
        listener(&s, "virtualInbound")
            .peer_authn
            .clone()
            .expect("peer_authn")
            .mode
    };
    assert_eq!(
        inbound(&[("app", "httpbin"), ("version", "v1")]),
        keel_snapshot::MtlsMode::Strict
    );
    assert_eq!(
        inbound(&[("app", "httpbin"), ("version", "v3")]),
        keel_snapshot::MtlsMode::Disable
    );
    assert!(
        listener(&s, "virtualOutbound").peer_authn.is_none(),
        "outbound listeners take no peer authentication"
    );
}

#[test]
fn each_direct_inbound_port_is_a_listener_forwarding_to_the_app_port_in_its_position() {
    // The local mesh registers one sidecar port per Service target port (tcp-echo's 9000 and
    // 9001): a connection addressed to the second goes to the second app port.
    let s = snapshot(SidecarOptions {
        inbound_port: 20006,
        direct_inbound_ports: vec![20007],
        inbound_ports: vec![
            InboundPort {
                port: 31000,
                protocol: "HTTP".into(),
                local: None,
            },
            InboundPort {
                port: 31001,
                protocol: "TCP".into(),
                local: None,
            },
        ],
        ..productpage()
    });
    let first = listener(&s, "virtualInbound");
    let second = listener(&s, "virtualInbound_20007");
    assert_eq!(first.address.port(), 20006);
    assert_eq!(second.address.port(), 20007);
    assert_eq!(second.kind, first.kind);
    for l in [first, second] {
        let tcp = l
            .tcp
            .iter()
            .find(|r| r.name == "inbound|31001||")
            .expect("tcp route");
        let ports: Vec<_> = tcp.matches.iter().map(|m| m.port).collect();
        assert_eq!(ports, vec![Some(31001), Some(20007)]);
        let routes = &l.http.as_ref().unwrap().virtual_hosts[0].routes;
        let http = routes.iter().find(|r| r.name == "inbound|31000||").unwrap();
        let ports: Vec<_> = http.matches.iter().map(|m| m.port).collect();
        assert_eq!(ports, vec![Some(31000), Some(20006)]);
    }
    // Without direct ports (iptables), one inbound listener as before.
    let s = snapshot(productpage());
    let inbound: Vec<_> = s
        .listeners
        .iter()
        .filter(|l| l.name.starts_with("virtualInbound"))
        .collect();
    assert_eq!(inbound.len(), 1);
}

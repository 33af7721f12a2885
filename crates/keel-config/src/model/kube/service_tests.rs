use super::*;
use crate::Spec;
use crate::model::kube::checks::check_yaml;
use crate::model::kube::pod::{Container, ContainerPort};

fn service(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: ns}}\nspec:\n{spec}"
    )
}

fn load(text: &str) -> Service {
    let loaded = crate::load_str(text, "k.yaml", &crate::LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    match &loaded.resources[0].spec {
        Spec::Service(s) => (**s).clone(),
        other => panic!("not a service: {other:?}"),
    }
}

const FULL: &str = r#"  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: PreferDualStack
  externalIPs: [192.0.2.1]
  loadBalancerIP: 192.0.2.2
  sessionAffinity: None
  externalTrafficPolicy: Local
  internalTrafficPolicy: Cluster
  trafficDistribution: PreferClose
  publishNotReadyAddresses: true
  selector: {app: reviews}
  ports:
  - {name: http-web, port: 80, targetPort: http, nodePort: 30080, protocol: TCP}
  - {name: grpc, port: 9090, targetPort: 9091, appProtocol: grpc}
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53}
  - {name: mongo, port: 27017, targetPort: 0}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.7}, {hostname: lb.example.com}]
"#;

#[test]
fn decodes_and_answers_mesh_questions() {
    let text = service(FULL);
    assert!(check_yaml(&text).is_empty(), "{:?}", check_yaml(&text));
    let svc = load(&text);
    assert_eq!(svc.service_type(), ServiceType::LoadBalancer);
    assert!(!svc.is_headless() && !svc.is_external_name());
    assert_eq!(svc.cluster_ips(), vec!["10.96.0.10", "fd00::10"]);
    assert_eq!(
        svc.load_balancer_addresses(),
        vec!["203.0.113.7", "lb.example.com"]
    );
    assert_eq!(
        svc.spec.traffic_distribution.as_deref(),
        Some("PreferClose")
    );
    assert_eq!(svc.spec.ip_families, vec![IpFamily::Ipv4, IpFamily::Ipv6]);

    let web = svc.port_by_name("http-web").expect("port");
    assert_eq!(web.mesh_protocol(), MeshProtocol::Http);
    assert_eq!(web.target_port(), IntOrString::String("http".into()));
    assert_eq!(
        svc.port_by_name("grpc").map(|p| p.mesh_protocol()),
        Some(MeshProtocol::Grpc)
    );
    assert_eq!(
        svc.port_by_name("dns").map(|p| p.mesh_protocol()),
        Some(MeshProtocol::Udp)
    );
    // TCP is preferred when a number is served over both transports.
    assert_eq!(
        svc.port_by_number(53).map(|p| p.name.as_str()),
        Some("dns-tcp")
    );
    let mongo = svc.port_by_number(27017).expect("port");
    assert_eq!(mongo.target_port(), IntOrString::Int(27017));
    assert_eq!(mongo.mesh_protocol(), MeshProtocol::Mongo);
    assert!(svc.port_by_number(1).is_none());

    let mut pod = PodSpec::default();
    pod.containers.push(Container {
        name: "c".into(),
        ports: vec![ContainerPort {
            name: "http".into(),
            container_port: 9080,
            ..Default::default()
        }],
        ..Default::default()
    });
    assert_eq!(svc.resolve_target_port(web, &pod), Some(9080));
    assert_eq!(
        svc.resolve_target_port(svc.port_by_name("grpc").expect("port"), &pod),
        Some(9091)
    );

    let labels: BTreeMap<String, String> = [("app".to_string(), "reviews".to_string())].into();
    assert!(svc.selects(&labels));
    assert!(!svc.selects(&BTreeMap::new()));
    let mut manual = svc.clone();
    manual.spec.selector.clear();
    assert!(!manual.selects(&labels));
}

#[test]
fn headless_and_external_name() {
    let h = load(&service("  clusterIP: None\n  selector: {app: a}\n"));
    assert!(h.is_headless());
    assert!(h.cluster_ips().is_empty());
    assert!(check_yaml(&service("  clusterIP: None\n")).is_empty());
    let text = service("  type: ExternalName\n  externalName: db.example.com.\n");
    assert!(check_yaml(&text).is_empty(), "{:?}", check_yaml(&text));
    assert!(load(&text).is_external_name());
    let e = check_yaml(&service("  type: ExternalName\n"));
    assert!(e[0].contains("spec.externalName: Required value"), "{e:?}");
    let e = check_yaml(&service("  type: ExternalName\n  externalName: Bad_Host\n"));
    assert!(
        e[0].contains(
            "spec.externalName: Invalid value: \"Bad_Host\": a lowercase RFC 1123 subdomain"
        ),
        "{e:?}"
    );
}

#[test]
fn port_rules() {
    let e = check_yaml(&service(
        "  ports:\n  - {name: a, port: 0}\n  - {name: a, port: 80}\n  - {port: 80}\n  - {name: Web, port: 81, targetPort: 70000}\n  - {name: b, port: 82, targetPort: HTTP}\n  - {name: c, port: 83, appProtocol: \"bad proto\"}\n  - {name: d, port: 84, nodePort: 30000}\n",
    ));
    let want = [
        (
            "k.yaml:6:21",
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        ("", "spec.ports[1].name: Duplicate value: \"a\""),
        (
            "",
            "spec.ports[2].name: Required value: each port must be named",
        ),
        (
            "",
            "spec.ports[2]: Duplicate value: port 80/TCP is already defined",
        ),
        (
            "",
            "spec.ports[3].name: Invalid value: \"Web\": a lowercase RFC 1123 label",
        ),
        ("", "spec.ports[3].targetPort: Invalid value: 70000"),
        (
            "",
            "spec.ports[4].targetPort: Invalid value: \"HTTP\": a port name must contain only",
        ),
        (
            "",
            "spec.ports[5].appProtocol: Invalid value: \"bad proto\"",
        ),
        (
            "",
            "warning: Service ns/reviews: spec.ports[6].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
        ),
    ];
    assert_eq!(e.len(), want.len(), "{e:?}");
    for (got, (pos, msg)) in e.iter().zip(want) {
        assert!(got.contains(pos) && got.contains(msg), "{got} !~ {msg}");
    }
    // The same number over two transports is fine; one unnamed port is fine.
    assert!(
        check_yaml(&service(
            "  ports:\n  - {name: a, port: 53}\n  - {name: b, port: 53, protocol: UDP}\n"
        ))
        .is_empty()
    );
    assert!(check_yaml(&service("  ports: [{port: 80, targetPort: 0}]\n")).is_empty());
    // Empty strings are "unset" for fields the API server defaults.
    let text =
        service("  type: \"\"\n  sessionAffinity: \"\"\n  ports: [{port: 80, protocol: \"\"}]\n");
    assert!(check_yaml(&text).is_empty(), "{:?}", check_yaml(&text));
    assert_eq!(load(&text).service_type(), ServiceType::ClusterIp);
    assert_eq!(load(&text).spec.ports[0].protocol(), Protocol::Tcp);
    let e = check_yaml(&service("  ports: [{port: 80, protocol: tcp}]\n"));
    assert!(e[0].contains("did you mean \"TCP\""), "{e:?}");
}

#[test]
fn address_and_selector_rules() {
    let e = check_yaml(&service(
        "  clusterIP: 10.0.0.300\n  clusterIPs: [10.0.0.1]\n  externalIPs: [example.com]\n  selector: {app: \"a b\"}\n  ports: [{port: 80}]\n",
    ));
    assert!(
        e[0].contains("spec.clusterIP: Invalid value: \"10.0.0.300\": must be empty, 'None', or a valid IP address"),
        "{e:?}"
    );
    assert!(
        e[1].contains("spec.clusterIPs[0]: Invalid value: \"10.0.0.1\": must match clusterIP"),
        "{e:?}"
    );
    assert!(
        e[2].contains(
            "spec.externalIPs[0]: Invalid value: \"example.com\": must be a valid IP address"
        ),
        "{e:?}"
    );
    assert!(
        e[3].contains("spec.selector.app: invalid label value"),
        "{e:?}"
    );
}

#[test]
fn service_names_and_missing_ports() {
    let e = check_yaml(
        "apiVersion: v1\nkind: Service\nmetadata: {name: 1svc}\nspec:\n  ports: [{port: 80}]\n",
    );
    assert!(
        e[0].contains(
            "metadata.name: Invalid value: \"1svc\": a Service name must be a DNS-1035 label"
        ),
        "{e:?}"
    );
    // Not reported twice when the metadata rules already reject the name.
    let e = check_yaml(
        "apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Svc}\nspec:\n  ports: [{port: 80}]\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    let e = check_yaml(&service("  selector: {app: a}\n"));
    assert!(
        e.len() == 1 && e[0].contains("warning") && e[0].contains("spec.ports: Required value"),
        "{e:?}"
    );
}

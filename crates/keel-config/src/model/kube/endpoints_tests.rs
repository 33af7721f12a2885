use super::*;
use crate::Spec;
use crate::model::kube::checks::check_yaml;

fn load(text: &str) -> Spec {
    let loaded = crate::load_str(text, "k.yaml", &crate::LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.resources[0].spec.clone()
}

const ENDPOINTS: &str = r#"apiVersion: v1
kind: Endpoints
metadata: {name: reviews, namespace: ns}
subsets:
- addresses:
  - ip: 10.1.0.5
    nodeName: node-1
    targetRef: {kind: Pod, name: reviews-v1-abc, namespace: ns, uid: u1}
  notReadyAddresses:
  - {ip: "fd00::7", hostname: web-0}
  ports:
  - {name: http, port: 9080, protocol: TCP}
  - {name: grpc-api, port: 9090, appProtocol: kubernetes.io/h2c}
"#;

#[test]
fn endpoints_model() {
    assert!(
        check_yaml(ENDPOINTS).is_empty(),
        "{:?}",
        check_yaml(ENDPOINTS)
    );
    let Spec::Endpoints(e) = load(ENDPOINTS) else {
        panic!("not endpoints")
    };
    let ss = &e.subsets[0];
    assert_eq!(
        ss.addresses[0].target_ref.as_ref().map(|r| r.name.as_str()),
        Some("reviews-v1-abc")
    );
    assert_eq!(ss.not_ready_addresses[0].hostname, "web-0");
    assert_eq!(ss.ports[0].mesh_protocol(), MeshProtocol::Http);
    assert_eq!(ss.ports[1].mesh_protocol(), MeshProtocol::Http2);
}

#[test]
fn endpoints_rules() {
    let text = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: e}\nsubsets:\n- ports: [{port: 80}]\n- addresses: [{ip: 10.0.0.999}, {ip: 127.0.0.1}, {ip: 169.254.1.1, hostname: A}]\n  notReadyAddresses: [{ip: \"::\"}, {ip: 10.0.0.1, nodeName: Node_1}]\n  ports: [{port: 0, name: a}, {port: 81}, {port: 82, name: B, appProtocol: \"x y\"}]\n";
    let e = check_yaml(text);
    let want = [
        "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`",
        "subsets[1].addresses[0].ip: Invalid value: \"10.0.0.999\": must be a valid IP address",
        "subsets[1].addresses[1].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range",
        "subsets[1].addresses[2].ip: Invalid value: \"169.254.1.1\": may not be in the link-local range",
        "subsets[1].addresses[2].hostname: Invalid value: \"A\"",
        "subsets[1].notReadyAddresses[0].ip: Invalid value: \"::\": may not be unspecified",
        "subsets[1].notReadyAddresses[1].nodeName: Invalid value: \"Node_1\"",
        "subsets[1].ports[0].port: Invalid value: 0",
        "subsets[1].ports[1].name: Required value",
        "subsets[1].ports[2].name: Invalid value: \"B\"",
        "subsets[1].ports[2].appProtocol: Invalid value: \"x y\"",
    ];
    assert_eq!(e.len(), want.len(), "{e:?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.contains(w), "{got} !~ {w}");
    }
}

const SLICE: &str = r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc12
  namespace: ns
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
endpoints:
- addresses: [10.1.0.5]
  conditions: {ready: true, serving: true, terminating: false}
  hostname: reviews-0
  nodeName: node-1
  zone: us-east-1a
  hints: {forZones: [{name: us-east-1a}]}
  targetRef: {kind: Pod, name: reviews-v1-abc, namespace: ns}
- addresses: [10.1.0.6]
  conditions: {ready: false, terminating: true}
- addresses: [10.1.0.7]
ports:
- {name: http, port: 9080, protocol: TCP, appProtocol: http}
- {name: "", protocol: UDP}
"#;

#[test]
fn endpoint_slice_model() {
    assert!(check_yaml(SLICE).is_empty(), "{:?}", check_yaml(SLICE));
    let loaded = crate::load_str(SLICE, "k.yaml", &crate::LoadOptions::default());
    let r = &loaded.resources[0];
    let Spec::EndpointSlice(s) = &r.spec else {
        panic!("not a slice")
    };
    assert_eq!(s.address_type, Some(AddressType::Ipv4));
    assert_eq!(s.service_name(&r.meta.labels), Some("reviews"));
    let [a, b, c] = &s.endpoints[..] else {
        panic!("three endpoints")
    };
    assert!(a.conditions.is_ready() && a.conditions.is_serving());
    assert_eq!(a.zone.as_deref(), Some("us-east-1a"));
    assert_eq!(
        a.hints.as_ref().map(|h| h.for_zones[0].name.as_str()),
        Some("us-east-1a")
    );
    assert!(
        !b.conditions.is_ready() && !b.conditions.is_serving() && b.conditions.is_terminating()
    );
    // Unknown readiness counts as ready.
    assert!(c.conditions.is_ready() && !c.conditions.is_terminating());
    assert_eq!(s.ports[0].mesh_protocol(), MeshProtocol::Http);
    assert_eq!(s.ports[1].port, None);
    assert_eq!(s.ports[1].mesh_protocol(), MeshProtocol::Udp);
}

#[test]
fn endpoint_slice_rules() {
    let slice = |body: &str| {
        check_yaml(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s}}\n{body}"
        ))
    };
    let e = slice("endpoints: [{addresses: [10.0.0.1]}]\n");
    assert!(e[0].contains("addressType: Required value"), "{e:?}");
    let e = slice("addressType: IP\n");
    assert!(e[0].contains("Unsupported value: \"IP\""), "{e:?}");
    let e = slice(
        "addressType: IPv4\nendpoints:\n- addresses: []\n- addresses: [\"fd00::1\", 10.0.0.1, 127.0.0.2]\n  hostname: Web\n",
    );
    let want = [
        "endpoints[0].addresses: Required value: must contain at least 1 address",
        "endpoints[1].addresses[0]: Invalid value: \"fd00::1\": must be an IPv4 address",
        "endpoints[1].addresses[2]: Invalid value: \"127.0.0.2\": may not be in the loopback range",
        "endpoints[1].hostname: Invalid value: \"Web\"",
    ];
    assert_eq!(e.len(), want.len(), "{e:?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.contains(w), "{got} !~ {w}");
    }
    let e = slice(
        "addressType: IPv6\nendpoints: [{addresses: [10.0.0.1, \"ff02::1\", \"fe80::1\"]}]\n",
    );
    assert!(e[0].contains("must be an IPv6 address"), "{e:?}");
    assert!(e[1].contains("link-local multicast"), "{e:?}");
    assert!(e[2].contains("link-local range"), "{e:?}");
    assert!(slice("addressType: FQDN\nendpoints: [{addresses: [db.example.com]}]\n").is_empty());
    let e = slice("addressType: FQDN\nendpoints: [{addresses: [db, Bad_Name.com]}]\n");
    assert!(e[0].contains("at least two segments"), "{e:?}");
    assert!(e[1].contains("RFC 1123 subdomain"), "{e:?}");
    let e = slice(
        "addressType: IPv4\nports: [{name: a, port: 1}, {name: a}, {name: Bad}, {appProtocol: \"x y\"}, {}]\n",
    );
    let want = [
        "ports[1].name: Duplicate value: \"a\"",
        "ports[2].name: Invalid value: \"Bad\"",
        "ports[3].appProtocol: Invalid value",
        "ports[4].name: Duplicate value: \"\"",
    ];
    assert_eq!(e.len(), want.len(), "{e:?}");
    for (got, w) in e.iter().zip(want) {
        assert!(got.contains(w), "{got} !~ {w}");
    }
}

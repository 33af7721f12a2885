use crate::Spec;
use crate::model::kube::checks::check_yaml;

fn load(text: &str) -> Vec<crate::Resource> {
    let loaded = crate::load_str(text, "k.yaml", &crate::LoadOptions::default());
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    loaded.resources
}

const GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: istio
  listeners:
  - name: http
    hostname: "*.example.com"
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {shared-gateway: "true"}}
      kinds: [{kind: HTTPRoute}]
  - name: https
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs: [{name: edge-cert, namespace: certs}]
      options: {example.com/min-version: "1.3"}
  - name: mesh
    port: 15008
    protocol: HBONE
  addresses: [{type: Hostname, value: edge.example.com}, {value: 10.0.0.1}]
  infrastructure:
    labels: {team: edge}
    parametersRef: {group: "", kind: ConfigMap, name: edge-options}
  someFutureField: {x: 1}
status:
  conditions:
  - {type: Programmed, status: "False", reason: AddressNotUsable, message: nope}
"#;

#[test]
fn gateways_decode_leniently() {
    assert!(check_yaml(GATEWAY).is_empty(), "{:?}", check_yaml(GATEWAY));
    let r = load(GATEWAY);
    assert_eq!(r[0].kind(), crate::Kind::KubernetesGateway);
    assert_eq!(r[0].reference().to_string(), "Gateway infra/edge");
    assert_eq!(r[0].reference().group, "gateway.networking.k8s.io");
    let Spec::KubernetesGateway(gw) = &r[0].spec else {
        panic!("not a Gateway API gateway")
    };
    let s = &gw.spec;
    assert_eq!(s.gateway_class_name, "istio");
    assert_eq!(s.listeners.len(), 3);
    assert_eq!(s.listeners[0].hostname(), Some("*.example.com"));
    assert_eq!(s.listeners[1].hostname(), None);
    assert_eq!(s.listeners[2].protocol, "HBONE");
    let tls = s.listeners[1].tls.as_ref().expect("tls");
    assert_eq!(tls.certificate_refs[0].namespace.as_deref(), Some("certs"));
    let allowed = s.listeners[0].allowed_routes.as_ref().expect("allowed");
    assert_eq!(allowed.kinds[0].kind, "HTTPRoute");
    assert_eq!(
        allowed.namespaces.as_ref().and_then(|n| n.from.as_deref()),
        Some("Selector")
    );
    assert_eq!(s.addresses[0].type_.as_deref(), Some("Hostname"));
    assert_eq!(
        s.infrastructure.as_ref().map(|i| i.labels["team"].as_str()),
        Some("edge")
    );
    // Status is kept as written, and its conditions are reachable from the source too.
    assert!(gw.status.is_some());
    let cond = r[0]
        .origin
        .node
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.as_seq())
        .map(|c| c.len());
    assert_eq!(cond, Some(1));
    // Both Gateways in one file: told apart by group.
    let both = format!(
        "{GATEWAY}---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: edge, namespace: infra}}\nspec:\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]\n"
    );
    let r = load(&both);
    assert_eq!(r[1].kind(), crate::Kind::Gateway);
    assert_ne!(r[0].reference(), r[1].reference());
    assert_eq!(r[0].reference().to_string(), r[1].reference().to_string());
}

#[test]
fn gateway_rules_the_api_server_enforces() {
    let e = check_yaml(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: istio\n  listeners:\n  - {name: http, port: 80, protocol: HTTP}\n  - {name: http, port: 70000, protocol: HTTP}\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("k.yaml:8:24")
            && e[0].contains("Gateway default/g: spec.listeners[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
        "{e:?}"
    );
    assert!(
        e[1].contains("k.yaml:8:12")
            && e[1].contains("spec.listeners[1].name: Duplicate value: \"http\": Listener name must be unique within the Gateway"),
        "{e:?}"
    );
    // spec is required, as in the CRD.
    let e = check_yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n",
    );
    assert!(
        e[0].contains("HTTPRoute default/r: spec: Required value: an HTTPRoute needs a spec"),
        "{e:?}"
    );
    // Values of the wrong type are decode errors, as the API server rejects them.
    let e = check_yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  gatewayClassName: istio\n  listeners: [{name: a, port: http, protocol: HTTP}]\n",
    );
    assert!(
        e[0].contains("spec.listeners[0].port") && e[0].contains("resource skipped"),
        "{e:?}"
    );
}

const ROUTES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs:
  - {name: edge, namespace: infra, sectionName: http}
  - {group: "", kind: Service, name: web, port: 8080}
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 8080, weight: 90}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: infra}]
  rules: [{backendRefs: [{name: rpc, port: 9000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: infra, sectionName: db}]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {name: tls, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  hostnames: [secure.example.com]
  rules: [{backendRefs: [{name: secure, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec: {controllerName: istio.io/gateway-controller, description: Istio}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-shop, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: Secret}]
"#;

#[test]
fn routes_classes_and_grants() {
    assert!(check_yaml(ROUTES).is_empty(), "{:?}", check_yaml(ROUTES));
    let r = load(ROUTES);
    let kinds: Vec<String> = r.iter().map(|r| r.reference().to_string()).collect();
    assert_eq!(
        kinds,
        [
            "HTTPRoute shop/web",
            "GRPCRoute shop/rpc",
            "TCPRoute shop/db",
            "TLSRoute shop/tls",
            "GatewayClass istio",
            "ReferenceGrant certs/allow-shop"
        ]
    );
    let Spec::HttpRoute(route) = &r[0].spec else {
        panic!("not an HTTPRoute")
    };
    let p = &route.spec.parent_refs;
    assert!(p[0].is_gateway() && p[0].namespace("shop") == "infra");
    assert_eq!(p[0].section_name.as_deref(), Some("http"));
    assert!(!p[1].is_gateway() && p[1].kind() == "Service" && p[1].group().is_empty());
    assert_eq!(p[1].namespace("shop"), "shop");
    assert_eq!(route.spec.hostnames, ["shop.example.com"]);
    assert_eq!(route.spec.rules[0]["backendRefs"][0]["weight"], 90);
    let Spec::TlsRoute(tls) = &r[3].spec else {
        panic!("not a TLSRoute")
    };
    assert_eq!(tls.spec.parent_refs[0].group(), "gateway.networking.k8s.io");
    let Spec::GatewayClass(class) = &r[4].spec else {
        panic!("not a GatewayClass")
    };
    assert_eq!(class.spec.controller_name, "istio.io/gateway-controller");
    let Spec::ReferenceGrant(grant) = &r[5].spec else {
        panic!("not a ReferenceGrant")
    };
    let gw = ("gateway.networking.k8s.io", "Gateway", "infra");
    assert!(grant.allows(gw, ("", "Secret", "edge-cert")));
    assert!(!grant.allows(gw, ("", "Service", "edge-cert")));
    assert!(!grant.allows(
        ("gateway.networking.k8s.io", "Gateway", "shop"),
        ("", "Secret", "x")
    ));

    let e = check_yaml(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: web, kind: Service, group: '', port: 0}]\n",
    );
    assert!(
        e.len() == 1
            && e[0]
                .contains("spec.parentRefs[0].port: Invalid value: 0: must be between 1 and 65535"),
        "{e:?}"
    );
}

#[test]
fn unknown_versions_name_the_served_ones() {
    let loaded = crate::load_str(
        "apiVersion: gateway.networking.k8s.io/v2\nkind: Gateway\nmetadata: {name: g}\nspec: {}\n",
        "k.yaml",
        &crate::LoadOptions::default(),
    );
    let msg = loaded.diagnostics[0].to_string();
    assert!(
        msg.contains("gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1"),
        "{msg}"
    );
    assert_eq!(loaded.skipped[0].group, "gateway.networking.k8s.io");
}

//! Analyzers that read the Kubernetes Gateway API and Nodes: `k8sgateway.SelectorAnalyzer`
//! (IST0166) over Istio's testdata when `../shared` is present, and Keel's own fixtures for
//! IST0166, the Gateway API part of IST0171, node topology labels in IST0173, and kinds that
//! share a name.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod an2_common;

use an2_common::{lines, load, origins, testdata};
use keel_analyze::AnalysisContext;
use keel_analyze::MeshConfig;
use keel_analyze::analyzers::{Filter, run, run_only};

const SELECTOR: &str = "k8sgateway.SelectorAnalyzer";
const CONDITIONS: &str = "conditions.ConditionAnalyzer";
const SUBSET: &str = "destinationrule.SubsetSelectPodAnalyzer";

#[test]
fn istio_table() {
    let Some(dir) = testdata() else {
        eprintln!("skipping: ../shared/istio-samples is not checked out");
        return;
    };
    let text = std::fs::read_to_string(dir.join("k8sgateway-selector.yaml")).unwrap_or_default();
    let (resources, problems) = load(&[("k8sgateway-selector.yaml", &text)]);
    assert!(problems.is_empty(), "{problems:?}");
    let ctx = AnalysisContext::new(&resources, MeshConfig::default());
    let mut want = vec![
        "IST0166 RequestAuthentication default/ra-ineffective",
        "IST0166 AuthorizationPolicy default/ap-ineffective",
        "IST0166 WasmPlugin default/wasmplugin-ineffective",
        "IST0166 Telemetry default/telemetry-ineffective",
    ];
    want.sort();
    assert_eq!(origins(&run_only(&ctx, &[SELECTOR])), want);
}

const GATEWAY_PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: edge-istio-6ff4cf9645-xbqmc
  namespace: shop
  labels:
    gateway.networking.k8s.io/gateway-name: edge
    app: edge-istio
spec:
  containers: [{name: istio-proxy, image: proxyv2}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
spec:
  containers: [{name: web, image: web}]
---
apiVersion: v1
kind: Pod
metadata:
  name: other-istio-1
  namespace: other
  labels: {gateway.networking.k8s.io/gateway-name: other}
spec:
  containers: [{name: istio-proxy, image: proxyv2}]
"#;

#[test]
fn selectors_on_gateway_api_gateways_are_ineffective() {
    let yaml = format!(
        r#"{GATEWAY_PODS}---
# Selects the gateway's pod by its gateway-name label.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: by-gateway, namespace: shop}}
spec:
  selector:
    matchLabels: {{gateway.networking.k8s.io/gateway-name: edge}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: [/admin]}}}}]}}]
---
# An empty selector selects every pod of the namespace, the gateway's included.
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: everything, namespace: shop}}
spec:
  selector: {{}}
  accessLogging: [{{providers: [{{name: envoy}}]}}]
---
# targetRef is how to attach to a Gateway API gateway: fine.
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: with-target, namespace: shop}}
spec:
  selector:
    matchLabels: {{app: edge-istio}}
  targetRef: {{group: gateway.networking.k8s.io, kind: Gateway, name: edge}}
---
# Selects only the application's pod: fine.
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: web-only, namespace: shop}}
spec:
  selector:
    matchLabels: {{app: web}}
---
# No selector at all: fine.
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {{name: no-selector, namespace: shop}}
spec:
  url: oci://example.com/filter:1
---
# The gateway pod with these labels is in another namespace: fine.
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {{name: elsewhere, namespace: shop}}
spec:
  selector:
    matchLabels: {{gateway.networking.k8s.io/gateway-name: other}}
  url: oci://example.com/filter:1
"#
    );
    assert_eq!(
        lines(&yaml, SELECTOR),
        [
            "Warning [IST0166] (AuthorizationPolicy shop/by-gateway t.yaml:30) Ineffective selector on Kubernetes Gateway edge. Use the TargetRef field instead.",
            "Warning [IST0166] (Telemetry shop/everything t.yaml:40) Ineffective selector on Kubernetes Gateway edge. Use the TargetRef field instead.",
        ]
    );
    // Without gateway pods there is nothing to report.
    let no_gateways = yaml.replace("gateway.networking.k8s.io/gateway-name: edge\n", "");
    assert!(
        lines(&no_gateways, SELECTOR).is_empty(),
        "{:?}",
        lines(&no_gateways, SELECTOR)
    );
}

const GATEWAY_API_STATUS: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
status:
  conditions:
  - {type: Accepted, status: "True", reason: Accepted, message: ok}
  - {type: Programmed, status: "False", reason: AddressNotAssigned, message: no address yet}
  listeners:
  - name: http
    conditions: [{type: ResolvedRefs, status: "False", reason: InvalidCertificateRef, message: listener-level}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: edge}, {name: other}]
status:
  parents:
  - parentRef: {name: edge}
    controllerName: istio.io/gateway-controller
    conditions:
    - {type: Accepted, status: "True", reason: Accepted, message: ok}
    - {type: ResolvedRefs, status: "False", reason: BackendNotFound, message: 'backend(web.shop) not found'}
  - parentRef: {name: other}
    controllerName: istio.io/gateway-controller
    conditions:
    - {type: Accepted, status: "False", reason: NotAllowedByListeners, message: no listener allows it}
    - {type: Conflicted, status: "False", reason: NoConflicts, message: fine}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: shop}
spec:
  parentRefs: [{name: edge}]
status:
  parents:
  - parentRef: {name: edge}
    conditions:
    - {type: Accepted, status: "True", reason: Accepted, message: ok}
---
# TCPRoutes are not among the kinds Istio checks.
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: db, namespace: shop}
spec:
  parentRefs: [{name: edge}]
status:
  parents:
  - parentRef: {name: edge}
    conditions:
    - {type: Accepted, status: "False", reason: NotAllowedByListeners, message: tcp}
"#;

#[test]
fn negative_gateway_api_conditions() {
    assert_eq!(
        lines(GATEWAY_API_STATUS, CONDITIONS),
        [
            "Warning [IST0171] (Gateway shop/edge t.yaml:1) A condition with a negative status is present: type=Programmed, reason=AddressNotAssigned, message=no address yet.",
            "Warning [IST0171] (HTTPRoute shop/web t.yaml:15) A condition with a negative status is present: type=Accepted, reason=NotAllowedByListeners, message=no listener allows it.",
            "Warning [IST0171] (HTTPRoute shop/web t.yaml:15) A condition with a negative status is present: type=ResolvedRefs, reason=BackendNotFound, message=backend(web.shop) not found.",
        ]
    );
}

#[test]
fn kinds_of_the_same_name_are_kept_apart() {
    // An Istio Gateway shop/edge that suppresses every message does not silence the Gateway
    // API's Gateway of the same namespace and name.
    let yaml = format!(
        r#"{GATEWAY_API_STATUS}---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: shop
  annotations: {{galley.istio.io/analyze-suppress: "*"}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
"#
    );
    let (resources, problems) = load(&[("t.yaml", &yaml)]);
    assert!(problems.is_empty(), "{problems:?}");
    let ctx = AnalysisContext::new(&resources, MeshConfig::default());
    let all = run(&ctx, &Filter::default());
    let gateway: Vec<String> = all
        .iter()
        .filter(|m| m.origin.as_ref().is_some_and(|o| o.kind == "Gateway"))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        gateway,
        [
            "Warning [IST0171] (Gateway shop/edge t.yaml:1) A condition with a negative status is present: type=Programmed, reason=AddressNotAssigned, message=no address yet."
        ]
    );
    // The same annotation on the Gateway API's Gateway silences it.
    let suppressed = GATEWAY_API_STATUS.replacen(
        "metadata: {name: edge, namespace: shop}",
        "metadata: {name: edge, namespace: shop, annotations: {galley.istio.io/analyze-suppress: IST0171}}",
        1,
    );
    let (resources, _) = load(&[("t.yaml", &suppressed)]);
    let ctx = AnalysisContext::new(&resources, MeshConfig::default());
    assert!(
        run(&ctx, &Filter::default())
            .iter()
            .all(|m| m.origin.as_ref().is_none_or(|o| o.kind != "Gateway")),
    );
}

const TOPOLOGY: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: by-locality, namespace: shop}
spec:
  host: web.shop.svc.cluster.local
  subsets:
  - name: west-a
    labels: {topology.kubernetes.io/zone: us-west-1a}
  - name: west-a-v1
    labels: {topology.kubernetes.io/region: us-west-1, version: v1}
  - name: on-worker-1
    labels: {kubernetes.io/hostname: worker-1}
  - name: rack-7
    labels: {topology.istio.io/subzone: rack-7}
  - name: east
    labels: {topology.kubernetes.io/region: us-east-1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web, version: v1}}
spec:
  nodeName: worker-1
  containers: [{name: web, image: web}]
---
# Scheduled on a node the configuration doesn't describe: only its own labels.
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web, version: v2}}
spec:
  nodeName: worker-9
  containers: [{name: web, image: web}]
---
apiVersion: v1
kind: Node
metadata:
  name: worker-1
  labels:
    topology.kubernetes.io/region: us-west-1
    topology.kubernetes.io/zone: us-west-1a
    topology.istio.io/subzone: ""
---
apiVersion: v1
kind: Node
metadata:
  name: worker-9
  labels: {topology.kubernetes.io/region: us-east-1}
"#;

#[test]
fn pods_inherit_their_nodes_topology_labels() {
    // worker-9 exists here, so web-2 is in us-east-1; the empty subzone is not inherited.
    assert_eq!(
        lines(TOPOLOGY, SUBSET),
        [
            "Error [IST0173] (DestinationRule shop/by-locality t.yaml:1) The Subset rack-7 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
        ]
    );
    // Without the worker-9 Node, web-2 has no region and nothing is in us-east-1.
    let cut = TOPOLOGY
        .rfind("---\napiVersion: v1\nkind: Node")
        .unwrap_or(TOPOLOGY.len());
    assert_eq!(
        lines(&TOPOLOGY[..cut], SUBSET),
        [
            "Error [IST0173] (DestinationRule shop/by-locality t.yaml:1) The Subset east defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
            "Error [IST0173] (DestinationRule shop/by-locality t.yaml:1) The Subset rack-7 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
        ]
    );
}

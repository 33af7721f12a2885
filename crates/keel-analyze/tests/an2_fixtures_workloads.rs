//! Keel's own fixtures for the workload, authorization-policy, telemetry and injection
//! analyzers: each message with its full text and line, and the cases that must stay quiet.
//! They also stand in for Istio's table cases whose testdata only exists upstream
//! (service/deployment/pod/injection files).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod an2_common;

use an2_common::{lines, lines_with};
use keel_analyze::MeshConfig;

#[test]
fn deployment_services() {
    let yaml = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api, sidecar.istio.io/inject: "true"}
    spec:
      containers: [{name: api, image: api}]
---
apiVersion: v1
kind: Service
metadata: {name: api-tcp, namespace: shop}
spec:
  selector: {app: api}
  ports: [{name: tcp-a, port: 8080}, {name: http, port: 80, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: api-udp, namespace: shop}
spec:
  selector: {app: api}
  ports: [{name: udp-a, port: 8080, protocol: UDP}, {name: http-b, port: 81, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: other}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, protocol: SCTP}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers: [{name: api, image: api}]
---
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: shop}
spec:
  ports: [{name: https, port: 8080, protocol: SCTP}]
"#;
    assert_eq!(
        lines(yaml, "deployment.MultiServiceAnalyzer"),
        [
            "Warning [IST0116] (Deployment shop/api t.yaml:3) This deployment api is associated with multiple services using port 8080 but different protocols: [shop/api-tcp shop/api-udp]",
            "Warning [IST0137] (Deployment shop/api t.yaml:3) This deployment api is associated with multiple services [shop/api-tcp shop/api-udp] using targetPort \"9080\" but different ports: [80 81].",
        ]
    );
    // In an injected namespace the plain Deployment is in the mesh too.
    let injected = format!(
        "{yaml}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {{istio-injection: enabled}}\n"
    );
    let got = lines(&injected, "deployment.MultiServiceAnalyzer");
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got.iter()
            .any(|l| l.contains("(Deployment shop/plain t.yaml:35)"))
    );
}

#[test]
fn application_uid() {
    let yaml = r#"apiVersion: v1
kind: Pod
metadata: {name: runs-as-proxy, namespace: app}
spec:
  securityContext: {runAsUser: 1337}
  containers:
  - name: app
    image: app
    securityContext: {runAsUser: 1337}
---
apiVersion: v1
kind: Pod
metadata: {name: sidecar-only, namespace: app}
spec:
  containers:
  - {name: app, image: app, securityContext: {runAsUser: 1000}}
  - {name: istio-proxy, image: proxyv2, securityContext: {runAsUser: 1337}}
---
apiVersion: v1
kind: Pod
metadata:
  name: istiod
  namespace: istio-system
  labels: {istio: pilot}
spec:
  securityContext: {runAsUser: 1337}
  containers: [{name: discovery, image: pilot}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: app}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: web, securityContext: {runAsUser: 1337}}
"#;
    assert_eq!(
        lines(yaml, "applicationUID.Analyzer"),
        [
            "Warning [IST0144] (Deployment app/web t.yaml:29) User ID (UID) 1337 is reserved for the sidecar proxy.",
            "Warning [IST0144] (Pod app/runs-as-proxy t.yaml:1) User ID (UID) 1337 is reserved for the sidecar proxy.",
        ]
    );
}

#[test]
fn authorization_policies() {
    let yaml = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {istio-injection: enabled}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-1, namespace: shop, labels: {app: cart}}
spec:
  containers: [{name: cart, image: cart}]
---
apiVersion: v1
kind: Pod
metadata: {name: batch, namespace: jobs, labels: {app: batch}}
spec:
  containers: [{name: batch, image: batch}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart, namespace: shop}
spec:
  selector:
    matchLabels: {app: cart}
  rules:
  - from:
    - source:
        namespaces: [shop, "sh*", "*op", payments]
        notNamespaces: [billing]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: checkout, namespace: shop}
spec:
  selector:
    matchLabels: {app: checkout, version: v2}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: jobs}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-cart, namespace: istio-system}
spec:
  selector:
    matchLabels: {app: cart}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {}
"#;
    assert_eq!(
        lines(yaml, "auth.AuthorizationPoliciesAnalyzer"),
        [
            "Error [IST0101] (AuthorizationPolicy shop/cart t.yaml:28) Referenced namespace not found: \"billing\"",
            "Error [IST0101] (AuthorizationPolicy shop/cart t.yaml:28) Referenced namespace not found: \"payments\"",
            "Warning [IST0127] (AuthorizationPolicy shop/checkout t.yaml:31) No matching workloads for this resource with the following labels: app=checkout,version=v2",
            "Warning [IST0127] (AuthorizationPolicy jobs/deny-all t.yaml:38) No matching workloads for this resource with the following labels: ",
        ]
    );
}

#[test]
fn telemetry_selectors_and_providers() {
    let yaml = r#"apiVersion: v1
kind: Pod
metadata: {name: ratings, namespace: app, labels: {app: ratings, app.kubernetes.io/part-of: shop}}
spec:
  containers: [{name: ratings, image: ratings}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: by-app, namespace: app}
spec:
  selector:
    matchLabels: {app: ratings}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: by-part, namespace: app}
spec:
  selector:
    matchLabels:
      app.kubernetes.io/part-of: shop
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: nobody, namespace: app}
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: ghost
      zone: a
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns-1, namespace: app}
spec:
  accessLogging:
  - disabled: true
  - filter: {expression: "response.code >= 400"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns-2, namespace: app}
spec:
  tracing:
  - providers: [{name: lightstep}]
  accessLogging:
  - providers: [{name: envoy}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: routed, namespace: app}
spec:
  targetRefs: [{kind: Service, name: ratings}]
"#;
    assert_eq!(
        lines(yaml, "telemetry.SelectorAnalyzer"),
        [
            "Error [IST0101] (Telemetry app/nobody t.yaml:28) Referenced selector not found: \"app.kubernetes.io/name=ghost,zone=a\"",
            "Error [IST0159] (Telemetry app/by-app t.yaml:9) The Telemetries [by-app by-part] in namespace \"app\" select the same workload pod \"ratings\", which can lead to undefined behavior.",
            "Error [IST0159] (Telemetry app/by-part t.yaml:16) The Telemetries [by-app by-part] in namespace \"app\" select the same workload pod \"ratings\", which can lead to undefined behavior.",
        ]
    );
    assert_eq!(
        lines(yaml, "telemetry.DefaultSelectorAnalyzer"),
        [
            "Error [IST0160] (Telemetry app/ns-1 t.yaml:31) The Telemetries [ns-1 ns-2] in namespace \"app\" have no workload selector, which can lead to undefined behavior.",
            "Error [IST0160] (Telemetry app/ns-2 t.yaml:39) The Telemetries [ns-1 ns-2] in namespace \"app\" have no workload selector, which can lead to undefined behavior.",
        ]
    );
    assert_eq!(
        lines(yaml, "telemetry.ProviderAnalyzer"),
        [
            "Warning [IST0157] (Telemetry app/ns-1 t.yaml:31) The Telemetry ns-1 in namespace \"app\" with empty providers will be ignored."
        ]
    );
    let with_default = MeshConfig {
        default_access_logging: vec!["envoy".into()],
        ..Default::default()
    };
    assert!(lines_with(yaml, with_default, "telemetry.ProviderAnalyzer").is_empty());
    assert!(lines(yaml, "telemetry.LightstepAnalyzer").is_empty());
    let lightstep = MeshConfig {
        lightstep_providers: vec!["lightstep".into()],
        ..Default::default()
    };
    assert_eq!(
        lines_with(yaml, lightstep, "telemetry.LightstepAnalyzer"),
        [
            "Warning [IST0002] (Telemetry app/ns-2 t.yaml:39) Deprecated: The Lightstep provider lightstep is deprecated, please migrate to OpenTelemetry provider."
        ]
    );
}

#[test]
fn injection() {
    let yaml = r#"apiVersion: v1
kind: Namespace
metadata:
  name: plain
---
apiVersion: v1
kind: Namespace
metadata:
  name: injected
  labels: {istio-injection: enabled}
---
apiVersion: v1
kind: Namespace
metadata:
  name: both
  labels: {istio-injection: enabled, istio.io/rev: canary}
---
apiVersion: v1
kind: Namespace
metadata:
  name: opted-out
  labels: {istio-injection: disabled, istio.io/rev: canary}
---
apiVersion: v1
kind: Namespace
metadata:
  name: ambient
  labels: {istio.io/dataplane-mode: ambient}
---
apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
---
apiVersion: v1
kind: Pod
metadata: {name: no-proxy, namespace: injected}
spec:
  containers: [{name: app, image: app}]
---
apiVersion: v1
kind: Pod
metadata: {name: with-proxy, namespace: injected}
spec:
  containers: [{name: app, image: app}, {name: istio-proxy, image: proxyv2}]
---
apiVersion: v1
kind: Pod
metadata:
  name: opted-out
  namespace: injected
  annotations: {sidecar.istio.io/inject: "False"}
spec:
  containers: [{name: app, image: app}]
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: injected}
spec:
  hostNetwork: true
  containers: [{name: app, image: app}]
---
apiVersion: v1
kind: Pod
metadata: {name: native-sidecar, namespace: injected}
spec:
  initContainers: [{name: istio-proxy, image: proxyv2, restartPolicy: Always}]
  containers: [{name: app, image: app}]
"#;
    assert_eq!(
        lines(yaml, "injection.Analyzer"),
        [
            "Warning [IST0103] (Pod injected/no-proxy t.yaml:35) The pod injected/no-proxy is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload.",
            "Warning [IST0123] (Namespace both t.yaml:12) The namespace has more than one type of injection labels [istio-injection=enabled istio.io/rev=canary], which may lead to undefined behavior. Make sure only one injection label exists.",
            "Info [IST0102] (Namespace plain t.yaml:4) The namespace is not enabled for Istio injection. Run 'kubectl label namespace plain istio-injection=enabled' to enable it, or 'kubectl label namespace plain istio-injection=disabled' to explicitly mark it as not needing injection.",
        ]
    );
    let by_default = format!(
        "{yaml}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio-sidecar-injector, namespace: istio-system}}\ndata:\n  values: '{{\"sidecarInjectorWebhook\": {{\"enableNamespacesByDefault\": true}}}}'\n"
    );
    let got = lines(&by_default, "injection.Analyzer");
    assert!(
        got.contains(&"Info [IST0148] (Namespace plain t.yaml:1) is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault as true.".to_string()),
        "{got:#?}"
    );
    assert!(!got.iter().any(|l| l.contains("IST0102")), "{got:#?}");
}

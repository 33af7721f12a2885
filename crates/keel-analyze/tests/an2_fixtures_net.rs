//! Keel's own fixtures for the destination-rule, service-entry, service, envoy-filter and
//! condition analyzers: each message with its full text and line, and the cases that must
//! stay quiet.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod an2_common;

use an2_common::{lines, lines_with};
use keel_analyze::MeshConfig;

#[test]
fn ca_certificates() {
    let yaml = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: db
  namespace: prod
spec:
  host: db.example.com
  trafficPolicy:
    tls:
      mode: SIMPLE
    portLevelSettings:
    - port:
        number: 5432
      tls:
        mode: MUTUAL
        caCertificates: ""
    - port:
        number: 5433
      tls:
        mode: SIMPLE
        caCertificates: /etc/ca.pem
    - port:
        number: 5434
      tls:
        mode: ISTIO_MUTUAL
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: from-secret
  namespace: prod
spec:
  host: db.example.com
  workloadSelector:
    matchLabels:
      app: client
  trafficPolicy:
    tls:
      mode: MUTUAL
      credentialName: db-client
"#;
    assert_eq!(
        lines(yaml, "destinationrule.CaCertificateAnalyzer"),
        [
            "Warning [IST0128] (DestinationRule prod/db t.yaml:1) DestinationRule prod/db in namespace prod has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: db.example.com",
            "Warning [IST0129] (DestinationRule prod/db t.yaml:16) DestinationRule prod/db in namespace prod has TLS mode set to MUTUAL but no caCertificates are set to validate server identity for host: db.example.com at port number:5432",
        ]
    );
}

#[test]
fn subsets_and_unknown_hosts() {
    let yaml = r#"apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1
  namespace: shop
  labels: {app: reviews, version: v1}
spec:
  containers: [{name: app, image: reviews}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: shop}
spec:
  host: ghost.shop.svc.cluster.local
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: shop}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  workloadSelector:
    labels: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api.example.com
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: hidden, namespace: other}
spec:
  host: reviews.shop.svc.cluster.local
  exportTo: ["."]
"#;
    assert_eq!(
        lines(yaml, "destinationrule.SubsetSelectPodAnalyzer"),
        [
            "Error [IST0173] (DestinationRule shop/reviews t.yaml:17) The Subset v2 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
            "Warning [IST0174] (DestinationRule shop/ghost t.yaml:28) The host ghost.shop.svc.cluster.local defined in the DestinationRule does not match any services in the mesh.",
        ]
    );
}

#[test]
fn service_entry_addresses() {
    let yaml = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: data}
spec:
  hosts: [db.example.com]
  ports:
  - number: 5432
    name: postgres
    protocol: TCP
  - number: 443
    name: https
    protocol: HTTPS
  - number: 6379
    name: redis
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: with-vip, namespace: data}
spec:
  hosts: [cache.example.com]
  addresses: [10.1.2.3]
  ports: [{number: 6379, name: redis, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: allocated, namespace: data}
spec:
  hosts: [mq.example.com]
  ports: [{number: 5672, name: amqp, protocol: tcp}]
status:
  addresses:
  - {host: mq.example.com, value: 240.240.0.1}
"#;
    assert_eq!(
        lines(yaml, "serviceentry.Analyzer"),
        [
            "Warning [IST0134] (ServiceEntry data/db t.yaml:14) ServiceEntry addresses are required for this protocol.",
            "Warning [IST0134] (ServiceEntry data/db t.yaml:8) ServiceEntry addresses are required for this protocol.",
        ]
    );
    let mut mesh = MeshConfig::default();
    for k in ["ISTIO_META_DNS_CAPTURE", "PILOT_ENABLE_IP_AUTOALLOCATE"] {
        mesh.proxy_metadata.insert(k.into(), "true".into());
    }
    assert!(lines_with(yaml, mesh, "serviceentry.Analyzer").is_empty());
}

#[test]
fn service_entry_protocol_conflicts() {
    let yaml = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-http, namespace: a}
spec:
  hosts: [api.example.com]
  ports: [{number: 8443, name: web, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-tls, namespace: b}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  ports: [{number: 8443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local-1, namespace: c}
spec:
  hosts: [db.example.com]
  exportTo: ["."]
  ports: [{number: 5432, name: pg, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local-2, namespace: d}
spec:
  hosts: [db.example.com]
  exportTo: ["."]
  ports: [{number: 5432, name: pg, protocol: MONGO}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: same-case, namespace: c}
spec:
  hosts: [api.example.com]
  exportTo: ["."]
  ports: [{number: 8443, name: web, protocol: http}]
"#;
    assert_eq!(
        lines(yaml, "serviceentry.ConflictingServiceEntryProtocolAnalyzer"),
        [
            "Warning [IST0177] (ServiceEntry a/api-http t.yaml:3) Multiple ServiceEntries (a/api-http, b/api-tls) define the same host \"api.example.com\" and port 8443 with conflicting protocols (HTTP, TLS).",
            "Warning [IST0177] (ServiceEntry b/api-tls t.yaml:10) Multiple ServiceEntries (a/api-http, b/api-tls) define the same host \"api.example.com\" and port 8443 with conflicting protocols (HTTP, TLS).",
        ]
    );
}

#[test]
fn service_port_names() {
    let yaml = r#"apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - port: 8080
  - name: http-web
    port: 8081
  - name: metrics
    port: 9090
    targetPort: prom
  - name: db
    port: 3306
  - name: custom
    port: 7000
    appProtocol: grpc
  - name: dns
    port: 53
    protocol: UDP
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  type: ExternalName
  externalName: example.com
  ports:
  - name: tcp
    port: 443
  - name: https
    port: 8443
---
apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
  labels: {istio: pilot}
spec:
  ports: [{name: grpc-xds, port: 15010}, {port: 15014}]
---
apiVersion: v1
kind: Service
metadata:
  name: waypoint
  namespace: shop
  labels: {gateway.istio.io/managed: istio.io-mesh-controller}
spec:
  ports: [{name: mesh, port: 15008}]
"#;
    assert_eq!(
        lines(yaml, "service.PortNameAnalyzer"),
        [
            "Warning [IST0150] (Service shop/ext t.yaml:30) Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly",
            "Info [IST0118] (Service shop/web t.yaml:11) Port name metrics (port: 9090, targetPort: prom) doesn't follow the naming convention of Istio port.",
            "Info [IST0118] (Service shop/web t.yaml:7) Port name  (port: 8080, targetPort: 0) doesn't follow the naming convention of Istio port.",
        ]
    );
}

#[test]
fn envoy_filter_patches() {
    let yaml = r#"apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: routes, namespace: app}
spec:
  configPatches:
  - applyTo: HTTP_ROUTE
    patch: {operation: ADD, value: {name: r}}
  - applyTo: ROUTE_CONFIGURATION
    patch: {operation: REMOVE}
  - applyTo: CLUSTER
    patch: {operation: REPLACE, value: {name: c}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: versioned, namespace: app}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      proxy: {proxyVersion: '^1\.20.*'}
    patch: {operation: INSERT_FIRST, value: {name: envoy.lua}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: relative, namespace: app}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    patch: {operation: INSERT_BEFORE, value: {name: envoy.lua}}
  - applyTo: NETWORK_FILTER
    patch: {operation: INSERT_AFTER, value: {name: other}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: prioritized, namespace: app}
spec:
  priority: 10
  configPatches:
  - applyTo: HTTP_FILTER
    patch: {operation: INSERT_BEFORE, value: {name: envoy.lua}}
  - applyTo: HTTP_FILTER
    patch: {operation: MERGE, value: {name: x}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: stops, namespace: app}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
  - applyTo: HTTP_ROUTE
    patch: {operation: ADD}
"#;
    let relative = "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.";
    let versioned = "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.";
    assert_eq!(
        lines(yaml, "envoyfilter.EnvoyPatchAnalyzer"),
        [
            "Error [IST0152] (EnvoyFilter app/routes t.yaml:1) The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.".to_string(),
            "Error [IST0153] (EnvoyFilter app/routes t.yaml:1) The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.".to_string(),
            "Error [IST0154] (EnvoyFilter app/routes t.yaml:1) The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.".to_string(),
            format!("Warning [IST0151] (EnvoyFilter app/relative t.yaml:23) {relative}"),
            format!("Warning [IST0155] (EnvoyFilter app/relative t.yaml:23) {versioned}"),
        ]
    );
}

#[test]
fn negative_conditions() {
    let yaml = r#"apiVersion: v1
kind: Service
metadata: {name: unbound, namespace: app}
spec:
  ports: [{name: http, port: 80}]
status:
  conditions:
  - type: istio.io/WaypointBound
    status: "False"
    reason: NoWaypoint
    message: waypoint is not ready
  - type: argocd.argoproj.io/Synced
    status: "False"
    reason: OutOfSync
---
apiVersion: v1
kind: Service
metadata: {name: bound, namespace: app}
spec:
  ports: [{name: http, port: 80}]
status:
  conditions:
  - {type: istio.io/WaypointBound, status: "True", reason: Bound, message: ok}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: partial, namespace: app}
spec: {}
status:
  conditions:
  - type: WaypointAccepted
    status: "True"
    reason: PartiallyInvalid
    message: "Invalid targetRefs: app/missing"
  - {type: ZtunnelAccepted, status: "True", reason: Accepted, message: ok}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: app}
spec:
  hosts: [a.example.com]
status:
  conditions:
  - {type: istio.io/WaypointBound, status: "False", reason: WaypointIsNotReady, message: not ready}
"#;
    assert_eq!(
        lines(yaml, "conditions.ConditionAnalyzer"),
        [
            "Warning [IST0171] (AuthorizationPolicy app/partial t.yaml:25) A condition with a negative status is present: type=WaypointAccepted, reason=PartiallyInvalid, message=Invalid targetRefs: app/missing.",
            "Warning [IST0171] (Service app/unbound t.yaml:1) A condition with a negative status is present: type=istio.io/WaypointBound, reason=NoWaypoint, message=waypoint is not ready.",
            "Warning [IST0171] (ServiceEntry app/se t.yaml:37) A condition with a negative status is present: type=istio.io/WaypointBound, reason=WaypointIsNotReady, message=not ready.",
        ]
    );
}

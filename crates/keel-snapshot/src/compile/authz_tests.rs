//! Which AuthorizationPolicies apply to which proxy, and how they compile.

use std::collections::BTreeMap;
use std::path::Path;

use keel_config::{Level, LoadOptions, Resource, Spec, load_paths, load_str, validate_resources};

use super::authz::{AuthzWorkload, GATEWAY_NAME_LABEL, ServiceRef, for_workload};
use crate::authz::{Action, Check};

/// Policies named by where they sit and what they select.
const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {action: DENY, rules: [{to: [{operation: {paths: ["/mesh"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: root-selector, namespace: istio-system}
spec: {selector: {matchLabels: {app: httpbin}}, action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-wide, namespace: foo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-v1, namespace: foo}
spec: {selector: {matchLabels: {app: httpbin, version: v1}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bar-wide, namespace: bar}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-gateway, namespace: foo}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: web}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-other-gateway, namespace: foo}
spec:
  targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: api}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-service, namespace: foo}
spec:
  targetRefs: [{kind: Service, group: "", name: httpbin}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-entry, namespace: foo}
spec:
  targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: external}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-waypoints, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: to-classic, namespace: foo}
spec:
  targetRefs: [{kind: Gateway, group: networking.istio.io, name: ingress}]
"#;

fn resources(yaml: &str) -> Vec<Resource> {
    let loaded = load_str(yaml, "fixture.yaml", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded.resources
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn names(resources: &[Resource], w: &AuthzWorkload) -> Vec<String> {
    for_workload(resources, w)
        .policies
        .policies
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

#[test]
fn selection_by_namespace_and_labels() {
    let rs = resources(POLICIES);
    // Classic-Gateway targetRefs are newer than the Istio release keel-config validates for.
    let newer = |r: &Resource| r.name() == "to-classic";
    let checked: Vec<Resource> = rs.iter().filter(|r| !newer(r)).cloned().collect();
    let diags = validate_resources(&checked, "istio-system");
    assert!(diags.iter().all(|d| d.level != Level::Error), "{diags:#?}");
    let cases: [(&str, AuthzWorkload, &[&str]); 5] = [
        (
            "httpbin v1 in foo: mesh, root selector, namespace, its selector (sorted)",
            AuthzWorkload::new("foo", labels(&[("app", "httpbin"), ("version", "v1")])),
            &[
                "foo/httpbin-v1",
                "foo/ns-wide",
                "istio-system/mesh-wide",
                "istio-system/root-selector",
            ],
        ),
        (
            "httpbin v2 in foo",
            AuthzWorkload::new("foo", labels(&[("app", "httpbin"), ("version", "v2")])),
            &[
                "foo/ns-wide",
                "istio-system/mesh-wide",
                "istio-system/root-selector",
            ],
        ),
        (
            "httpbin in bar: the root selector reaches every namespace",
            AuthzWorkload::new("bar", labels(&[("app", "httpbin")])),
            &[
                "bar/bar-wide",
                "istio-system/mesh-wide",
                "istio-system/root-selector",
            ],
        ),
        (
            "sleep in baz",
            AuthzWorkload::new("baz", labels(&[("app", "sleep")])),
            &["istio-system/mesh-wide"],
        ),
        (
            "another root namespace",
            AuthzWorkload {
                root_namespace: "mesh-root".into(),
                ..AuthzWorkload::new("baz", labels(&[("app", "sleep")]))
            },
            &[],
        ),
    ];
    for (case, w, want) in cases {
        assert_eq!(names(&rs, &w), want, "{case}");
    }
}

#[test]
fn selection_by_target_refs() {
    let rs = resources(POLICIES);
    let gateway = AuthzWorkload::new("foo", labels(&[(GATEWAY_NAME_LABEL, "web")]));
    let waypoint = AuthzWorkload {
        waypoint_for: Some(vec![
            ServiceRef {
                kind: "Service".into(),
                namespace: "foo".into(),
                name: "httpbin".into(),
            },
            ServiceRef {
                kind: "ServiceEntry".into(),
                namespace: "foo".into(),
                name: "external".into(),
            },
        ]),
        ..AuthzWorkload::new("foo", labels(&[(GATEWAY_NAME_LABEL, "waypoint")]))
    };
    let classic = AuthzWorkload {
        gateways: vec![("foo".into(), "ingress".into())],
        ..AuthzWorkload::new("foo", labels(&[("istio", "ingressgateway")]))
    };
    let in_bar = AuthzWorkload::new("bar", labels(&[(GATEWAY_NAME_LABEL, "web")]));
    let cases: [(&str, AuthzWorkload, &[&str]); 5] = [
        (
            "a Gateway API gateway: its targetRef, and selector policies as Istio's default",
            gateway,
            &["foo/ns-wide", "foo/to-gateway", "istio-system/mesh-wide"],
        ),
        (
            "a waypoint: its services and the waypoint class, never selectors",
            waypoint,
            &[
                "foo/to-entry",
                "foo/to-service",
                "istio-system/to-waypoints",
            ],
        ),
        (
            "a classic gateway: its Gateway and selector policies",
            classic,
            &["foo/ns-wide", "foo/to-classic", "istio-system/mesh-wide"],
        ),
        (
            "a gateway of the same name elsewhere",
            in_bar,
            &["bar/bar-wide", "istio-system/mesh-wide"],
        ),
        (
            "a sidecar behind the Service: targetRefs never select sidecars",
            AuthzWorkload::new("foo", labels(&[("app", "httpbin")])),
            &[
                "foo/ns-wide",
                "istio-system/mesh-wide",
                "istio-system/root-selector",
            ],
        ),
    ];
    for (case, w, want) in cases {
        assert_eq!(names(&rs, &w), want, "{case}");
    }
}

#[test]
fn dry_run_custom_and_bad_values_are_flagged() {
    // Not validated: compilation must cope with what validation would reject.
    let rs = resources(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a-dry, namespace: foo, annotations: {istio.io/dry-run: "True"}}
spec: {action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: b-audit-dry, namespace: foo, annotations: {istio.io/dry-run: "1"}}
spec: {action: AUDIT, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: c-custom, namespace: foo}
spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: d-bad, namespace: foo}
spec:
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/33"]}}]
    to: [{operation: {ports: ["http"], paths: ["/a/{**}/{*}"]}}]
    when: [{key: request.headers, values: ["x"]}, {key: destination.name, values: ["x"]}]
"#,
    );
    let out = for_workload(&rs, &AuthzWorkload::new("foo", BTreeMap::new()));
    let p = &out.policies.policies;
    assert!(p[0].dry_run);
    assert!(!p[1].dry_run, "dry-run is only for ALLOW and DENY");
    assert_eq!(
        p[2].action,
        Action::Custom {
            provider: "opa".into()
        }
    );
    let unsupported: Vec<&str> = p[3].rules[0]
        .checks()
        .filter_map(|c| match c {
            Check::Unsupported { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        unsupported,
        [
            "ipBlocks",
            "ports",
            "paths",
            "request.headers",
            "destination.name"
        ],
        "{:#?}",
        p[3]
    );
    let messages: Vec<&str> = out.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("dry-run")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("CUSTOM")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("bad CIDR")),
        "{messages:#?}"
    );
    assert_eq!(out.warnings.len(), 7, "{messages:#?}");
}

/// Every AuthorizationPolicy in Istio's samples, docs and test data compiles, and the valid
/// ones compile without unsupported checks (Envoy-filter metadata aside).
#[test]
fn istio_samples_compile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples");
    if !root.is_dir() {
        eprintln!(
            "skipping: {} not found (Istio's samples are only in the CI checkout)",
            root.display()
        );
        return;
    }
    let loaded = load_paths(&[root], &LoadOptions::default());
    let policies: Vec<&Resource> = loaded
        .resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::AuthorizationPolicy(_)))
        .collect();
    assert!(!policies.is_empty());
    let mut compiled = 0;
    for r in policies {
        let valid = r
            .validate("istio-system")
            .iter()
            .all(|i| !matches!(i.severity, keel_config::validate::Severity::Error));
        let w = AuthzWorkload::new(r.namespace(), BTreeMap::new());
        let one = std::slice::from_ref(r).to_vec();
        let out = for_workload(
            &one,
            &AuthzWorkload {
                // Select every policy: the root namespace makes selectors reach the workload's
                // namespace, and matching labels are added below.
                labels: selector_labels(r),
                ..w
            },
        );
        if out.policies.policies.is_empty() {
            continue; // targetRef'd: not for a sidecar
        }
        compiled += 1;
        let unsupported = out.policies.policies[0]
            .rules
            .iter()
            .flat_map(|rule| rule.checks())
            .filter(|c| matches!(c, Check::Unsupported { key, .. } if !key.starts_with("experimental.")))
            .count();
        if valid {
            assert_eq!(unsupported, 0, "{} in {}", r.name(), r.origin.file);
        }
    }
    eprintln!("compiled {compiled} AuthorizationPolicies from Istio's samples");
    assert!(compiled > 10);
}

fn selector_labels(r: &Resource) -> BTreeMap<String, String> {
    match &r.spec {
        Spec::AuthorizationPolicy(p) => p
            .selector
            .as_ref()
            .map(|s| s.match_labels.clone())
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

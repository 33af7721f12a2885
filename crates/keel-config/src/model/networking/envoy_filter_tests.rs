//! EnvoyFilter validation, case by case.

use crate::validate::common::check_spec;

fn check(spec: &str) -> (Vec<String>, Vec<String>) {
    check_spec("networking.istio.io/v1alpha3", "EnvoyFilter", spec)
}

#[track_caller]
fn rejects(spec: &str, want: &str) {
    let e = check(spec).0;
    assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:?}");
}

#[track_caller]
fn accepts(spec: &str) {
    let e = check(spec).0;
    assert!(e.is_empty(), "{e:?}");
}

#[track_caller]
fn warns(spec: &str, want: &str) {
    let (e, w) = check(spec);
    assert!(e.is_empty(), "{e:?}");
    assert!(w.iter().any(|m| m.contains(want)), "want {want:?} in {w:?}");
}

const HCM_MATCH: &str = "    match:\n      listener:\n        filterChain:\n          filter:\n            name: envoy.filters.network.http_connection_manager\n";

#[test]
fn accepts_istio_shapes() {
    accepts(&format!(
        "  workloadSelector: {{labels: {{app: a}}}}\n  priority: -1\n  configPatches:\n  - applyTo: HTTP_FILTER\n{HCM_MATCH}    patch:\n      operation: INSERT_FIRST\n      filterClass: AUTHZ\n      value:\n        name: envoy.filters.http.ext_proc\n        typed_config: {{\"@type\": type.googleapis.com/x, failure_mode_allow: false}}\n"
    ));
    accepts(
        "  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: ADD, value: {name: lua_cluster}}\n",
    );
    accepts(
        "  configPatches:\n  - applyTo: CLUSTER\n    match: {context: WAYPOINT, waypoint: {}}\n    patch: {operation: REMOVE}\n",
    );
    accepts(
        "  configPatches:\n  - applyTo: HTTP_FILTER\n    match:\n      context: WAYPOINT\n      waypoint:\n        portNumber: 8080\n        filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}\n    patch: {operation: REMOVE}\n",
    );
    accepts(
        "  configPatches:\n  - applyTo: NETWORK_FILTER\n    match: {listener: {filterChain: {transportProtocol: tls}}}\n    patch: {operation: MERGE_AND_REPLACE_LIST, value: {name: x}}\n",
    );
    accepts(
        "  configPatches:\n  - applyTo: VIRTUAL_HOST\n    match:\n      context: GATEWAY\n      proxy: {proxyVersion: '^1\\.2.*', metadata: {ISTIO_VERSION: '1.2'}}\n      routeConfiguration: {portNumber: 443, portName: https, gateway: ns/gw, vhost: {name: 'a:443', domainName: a, route: {name: r, action: ROUTE}}}\n    patch: {operation: MERGE, value: {}}\n",
    );
    accepts(
        "  configPatches:\n  - applyTo: CLUSTER\n    match: {context: SIDECAR_OUTBOUND, cluster: {service: reviews.default.svc.cluster.local, portNumber: 9080, subset: v1}}\n    patch: {operation: MERGE, value: {connect_timeout: 1s}}\n",
    );
    accepts(
        "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n  configPatches:\n  - applyTo: BOOTSTRAP\n    patch: {operation: MERGE, value: {}}\n",
    );
}

#[test]
fn patches() {
    rejects(
        "  configPatches:\n  - patch: {operation: ADD, value: {}}\n",
        "configPatches[0]: Envoy filter: missing applyTo",
    );
    rejects(
        "  configPatches:\n  - applyTo: CLUSTER\n",
        "Envoy filter: missing patch",
    );
    rejects(
        "  configPatches:\n  - applyTo: CLUSTER\n    patch: {value: {}}\n",
        "configPatches[0].patch: Envoy filter: missing patch operation",
    );
    rejects(
        "  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: MERGE}\n",
        "missing patch value for non-remove operation",
    );
    rejects(
        "  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: ADD, value: text}\n",
        "patch.value: in body must be of type object",
    );
    rejects(
        "  configPatches:\n  - applyTo: CLUSTR\n    patch: {operation: REMOVE}\n",
        "did you mean \"CLUSTER\"",
    );
    accepts("  configPatches:\n  - applyTo: LISTENER\n    patch: {operation: REMOVE}\n");
}

#[test]
fn matches() {
    let patch = "    patch: {operation: REMOVE}\n";
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {{context: SIDECAR_INBOUND, waypoint: {{}}}}\n{patch}"
        ),
        "only support waypointMatch when context is WAYPOINT",
    );
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {{context: WAYPOINT, listener: {{}}}}\n{patch}"
        ),
        "only support waypointMatch when context is WAYPOINT",
    );
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {{context: WAYPOINT, waypoint: {{portNumber: 65536}}}}\n{patch}"
        ),
        "match.waypoint.portNumber: port must be between 1-65535",
    );
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: CLUSTER\n    match: {{cluster: {{}}, listener: {{}}}}\n{patch}"
        ),
        "one and only one schema",
    );
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: CLUSTER\n    match: {{proxy: {{proxyVersion: '(1'}}}}\n{patch}"
        ),
        "match.proxy.proxyVersion: Envoy filter: invalid regex for proxy version",
    );
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {{cluster: {{}}}}\n{patch}"
        ),
        "applyTo for listener class objects cannot have non listener match",
    );
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: HTTP_ROUTE\n    match: {{listener: {{}}}}\n{patch}"
        ),
        "applyTo for http route class objects cannot have non route configuration match",
    );
    rejects(
        &format!(
            "  configPatches:\n  - applyTo: CLUSTER\n    match: {{routeConfiguration: {{}}}}\n{patch}"
        ),
        "applyTo for cluster class objects cannot have non cluster match",
    );
    accepts(&format!(
        "  configPatches:\n  - applyTo: CLUSTER\n    match: {{context: GATEWAY}}\n{patch}"
    ));
}

#[test]
fn filter_matches() {
    let lf = |apply: &str, filter: &str| {
        format!(
            "  configPatches:\n  - applyTo: {apply}\n    match:\n      listener:\n        filterChain:\n          filter: {filter}\n    patch: {{operation: REMOVE}}\n"
        )
    };
    rejects(
        &lf("NETWORK_FILTER", "{}"),
        "match.listener.filterChain.filter: Envoy filter: filter match has no name to match on",
    );
    rejects(
        &lf(
            "NETWORK_FILTER",
            "{name: envoy.filters.network.http_connection_manager, subFilter: {name: r}}",
        ),
        "subfilter match can be used with applyTo HTTP_FILTER only",
    );
    rejects(
        &lf(
            "HTTP_FILTER",
            "{name: envoy.filters.network.tcp_proxy, subFilter: {name: r}}",
        ),
        "subfilter match requires filter match with envoy.filters.network.http_connection_manager",
    );
    rejects(
        &lf(
            "HTTP_FILTER",
            "{name: envoy.filters.network.http_connection_manager, subFilter: {}}",
        ),
        "subfilter match has no name to match on",
    );
    accepts(&lf(
        "HTTP_FILTER",
        "{name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}",
    ));
    warns(
        &lf("FILTER_CHAIN", "{name: envoy.filters.network.tcp_proxy}"),
        "filter match has no effect when used with FILTER_CHAIN",
    );
    warns(
        &lf(
            "HTTP_FILTER",
            "{name: envoy.http_connection_manager, subFilter: {name: envoy.router}}",
        ),
        "using deprecated filter name \"envoy.router\"; use \"envoy.filters.http.router\" instead",
    );
    warns(
        &lf("NETWORK_FILTER", "{name: envoy.http_connection_manager}"),
        "using deprecated filter name \"envoy.http_connection_manager\"",
    );
}

#[test]
fn selectors_and_targets() {
    rejects(
        "  workloadSelector: {labels: {app: \"a*\"}}\n",
        "wildcard is not supported in selector: \"app=a*\"",
    );
    rejects(
        "  workloadSelector: {labels: {\"\": a}}\n",
        "empty key is not supported in selector",
    );
    rejects(
        "  workloadSelector: {labels: {app: a}}\n  targetRefs: [{kind: Gateway, name: gw}]\n",
        "only one of targetRefs or workloadSelector can be set",
    );
    rejects(
        "  targetRefs: [{kind: Gateway}]\n",
        "targetRefs[0].name: Required value",
    );
    rejects(
        "  targetRefs: [{kind: Gateway, name: gw, namespace: other}]\n",
        "cross namespace referencing is not currently supported",
    );
    warns(
        "  workloadSelector: {}\n",
        "workload selector specified without labels, will be applied to all services in namespace",
    );
    // EnvoyFilter may target any kind; Istio checks only the CRD schema here.
    accepts("  targetRefs: [{group: apps, kind: Deployment, name: d}]\n");
}

#[test]
fn analyzer_warnings() {
    warns(
        "  configPatches:\n  - applyTo: HTTP_ROUTE\n    patch: {operation: ADD, value: {}}\n",
        "ADD operation will be ignored",
    );
    warns(
        "  configPatches:\n  - applyTo: ROUTE_CONFIGURATION\n    patch: {operation: REMOVE}\n",
        "REMOVE operation will be ignored",
    );
    warns(
        "  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: REPLACE, value: {}}\n",
        "REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER",
    );
}

#[test]
fn dry_run_annotation_is_rejected() {
    let (e, _) = crate::validate::common::check_doc(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: f\n  annotations: {\"istio.io/dry-run\": \"true\"}\nspec: {}\n",
    );
    assert!(
        e.iter()
            .any(|m| m.contains("has unsupported annotation istio.io/dry-run")),
        "{e:?}"
    );
}

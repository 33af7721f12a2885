//! AuthorizationPolicy validation, case by case (Istio's table tests, in Keel's own YAML).

use crate::validate::common::{check_doc, check_spec};

fn errors(spec: &str) -> Vec<String> {
    check_spec("security.istio.io/v1", "AuthorizationPolicy", spec).0
}

fn warnings(spec: &str) -> Vec<String> {
    check_spec("security.istio.io/v1", "AuthorizationPolicy", spec).1
}

#[track_caller]
fn rejects(spec: &str, want: &str) {
    let e = errors(spec);
    assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:?}");
}

#[track_caller]
fn accepts(spec: &str) {
    let e = errors(spec);
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn accepts_istio_shapes() {
    accepts("  {}\n");
    accepts("  rules:\n  - {}\n");
    accepts("  action: DENY\n  rules:\n  - {}\n");
    accepts(
        "  selector: {matchLabels: {app: httpbin, version: v1}}\n  rules:\n  - from:\n    - source: {principals: [\"cluster.local/ns/default/sa/sleep\"]}\n    - source: {namespaces: [test]}\n    to:\n    - operation: {methods: [GET], paths: [\"/info*\"]}\n    when:\n    - key: request.auth.claims[iss]\n      values: [\"https://accounts.google.com\"]\n",
    );
    accepts(
        "  action: CUSTOM\n  provider: {name: my-authz}\n  rules:\n  - to:\n    - operation: {paths: [\"/admin/*\"]}\n",
    );
    accepts("  action: AUDIT\n  rules:\n  - {}\n");
    accepts(
        "  rules:\n  - from:\n    - source: {serviceAccounts: [\"sa\", \"ns/sa\"]}\n    - source: {principals: [bar]}\n",
    );
    accepts(
        "  rules:\n  - from:\n    - source: {trustDomains: [cluster.local], notTrustDomains: [\"*-x\"]}\n",
    );
    accepts(
        "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw}\n  rules:\n  - {}\n",
    );
    accepts("  targetRef: {kind: Service, name: productpage}\n  rules:\n  - {}\n");
}

#[test]
fn selector_and_targets() {
    rejects(
        "  selector: {matchLabels: {a: b}}\n  targetRef: {kind: Service, name: s}\n",
        "spec.targetRef: only one of targetRefs or selector can be set",
    );
    rejects(
        "  targetRef: {kind: Service, name: s}\n  targetRefs: [{kind: Service, name: s}]\n",
        "only one of targetRefs or selector",
    );
    rejects(
        "  targetRef: {kind: Service}\n",
        "spec.targetRef.name: Required value",
    );
    rejects(
        "  targetRef: {name: x}\n",
        "spec.targetRef.kind: Required value",
    );
    rejects(
        "  targetRef: {kind: Service, name: s, namespace: bar}\n",
        "cross namespace referencing is not currently supported",
    );
    rejects(
        "  targetRef: {group: \"__\", kind: Service, name: s}\n",
        "spec.targetRef.group: in body should match",
    );
    rejects(
        "  targetRef: {kind: Serv_ice, name: s}\n",
        "spec.targetRef.kind: in body should match",
    );
    rejects(
        "  targetRefs: [{kind: Deployment, name: s}]\n",
        "targetRef must be to one of",
    );
    rejects(
        "  selector: {matchLabels: {\"app*\": b}}\n",
        "wildcard not allowed in label key match",
    );
    rejects(
        "  selector: {matchLabels: {app: \"b*\"}}\n",
        "wildcard not allowed in label value match",
    );
    let refs: String = (0..17)
        .map(|i| format!("  - {{kind: Service, name: s{i}}}\n"))
        .collect();
    rejects(&format!("  targetRefs:\n{refs}"), "Too many: 17");
    let w = warnings("  selector: {}\n");
    assert!(
        w[0].contains("workload selector specified without labels"),
        "{w:?}"
    );
}

#[test]
fn actions_and_providers() {
    rejects(
        "  action: CUSTOM\n  provider: {name: x}\n",
        "CUSTOM action without `rules` is meaningless",
    );
    rejects(
        "  action: CUSTOM\n  rules: [{}]\n",
        "`provider.name` must not be empty",
    );
    rejects(
        "  action: CUSTOM\n  provider: {}\n  rules: [{}]\n",
        "spec.provider: `provider.name` must not be empty",
    );
    rejects(
        "  provider: {name: x}\n  rules: [{}]\n",
        "`provider` must not be with non CUSTOM action, found ALLOW",
    );
    rejects(
        "  action: DENY\n",
        "DENY action without `rules` is meaningless",
    );
    rejects("  action: DNY\n", "did you mean \"DENY\"");
    let custom = "  action: CUSTOM\n  provider: {name: x}\n  rules:\n";
    rejects(
        &format!("{custom}  - from: [{{source: {{namespaces: [a]}}}}]\n"),
        "From.Namespaces is currently not supported with CUSTOM action",
    );
    rejects(
        &format!("{custom}  - from: [{{source: {{notPrincipals: [a]}}}}]\n"),
        "From.NotPrincipals is currently not supported",
    );
    rejects(
        &format!("{custom}  - from: [{{source: {{serviceAccounts: [a]}}}}]\n"),
        "From.ServiceAccounts is currently not supported",
    );
    rejects(
        &format!("{custom}  - when: [{{key: \"request.auth.claims[iss]\", values: [a]}}]\n"),
        "request.auth.claims[iss] is currently not supported with CUSTOM action",
    );
    rejects(
        &format!("{custom}  - when: [{{key: source.principal, values: [a]}}]\n"),
        "source.principal is currently not supported",
    );
    accepts(&format!(
        "{custom}  - from: [{{source: {{ipBlocks: [1.2.3.4]}}}}]\n    when: [{{key: \"request.headers[x]\", values: [a]}}]\n"
    ));
}

#[test]
fn dry_run_annotation() {
    let doc = |ann: &str, action: &str| {
        check_doc(&format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: t\n  annotations: {{\"istio.io/dry-run\": \"{ann}\"}}\nspec:\n  action: {action}\n  rules: [{{}}]\n")).0
    };
    assert!(doc("true", "DENY").is_empty());
    assert!(doc("F", "ALLOW").is_empty());
    let e = doc("yes", "ALLOW");
    assert!(e[0].contains("metadata.annotations[istio.io/dry-run]: annotation istio.io/dry-run with invalid value (yes)"), "{e:?}");
    let e = doc("true", "AUDIT");
    assert!(
        e[0].contains("currently only supports action ALLOW/DENY, found action AUDIT"),
        "{e:?}"
    );
}

#[test]
fn rules_from_and_to() {
    rejects(
        "  rules:\n  - from: []\n",
        "`from` must not be empty, found at rule 0",
    );
    rejects(
        "  rules:\n  - from:\n    - {}\n",
        "`from.source` must not be nil, found at rule 0",
    );
    rejects(
        "  rules:\n  - from:\n    - source: {}\n",
        "`from.source` must not be empty",
    );
    rejects("  rules:\n  - to: []\n", "`to` must not be empty");
    rejects(
        "  rules:\n  - to:\n    - {}\n",
        "`to.operation` must not be nil",
    );
    rejects(
        "  rules:\n  - to:\n    - operation: {}\n",
        "`to.operation` must not be empty",
    );
    rejects(
        "  rules:\n  - from:\n    - source: {serviceAccounts: [\"bar/sa\"], namespaces: [bar]}\n",
        "Cannot set serviceAccounts with namespaces or principals",
    );
    rejects(
        "  rules:\n  - from:\n    - source: {notServiceAccounts: [sa], notPrincipals: [bar]}\n",
        "Cannot set serviceAccounts with namespaces or principals",
    );
}

#[test]
fn source_values() {
    let src = |s: &str| format!("  rules:\n  - from:\n    - source: {{{s}}}\n");
    rejects(
        &src("principals: [\"\"]"),
        "source.principals[0]: empty value not allowed, found in Principals",
    );
    rejects(
        &src("notRequestPrincipals: [a, \"\"]"),
        "notRequestPrincipals[1]: empty value not allowed",
    );
    rejects(
        &src("ipBlocks: [1.2.3.4/33]"),
        "ipBlocks[0]: bad CIDR range (1.2.3.4/33)",
    );
    rejects(
        &src("notRemoteIpBlocks: [\"1.2.3\"]"),
        "bad IP address (1.2.3)",
    );
    accepts(&src(
        "ipBlocks: [1.2.3.4, 5.6.0.0/16, \"2001:db8::/32\"], remoteIpBlocks: [\"::1\"]",
    ));
    rejects(
        &src("serviceAccounts: [\"ns/*\"]"),
        "wildcard not allowed, found in ServiceAccounts",
    );
    rejects(
        &src("serviceAccounts: [\"a/b/c\"]"),
        "expected format 'serviceAccount' or 'namespace/serviceAccount'",
    );
    rejects(&src("serviceAccounts: [\"/sa\"]"), "found empty namespace");
    rejects(
        &src("notServiceAccounts: [\"ns/\"]"),
        "found empty serviceAccount",
    );
    rejects(
        &src("serviceAccounts: [\"\"]"),
        "empty value not allowed, found in ServiceAccounts",
    );
    rejects(
        &src(&format!("serviceAccounts: [\"{}\"]", "a".repeat(321))),
        "value cannot exceed 320 characters",
    );
    let many: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
    rejects(
        &src(&format!("serviceAccounts: [{}]", many.join(", "))),
        "Too many: 17",
    );
}

#[test]
fn operation_values() {
    let op = |s: &str| format!("  rules:\n  - to:\n    - operation: {{{s}}}\n");
    rejects(
        &op("ports: [\"80\", \"http\"]"),
        "operation.ports[1]: bad port (http)",
    );
    rejects(&op("notPorts: [\"70000\"]"), "bad port (70000)");
    rejects(&op("ports: [80]"), "quote it");
    rejects(
        &op("methods: [\"\"]"),
        "empty value not allowed, found in Methods",
    );
    rejects(&op("hosts: [a, \"\"]"), "found in Hosts");
    accepts(&op(
        "paths: [\"/path/template/{*}\", \"/{**}/path/template\", \"/a/{*}/b/{**}\"]",
    ));
    rejects(
        &op("paths: [\"/foo/{bar}\"]"),
        "Contains '{' or '}' beyond a supported path template",
    );
    rejects(
        &op("notPaths: [\"/{**}/{*}\"]"),
        "{**} is not the last operator",
    );
    rejects(
        &op("paths: [\"/a/*/{**}\"]"),
        "Contains segment * with invalid string literal",
    );
    rejects(&op("paths: [\"/{foo=*}\"]"), "invalid or unsupported path");
    accepts(&op("paths: [\"/a/*\", \"*/b\", \"*\"]"));
}

#[test]
fn conditions() {
    let when = |s: &str| format!("  rules:\n  - when:\n    - {s}\n");
    rejects(&when("values: [a]"), "`key` must not be empty");
    rejects(
        &when("key: source.ip"),
        "at least one of `values` or `notValues` must be set for key source.ip",
    );
    rejects(
        &when("key: foo.bar\n      values: [a]"),
        "when[0].key: unknown attribute: foo.bar",
    );
    rejects(
        &when("key: destination.namespace\n      values: [a]"),
        "replaced by the metadata.namespace",
    );
    rejects(
        &when("key: destination.labels[app]\n      values: [a]"),
        "replaced by the workload selector",
    );
    rejects(
        &when("key: destination.user\n      values: [a]"),
        "only supported in v1alpha1",
    );
    rejects(
        &when("key: request.headers\n      values: [a]"),
        "bad key (request.headers): should have format a[b]",
    );
    rejects(
        &when("key: request.auth.claims[]\n      values: [a]"),
        "should have format a[b]",
    );
    rejects(
        &when("key: source.ip\n      values: [\"10.0.0.300\"]"),
        "values[0]: invalid `value` for `key` source.ip: bad IP address",
    );
    rejects(
        &when("key: remote.ip\n      notValues: [\"1.2.3.0/40\"]"),
        "invalid `notValue` for `key` remote.ip: bad CIDR range",
    );
    rejects(
        &when("key: destination.port\n      values: [\"x\"]"),
        "invalid `value` for `key` destination.port: bad port",
    );
    rejects(
        &when("key: source.serviceAccount\n      values: [\"a*\"]"),
        "wildcard not allowed",
    );
    rejects(
        &when("key: source.namespace\n      values: [\"\"]"),
        "empty value not allowed, found in source.namespace",
    );
    for key in [
        "request.headers[X-header]",
        "request.experimental.inline.headers[x]",
        "source.principal",
        "source.trustDomain",
        "request.auth.audiences",
        "request.auth.presenter",
        "request.auth.claims[nested1][nested2]",
        "destination.ip",
        "connection.sni",
        "experimental.envoy.filters.a.b[c]",
    ] {
        accepts(&when(&format!(
            "key: \"{key}\"\n      values: [\"1.2.3.4\"]"
        )));
    }
}

#[test]
fn deny_with_only_http_attributes_warns() {
    let w = warnings("  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [GET]}\n");
    assert!(
        w.iter()
            .any(|m| m.contains("will deny all traffic to TCP ports")),
        "{w:?}"
    );
    let w = warnings(
        "  action: DENY\n  rules:\n  - from:\n    - source: {requestPrincipals: [\"*\"]}\n",
    );
    assert!(
        w.iter()
            .any(|m| m.contains("will deny all traffic to TCP ports")),
        "{w:?}"
    );
    let w = warnings(
        "  action: DENY\n  rules:\n  - to:\n    - operation: {methods: [GET], ports: [\"80\"]}\n",
    );
    assert!(w.is_empty(), "{w:?}");
    let w = warnings("  action: DENY\n  rules:\n  - from:\n    - source: {namespaces: [a]}\n");
    assert!(w.is_empty(), "{w:?}");
}

/// Cases from Istio's `TestValidateAuthorizationPolicy`.
#[test]
fn istio_table_cases() {
    accepts(
        "  selector: {matchLabels: {app: httpbin, version: v1}}\n  rules:\n  - from: [{source: {principals: [sa1]}}, {source: {principals: [sa2]}}]\n    to: [{operation: {methods: [GET]}}, {operation: {methods: [POST]}}]\n    when:\n    - {key: source.ip, values: [1.2.3.4, 5.6.7.0/24]}\n    - {key: \"request.headers[:authority]\", values: [v1, v2]}\n",
    );
    accepts("  action: CUSTOM\n  provider: {name: my-custom-authz}\n  rules: [{}]\n");
    rejects(
        "  action: CUSTOM\n  provider: {name: \"\"}\n  rules: [{}]\n",
        "`provider.name` must not be empty",
    );
    rejects(
        "  action: CUSTOM\n  rules: [{}]\n",
        "`provider.name` must not be empty",
    );
    rejects(
        "  action: CUSTOM\n  provider: {name: a}\n  rules:\n  - from: [{source: {requestPrincipals: [req]}}]\n",
        "From.RequestPrincipals is currently not supported",
    );
    rejects(
        "  provider: {name: \"\"}\n  rules: [{}]\n",
        "`provider` must not be with non CUSTOM action",
    );
    accepts("  action: ALLOW\n");
    rejects("  action: DENY\n", "DENY action without `rules`");
    accepts("  selector: {matchLabels: {app: \"\", version: v1}}\n");
    rejects(
        "  selector: {matchLabels: {app: httpbin, \"\": v1}}\n",
        "key must not be empty",
    );
    rejects(
        "  selector: {matchLabels: {app: \"httpbin-*\"}}\n",
        "wildcard not allowed in label value match",
    );
    rejects(
        "  selector: {matchLabels: {\"app-*\": httpbin}}\n",
        "wildcard not allowed in label key match",
    );
    rejects(
        "  rules:\n  - when:\n    - {key: \"request.headers[:authority]\", values: [v1, \"\"]}\n",
        "empty value not allowed",
    );
    let e = errors(
        "  rules:\n  - from: [{source: {ipBlocks: [1.2.3.4, ip1], notIpBlocks: [5.6.7.8, ip2]}}]\n    to: [{operation: {ports: [\"80\", port1], notPorts: [\"90\", port2]}}]\n",
    );
    for want in [
        "bad IP address (ip1)",
        "bad IP address (ip2)",
        "bad port (port1)",
        "bad port (port2)",
    ] {
        assert!(e.iter().any(|m| m.contains(want)), "want {want:?} in {e:?}");
    }
}

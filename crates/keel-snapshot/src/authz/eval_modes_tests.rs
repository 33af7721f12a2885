//! The evaluator's modes: plain TCP against HTTP-only attributes, dry-run, AUDIT, CUSTOM,
//! conditions Keel can't evaluate, and the serialised form the control plane pushes.

use super::eval::{Reason, ShadowResult};
use super::test_support::{ALLOW, DENY, SLEEP, evaluate, get, http, policies, table, tcp};
use super::{PolicyMatch, WorkloadPolicies};

const fn by(allowed: bool, id: &'static str) -> (bool, Option<&'static str>) {
    (allowed, Some(id))
}

/// Istio's TCP task: a DENY rule naming only HTTP fields denies every TCP connection; with a
/// port it denies that port only.
#[test]
fn tcp_deny_drops_http_only_fields() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-get, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: ["GET"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-get-9000, namespace: bar}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: ["GET"], ports: ["9000"]}}]
"#;
    // Only `foo` applies to the workload; check the port-scoped one separately below.
    table(
        yaml,
        &[
            (
                "tcp",
                tcp(9001),
                by(false, "ns[foo]-policy[deny-get]-rule[0]"),
            ),
            (
                "http GET",
                get("/"),
                by(false, "ns[foo]-policy[deny-get]-rule[0]"),
            ),
            ("http POST", http("POST", "/"), ALLOW),
        ],
    );
    let scoped = yaml.replace("namespace: bar", "namespace: foo");
    let scoped = scoped.split("---").nth(1).unwrap_or_default();
    let id = "ns[foo]-policy[deny-get-9000]-rule[0]";
    table(
        scoped,
        &[
            ("tcp on 9000", tcp(9000), by(false, id)),
            ("tcp on 9001", tcp(9001), ALLOW),
            ("http GET on 9000", get("/").port(9000), by(false, id)),
            ("http POST on 9000", http("POST", "/").port(9000), ALLOW),
        ],
    );
}

/// An ALLOW rule naming any HTTP-only field — even in another `to` entry — never matches TCP;
/// the ALLOW policy still exists, so TCP is denied.
#[test]
fn tcp_allow_skips_rules_with_http_only_fields() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-allow, namespace: foo}
spec:
  rules:
  - to: [{operation: {methods: ["GET"], ports: ["9000"]}}]
  - to: [{operation: {ports: ["9001"]}}, {operation: {paths: ["/x"]}}]
  - from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
    to: [{operation: {ports: ["9002"]}}]
"#;
    table(
        yaml,
        &[
            ("methods+port", tcp(9000), DENY),
            (
                "http GET on 9000",
                get("/").port(9000),
                by(true, "ns[foo]-policy[tcp-allow]-rule[0]"),
            ),
            ("port beside a path entry", tcp(9001), DENY),
            (
                "identity and port",
                tcp(9002).from(SLEEP),
                by(true, "ns[foo]-policy[tcp-allow]-rule[2]"),
            ),
            ("identity and port, plaintext", tcp(9002), DENY),
        ],
    );
}

#[test]
fn dry_run_policies_are_reported_not_enforced() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-path-headers
  namespace: foo
  annotations: {"istio.io/dry-run": "true"}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/headers"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-get
  namespace: foo
  annotations: {"istio.io/dry-run": "true"}
spec:
  rules:
  - to: [{operation: {methods: ["GET"]}}]
"#;
    let p = policies(yaml);
    assert!(p.policies.iter().all(|p| p.dry_run));
    let deny_id = PolicyMatch {
        namespace: "foo",
        name: "deny-path-headers",
        rule: 0,
    };
    let allow_id = PolicyMatch {
        namespace: "foo",
        name: "allow-get",
        rule: 0,
    };

    let e = evaluate(&p, &get("/headers"));
    assert!(e.decision.allowed, "dry-run never enforces: {}", e.decision);
    assert_eq!(e.decision.reason, Reason::NoAllowPolicies);
    let shadow = |allowed, policy| Some(ShadowResult { allowed, policy });
    assert_eq!(e.dry_run.deny, shadow(false, Some(deny_id)));
    assert_eq!(e.dry_run.allow, shadow(true, Some(allow_id)));

    let e = evaluate(&p, &http("POST", "/post"));
    assert!(e.decision.allowed);
    assert_eq!(e.dry_run.deny, shadow(true, None));
    assert_eq!(e.dry_run.allow, shadow(false, None));

    // "false" (or any non-true value) leaves the policy enforced.
    let enforced = policies(&yaml.replace("\"true\"", "\"false\""));
    let e = evaluate(&enforced, &get("/headers"));
    assert!(!e.decision.allowed);
    assert_eq!(e.dry_run.deny, None);
}

#[test]
fn audit_marks_without_deciding() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-headers, namespace: foo}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {paths: ["/headers"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-tcp, namespace: foo}
spec:
  action: AUDIT
  rules:
  - to: [{operation: {methods: ["PUT"], ports: ["9000"]}}]
"#;
    let p = policies(yaml);
    let id = |name, rule| {
        Some(PolicyMatch {
            namespace: "foo",
            name,
            rule,
        })
    };
    let e = evaluate(&p, &get("/headers"));
    assert!(e.decision.allowed);
    assert_eq!(e.audit, id("audit-headers", 0));
    assert_eq!(evaluate(&p, &get("/ip")).audit, None);
    // AUDIT follows DENY's rule on TCP: HTTP-only fields are dropped.
    assert_eq!(evaluate(&p, &tcp(9000)).audit, id("audit-headers", 0));
    assert_eq!(evaluate(&p, &tcp(9001)).audit, id("audit-headers", 0));
}

#[test]
fn custom_is_reported_and_ignored() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: sample-ext-authz}
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
"#;
    let p = policies(yaml);
    let e = evaluate(&p, &get("/admin/users"));
    assert!(e.decision.allowed);
    assert_eq!(e.decision.reason, Reason::NoAllowPolicies);
    let m = e.custom_unsupported.map(|m| m.to_string());
    assert_eq!(m.as_deref(), Some("ns[foo]-policy[ext-authz]-rule[0]"));
    assert_eq!(evaluate(&p, &get("/ip")).custom_unsupported, None);
}

/// `experimental.envoy.filters.*` can't be evaluated by Keel: like a generation error in
/// Istio, it voids an ALLOW rule and is ignored in a DENY rule.
#[test]
fn unsupported_conditions_follow_istios_error_rule() {
    let allow = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: meta, namespace: foo}
spec:
  rules:
  - when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}]
"#;
    table(allow, &[("allow rule void", get("/"), DENY)]);
    let deny = allow.replace("spec:\n", "spec:\n  action: DENY\n");
    let id = "ns[foo]-policy[meta]-rule[0]";
    table(&deny, &[("deny rule widened", get("/"), by(false, id))]);
}

#[test]
fn decisions_explain_themselves() {
    let p = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec: {}
",
    );
    let e = evaluate(&p, &get("/"));
    assert_eq!(e.decision.reason, Reason::NoAllowPolicyMatched);
    assert_eq!(e.decision.to_string(), "denied: no ALLOW policy matched");
    let none = WorkloadPolicies::default();
    assert_eq!(
        evaluate(&none, &get("/")).decision.to_string(),
        "allowed: no ALLOW policy applies"
    );
}

/// Compiled policies ride the push as JSON, like the rest of the snapshot.
#[test]
fn compiled_policies_round_trip_as_json() {
    let p = policies(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mixed, namespace: foo}
spec:
  rules:
  - from: [{source: {principals: ["*"], ipBlocks: ["10.0.0.0/8"], serviceAccounts: []}}]
    to: [{operation: {paths: ["/a/{*}", "/b*"], ports: ["80"]}}]
    when:
    - {key: "request.auth.claims[a][b]", values: ["x"]}
    - {key: "request.headers[x-y]", notValues: ["*"]}
    - {key: request.auth.principal, values: ["iss/sub"]}
"#,
    );
    let json = serde_json::to_string(&p).expect("serialise");
    let back: WorkloadPolicies = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, p);
    assert!(json.contains("10.0.0.0/8"), "{json}");
}

//! The evaluator against Istio's semantics for HTTP: tables of requests per policy set,
//! modelled on Istio's security tasks (httpbin in `foo`, called by `sleep`).

use serde_json::json;

use super::test_support::{ALLOW, DENY, OTHER_NS, OTHER_TD, SLEEP, get, http, table, tcp};

const fn by(allowed: bool, id: &'static str) -> (bool, Option<&'static str>) {
    (allowed, Some(id))
}

#[test]
fn no_policy_allows_everything() {
    table(
        "",
        &[("http", get("/ip"), ALLOW), ("tcp", tcp(9000), ALLOW)],
    );
}

#[test]
fn allow_nothing_denies_everything() {
    let yaml = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec: {}
";
    table(
        yaml,
        &[
            ("http", get("/ip"), DENY),
            ("from sleep", get("/ip").from(SLEEP), DENY),
            ("tcp", tcp(9000), DENY),
        ],
    );
}

#[test]
fn allow_with_one_empty_rule_allows_everything() {
    let yaml = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: foo}
spec:
  action: ALLOW
  rules: [{}]
";
    let id = "ns[foo]-policy[allow-all]-rule[0]";
    table(
        yaml,
        &[
            ("http", get("/ip"), by(true, id)),
            ("tcp", tcp(9000), by(true, id)),
        ],
    );
}

#[test]
fn deny_get_unless_admin_header() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-get, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {methods: ["GET"]}}]
    when:
    - key: request.headers[x-token]
      notValues: ["admin"]
"#;
    let id = "ns[foo]-policy[deny-get]-rule[0]";
    table(
        yaml,
        &[
            ("GET without token", get("/get"), by(false, id)),
            (
                "GET as guest",
                get("/get").header("X-Token", "guest"),
                by(false, id),
            ),
            (
                "GET as admin",
                get("/get").header("x-token", "admin"),
                ALLOW,
            ),
            ("POST", http("POST", "/post"), ALLOW),
            ("methods are case-sensitive", http("get", "/get"), ALLOW),
        ],
    );
}

#[test]
fn allow_get_from_a_principal_and_deny_wins() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep-get, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
    to: [{operation: {methods: ["GET", "HEAD"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
"#;
    let allowed = by(true, "ns[foo]-policy[allow-sleep-get]-rule[0]");
    let denied = by(false, "ns[foo]-policy[deny-admin]-rule[0]");
    table(
        yaml,
        &[
            ("GET from sleep", get("/headers").from(SLEEP), allowed),
            ("HEAD from sleep", http("HEAD", "/").from(SLEEP), allowed),
            ("POST from sleep", http("POST", "/post").from(SLEEP), DENY),
            ("GET from another namespace", get("/").from(OTHER_NS), DENY),
            ("GET in plaintext", get("/headers"), DENY),
            ("DENY before ALLOW", get("/admin/x").from(SLEEP), denied),
        ],
    );
}

#[test]
fn identity_fields_and_their_negations() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ids, namespace: foo}
spec:
  rules:
  - from: [{source: {namespaces: ["foo"], notPrincipals: ["*/sa/blocked"]}}]
    to: [{operation: {paths: ["/ns"]}}]
  - from: [{source: {serviceAccounts: ["sleep", "bar/sleep"]}}]
    to: [{operation: {paths: ["/sa"]}}]
  - from: [{source: {principals: ["*"]}}]
    to: [{operation: {paths: ["/mtls"]}}]
  - from: [{source: {notPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/plaintext"]}}]
  - from: [{source: {trustDomains: ["example.org"]}}]
    to: [{operation: {paths: ["/td"]}}]
  - from: [{source: {notNamespaces: ["ba*"]}}]
    to: [{operation: {paths: ["/not-ba"]}}]
"#;
    let rule = |n| {
        (
            true,
            Some(match n {
                0 => "ns[foo]-policy[ids]-rule[0]",
                1 => "ns[foo]-policy[ids]-rule[1]",
                2 => "ns[foo]-policy[ids]-rule[2]",
                3 => "ns[foo]-policy[ids]-rule[3]",
                4 => "ns[foo]-policy[ids]-rule[4]",
                _ => "ns[foo]-policy[ids]-rule[5]",
            }),
        )
    };
    let blocked = "spiffe://cluster.local/ns/foo/sa/blocked";
    table(
        yaml,
        &[
            ("namespace foo", get("/ns").from(SLEEP), rule(0)),
            ("namespace bar", get("/ns").from(OTHER_NS), DENY),
            ("notPrincipals suffix", get("/ns").from(blocked), DENY),
            (
                "sa in the policy's namespace",
                get("/sa").from(SLEEP),
                rule(1),
            ),
            ("sa as ns/sa", get("/sa").from(OTHER_NS), rule(1)),
            ("sa elsewhere", get("/sa").from(blocked), DENY),
            ("sa in any trust domain", get("/sa").from(OTHER_TD), rule(1)),
            ("any peer", get("/mtls").from(blocked), rule(2)),
            ("any peer, plaintext", get("/mtls"), DENY),
            ("not any peer, plaintext", get("/plaintext"), rule(3)),
            ("not any peer, mTLS", get("/plaintext").from(SLEEP), DENY),
            ("trust domain", get("/td").from(OTHER_TD), rule(4)),
            ("other trust domain", get("/td").from(SLEEP), DENY),
            ("notNamespaces glob", get("/not-ba").from(OTHER_NS), DENY),
            ("notNamespaces, other", get("/not-ba").from(SLEEP), rule(5)),
            ("notNamespaces, plaintext", get("/not-ba"), rule(5)),
        ],
    );
}

#[test]
fn jwt_request_principals_and_claims() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/any-token"]}}]
  - to: [{operation: {paths: ["/group"]}}]
    when:
    - key: request.auth.claims[groups]
      values: ["admins"]
  - to: [{operation: {paths: ["/nested"]}}]
    when:
    - key: request.auth.claims[realm][role]
      values: ["editor*"]
  - to: [{operation: {paths: ["/aud"]}}]
    when:
    - {key: request.auth.audiences, values: ["httpbin.foo"]}
    - {key: request.auth.presenter, values: ["*.example"]}
    - {key: request.auth.principal, values: ["https://issuer.example/*"]}
"#;
    let id = |n: usize| {
        [
            "ns[foo]-policy[require-jwt]-rule[0]",
            "ns[foo]-policy[require-jwt]-rule[1]",
            "ns[foo]-policy[require-jwt]-rule[2]",
            "ns[foo]-policy[require-jwt]-rule[3]",
            "ns[foo]-policy[require-jwt]-rule[4]",
        ][n]
    };
    let alice = json!({"iss": "https://issuer.example", "sub": "alice"});
    let bob = json!({
        "iss": "https://issuer.example", "sub": "bob",
        "groups": ["users", "admins"],
        "realm": {"role": "editor-in-chief"},
        "aud": ["other", "httpbin.foo"], "azp": "app.example",
    });
    let mallory = json!({"iss": "https://evil.example", "sub": "mallory", "groups": "users",
        "realm": {"role": 7}, "aud": "httpbin.foo", "azp": "app.example"});
    table(
        yaml,
        &[
            ("alice", get("/ip").jwt(alice.clone()), by(true, id(0))),
            ("no token", get("/ip"), DENY),
            ("bob, any path", get("/ip").jwt(bob.clone()), DENY),
            (
                "any token",
                get("/any-token").jwt(mallory.clone()),
                by(true, id(1)),
            ),
            ("any token, none", get("/any-token"), DENY),
            (
                "list claim",
                get("/group").jwt(bob.clone()),
                by(true, id(2)),
            ),
            ("string claim", get("/group").jwt(mallory.clone()), DENY),
            (
                "nested claim",
                get("/nested").jwt(bob.clone()),
                by(true, id(3)),
            ),
            ("nested number", get("/nested").jwt(mallory.clone()), DENY),
            ("aud, azp, principal", get("/aud").jwt(bob), by(true, id(4))),
            ("other issuer", get("/aud").jwt(mallory), DENY),
        ],
    );
}

#[test]
fn deny_requests_without_a_token() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-token, namespace: foo}
spec:
  action: DENY
  rules:
  - from: [{source: {notRequestPrincipals: ["*"]}}]
"#;
    let id = "ns[foo]-policy[require-token]-rule[0]";
    let token = json!({"iss": "i", "sub": "s"});
    table(
        yaml,
        &[
            ("no token", get("/"), by(false, id)),
            ("token", get("/").jwt(token), ALLOW),
            // On TCP the HTTP-only source is dropped and the rule denies everything.
            ("tcp", tcp(8000), by(false, id)),
        ],
    );
}

#[test]
fn ip_blocks_remote_ips_and_ip_conditions() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ips, namespace: foo}
spec:
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/24"], notIpBlocks: ["10.0.0.66"]}}]
    to: [{operation: {paths: ["/direct"]}}]
  - from: [{source: {remoteIpBlocks: ["203.0.113.0/24", "2001:db8::/32"]}}]
    to: [{operation: {paths: ["/remote"]}}]
  - to: [{operation: {paths: ["/cond"]}}]
    when:
    - {key: source.ip, values: ["10.0.0.5"]}
    - {key: remote.ip, notValues: ["198.51.100.1"]}
    - {key: destination.ip, values: ["10.0.0.0/16"]}
"#;
    let id = |n: usize| {
        [
            "ns[foo]-policy[ips]-rule[0]",
            "ns[foo]-policy[ips]-rule[1]",
            "ns[foo]-policy[ips]-rule[2]",
        ][n]
    };
    table(
        yaml,
        &[
            ("in block", get("/direct"), by(true, id(0))),
            ("excluded address", get("/direct").src("10.0.0.66"), DENY),
            ("outside block", get("/direct").src("10.1.0.5"), DENY),
            (
                "remote from XFF",
                get("/remote").remote("203.0.113.9"),
                by(true, id(1)),
            ),
            (
                "remote v6",
                get("/remote").remote("2001:db8::1"),
                by(true, id(1)),
            ),
            (
                "remote defaults to source",
                get("/remote").src("203.0.113.7"),
                by(true, id(1)),
            ),
            ("remote outside", get("/remote").remote("192.0.2.1"), DENY),
            ("conditions hold", get("/cond"), by(true, id(2))),
            ("remote excluded", get("/cond").remote("198.51.100.1"), DENY),
            ("other destination", get("/cond").dst("192.168.0.1"), DENY),
        ],
    );
}

#[test]
fn header_conditions() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: headers, namespace: foo}
spec:
  rules:
  - to: [{operation: {paths: ["/v"]}}]
    when: [{key: "request.headers[Version]", values: ["v1", "v2*"]}]
  - to: [{operation: {paths: ["/present"]}}]
    when: [{key: "request.headers[x-present]", values: ["*"]}]
  - to: [{operation: {paths: ["/inline"]}}]
    when: [{key: "request.experimental.inline.headers[x-tags]", values: ["beta"]}]
  - to: [{operation: {paths: ["/pseudo"]}}]
    when:
    - {key: "request.headers[:method]", values: ["PUT"]}
    - {key: "request.headers[host]", values: ["api.*"]}
"#;
    let id = |n: usize| {
        [
            "ns[foo]-policy[headers]-rule[0]",
            "ns[foo]-policy[headers]-rule[1]",
            "ns[foo]-policy[headers]-rule[2]",
            "ns[foo]-policy[headers]-rule[3]",
        ][n]
    };
    table(
        yaml,
        &[
            ("exact", get("/v").header("version", "v1"), by(true, id(0))),
            (
                "prefix",
                get("/v").header("VERSION", "v2-beta"),
                by(true, id(0)),
            ),
            (
                "value case matters",
                get("/v").header("version", "V1"),
                DENY,
            ),
            ("absent", get("/v"), DENY),
            (
                "repeated header is joined",
                get("/v").header("version", "v1").header("version", "v3"),
                DENY,
            ),
            (
                "present, empty",
                get("/present").header("x-present", ""),
                by(true, id(1)),
            ),
            ("not present", get("/present"), DENY),
            (
                "inline element",
                get("/inline").header("x-tags", "alpha,beta"),
                by(true, id(2)),
            ),
            (
                "inline, other",
                get("/inline").header("x-tags", "alpha,gamma"),
                DENY,
            ),
            (
                "pseudo-headers",
                http("PUT", "/pseudo").host("api.foo"),
                by(true, id(3)),
            ),
            (
                "pseudo-headers, other",
                get("/pseudo").host("api.foo"),
                DENY,
            ),
        ],
    );
}

#[test]
fn operations_hosts_ports_methods_paths() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ops, namespace: foo}
spec:
  rules:
  - to:
    - operation:
        hosts: ["httpbin.example.com", "*.internal"]
        notPaths: ["/private*"]
    - operation:
        ports: ["9080"]
        notMethods: ["DELETE"]
        paths: ["/api/{*}/items", "/files/{**}/file.txt", "*.json", "/exact"]
"#;
    let id = "ns[foo]-policy[ops]-rule[0]";
    table(
        yaml,
        &[
            (
                "host, any case",
                get("/").host("HTTPBIN.example.com"),
                by(true, id),
            ),
            ("host suffix", get("/").host("a.Internal"), by(true, id)),
            (
                "host with port is another host",
                get("/").host("httpbin.example.com:80"),
                DENY,
            ),
            (
                "notPaths",
                get("/private/x").host("httpbin.example.com"),
                DENY,
            ),
            (
                "template one segment",
                get("/api/v1/items").port(9080),
                by(true, id),
            ),
            (
                "template two segments",
                get("/api/v1/x/items").port(9080),
                DENY,
            ),
            (
                "template many",
                get("/files/a/b/file.txt").port(9080),
                by(true, id),
            ),
            (
                "template many, other name",
                get("/files/a/b/c.txt").port(9080),
                DENY,
            ),
            ("suffix", get("/data/x.json").port(9080), by(true, id)),
            ("query ignored", get("/exact?x=1").port(9080), by(true, id)),
            ("other path", get("/exactly").port(9080), DENY),
            ("other port", get("/exact").port(9081), DENY),
            ("notMethods", http("DELETE", "/exact").port(9080), DENY),
        ],
    );
}

#[test]
fn port_and_sni_conditions() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: conn, namespace: foo}
spec:
  rules:
  - when:
    - {key: destination.port, values: ["8000", "9000"]}
    - {key: connection.sni, values: ["*.foo.svc.cluster.local"]}
  - when:
    - {key: source.namespace, values: ["bar"]}
    - {key: source.principal, notValues: ["cluster.local/ns/bar/sa/blocked"]}
    - {key: source.serviceAccount, values: ["bar/sleep"]}
"#;
    let id0 = "ns[foo]-policy[conn]-rule[0]";
    let id1 = "ns[foo]-policy[conn]-rule[1]";
    table(
        yaml,
        &[
            (
                "port and sni",
                get("/").sni("httpbin.foo.svc.cluster.local"),
                by(true, id0),
            ),
            (
                "tcp port and sni",
                tcp(9000).sni("x.foo.svc.cluster.local"),
                by(true, id0),
            ),
            ("no sni", tcp(9000), DENY),
            ("other port", tcp(9001).sni("x.foo.svc.cluster.local"), DENY),
            ("source conditions", tcp(1).from(OTHER_NS), by(true, id1)),
            (
                "source conditions, http",
                get("/").from(OTHER_NS),
                by(true, id1),
            ),
            ("wrong namespace", tcp(1).from(SLEEP), DENY),
        ],
    );
}

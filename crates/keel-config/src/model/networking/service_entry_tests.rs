//! ServiceEntry validation cases, after Istio's `TestValidateServiceEntries`,
//! `Test_validateExportTo` and its CRD fixtures.

use crate::{Level, LoadOptions, load_str, validate_resources};

/// (errors, warnings) for a ServiceEntry in namespace `ns5` with the given `spec` body.
fn lint_with(labels: &str, spec: &str) -> (Vec<String>, Vec<String>) {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se, namespace: ns5{labels}}}\nspec:\n{spec}"
    );
    let loaded = load_str(&text, "se.yaml", &LoadOptions::default());
    let mut diags = loaded.diagnostics;
    diags.extend(validate_resources(&loaded.resources, "istio-system"));
    let (e, w): (Vec<_>, Vec<_>) = diags.into_iter().partition(|d| d.level == Level::Error);
    (
        e.iter().map(|d| d.to_string()).collect(),
        w.iter().map(|d| d.to_string()).collect(),
    )
}

fn lint(spec: &str) -> (Vec<String>, Vec<String>) {
    lint_with("", spec)
}

/// Valid, and warns iff `warning` is given (containing it).
fn assert_ok(spec: &str, warning: Option<&str>) {
    let (e, w) = lint(spec);
    assert!(e.is_empty(), "{spec}\nunexpected errors {e:?}");
    match warning {
        None => assert!(w.is_empty(), "{spec}\nunexpected warnings {w:?}"),
        Some(want) => assert!(
            w.iter().any(|m| m.contains(want)),
            "{spec}\nwant warning {want:?}, got {w:?}"
        ),
    }
}

fn assert_err(spec: &str, want: &str) {
    let (e, _) = lint(spec);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "{spec}\nwant error {want:?}, got {e:?}"
    );
}

const HTTP_PORTS: &str = "  ports:\n  - {number: 80, protocol: http, name: http-valid1}\n  - {number: 8080, protocol: http, name: http-valid2}\n";

fn se(body: &str) -> String {
    format!("{HTTP_PORTS}{body}")
}

#[test]
fn accepts_istio_shapes() {
    // Discovery type DNS with endpoints (FQDN or IP) and wildcard hosts.
    assert_ok(
        &se(
            "  hosts: [\"*.google.com\"]\n  resolution: DNS\n  endpoints:\n  - {address: lon.google.com, ports: {http-valid1: 8080}}\n  - {address: in.google.com, ports: {http-valid2: 9080}, labels: {security.istio.io/tlsMode: istio}}\n  - {address: 1.1.1.1, ports: {http-valid1: 8080}}\n",
        ),
        None,
    );
    assert_ok(
        &se(
            "  hosts: [\"*.istio.io\"]\n  resolution: DNS_ROUND_ROBIN\n  endpoints:\n  - {address: api-v1.istio.io, ports: {http-valid1: 8080}}\n",
        ),
        None,
    );
    assert_ok(&se("  hosts: [google.com]\n  resolution: DNS\n"), None);
    assert_ok(
        &se("  hosts: [google.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: []\n"),
        None,
    );
    assert_ok(
        &se(
            "  hosts: [foo, bar.com]\n  resolution: DNS\n  endpoints: [{address: in.google.com, ports: {http-valid1: 9080}}]\n",
        ),
        None,
    );
    assert_ok(
        "  hosts: [httpbin.org]\n  addresses: [10.10.10.10]\n  ports:\n  - {number: 80, protocol: http, name: http}\n  - {number: 443, protocol: https, name: https}\n  resolution: DNS\n",
        None,
    );
    // Several hosts with an address and a TCP-carried port: a warning.
    assert_ok(
        "  hosts: [httpbin.org, wikipedia.org]\n  addresses: [10.10.10.10]\n  ports:\n  - {number: 80, protocol: http, name: http}\n  - {number: 443, protocol: https, name: https}\n  resolution: DNS\n",
        Some("can not have more than one host specified simultaneously with address and tcp port"),
    );
    // NONE and STATIC, with CIDRs.
    assert_ok(&se("  hosts: [google.com]\n  resolution: NONE\n"), None);
    assert_ok(
        &se("  hosts: [google.com]\n  addresses: [172.1.2.16/16]\n"),
        None,
    );
    assert_ok(
        &se(
            "  hosts: [google.com]\n  addresses: [172.1.2.16/16]\n  resolution: STATIC\n  endpoints:\n  - {address: 1.1.1.1, ports: {http-valid1: 8080}}\n  - {address: 2.2.2.2, ports: {http-valid2: 9080}}\n",
        ),
        None,
    );
    assert_ok(
        &se("  hosts: [google.com]\n  addresses: [172.1.2.16]\n  resolution: STATIC\n"),
        None,
    );
    // Unix socket endpoint with exactly one service port.
    assert_ok(
        "  hosts: [uds.cluster.local]\n  ports: [{number: 6553, protocol: grpc, name: grpc-service1}]\n  resolution: STATIC\n  endpoints: [{address: \"unix:///path/to/socket\"}]\n",
        None,
    );
    // Protocol left to detection, with an address.
    assert_ok(
        "  hosts: [google.com]\n  addresses: [172.1.2.16/16]\n  ports: [{number: 8080, name: http-valid2}]\n",
        None,
    );
    // Target ports (the same one twice is fine).
    assert_ok(
        "  hosts: [google.com]\n  resolution: DNS\n  ports:\n  - {number: 80, protocol: http, name: a, targetPort: 80}\n  - {number: 81, protocol: http, name: b, targetPort: 80}\n",
        None,
    );
    // Selector with DNS: fine; an empty selector: a warning.
    assert_ok(
        "  hosts: [google.com]\n  workloadSelector: {labels: {foo: bar}}\n  ports: [{number: 80, protocol: http, name: http}]\n  resolution: DNS\n",
        None,
    );
    assert_ok(
        "  hosts: [example.com]\n  workloadSelector: {}\n  resolution: STATIC\n",
        Some("service entry: workload selector specified without labels"),
    );
    // Istio's full valid fixture, with MESH_EXTERNAL and exportTo.
    assert_ok(
        "  hosts: [example.com]\n  workloadSelector: {labels: {foo: bar}}\n  addresses: [1.2.3.4, \"001:db8::\"]\n  exportTo: [foo, .]\n  location: MESH_EXTERNAL\n  ports: [{name: foo, protocol: HTTP, number: 1234, targetPort: 2345}]\n  subjectAltNames: [sa]\n  resolution: DNS\n",
        None,
    );
    assert_ok(
        "  hosts: [example.com]\n  location: MESH_INTERNAL\n  exportTo: [\"~\"]\n  resolution: DNS\n",
        None,
    );
    // Wildcard hosts with DYNAMIC_DNS.
    assert_ok(
        "  hosts: [\"*.example.com\"]\n  ports: [{number: 443, protocol: TLS, name: tls}]\n  resolution: DYNAMIC_DNS\n",
        None,
    );
    // A partial wildcard: a warning.
    assert_ok(
        "  hosts: [\"*.nytimes.com\", \"*washingtonpost.com\"]\n  ports: [{number: 443, protocol: HTTPS, name: https}]\n  resolution: NONE\n",
        Some("partial wildcard \"*washingtonpost.com\" not allowed"),
    );
    // An endpoint with a network and no address: a warning.
    assert_ok(
        "  hosts: [www.example.com]\n  ports: [{number: 443, protocol: HTTPS, name: https}]\n  resolution: STATIC\n  endpoints: [{network: cluster-1}]\n",
        Some("address is unset with network \"cluster-1\""),
    );
}

#[test]
fn warnings_istio_emits() {
    assert_ok(
        "  hosts: [google.com]\n  workloadSelector: {labels: {foo: bar}}\n  ports: [{number: 80, protocol: http, name: http, targetPort: 1234}]\n",
        Some("workloadSelector should not be set when resolution mode is NONE"),
    );
    for p in [
        "{number: 8080, name: p}",
        "{number: 81, protocol: TCP, name: p}",
    ] {
        assert_ok(
            &format!("  hosts: [google.com]\n  ports: [{p}]\n  resolution: NONE\n"),
            Some("addresses are required for ports serving TCP (or unset) protocol"),
        );
    }
    // With automatic IP allocation (DNS resolution, no opt-out) there is no warning...
    assert_ok(
        "  hosts: [google.com]\n  ports: [{number: 81, protocol: TCP, name: p}]\n  resolution: DNS\n",
        None,
    );
    // ...unless the ServiceEntry opts out.
    let (e, w) = lint_with(
        ", labels: {networking.istio.io/enable-autoallocate-ip: \"false\"}",
        "  hosts: [google.com]\n  ports: [{number: 81, protocol: TCP, name: p}]\n  resolution: DNS\n",
    );
    assert!(
        e.is_empty() && w[0].contains("addresses are required"),
        "{e:?} {w:?}"
    );
    assert_ok(
        "  hosts: [\"*.example.com\"]\n  resolution: DYNAMIC_DNS\n  endpoints: [{address: 1.1.1.1}]\n",
        Some("endpoints are not used with resolution DYNAMIC_DNS"),
    );
}

#[test]
fn rejects_what_istio_rejects() {
    for (spec, want) in [
        ("  resolution: DNS\n", "spec.hosts: Required value"),
        ("  hosts: [\"-\"]\n", "spec.hosts[0]: domain name"),
        (
            "  hosts: [foo.com, \"*\"]\n",
            "spec.hosts[1]: hostname cannot be wildcard",
        ),
        ("  hosts: [\"foo*\"]\n", "label \"foo*\" invalid"),
        (
            "  hosts: [google.com]\n  resolution: DNS\n  endpoints:\n  - {address: lon.google.com, ports: {http-valid1: 8080}}\n  - {address: in.google.com, ports: {http-dne: 9080}}\n",
            "spec.endpoints[1].ports.http-dne: endpoint port 9080 is not defined by the service entry",
        ),
        (
            "  hosts: [\"*.google.com\"]\n  resolution: DNS\n  endpoints: [{address: \"*.lon.google.com\", ports: {http-valid1: 8080}}]\n",
            "endpoint address \"*.lon.google.com\" is not a valid FQDN or an IP address",
        ),
        (
            "  hosts: [\"*.google.com\"]\n  resolution: DNS\n",
            "spec.hosts[0]: hosts must be FQDN if no endpoints are provided for resolution mode DNS",
        ),
        (
            "  hosts: [\"*.google.com\"]\n  resolution: DNS\n  endpoints: [{address: \"unix:///lon/google/com\"}]\n",
            "is not a valid FQDN or an IP address",
        ),
        (
            "  hosts: [google.com]\n  resolution: NONE\n  endpoints: [{address: lon.google.com}]\n",
            "spec.endpoints: NONE mode cannot set endpoints",
        ),
        (
            "  hosts: [google.com]\n  endpoints: []\n",
            "NONE mode cannot set endpoints",
        ),
        (
            "  hosts: [google.com]\n  resolution: STATIC\n  endpoints: [{address: google.com, ports: {http-valid1: 8080}}]\n",
            "endpoint address \"google.com\" is not a valid IP address",
        ),
        (
            "  hosts: [google.com]\n  resolution: STATIC\n  endpoints: [{address: 2.2.2.2, ports: {http-dne: 9080}}]\n",
            "endpoint port 9080 is not defined by the service entry",
        ),
        (
            "  hosts: [google.com]\n  resolution: STATIC\n  endpoints: [{address: \"unix://./relative/path.sock\"}]\n",
            "UDS must be an absolute path or abstract socket",
        ),
        (
            "  hosts: [google.com]\n  resolution: STATIC\n  endpoints: [{address: \"unix:///path/to/socket\", ports: {http-valid1: 6553}}]\n",
            "UDS may not include ports",
        ),
        (
            "  hosts: [google.com]\n  resolution: STATIC\n  endpoints: [{address: \"unix:///path/to/socket\"}]\n",
            "exactly 1 service port required for unix endpoints",
        ),
        (
            "  hosts: [google.com]\n  resolution: STATIC\n  endpoints: [{address: 1.1.1.1, ports: {http-valid1: 65536}}]\n",
            "port must be between 1-65535 (got 65536)",
        ),
        (
            "  hosts: [google.com]\n  resolution: STATIC\n  endpoints: [{ports: {http-valid1: 80}}]\n",
            "spec.endpoints[0]: Address is required",
        ),
        (
            "  hosts: [google.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: api-v1.istio.io}, {address: 1.1.1.2}]\n",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        ),
        (
            "  hosts: [google.com]\n  workloadSelector: {labels: {foo: bar}}\n  endpoints: [{address: 1.1.1.1}]\n",
            "only one of WorkloadSelector or Endpoints can be set",
        ),
        (
            "  hosts: [google.com]\n  workloadSelector: {labels: {\"\": bar}}\n",
            "empty key is not supported in selector",
        ),
        (
            "  hosts: [google.com]\n  workloadSelector: {labels: {val: \"*\"}}\n",
            "wildcard is not supported in selector: \"val=*\"",
        ),
        (
            "  hosts: [google.com]\n  addresses: [1.2.3.4/16]\n  resolution: DNS\n",
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        ),
        (
            "  hosts: [google.com]\n  addresses: [1.2.3.4/99]\n",
            "spec.addresses[0]: 1.2.3.4/99 is not a valid CIDR block",
        ),
        (
            "  hosts: [google.com]\n  addresses: [not-an-ip]\n",
            "not-an-ip is not a valid IP",
        ),
        (
            "  hosts: [google.com]\n  resolution: DNSS\n",
            "did you mean \"DNS\"",
        ),
        (
            "  hosts: [google.com]\n  location: OUTSIDE\n",
            "unknown value \"OUTSIDE\"",
        ),
    ] {
        assert_err(&se(spec), want);
    }
}

#[test]
fn port_rules() {
    for (ports, want) in [
        (
            "[{name: a, number: 1}, {name: a, number: 12}]",
            "spec.ports[1].name: Duplicate value: service entry port name \"a\" already defined",
        ),
        (
            "[{name: a, number: 1}, {name: b, number: 1}]",
            "spec.ports[1].number: port number cannot be duplicated",
        ),
        (
            "[{name: a, number: 99999}]",
            "spec.ports[0].number: port must be between 1-65535",
        ),
        (
            "[{name: a, number: 0}]",
            "port must be between 1-65535 (got 0)",
        ),
        (
            "[{name: a, number: 1, targetPort: 99999}]",
            "spec.ports[0].targetPort: port must be between 1-65535",
        ),
        (
            "[{number: 80, protocol: http}]",
            "spec.ports[0].name: Required value",
        ),
        (
            "[{name: http_1, number: 80, protocol: http}]",
            "invalid port name: \"http_1\"",
        ),
        (
            "[{name: a, number: 80, protocol: kafka}]",
            "spec.ports[0].protocol: unsupported protocol: kafka",
        ),
        (
            "[{name: a, number: 80, protocol: HTTTP}]",
            "did you mean \"HTTP\"",
        ),
    ] {
        assert_err(
            &format!("  hosts: [example.com]\n  addresses: [1.1.1.1]\n  ports: {ports}\n"),
            want,
        );
    }
    // Several hosts, resolved, on a port that isn't HTTP or TLS.
    for p in [
        "{number: 3306, protocol: TCP, name: tcp}",
        "{number: 3306, name: auto}",
    ] {
        assert_err(
            &format!("  hosts: [a.com, b.com]\n  resolution: DNS\n  ports: [{p}]\n"),
            "spec.ports[0]: multiple hosts provided with non-HTTP, non-TLS ports",
        );
    }
    // With resolution NONE the hosts are not used, so that is fine.
    assert_ok(
        "  hosts: [a.com, b.com]\n  addresses: [10.0.0.0/8]\n  ports: [{number: 3306, protocol: TCP, name: tcp}]\n",
        None,
    );
}

#[test]
fn export_to_rules() {
    for ok in ["[\"*\"]", "[., ns1]", "[ns1, ns2, ns5]", "[\"~\"]"] {
        assert_ok(
            &format!("  hosts: [a.com]\n  resolution: DNS\n  exportTo: {ok}\n"),
            None,
        );
    }
    for (bad, want) in [
        (
            "[., \"*\"]",
            "cannot have both public (*) and non-public exportTo values",
        ),
        (
            "[\"*\", ns1]",
            "cannot have both public (*) and non-public exportTo values",
        ),
        (
            "[ns5, .]",
            "spec.exportTo[1]: duplicate entries in exportTo: . and current namespace ns5",
        ),
        (
            "[., ns5]",
            "spec.exportTo[1]: duplicate entries in exportTo for entry ns5",
        ),
        (
            "[ns1, ns2, ns1]",
            "spec.exportTo[2]: duplicate entries in exportTo for entry ns1",
        ),
        (
            "[\"~\", \"~\", ns1]",
            "duplicate entries in exportTo for entry ~",
        ),
        (
            "[ns1_]",
            "only .,*, or a valid DNS 1123 label is allowed as exportTo entry",
        ),
        (
            "[\"~\", ns1]",
            "cannot export service entry to no one (~) and someone",
        ),
    ] {
        assert_err(
            &format!("  hosts: [a.com]\n  resolution: DNS\n  exportTo: {bad}\n"),
            want,
        );
    }
}

#[test]
fn positions_point_at_the_field() {
    let (e, _) = lint(
        "  hosts: [example.com]\n  ports:\n  - name: a\n    number: 1\n  - name: b\n    number: 1\n",
    );
    assert!(e[0].starts_with("se.yaml:10:13:"), "{e:?}");
}

#[test]
fn limits_and_json() {
    assert_err(
        &format!("  hosts: [a.com]\n  addresses: [\"{}\"]\n", "1".repeat(65)),
        "spec.addresses[0]: Too long: may not be more than 64 bytes",
    );
    assert_err(
        &format!(
            "  hosts: [a.com]\n  workloadSelector: {{labels: {{app: {}}}}}\n",
            "a".repeat(64)
        ),
        "spec.workloadSelector.labels.app: Too long",
    );
    let text = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n  hosts: [a.com]\n  resolution: DNS\n  ports: [{number: 80, name: http, protocol: HTTP}]\n";
    let loaded = load_str(text, "se.yaml", &LoadOptions::default());
    assert_eq!(
        loaded.resources[0].spec.to_json(),
        serde_json::json!({"hosts": ["a.com"], "resolution": "DNS", "ports": [{"number": 80, "protocol": "HTTP", "name": "http"}]})
    );
}

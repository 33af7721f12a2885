//! Sidecar validation cases, after Istio's `TestValidateSidecar` rules (Keel's own fixtures).

use crate::{Level, LoadOptions, load_str, validate_resources};

/// (errors, warnings) for a Sidecar `s` in namespace `ns` with the given `spec` body.
fn lint_in(api: &str, spec: &str) -> (Vec<String>, Vec<String>) {
    let text = format!(
        "apiVersion: networking.istio.io/{api}\nkind: Sidecar\nmetadata: {{name: s, namespace: ns}}\n{spec}"
    );
    let loaded = load_str(&text, "sc.yaml", &LoadOptions::default());
    let mut diags = loaded.diagnostics;
    diags.extend(validate_resources(&loaded.resources, "istio-system"));
    let (e, w): (Vec<_>, Vec<_>) = diags.into_iter().partition(|d| d.level == Level::Error);
    (
        e.iter().map(|d| d.to_string()).collect(),
        w.iter().map(|d| d.to_string()).collect(),
    )
}

fn lint(spec: &str) -> (Vec<String>, Vec<String>) {
    lint_in("v1", &format!("spec:\n{spec}"))
}

const EGRESS: &str = "  egress:\n  - hosts: [\"./*\"]\n";

fn assert_ok(spec: &str) {
    let (e, w) = lint(spec);
    assert!(e.is_empty() && w.is_empty(), "{spec}\n{e:?}\n{w:?}");
}

fn assert_err(spec: &str, want: &str) {
    let (e, _) = lint(spec);
    assert!(
        e.iter().any(|m| m.contains(want)),
        "{spec}\nwant error {want:?}, got {e:?}"
    );
}

fn assert_warn(spec: &str, want: &str) {
    let (e, w) = lint(spec);
    assert!(e.is_empty(), "{spec}\nunexpected errors {e:?}");
    assert!(
        w.iter().any(|m| m.contains(want)),
        "{spec}\nwant warning {want:?}, got {w:?}"
    );
}

/// One ingress listener with the given port flow map and more fields (indented 4).
fn ingress(port: &str, extra: &str) -> String {
    format!("  ingress:\n  - port: {port}\n{extra}{EGRESS}")
}

/// One egress listener with the given fields (indented 4, first line without the dash).
fn egress(fields: &str) -> String {
    format!("  egress:\n  - {fields}")
}

const HTTP: &str = "{number: 9080, protocol: HTTP, name: http}";

#[test]
fn accepts_istio_shapes() {
    for api in ["v1", "v1beta1", "v1alpha3"] {
        let (e, w) = lint_in(api, &format!("spec:\n{EGRESS}"));
        assert!(e.is_empty() && w.is_empty(), "{api}: {e:?} {w:?}");
    }
    assert_ok(&format!(
        "  workloadSelector:\n    labels: {{app: reviews}}\n{EGRESS}"
    ));
    // Istio's docs example: a Unix socket default endpoint and a catch-all egress listener last.
    assert_ok(
        "  ingress:\n  - port: {number: 9080, protocol: HTTP, name: somename}\n    defaultEndpoint: unix:///var/run/someuds.sock\n  egress:\n  - port: {number: 9080, protocol: HTTP, name: egresshttp}\n    hosts: [\"prod-us1/*\"]\n  - hosts: [\"istio-system/*\"]\n",
    );
    for ep in [
        "127.0.0.1:8080",
        "0.0.0.0:8080",
        "\"[::1]:8080\"",
        "\"[::]:8080\"",
        "\":8080\"",
        "unix://@abstract",
    ] {
        assert_ok(&ingress(HTTP, &format!("    defaultEndpoint: {ep}\n")));
    }
    // Port name and protocol are optional on listeners.
    assert_ok(&ingress(
        "{number: 9080}",
        "    bind: 10.1.1.1\n    captureMode: NONE\n",
    ));
    assert_ok(&egress(
        "port: {number: 0, protocol: HTTP, name: uds}\n    bind: unix:///var/run/egress.sock\n    captureMode: NONE\n    hosts: [\"*/*\"]\n",
    ));
    assert_ok(&egress(
        "port: {number: 8080, protocol: http2}\n    bind: \"::1\"\n    captureMode: IPTABLES\n    hosts: [\"~/*\", \"istio-system/*.example.com\", \"./reviews.ns.svc.cluster.local\"]\n",
    ));
    // Any one of the four top-level sections is enough.
    assert_ok(
        "  inboundConnectionPool:\n    http: {http1MaxPendingRequests: 1024, idleTimeout: 15m}\n",
    );
    assert_ok("  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n");
    assert_ok(&ingress(
        "{number: 8443, protocol: HTTPS, name: https}",
        "    tls: {mode: SIMPLE, serverCertificate: /etc/cert.pem, privateKey: /etc/key.pem}\n    connectionPool: {tcp: {maxConnections: 10}}\n",
    ));
    assert_ok(&ingress(
        HTTP,
        "    connectionPool: {http: {http2MaxRequests: 10}}\n",
    ));
}

#[test]
fn deprecated_egress_proxy_is_accepted() {
    // The shape of Istio's deprecation analyzer fixture: no port name or protocol, egressProxy.
    assert_ok(
        "  ingress:\n  - port: {number: 9080}\n    defaultEndpoint: unix:///var/run/some.sock\n  egress:\n  - hosts: [\"./*\"]\n  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy: {host: example, subset: v1, port: {number: 9080}}\n",
    );
}

#[test]
fn empty_configuration() {
    // Istio's CRD doesn't require a spec; the webhook then rejects the empty configuration.
    let (e, _) = lint_in("v1", "");
    assert!(
        e.iter()
            .any(|m| m.contains("sidecar: empty configuration provided")),
        "{e:?}"
    );
    assert_err("  {}\n", "sidecar: empty configuration provided");
    assert_err(
        "  workloadSelector: {labels: {app: a}}\n",
        "sidecar: empty configuration provided",
    );
}

#[test]
fn workload_selector() {
    assert_warn(
        &format!("  workloadSelector: {{}}\n{EGRESS}"),
        "sidecar: workload selector specified without labels, will be applied to all services in namespace",
    );
    assert_err(
        &format!("  workloadSelector: {{labels: {{app: \"*\"}}}}\n{EGRESS}"),
        "wildcard is not supported in selector: \"app=*\"",
    );
}

#[test]
fn ingress_ports() {
    let (e, _) = lint("  ingress:\n  - bind: 127.0.0.1\n");
    assert!(
        e[0].contains("sc.yaml:6:5")
            && e[0].contains("sidecar: port is required for ingress listeners"),
        "{e:?}"
    );
    assert_err(
        &ingress("{number: 9080, targetPort: 8080}", ""),
        "targetPort has no impact on Sidecars",
    );
    assert_err(
        &ingress("{number: 9080, name: Bad_Name}", ""),
        "spec.ingress[0].port.name: invalid port name",
    );
    let (e, _) = lint(&ingress("{number: 9080, protocol: HTTPX}", ""));
    assert!(
        e[0].contains("sc.yaml:6:36") && e[0].contains("unsupported protocol: HTTPX"),
        "{e:?}"
    );
    assert_err(
        &ingress("{number: 0}", ""),
        "port number 0 must be in the range 1..65535",
    );
    assert_err(
        &ingress("{number: 70000}", ""),
        "port number 70000 must be in the range 1..65535",
    );
    assert_err(
        &format!("  ingress:\n  - port: {HTTP}\n  - port: {{number: 9080, name: other}}\n"),
        "spec.ingress[1].port.number: sidecar: ports on IP bound listeners must be unique",
    );
    assert_err(
        &ingress(HTTP, "    bind: 1.2.3\n"),
        "1.2.3 is not a valid IP",
    );
    assert_err(
        &ingress(HTTP, "    bind: unix:///var/run/in.sock\n"),
        "ingress listeners bind to an IP only",
    );
}

#[test]
fn ingress_default_endpoint() {
    let cases = [
        (
            "10.0.0.1:8080",
            "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
        ),
        ("127.0.0.1", "address 127.0.0.1: missing port in address"),
        ("\"::1:80\"", "address ::1:80: too many colons in address"),
        ("\"[::1]\"", "address [::1]: missing port in address"),
        ("\"[::1\"", "address [::1: missing ']' in address"),
        (
            "\"[::1]x:80\"",
            "address [::1]x:80: missing port in address",
        ),
        (
            "127.0.0.1:http",
            "sidecar: defaultEndpoint port (http) is not a number",
        ),
        ("127.0.0.1:0", "port number 0 must be in the range 1..65535"),
        (
            "unix://var/run",
            "var/run is not an absolute path to a file",
        ),
        ("unix://", "unix address must not be empty"),
    ];
    for (ep, want) in cases {
        assert_err(
            &ingress(HTTP, &format!("    defaultEndpoint: {ep}\n")),
            &format!("spec.ingress[0].defaultEndpoint: {want}"),
        );
    }
}

#[test]
fn ingress_tls() {
    let https = "{number: 8443, protocol: HTTPS, name: https}";
    let certs = "serverCertificate: /c.pem, privateKey: /k.pem";
    let cases = [
        (
            format!("{{mode: SIMPLE, {certs}, subjectAltNames: [a]}}"),
            "tls.subjectAltNames: sidecar: subjectAltNames is not supported in ingress tls",
        ),
        (
            format!("{{mode: SIMPLE, {certs}, httpsRedirect: true}}"),
            "tls.httpsRedirect: sidecar: httpsRedirect is not supported",
        ),
        (
            "{mode: SIMPLE, credentialName: my-secret}".to_string(),
            "tls.credentialName: sidecar: credentialName is not currently supported",
        ),
        (
            "{mode: ISTIO_MUTUAL}".to_string(),
            "configuration is invalid: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls",
        ),
        (
            "{mode: AUTO_PASSTHROUGH}".to_string(),
            "configuration is invalid: cannot set mode to AUTO_PASSTHROUGH in sidecar ingress tls",
        ),
        (
            "{mode: SIMPLE, privateKey: /k.pem}".to_string(),
            "SIMPLE TLS requires a server certificate",
        ),
        (
            format!("{{mode: MUTUAL, {certs}}}"),
            "MUTUAL TLS requires a client CA bundle",
        ),
        (
            format!("{{mode: SIMPLE, {certs}, credentialNames: [a, b, c]}}"),
            "only one of credential_name, credential_names",
        ),
    ];
    for (tls, want) in cases {
        assert_err(&ingress(https, &format!("    tls: {tls}\n")), want);
    }
    assert_warn(
        &ingress(
            https,
            &format!("    tls: {{mode: SIMPLE, {certs}, minProtocolVersion: TLSV1_1}}\n"),
        ),
        "TLS version below TLSV1_2 require setting compatible ciphers",
    );
}

#[test]
fn connection_pools() {
    assert_err(
        &ingress(HTTP, "    connectionPool: {}\n"),
        "spec.ingress[0].connectionPool: connection pool must have at least one field",
    );
    assert_err(
        &ingress(HTTP, "    connectionPool: {tcp: {maxConnections: -1}}\n"),
        "connectionPool.tcp.maxConnections: max connections must be non-negative",
    );
    assert_err(
        "  inboundConnectionPool: {http: {http1MaxPendingRequests: -1}}\n",
        "spec.inboundConnectionPool.http.http1MaxPendingRequests: http1 max pending requests must be non-negative",
    );
    assert_err(
        "  inboundConnectionPool: {tcp: {connectTimeout: 0s}}\n",
        "spec.inboundConnectionPool.tcp.connectTimeout",
    );
    assert_err(
        "  inboundConnectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}\n",
        "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
    );
    assert_warn(
        &ingress(
            "{number: 3306, protocol: TCP, name: db}",
            "    connectionPool: {http: {maxRetries: 3}}\n",
        ),
        "sidecar: HTTP connection pool settings are configured for port 3306 (\"db\") but its protocol is not HTTP (TCP); only TCP settings will apply",
    );
}

#[test]
fn egress_listeners() {
    assert_err(
        "  egress:\n  - hosts: [\"./*\"]\n  - port: {number: 80}\n    hosts: [\"./*\"]\n",
        "spec.egress[0]: sidecar: the egress listener with empty port should be the last listener in the list",
    );
    assert_err(
        "  egress:\n  - hosts: [\"./*\"]\n  - hosts: [\"*/*\"]\n",
        "the egress listener with empty port should be the last listener",
    );
    assert_err(
        &egress("port: {number: 80, targetPort: 8080}\n    hosts: [\"./*\"]\n"),
        "spec.egress[0].port.targetPort: targetPort has no impact on Sidecars",
    );
    assert_err(
        &egress("port: {number: 80, name: \"a.b\"}\n    hosts: [\"./*\"]\n"),
        "invalid port name: \"a.b\"",
    );
    assert_err(
        &egress("port: {number: 80, protocol: SMTP}\n    hosts: [\"./*\"]\n"),
        "spec.egress[0].port.protocol: unsupported protocol: SMTP",
    );
    assert_err(
        &egress(
            "port: {number: 0, protocol: FOO}\n    bind: unix:///a.sock\n    hosts: [\"./*\"]\n",
        ),
        "unsupported protocol: FOO",
    );
    assert_err(
        &egress("port: {number: 65536}\n    hosts: [\"./*\"]\n"),
        "spec.egress[0].port.number: port number 65536 must be in the range 1..65535",
    );
    assert_err(
        &egress("port: {number: 80}\n    bind: 300.1.1.1\n    hosts: [\"./*\"]\n"),
        "spec.egress[0].bind: 300.1.1.1 is not a valid IP",
    );
    assert_err(
        &egress("port: {number: 80}\n    bind: unix:///a.sock\n    hosts: [\"./*\"]\n"),
        "a Unix domain socket bind needs port number 0",
    );
    assert_err(
        &egress("port: {number: 0}\n    hosts: [\"./*\"]\n"),
        "spec.egress[0].port: sidecar: ports with 0 value must have a unix domain socket bind address",
    );
    assert_err(
        &egress("port: {number: 0}\n    bind: 127.0.0.1\n    hosts: [\"./*\"]\n"),
        "spec.egress[0].bind: sidecar: ports with 0 value must have a unix domain socket bind address",
    );
    assert_err(
        &egress("port: {number: 0}\n    bind: unix://rel.sock\n    hosts: [\"./*\"]\n"),
        "spec.egress[0].bind: rel.sock is not an absolute path to a file",
    );
    assert_err(
        &egress(
            "port: {number: 0}\n    bind: unix:///a.sock\n    captureMode: IPTABLES\n    hosts: [\"./*\"]\n",
        ),
        "spec.egress[0].captureMode: sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
    );
    assert_err(
        "  egress:\n  - port: {number: 80}\n    hosts: [\"./*\"]\n  - port: {number: 80}\n    hosts: [\"./*\"]\n",
        "spec.egress[1].port.number: sidecar: ports on IP bound listeners must be unique",
    );
    assert_err(
        "  egress:\n  - port: {number: 0}\n    bind: unix:///a.sock\n    hosts: [\"./*\"]\n  - port: {number: 0}\n    bind: unix:///a.sock\n    hosts: [\"./*\"]\n",
        "spec.egress[1].bind: sidecar: unix domain socket values for listeners must be unique",
    );
    // The same number on ingress and egress is fine.
    assert_ok(&format!(
        "  ingress:\n  - port: {HTTP}\n  egress:\n  - port: {HTTP}\n    hosts: [\"./*\"]\n"
    ));
}

#[test]
fn egress_hosts() {
    assert_err(
        "  egress:\n  - port: {number: 80}\n",
        "spec.egress[0].hosts: sidecar: egress listener must contain at least one host",
    );
    assert_err(
        "  egress:\n  - hosts: []\n",
        "sidecar: egress listener must contain at least one host",
    );
    let cases = [
        ("foo.example.com", "host must be of form namespace/dnsName"),
        (
            "/foo.example.com",
            "config namespace and dnsName in host entry cannot be empty",
        ),
        (
            "Bad_ns/foo.example.com",
            "invalid namespace value \"Bad_ns\" in sidecar",
        ),
        ("ns1/reviews", "short names (non FQDN) are not allowed"),
        (
            "ns1/foo*.example.com",
            "partial wildcard \"foo*.example.com\" not allowed",
        ),
        ("*/1.2.3.4", "cannot be all-numeric"),
    ];
    for (host, want) in cases {
        let (e, _) = lint(&egress(&format!("hosts: [\"{host}\"]\n")));
        assert!(
            e.iter()
                .any(|m| m.contains("spec.egress[0].hosts[0]") && m.contains(want)),
            "{host}: want {want:?}, got {e:?}"
        );
    }
}

#[test]
fn egress_host_warnings() {
    for hosts in [
        "[\"ns1/a.example.com\", \"ns1/a.example.com\"]",
        "[\"ns1/*\", \"ns1/a.example.com\"]",
        "[\"ns1/a.example.com\", \"ns1/*\"]",
        // `.` is the Sidecar's own namespace.
        "[\"./*\", \"ns/a.example.com\"]",
    ] {
        let (e, w) = lint(&egress(&format!("hosts: {hosts}\n")));
        assert!(e.is_empty(), "{hosts}: {e:?}");
        assert!(
            w.iter().any(|m| m.contains("duplicated egress host:")),
            "{hosts}: {w:?}"
        );
    }
    assert_warn(
        &egress("hosts: [\"*/*\", \"istio-system/*\"]\n"),
        "`*/*` host select all resources, no other hosts can be added",
    );
    // Different namespaces and hosts are no duplicates.
    assert_ok(&egress(
        "hosts: [\"ns1/a.example.com\", \"ns1/b.example.com\", \"ns2/*\", \"*/c.example.com\"]\n",
    ));
}

#[test]
fn outbound_traffic_policy() {
    let proxy = "egressProxy: {host: proxy.example.com, port: {number: 3128}}";
    assert_ok(&format!(
        "  outboundTrafficPolicy: {{mode: ALLOW_ANY, {proxy}}}\n"
    ));
    assert_err(
        &format!("  outboundTrafficPolicy: {{{proxy}}}\n"),
        "spec.outboundTrafficPolicy.egressProxy: sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
    );
    assert_err(
        "  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com}}\n",
        "egressProxy.port: sidecar: egress_proxy port must be non-nil",
    );
    let (e, _) = lint(
        "  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: \"*.example.com\", port: {number: 80}}}\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("egressProxy.host: domain name"), "{e:?}");
    let (e, _) = lint(
        "  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: bad_host, port: {number: 80}}}\n",
    );
    assert_eq!(e.len(), 1, "one message per place: {e:?}");
    assert_err(
        "  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {port: {number: 80}}}\n",
        "egressProxy.host: Required value",
    );
    assert_err(
        "  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: a.b, subset: Bad_Subset, port: {number: 80}}}\n",
        "egressProxy.subset",
    );
    assert_err(
        "  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: a.b, port: {number: 0}}}\n",
        "egressProxy.port.number: port number 0 must be in the range 1..65535",
    );
}

#[test]
fn decoding() {
    let (e, _) = lint(&egress("captureMode: IPTABLE\n    hosts: [\"./*\"]\n"));
    assert!(e[0].contains("did you mean \"IPTABLES\""), "{e:?}");
    let (e, _) = lint("  outboundTrafficPolicy: {mode: ALLOWANY}\n");
    assert!(e[0].contains("did you mean \"ALLOW_ANY\""), "{e:?}");
    let (e, _) = lint(&egress("hostz: [\"./*\"]\n"));
    assert!(e[0].contains("hostz"), "{e:?}");
    // Enums also take their numbers.
    assert_ok(&egress(
        "port: {number: 0}\n    bind: unix:///a.sock\n    captureMode: 2\n    hosts: [\"./*\"]\n",
    ));
}

//! Gateway validation cases, after Istio's `TestValidateGateway`, `TestValidateServer`,
//! `TestValidateServerPort` and `TestValidateTlsOptions`.

use crate::{Level, LoadOptions, load_str, validate_resources};

/// (errors, warnings) for a Gateway named `name` with the given `spec` body.
fn lint_named(name: &str, annotations: &str, spec: &str) -> (Vec<String>, Vec<String>) {
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: ns{annotations}}}\nspec:\n{spec}"
    );
    let loaded = load_str(&text, "gw.yaml", &LoadOptions::default());
    let mut diags = loaded.diagnostics;
    diags.extend(validate_resources(&loaded.resources, "istio-system"));
    let (e, w): (Vec<_>, Vec<_>) = diags.into_iter().partition(|d| d.level == Level::Error);
    (
        e.iter().map(|d| d.to_string()).collect(),
        w.iter().map(|d| d.to_string()).collect(),
    )
}

fn lint(spec: &str) -> (Vec<String>, Vec<String>) {
    lint_named("gw", "", spec)
}

/// A one-server gateway: `port` is a flow map, `extra` more server fields (indented 4).
fn server(port: &str, extra: &str) -> String {
    format!("  servers:\n  - port: {port}\n    hosts: [foo.bar.com]\n{extra}")
}

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

const HTTP: &str = "{number: 80, name: http, protocol: HTTP}";
const HTTPS: &str = "{number: 443, name: https, protocol: HTTPS}";

#[test]
fn accepts_istio_shapes() {
    assert_ok(&server("{number: 7, name: name1, protocol: http}", ""));
    assert_ok(&format!(
        "  selector: {{istio: ingressgateway}}\n{}",
        server(HTTP, "    name: main\n")
    ));
    for host in [
        "1.1.1.1",
        "ns1/foo.bar.com",
        "\"*/foo.bar.com\"",
        "./foo.bar.com",
        "\"*\"",
        "\"*.bar.com\"",
        "ns1/*",
    ] {
        assert_ok(&format!(
            "  servers:\n  - port: {HTTP}\n    hosts: [{host}]\n"
        ));
    }
    // httpsRedirect on an HTTP port (mode defaults to PASSTHROUGH).
    assert_ok(&server(HTTP, "    tls: {httpsRedirect: true}\n"));
    assert_ok(&server(
        "{number: 7, name: http, protocol: http}",
        "    bind: 127.0.0.1\n",
    ));
    assert_ok(&server(
        "{number: 0, name: http, protocol: http}",
        "    bind: unix://@foobar\n",
    ));
    // Every protocol Istio knows, case-insensitive.
    for p in [
        "HTTP", "http2", "GRPC", "grpc-web", "MONGO", "REDIS", "MySQL", "TCP", "UDP",
    ] {
        assert_ok(&server(
            &format!("{{number: 9000, name: p, protocol: {p}}}"),
            "",
        ));
    }
    assert_ok(&server(
        "{number: 443, name: tls, protocol: TLS}",
        "    tls: {mode: PASSTHROUGH}\n",
    ));
    assert_ok(&server(
        "{number: 15443, name: tls, protocol: TLS}",
        "    tls: {mode: AUTO_PASSTHROUGH}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: SIMPLE, credentialName: cert}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: 1, credentialNames: [rsa, ecdsa]}\n",
    ));
    assert_ok(&server(HTTPS, "    tls: {mode: ISTIO_MUTUAL}\n"));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, caCrl: /crl.pem}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: MUTUAL, credentialName: cert, caCertificates: /ca.pem}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: MUTUAL, credentialNames: [a, b]}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: OPTIONAL_MUTUAL, credentialName: cert}\n",
    ));
    // A CRL with credentialName: the check is skipped (the CRL lives in the secret).
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: SIMPLE, credentialName: c, caCrl: crl}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls:\n      mode: MUTUAL\n      caCertificates: /ca.pem\n      tlsCertificates:\n      - {serverCertificate: /rsa.pem, privateKey: /rsa.key}\n      - {serverCertificate: /ec.pem, privateKey: /ec.key}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertCredentialName: ca-secret}\n",
    ));
    assert_ok(&server(
        HTTPS,
        "    tls:\n      mode: SIMPLE\n      credentialName: c\n      minProtocolVersion: TLSV1_2\n      maxProtocolVersion: TLSV1_3\n      cipherSuites: [ECDHE-ECDSA-AES128-SHA, \"-ECDHE-RSA-AES128-SHA\", ALL]\n      subjectAltNames: [a]\n      verifyCertificateSpki: [x]\n      verifyCertificateHash: [abcd]\n",
    ));
    // Gateways generated from the Gateway API may use `~/host` and dotted names.
    let (e, _) = lint_named(
        "gw.generated",
        ", annotations: {internal.istio.io/gateway-semantics: gateway}",
        &format!("  servers:\n  - port: {HTTP}\n    hosts: [\"~/foo.bar.com\"]\n"),
    );
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn gateway_level_rules() {
    let (e, _) = lint("  selector: {istio: ingressgateway}\n");
    assert!(
        e[0].contains("spec.servers: gateway must have at least one server"),
        "{e:?}"
    );
    let (e, _) = lint_named("my.gateway", "", &server(HTTP, ""));
    assert!(
        e[0].contains("metadata.name: invalid gateway name: \"my.gateway\""),
        "{e:?}"
    );
    assert_err(
        "  servers:\n  - port: {number: 80, name: foo, protocol: http}\n    hosts: [foo.bar.com]\n  - port: {number: 8080, name: foo, protocol: http}\n    hosts: [scooby.doo.com]\n",
        "spec.servers[1].port: port names in servers must be unique: duplicate name foo",
    );
    assert_warn(
        &server(
            "{number: 80, name: https, protocol: https}",
            "    tls: {httpsRedirect: true, mode: SIMPLE, credentialName: c}\n",
        ),
        "tls.httpsRedirect should only be used with http servers",
    );
}

#[test]
fn server_rules() {
    assert_err(
        "  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n",
        "spec.servers[0].hosts: server config must contain at least one host",
    );
    assert_err(
        "  servers:\n  - hosts: [foo.bar.com]\n",
        "spec.servers[0].port: port is required",
    );
    for (host, want) in [
        ("foo.*.bar.com", "domain name"),
        ("ns1/foo.*.bar.com", "domain name"),
        ("foo", "short names (non FQDN) are not allowed"),
        (
            "\"~/foo.bar.com\"",
            "invalid namespace value \"~\" in gateway",
        ),
        ("Bad_NS/foo.com", "invalid namespace value"),
        ("\"*bar.com\"", "partial wildcard \"*bar.com\" not allowed"),
        (
            "/foo.com",
            "config namespace and dnsName in host entry cannot be empty",
        ),
    ] {
        assert_err(
            &format!("  servers:\n  - port: {HTTP}\n    hosts: [{host}]\n"),
            want,
        );
    }
    assert_err(
        &server(HTTP, "    bind: foo.bar\n"),
        "spec.servers[0].bind: foo.bar is not a valid IP",
    );
    assert_err(
        &server(
            "{number: 7, name: http, protocol: http}",
            "    bind: unix://@foobar\n",
        ),
        "port number must be 0 for unix domain socket",
    );
    assert_err(
        &server(
            "{number: 0, name: http, protocol: http}",
            "    bind: unix://relative\n",
        ),
        "relative is not an absolute path",
    );
    assert_err(
        &server("{number: 10000, name: https, protocol: https}", ""),
        "spec.servers[0].tls: server must have TLS settings for HTTPS/TLS protocols",
    );
    assert_err(
        &server(
            "{number: 10000, name: http, protocol: http}",
            "    tls: {mode: SIMPLE, credentialName: c}\n",
        ),
        "server cannot have TLS settings for plain text HTTP ports",
    );
    assert_err(
        &server(
            HTTP,
            "    tls: {httpsRedirect: true, serverCertificate: /c.pem}\n",
        ),
        "server cannot have TLS settings for plain text HTTP ports",
    );
    assert_err(
        &server(
            "{number: 5432, name: tcp, protocol: TCP}",
            "    tls: {mode: SIMPLE, credentialName: c}\n",
        ),
        "server cannot have TLS settings for non HTTPS/TLS ports",
    );
}

#[test]
fn port_rules() {
    for (port, bind, want) in [
        (
            "{number: 1, name: Henry, protocol: kafka}",
            "",
            "spec.servers[0].port.protocol: invalid protocol \"kafka\", supported protocols are",
        ),
        ("{number: 1, name: Henry}", "", "invalid protocol \"\""),
        (
            "{number: 1, name: h, protocol: HTTTP}",
            "",
            "did you mean \"HTTP\"",
        ),
        (
            "{number: 66000, name: http, protocol: http}",
            "",
            "port number 66000 must be in the range 1..65535",
        ),
        (
            "{number: 0, name: Henry, protocol: http}",
            "",
            "port number 0",
        ),
        (
            "{number: 0, name: Henry, protocol: http}",
            "    bind: uds:///tmp\n",
            "port number 0",
        ),
        (
            "{number: 80, protocol: http}",
            "",
            "spec.servers[0].port.name: port name must be set",
        ),
        (
            "{number: 80, name: http, protocol: http, targetPort: 8080}",
            "",
            "targetPort has no impact on Gateways",
        ),
    ] {
        assert_err(&server(port, bind), want);
    }
    // A bad port skips the TLS-vs-protocol check (Istio only runs it on a valid port).
    let (e, _) = lint(&server("{number: 0, name: x, protocol: https}", ""));
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn tls_rules() {
    for (tls, want) in [
        (
            "{mode: SIMPLE, privateKey: /k.pem}",
            "tls.serverCertificate: SIMPLE TLS requires a server certificate",
        ),
        (
            "{mode: SIMPLE, serverCertificate: /c.pem}",
            "tls.privateKey: SIMPLE TLS requires a private key",
        ),
        (
            "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, credentialName: sds}",
            "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified",
        ),
        (
            "{mode: MUTUAL, privateKey: /k.pem, caCertificates: /ca.pem}",
            "MUTUAL TLS requires a server certificate",
        ),
        (
            "{mode: MUTUAL, serverCertificate: /c.pem, caCertificates: /ca.pem}",
            "MUTUAL TLS requires a private key",
        ),
        (
            "{mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}",
            "MUTUAL TLS requires a client CA bundle",
        ),
        (
            "{mode: OPTIONAL_MUTUAL}",
            "MUTUAL TLS requires a client CA bundle",
        ),
        (
            "{mode: OPTIONAL_MUTUAL}",
            "MUTUAL TLS requires a server certificate",
        ),
        (
            "{mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca, credentialNames: [x]}",
            "only one of credential_name, credential_names",
        ),
        (
            "{mode: ISTIO_MUTUAL, serverCertificate: /c.pem}",
            "ISTIO_MUTUAL TLS cannot have associated server certificate",
        ),
        (
            "{mode: ISTIO_MUTUAL, privateKey: /k.pem}",
            "ISTIO_MUTUAL TLS cannot have associated private key",
        ),
        (
            "{mode: ISTIO_MUTUAL, caCertificates: /ca.pem}",
            "ISTIO_MUTUAL TLS cannot have associated CA bundle",
        ),
        (
            "{mode: ISTIO_MUTUAL, credentialName: c}",
            "ISTIO_MUTUAL TLS cannot have associated credentialName",
        ),
        (
            "{mode: ISTIO_MUTUAL, credentialNames: [c]}",
            "ISTIO_MUTUAL TLS cannot have associated credentialNames",
        ),
        (
            "{mode: ISTIO_MUTUAL, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}",
            "ISTIO_MUTUAL TLS cannot have associated tlsCertificates",
        ),
        (
            "{mode: SIMPLE, caCrl: crl}",
            "CRL is not supported with SIMPLE TLS",
        ),
        (
            "{mode: MUTUAL, credentialNames: [a], credentialName: b}",
            "only one of credentialName or credentialNames can be set",
        ),
        (
            "{mode: MUTUAL, credentialNames: [a], tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}",
            "only one of credentialNames or tlsCertificates can be set",
        ),
        (
            "{mode: SIMPLE, credentialNames: []}",
            "tls.credentialNames: should have at least 1 items",
        ),
        (
            "{mode: SIMPLE, credentialNames: [a, b, c]}",
            "tls.credentialNames: Too many: 3: must have at most 2 items",
        ),
        (
            "{mode: SIMPLE, tlsCertificates: [{privateKey: /k}, {serverCertificate: /c, privateKey: /k}]}",
            "tls.tlsCertificates[0].serverCertificate: SIMPLE TLS requires a server certificate",
        ),
        (
            "{mode: MUTUAL, caCertificates: /ca, tlsCertificates: [{serverCertificate: /c}]}",
            "tls.tlsCertificates[0].privateKey: MUTUAL TLS requires a private key",
        ),
        (
            "{mode: MUTUAL, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}",
            "MUTUAL TLS requires a client CA bundle",
        ),
        (
            "{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}",
            "maxProtocolVersion TLSV1_2 is lower than minProtocolVersion TLSV1_3",
        ),
        (
            "{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_4}",
            "unknown value \"TLSV1_4\"",
        ),
        ("{mode: SIMPEL}", "did you mean \"SIMPLE\""),
    ] {
        assert_err(&server(HTTPS, &format!("    tls: {tls}\n")), want);
    }
    // An invalid cipher is a warning, but the missing key is still an error.
    let (e, w) = lint(&server(
        HTTPS,
        "    tls: {mode: SIMPLE, cipherSuites: [not-a-cipher-suite]}\n",
    ));
    assert!(
        e.iter().any(|m| m.contains("requires a private key")),
        "{e:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("ignoring invalid cipher suites: [not-a-cipher-suite]")),
        "{w:?}"
    );
}

#[test]
fn tls_warnings() {
    for (tls, want) in [
        (
            "{mode: SIMPLE, credentialName: c, cipherSuites: [ECDHE-ECDSA-AES128-SHA, ECDHE-ECDSA-AES128-SHA]}",
            "ignoring duplicate cipher suites: [ECDHE-ECDSA-AES128-SHA]",
        ),
        (
            "{mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_1}",
            "TLS version below TLSV1_2 require setting compatible ciphers",
        ),
        (
            "{mode: SIMPLE, credentialName: c, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}",
            "",
        ),
    ] {
        if want.is_empty() {
            // credentialName + tlsCertificates: two certificate sources.
            assert_err(
                &server(HTTPS, &format!("    tls: {tls}\n")),
                "only one of credential_name",
            );
        } else {
            assert_warn(&server(HTTPS, &format!("    tls: {tls}\n")), want);
        }
    }
    for mode in ["PASSTHROUGH", "AUTO_PASSTHROUGH"] {
        for extra in [
            "credentialName: sds",
            "caCrl: scrl",
            "serverCertificate: /c.pem",
        ] {
            assert_warn(
                &server(
                    "{number: 443, name: tls, protocol: TLS}",
                    &format!("    tls: {{mode: {mode}, {extra}}}\n"),
                ),
                &format!("{mode} mode does not use certificates, they will be ignored"),
            );
        }
    }
}

#[test]
fn model_round_trips_to_json() {
    let text = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: c, minProtocolVersion: TLSV1_2}\n";
    let loaded = load_str(text, "gw.yaml", &LoadOptions::default());
    let json = loaded.resources[0].spec.to_json();
    assert_eq!(
        json,
        serde_json::json!({"servers": [{"port": {"number": 443, "protocol": "HTTPS", "name": "https"}, "hosts": ["*"], "tls": {"mode": "SIMPLE", "credentialName": "c", "minProtocolVersion": "TLSV1_2"}}]})
    );
}

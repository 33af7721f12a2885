//! Istio's mutual TLS on a local mesh, as its authentication tasks show it: sidecars talk
//! mTLS to each other on their own, a client outside the mesh (plain `curl` to the address
//! `keel get endpoints` shows) gets in under PERMISSIVE and is refused under STRICT, and
//! DISABLE turns it back to plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::{KEEL, Mesh, admin, binaries_built, eventually, get};

fn httpbin_and_sleep() -> String {
    format!("{}{}", common::HTTPBIN, common::SLEEP)
}

/// A plaintext GET straight to `port`, as a client without a sidecar sends it; the status
/// line, or what went wrong.
fn plain(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return "connect failed".into();
    };
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _ = s.write_all(b"GET /get HTTP/1.1\r\nHost: httpbin:8000\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    match s.read_to_string(&mut out) {
        Ok(_) if out.is_empty() => "closed".into(),
        Ok(_) => out.lines().next().unwrap_or_default().to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn peer_authentication(mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
    )
}

#[test]
fn sidecars_use_mtls_and_strict_refuses_clients_outside_the_mesh() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, httpbin_and_sleep()).unwrap();
    let mesh = Mesh::up(&[&manifests]);
    let sleep = mesh.pod("sleep").proxy;

    // Where a client outside the mesh reaches httpbin.
    let out = Command::new(KEEL)
        .args([
            "get",
            "endpoints",
            "httpbin",
            "-o",
            "json",
            "--server",
            &mesh.api,
        ])
        .output()
        .unwrap();
    let ep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = ep["subsets"][0]["ports"][0]["port"].as_u64().unwrap() as u16;

    // PERMISSIVE (nothing applied): both.
    assert!(plain(port).starts_with("HTTP/1.1 200"), "{}", plain(port));
    let r = get(sleep, "http://httpbin:8000/get", &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    // The sleep → httpbin hop was mutual TLS, with both identities.
    let httpbin_admin = mesh.pod("httpbin").admin;
    let metrics = admin(httpbin_admin, "/stats/prometheus");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/sleep\"")
                && l.contains(
                    "destination_principal=\"spiffe://cluster.local/ns/default/sa/httpbin\""
                )
                && l.contains("connection_security_policy=\"mutual_tls\"")),
        "{metrics}"
    );
    // The server side names the calling workload too: sleep's sidecar told it (peer metadata
    // exchange), and httpbin didn't see the headers that carried it.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"destination\"")
                && l.contains("source_workload=\"sleep\",")
                && l.contains("source_app=\"sleep\",")
                && l.contains("source_workload_namespace=\"default\",")),
        "{metrics}"
    );
    let headers = get(sleep, "http://httpbin:8000/headers", &[]);
    assert!(
        !headers
            .text
            .to_ascii_lowercase()
            .contains("x-envoy-peer-metadata"),
        "{}",
        headers.text
    );

    // The client side names the Deployment behind the endpoint, as for Kubernetes pods.
    let sleep_metrics = admin(mesh.pod("sleep").admin, "/stats/prometheus");
    assert!(
        sleep_metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("destination_workload=\"httpbin\",")),
        "{sleep_metrics}"
    );
    // ... and both identities, the server's as its certificate proved it.
    assert!(
        sleep_metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/sleep\"")
                && l.contains(
                    "destination_principal=\"spiffe://cluster.local/ns/default/sa/httpbin\""
                )),
        "{sleep_metrics}"
    );

    // STRICT, mesh-wide: plaintext is refused, the mesh still works.
    mesh.apply_yaml("strict.yaml", &peer_authentication("STRICT"));
    eventually("plaintext refused under STRICT", || {
        let seen = plain(port);
        (!seen.starts_with("HTTP/")).then_some(seen)
    });
    let r = get(sleep, "http://httpbin:8000/get", &[]);
    assert_eq!(
        r.status, 200,
        "mTLS between sidecars under STRICT: {}",
        r.text
    );

    // Istio's authorization task (back to PERMISSIVE, so that a client outside the mesh gets
    // an answer): allow-nothing for httpbin, then GET from sleep's identity.
    mesh.apply_yaml("strict.yaml", &peer_authentication("PERMISSIVE"));
    eventually("plaintext accepted again", || {
        plain(port).starts_with("HTTP/1.1 200").then_some(())
    });
    mesh.apply_yaml(
        "authz.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing}\nspec: {selector: {matchLabels: {app: httpbin}}}\n",
    );
    let r = get(sleep, "http://httpbin:8000/get", &[]);
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.ends_with("RBAC: access denied"), "{}", r.text);
    mesh.apply_yaml(
        "authz.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing}\nspec:\n  selector: {matchLabels: {app: httpbin}}\n  action: ALLOW\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]\n    to: [{operation: {methods: [GET]}}]\n",
    );
    assert_eq!(get(sleep, "http://httpbin:8000/get", &[]).status, 200);
    // A client outside the mesh has no identity: denied (PERMISSIVE lets it connect).
    let seen = plain(port);
    assert!(seen.starts_with("HTTP/1.1 403"), "{seen}");
    mesh.apply_yaml(
        "authz.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing}\nspec: {selector: {matchLabels: {app: nobody}}}\n",
    );

    // DISABLE: plaintext again, and the sidecars send it too (auto mTLS follows).
    mesh.apply_yaml("strict.yaml", &peer_authentication("DISABLE"));
    eventually("plaintext accepted under DISABLE", || {
        plain(port).starts_with("HTTP/1.1 200").then_some(())
    });
    let r = get(sleep, "http://httpbin:8000/get", &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    mesh.down();
}

/// Certificates rotating every couple of seconds under steady traffic between sidecars lose no
/// request: connections keep the certificate they were made with, new ones use the new one.
#[test]
fn certificate_rotation_under_load_loses_no_request() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, httpbin_and_sleep()).unwrap();
    let mesh = Mesh::up_with(&[&manifests], &[], &[("KEEL_CERT_TTL", "4s")]);
    mesh.apply_yaml("strict.yaml", &peer_authentication("STRICT"));
    let sleep = mesh.pod("sleep").proxy;
    let httpbin_admin = mesh.pod("httpbin").admin;
    let certs = || -> serde_json::Value {
        let text = admin(httpbin_admin, "/certs");
        let body = match (text.find('{'), text.rfind('}')) {
            (Some(a), Some(b)) => &text[a..=b],
            _ => "",
        };
        serde_json::from_str(body).unwrap_or_default()
    };
    let serial = || {
        certs()["workload"]["serial_number"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first = serial();
    assert!(!first.is_empty(), "no certificate shown");
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < std::time::Duration::from_secs(7) {
        let r = get(sleep, "http://httpbin:8000/get", &[]);
        assert_eq!(r.status, 200, "request {sent} during rotation: {}", r.text);
        sent += 1;
    }
    assert!(sent > 20, "{sent}");
    let last = serial();
    assert_ne!(
        first,
        last,
        "httpbin's certificate rotated meanwhile: {}",
        certs()
    );
    mesh.down();
}

/// Istio's "Explicitly deny a request" task with Istio's own files (httpbin, sleep and the
/// task's three policies, moved from namespace `foo` to `default`): DENY GET, DENY GET unless
/// `x-token: admin`, then ALLOW only `/ip` beside it. Skipped without `../shared`.
#[test]
fn istios_authz_deny_task_with_istio_yaml() {
    if !binaries_built() {
        return;
    }
    let Some(root) = common::istio_samples() else {
        return;
    };
    let task = root.join("istio.io/content/en/docs/tasks/security/authorization/authz-deny");
    let step = |n: u8| {
        std::fs::read_to_string(task.join(format!("snip_explicitly_deny_a_request_{n}.yaml")))
            .unwrap()
            .replace("namespace: foo", "namespace: default")
    };
    let mesh = Mesh::up(&[
        &root.join("samples/httpbin/httpbin.yaml"),
        &root.join("samples/sleep/sleep.yaml"),
    ]);
    let sleep = mesh.pod("sleep").proxy;
    let call = |path: &str, headers: &[&str]| {
        get(sleep, &format!("http://httpbin:8000{path}"), headers).status
    };
    assert_eq!(call("/get", &[]), 200);

    mesh.apply_yaml("deny-get.yaml", &step(1));
    assert_eq!(call("/get", &[]), 403, "GET denied");
    let post = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", sleep)).unwrap();
        s.write_all(b"POST http://httpbin:8000/post HTTP/1.1\r\nHost: httpbin:8000\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut t = String::new();
        let _ = s.read_to_string(&mut t);
        t
    };
    assert!(post.starts_with("HTTP/1.1 200"), "POST allowed: {post}");

    mesh.apply_yaml("deny-get.yaml", &step(4));
    assert_eq!(
        call("/get", &["x-token: admin"]),
        200,
        "admin's GET allowed"
    );
    assert_eq!(
        call("/get", &["x-token: guest"]),
        403,
        "a guest's GET denied"
    );

    mesh.apply_yaml("allow-ip.yaml", &step(7));
    assert_eq!(call("/ip", &["x-token: admin"]), 200, "/ip allowed");
    assert_eq!(
        call("/get", &["x-token: admin"]),
        403,
        "no ALLOW rule matches /get"
    );
    mesh.down();
}

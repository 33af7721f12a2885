//! `keel up` end to end on loopback: the control plane in-process, httpbin and sleep as local
//! processes with their sidecars; a request sent through sleep's sidecar (its HTTP_PROXY)
//! reaches httpbin through httpbin's sidecar; `keel down` stops everything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Mesh, binaries_built, get};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: httpbin, labels: {app: httpbin, service: httpbin}}
spec:
  ports: [{name: http, port: 8000, targetPort: 8080}]
  selector: {app: httpbin}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin}
spec:
  replicas: 1
  selector: {matchLabels: {app: httpbin, version: v1}}
  template:
    metadata: {labels: {app: httpbin, version: v1}}
    spec:
      containers:
      - name: httpbin
        image: docker.io/mccutchen/go-httpbin:v2.15.0
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sleep, labels: {app: sleep, service: sleep}}
spec:
  ports: [{name: http, port: 80}]
  selector: {app: sleep}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep}
spec:
  replicas: 1
  selector: {matchLabels: {app: sleep}}
  template:
    metadata: {labels: {app: sleep}}
    spec:
      containers:
      - name: sleep
        image: curlimages/curl
        command: ["/bin/sleep", "infinity"]
"#;

#[test]
fn up_routes_through_both_sidecars_and_down_stops_everything() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let mesh = Mesh::up(&[&manifests]);
    let port = mesh.pod("sleep-0.default").proxy;
    let response = get(port, "http://httpbin:8000/headers", &[]);
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(response.text.contains("\"Host\""), "{}", response.text);
    // The app saw the request (it listens only on its own port, behind its sidecar).
    let app_log = mesh.app_log("httpbin-0");
    assert!(app_log.contains("GET /headers"), "{app_log}");
    let response = get(
        port,
        "http://httpbin.default.svc.cluster.local:8000/get",
        &[],
    );
    assert_eq!(response.status, 200, "{}", response.text);
    // Both sidecars log the request in Istio's access-log format (the inbound one with the
    // app's cluster, the outbound one with httpbin's).
    mesh.assert_proxy_logged("httpbin-0", "\"GET /headers HTTP/1.1\" 200 - ");
    mesh.assert_proxy_logged(
        "sleep-0",
        "outbound|8000||httpbin.default.svc.cluster.local",
    );

    let state = mesh.state.clone();
    mesh.down();
    assert!(!state.join("keel-up.pid").exists());
    // Nothing listens any more on the sleep sidecar's port.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn unknown_images_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(
        &manifests,
        MANIFESTS.replace("docker.io/mccutchen/go-httpbin:v2.15.0", "nginx:1.25"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("up")
        .arg("-f")
        .arg(&manifests)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"])
        .output()
        .expect("keel up");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no local command for image \"nginx:1.25\""),
        "{err}"
    );
    assert!(err.contains("--run nginx=COMMAND"), "{err}");
}

/// An app run with `sh -c` (`--run`) has the shell as its parent: `keel down` stops both,
/// not the shell alone (which left the app listening).
#[test]
fn apps_run_through_a_shell_stop_with_the_mesh() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    // `; exit` keeps the shell from replacing itself with the app.
    let run = format!(
        "docker.io/mccutchen/go-httpbin={} httpbin; exit",
        common::bin_dir().join("keel-sample").display()
    );
    let mesh = Mesh::up_with(&[&manifests], &["--run", &run], &[]);
    let app = mesh.apps["httpbin-0.default"];
    let response = get(mesh.pod("sleep-0").proxy, "http://httpbin:8000/get", &[]);
    assert_eq!(response.status, 200, "{}", response.text);
    mesh.down();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", app)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the app still listens on {app} after keel down"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn bookinfo_from_the_repo_manifests_serves_all_three_reviews_versions() {
    if !binaries_built() {
        return;
    }
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo/app.yaml");
    let mesh = Mesh::up(&[&app]);
    let port = mesh.pod("productpage-v1-0.default").proxy;
    let mut seen = std::collections::BTreeSet::new();
    // Requests spread at random (LEAST_REQUEST between idle endpoints): the 15 this test sent
    // before left a version unseen in one run in about 150 (3 × (2/3)^15); 60 do so in one in
    // about 10^10.
    for _ in 0..60 {
        let page = get(port, "http://productpage:9080/productpage", &[]);
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.text;
        assert!(page.contains("Simple Bookstore App"), "{page}");
        assert!(!page.contains("Error fetching"), "{page}");
        let pod = page
            .split("Reviews served by: ")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap_or("")
            .trim()
            .to_string();
        match pod.as_str() {
            "reviews-v1-0" => assert!(!page.contains("glyphicon-star"), "v1: no stars"),
            "reviews-v2-0" => assert!(page.contains("color=\"black\""), "v2: black stars"),
            "reviews-v3-0" => assert!(page.contains("color=\"red\""), "v3: red stars"),
            other => panic!("served by {other:?}"),
        }
        seen.insert(pod);
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    mesh.down();
}

/// `keel proxy-config` reads a sidecar's own configuration through its admin port, which
/// the control plane learned from the proxy.
#[test]
fn proxy_config_shows_what_a_sidecar_runs() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let mesh = Mesh::up(&[&manifests]);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("proxy-config")
            .args(args)
            .args(["--server", &mesh.api])
            .output()
            .expect("keel proxy-config");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), text, err)
    };
    let (code, clusters, err) = run(&["clusters", "sleep"]);
    assert_eq!(code, Some(0), "{err}");
    let httpbin = clusters
        .lines()
        .find(|l| l.starts_with("httpbin.default.svc.cluster.local"))
        .unwrap_or_else(|| panic!("{clusters}"));
    assert!(
        httpbin.contains("8000") && httpbin.contains("outbound"),
        "{httpbin}"
    );
    let (code, routes, err) = run(&["routes", "sleep-0"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        routes.contains("outbound|8000||httpbin.default.svc.cluster.local"),
        "{routes}"
    );
    let (code, endpoints, err) = run(&[
        "endpoints",
        "sleep",
        "--fqdn",
        "httpbin.default.svc.cluster.local",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<&str> = endpoints.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{endpoints}");
    assert!(
        rows[0].contains("HEALTHY") && rows[0].contains("OK"),
        "{endpoints}"
    );
    let (code, json, err) = run(&["listeners", "sleep", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let listeners: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        listeners.as_array().is_some_and(|l| !l.is_empty()),
        "{json}"
    );
    // Every sidecar holds a certificate for its service account from the mesh's CA.
    let (code, secrets, err) = run(&["secret", "sleep"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<&str> = secrets.lines().collect();
    assert!(rows[0].starts_with("RESOURCE NAME"), "{secrets}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("default ") && r.contains("Cert Chain") && r.contains("ACTIVE")),
        "{secrets}"
    );
    assert!(rows.iter().any(|r| r.starts_with("ROOTCA ")), "{secrets}");
    let (code, json, err) = run(&["secret", "sleep", "-o", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        json.contains("spiffe://cluster.local/ns/default/sa/"),
        "{json}"
    );
    let (code, _, err) = run(&["all", "nobody"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no proxy named \"nobody\""), "{err}");

    // keel exec runs a command as the workload: through its sidecar.
    let state = mesh.state.to_str().unwrap().to_string();
    let keel = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .output()
            .expect("keel");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = keel(&[
        "exec",
        "--state-dir",
        &state,
        "sleep",
        "--",
        "sh",
        "-c",
        "echo $HTTP_PROXY $HOSTNAME; exit 3",
    ]);
    assert_eq!(code, Some(3), "{err}");
    let sleep = mesh.pod("sleep-0.default");
    assert_eq!(
        out.trim(),
        format!("http://127.0.0.1:{} sleep-0", sleep.proxy),
        "{err}"
    );
    // keel logs: the app's log, and the sidecar's access log.
    let response = get(sleep.proxy, "http://httpbin:8000/status/418", &[]);
    assert_eq!(response.status, 418);
    let (code, out, err) = keel(&["logs", "--state-dir", &state, "httpbin"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("GET /status/418"), "{out}");
    let (code, out, err) = keel(&["logs", "--state-dir", &state, "sleep", "-c", "proxy"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"GET /status/418 HTTP/1.1\" 418"), "{out}");
    let (code, _, err) = keel(&["logs", "--state-dir", &state, "ratings"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no workload \"ratings\""), "{err}");
    mesh.down();
}

//! Pods as Kubernetes runs them: every container of a pod runs (each with its own log, the pod's
//! environment and `PORT_<containerPort>` for each port), and every port a Service targets is
//! served through the pod's sidecar, each on its own inbound listener.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::Duration;

use common::{KEEL, Mesh, binaries_built, eventually, get};

/// Istio's tcp-echo (its Service exposes 9000 and 9001, not 9002) with httpbin beside it in
/// the same pod, behind one Service with three ports, and a third container that prints its
/// environment.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  ports:
  - {name: tcp, port: 9000}
  - {name: tcp-other, port: 9001}
  - {name: http, port: 8000, targetPort: web}
  selector: {app: echo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata:
      labels: {app: echo}
      annotations:
        keel.dev/run.env: 'echo "PORT=$PORT PORT_9001=$PORT_9001 PORT_8080=$PORT_8080 POD_NAME=$POD_NAME PROXY=$HTTP_PROXY"; exec sleep 600'
    spec:
      containers:
      - name: tcp-echo
        image: docker.io/istio/tcp-echo-server:1.3
        args: ["9000,9001,9002", "hello"]
        ports: [{containerPort: 9000}, {containerPort: 9001}]
      - name: httpbin
        image: docker.io/mccutchen/go-httpbin:v2.15.0
        ports: [{containerPort: 8080, name: web}]
      - name: env
        image: busybox
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep}
spec:
  selector: {matchLabels: {app: sleep}}
  template:
    metadata: {labels: {app: sleep}}
    spec:
      containers: [{name: sleep, image: curlimages/curl}]
"#;

/// A line sent to `port` and the line that comes back.
fn echo(port: u16, line: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    answer.trim_end().to_string()
}

fn keel_logs(mesh: &Mesh, args: &[&str]) -> String {
    let out = Command::new(KEEL)
        .arg("logs")
        .args(args)
        .arg("--state-dir")
        .arg(&mesh.state)
        .output()
        .expect("keel logs");
    assert!(out.status.success(), "keel logs {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_container_runs_and_every_service_port_is_served_through_the_sidecar() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let mesh = Mesh::up(&[&manifests]);

    // The registration maps each Service port to the sidecar inbound port of its target.
    let pods: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(mesh.state.join("pods.json")).unwrap())
            .unwrap();
    let pod = pods
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pod"] == "echo-0")
        .expect("echo-0 in pods.json");
    let port = |n: u64, field: &str| {
        pod["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["container_port"] == n)
            .and_then(|p| p[field].as_u64())
            .unwrap_or_else(|| panic!("no {field} for {n} in {pod}")) as u16
    };
    let (inbound_9000, inbound_9001) = (port(9000, "inbound_port"), port(9001, "inbound_port"));
    assert_ne!(inbound_9000, inbound_9001);
    let entries = Command::new(KEEL)
        .args(["get", "workloadentries", "echo-0", "-o", "json"])
        .args(["--server", &mesh.api])
        .output()
        .expect("keel get");
    let entry: serde_json::Value = serde_json::from_slice(&entries.stdout).expect("json");
    assert_eq!(entry["spec"]["ports"]["tcp"], inbound_9000, "{entry}");
    assert_eq!(entry["spec"]["ports"]["tcp-other"], inbound_9001, "{entry}");

    // Both TCP ports of tcp-echo answer through the sidecar, each reaching its own app port.
    assert_eq!(echo(inbound_9000, "one"), "hello one");
    assert_eq!(echo(inbound_9001, "two"), "hello two");
    let app_9001 = port(9001, "app_port");
    mesh.assert_proxy_logged("echo-0", "inbound|9001||");

    // The second container serves the Service's third port, through both sidecars.
    let sleep = mesh.pod("sleep-0").proxy;
    let r = get(sleep, "http://echo:8000/get", &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("httpbin's own log to show the request", || {
        keel_logs(&mesh, &["echo", "-c", "httpbin"])
            .contains("GET /get")
            .then_some(())
    });
    // No -c: the first container (tcp-echo), as kubectl's default container.
    let first = keel_logs(&mesh, &["echo-0"]);
    assert!(first.contains("prefix: hello"), "{first}");
    assert!(!first.contains("GET /get"), "{first}");

    // Every container sees the pod's environment and a port for each containerPort.
    let env = eventually("the env container's output", || {
        let log = keel_logs(&mesh, &["echo", "-c", "env"]);
        log.contains("POD_NAME=").then_some(log)
    });
    let want = format!(
        "PORT= PORT_9001={app_9001} PORT_8080={} POD_NAME=echo-0 PROXY=http://127.0.0.1:",
        port(8080, "app_port")
    );
    assert!(env.contains(&want), "{env}\nwanted: {want}");
    mesh.down();
}

//! A running `keel up` follows `keel apply`/`keel delete` of Deployments as a cluster would: a
//! new Deployment starts and serves, a scaled one gets more replicas, a changed one rolls to new
//! pods (with a surge: no request fails meanwhile), a deleted one (or one whose Namespace is
//! deleted) stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{KEEL, Mesh, binaries_built, eventually, get};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  ports: [{name: http, port: 8000, targetPort: 8080}]
  selector: {app: httpbin}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: httpbin, version: v1}}
  template:
    metadata: {labels: {app: httpbin, version: v1}}
    spec:
      containers:
      - {name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0, ports: [{containerPort: 8080}]}
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

const V2: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin-v2}
spec:
  selector: {matchLabels: {app: httpbin, version: v2}}
  template:
    metadata: {labels: {app: httpbin, version: v2}}
    spec:
      containers:
      - {name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0, ports: [{containerPort: 8080}]}
"#;

/// `STATE/pods.json`: (pod.namespace, app port) of every pod.
fn pods(mesh: &Mesh) -> Vec<(String, u16)> {
    let text = std::fs::read_to_string(mesh.state.join("pods.json")).unwrap_or_default();
    let pods: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    pods.iter()
        .map(|p| {
            (
                format!(
                    "{}.{}",
                    p["pod"].as_str().unwrap(),
                    p["namespace"].as_str().unwrap()
                ),
                p["app_port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

fn keel(args: &[&str]) {
    let out = Command::new(KEEL).args(args).output().expect("keel");
    assert!(
        out.status.success(),
        "keel {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn applied_deployments_start_scale_and_stop_on_a_running_mesh() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, MANIFESTS.replace("REPLICAS", "1")).unwrap();
    let mesh = Mesh::up(&[&manifests]);
    let sleep = mesh.pod("sleep-0.default").proxy;
    let v1 = mesh.apps["httpbin-0.default"];

    // A second Deployment behind the same Service starts and takes traffic through sleep's
    // sidecar.
    mesh.apply_yaml("v2.yaml", V2);
    eventually("httpbin-v2-0 to serve through sleep's sidecar", || {
        // Registered only once ready: no request fails meanwhile.
        let r = get(sleep, "http://httpbin:8000/headers", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
        mesh.app_log("httpbin-v2-0")
            .contains("GET /headers")
            .then_some(())
    });
    let v2 = pods(&mesh)
        .into_iter()
        .find(|(p, _)| p == "httpbin-v2-0.default")
        .map(|(_, port)| port)
        .expect("httpbin-v2-0 in pods.json");

    // Scaling httpbin adds a replica and leaves the first one running where it was.
    mesh.apply_yaml("scaled.yaml", &MANIFESTS.replace("REPLICAS", "2"));
    eventually("httpbin-1 in pods.json", || {
        let pods = pods(&mesh);
        pods.iter()
            .any(|(p, _)| p == "httpbin-1.default")
            .then_some(())
    });
    assert!(pods(&mesh).contains(&("httpbin-0.default".to_string(), v1)));

    // A changed pod template replaces the pods (new pods, new ports), which serve again.
    let changed = MANIFESTS.replace("REPLICAS", "2").replace(
        "ports: [{containerPort: 8080}]}",
        "ports: [{containerPort: 8080}], env: [{name: GREETING, value: hi}]}",
    );
    mesh.apply_yaml("changed.yaml", &changed);
    eventually("httpbin-0 to be replaced", || {
        let pods = pods(&mesh);
        // httpbin's own pods (httpbin-v2 is another Deployment).
        let httpbin: Vec<_> = pods
            .iter()
            .filter(|(p, _)| p.starts_with("httpbin-") && !p.starts_with("httpbin-v2"))
            .collect();
        (httpbin.len() == 2
            && httpbin.iter().all(|(_, port)| *port != v1)
            && std::net::TcpStream::connect(("127.0.0.1", v1)).is_err())
        .then_some(())
    });
    eventually("the replaced httpbin to serve", || {
        let r = get(sleep, "http://httpbin:8000/get", &[]);
        (r.status == 200).then_some(())
    });

    // A Deployment that can't run is reported with its name; the rest keeps running.
    mesh.apply_yaml(
        "web.yaml",
        &V2.replace("httpbin-v2", "web")
            .replace("docker.io/mccutchen/go-httpbin:v2.15.0", "nginx:1.25"),
    );
    eventually("the unknown image reported", || {
        let err = std::fs::read_to_string(mesh.dir.path().join("keel-up.stderr")).ok()?;
        err.contains("deployment default/web: no local command for image \"nginx:1.25\"")
            .then_some(())
    });

    // `-n` places an unnamespaced Deployment in that namespace.
    mesh.apply_yaml(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n",
    );
    let other = mesh.dir.path().join("other.yaml");
    std::fs::write(&other, V2.replace("httpbin-v2", "httpbin-other")).unwrap();
    let other = other.to_str().unwrap();
    keel(&["apply", "-f", other, "-n", "other", "--server", &mesh.api]);
    eventually("httpbin-other-0.other in pods.json", || {
        let pods = pods(&mesh);
        pods.iter()
            .any(|(p, _)| p == "httpbin-other-0.other")
            .then_some(())
    });

    // Deleting the Deployment stops its process and its traffic.
    let v2_file = mesh.dir.path().join("v2.yaml");
    keel(&[
        "delete",
        "-f",
        v2_file.to_str().unwrap(),
        "--server",
        &mesh.api,
    ]);
    eventually("httpbin-v2-0 to stop", || {
        let gone = !pods(&mesh)
            .iter()
            .any(|(p, _)| p.starts_with("httpbin-v2-0"));
        (gone && std::net::TcpStream::connect(("127.0.0.1", v2)).is_err()).then_some(())
    });
    let before = mesh.app_log("httpbin-v2-0").len();
    for _ in 0..6 {
        let r = get(sleep, "http://httpbin:8000/get", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(mesh.app_log("httpbin-v2-0").len(), before);
    assert!(pods(&mesh).iter().all(|(p, _)| !p.starts_with("web-")));

    // Deleting a Namespace deletes what is in it, as Kubernetes does, and stops its pods.
    let ns = mesh.dir.path().join("ns.yaml");
    let out = Command::new(KEEL)
        .args(["delete", "-f", ns.to_str().unwrap(), "--server", &mesh.api])
        .output()
        .expect("keel delete");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("deployment.apps \"httpbin-other\" deleted"),
        "{said}"
    );
    let left = Command::new(KEEL)
        .args(["get", "deploy", "-n", "other", "--server", &mesh.api])
        .output()
        .expect("keel get");
    assert!(
        String::from_utf8_lossy(&left.stderr).contains("No resources found"),
        "{left:?}"
    );
    eventually("httpbin-other-0.other to stop", || {
        let pods = pods(&mesh);
        (!pods.iter().any(|(p, _)| p.ends_with(".other"))).then_some(())
    });
    mesh.down();
}

#[test]
fn a_changed_deployment_rolls_with_a_surge_and_no_request_fails() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, MANIFESTS.replace("REPLICAS", "1")).unwrap();
    let mesh = Mesh::up(&[&manifests]);
    let sleep = mesh.pod("sleep-0.default").proxy;
    let old = mesh.apps["httpbin-0.default"];

    // A steady stream of requests through sleep's sidecar while the Deployment changes.
    let done = Arc::new(AtomicBool::new(false));
    let client = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut statuses = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let r = get(sleep, "http://httpbin:8000/get", &[]);
                statuses.push((r.status, r.text.lines().next().unwrap_or("").to_string()));
            }
            statuses
        }
    });
    let changed = MANIFESTS.replace("REPLICAS", "1").replace(
        "ports: [{containerPort: 8080}]}",
        "ports: [{containerPort: 8080}], env: [{name: GREETING, value: hi}]}",
    );
    mesh.apply_yaml("changed.yaml", &changed);
    // The new pod takes the lowest free name; the old one stops once it is ready.
    eventually("httpbin-0 to be replaced by httpbin-1", || {
        let pods = pods(&mesh);
        let httpbin: Vec<&str> = pods
            .iter()
            .filter(|(p, _)| p.starts_with("httpbin-"))
            .map(|(p, _)| p.as_str())
            .collect();
        (httpbin == ["httpbin-1.default"]
            && std::net::TcpStream::connect(("127.0.0.1", old)).is_err())
        .then_some(())
    });
    let before = mesh.app_log("httpbin-1").matches("GET /get").count();
    for _ in 0..5 {
        let r = get(sleep, "http://httpbin:8000/get", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    done.store(true, Ordering::Relaxed);
    let statuses = client.join().unwrap();
    println!("{} requests during the rollout", statuses.len());
    assert!(!statuses.is_empty());
    let failed: Vec<_> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout: {failed:?}",
        failed.len(),
        statuses.len()
    );
    // The new pod answers (its own log shows the requests sent after the rollout).
    eventually("httpbin-1 to log the requests", || {
        (mesh.app_log("httpbin-1").matches("GET /get").count() >= before + 5).then_some(())
    });
    let started = mesh.printed("… starting httpbin-1.default");
    let stopped = mesh.printed("… stopping httpbin-0.default");
    assert_eq!((started.len(), stopped.len()), (1, 1));

    // A new pod that can't start leaves the old one serving, and is reported once.
    let broken = changed.replace(
        "metadata: {labels: {app: httpbin, version: v1}}",
        "metadata: {labels: {app: httpbin, version: v1}, annotations: {keel.dev/run: 'exit 3'}}",
    );
    mesh.apply_yaml("broken.yaml", &broken);
    let stderr = mesh.dir.path().join("keel-up.stderr");
    let stuck = || {
        std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .matches("deployment default/httpbin: rollout stuck: new pod httpbin-0 is not ready (app exited (status 3))")
            .count()
    };
    eventually("the stuck rollout reported", || {
        (stuck() == 1).then_some(())
    });
    for _ in 0..5 {
        let r = get(sleep, "http://httpbin:8000/get", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(stuck(), 1);
    assert!(pods(&mesh).iter().any(|(p, _)| p == "httpbin-1.default"));
    mesh.down();
}

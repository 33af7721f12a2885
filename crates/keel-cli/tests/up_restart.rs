//! Containers restart as Kubernetes' `restartPolicy: Always` restarts them: a killed app comes
//! back after its back-off (shortened here with `KEEL_RESTART_BACKOFF_MS`), its pod leaves the
//! Service's endpoints while it is down and serves again once ready, and `pods.json` counts
//! the restart; a killed sidecar restarts the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

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
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata:
      labels: {app: httpbin}
      # Each start appends the app's pid (the shell execs the app), so the test can kill it.
      annotations: {keel.dev/run: 'echo $$ >> PIDS; exec SAMPLE httpbin'}
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

fn registered(mesh: &Mesh) -> String {
    let out = Command::new(KEEL)
        .args(["get", "workloadentries", "--server", &mesh.api])
        .output()
        .expect("keel get");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn restarts(mesh: &Mesh) -> u64 {
    let text = std::fs::read_to_string(mesh.state.join("pods.json")).unwrap_or_default();
    let pods: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    pods.iter()
        .find(|p| p["pod"] == "httpbin-0")
        .and_then(|p| p["containers"][0]["restarts"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_killed_app_is_restarted_after_its_back_off_and_serves_again() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let manifests = dir.path().join("mesh.yaml");
    let sample = common::bin_dir().join("keel-sample");
    std::fs::write(
        &manifests,
        MANIFESTS
            .replace("PIDS", pids.to_str().unwrap())
            .replace("SAMPLE", sample.to_str().unwrap()),
    )
    .unwrap();
    let mesh = Mesh::up_with(&[&manifests], &[], &[("KEEL_RESTART_BACKOFF_MS", "1500")]);
    let sleep = mesh.pod("sleep-0").proxy;
    let r = get(sleep, "http://httpbin:8000/get", &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(registered(&mesh).contains("httpbin-0"));

    let first = std::fs::read_to_string(&pids).unwrap();
    let pid = first.trim().to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );

    // One line says so; the pod leaves the endpoints while it waits for its restart.
    let line = eventually("the restart line", || {
        mesh.printed("↻ httpbin-0.default").into_iter().next()
    });
    assert!(
        line.contains("app exited (signal 9), restart 1 in 1.5 s — see keel logs httpbin-0"),
        "{line}"
    );
    eventually("httpbin-0 to be deregistered", || {
        (!registered(&mesh).contains("httpbin-0")).then_some(())
    });

    // Restarted (a new pid), counted, registered again once ready, and serving.
    eventually("a second start", || {
        let text = std::fs::read_to_string(&pids).ok()?;
        (text.lines().count() == 2).then_some(())
    });
    eventually("the restart in pods.json", || {
        (restarts(&mesh) == 1).then_some(())
    });
    eventually("httpbin-0 to serve again", || {
        let r = get(sleep, "http://httpbin:8000/get", &[]);
        (r.status == 200 && registered(&mesh).contains("httpbin-0")).then_some(())
    });
    assert!(mesh.app_log("httpbin-0").contains("GET /get"));

    // A killed sidecar restarts the same way (found by its admin port, unique to this mesh).
    let admin = mesh.pod("httpbin-0").admin;
    let out = Command::new("pgrep")
        .args(["-f", &format!("sidecar .*admin 127.0.0.1:{admin} ")])
        .output()
        .expect("pgrep");
    let sidecar = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !sidecar.is_empty() && !sidecar.contains('\n'),
        "{sidecar:?}"
    );
    assert!(
        Command::new("kill")
            .args(["-9", &sidecar])
            .status()
            .unwrap()
            .success()
    );
    let line = eventually("the sidecar's restart line", || {
        mesh.printed("sidecar exited").into_iter().next()
    });
    assert!(
        line.contains("restart 1 in 1.5 s — see keel logs httpbin-0 -c proxy"),
        "{line}"
    );
    eventually("the sidecar's restart in pods.json", || {
        let text = std::fs::read_to_string(mesh.state.join("pods.json")).ok()?;
        text.contains("\"sidecar_restarts\": 1").then_some(())
    });
    eventually(
        "httpbin-0 to serve again after its sidecar restarted",
        || {
            let r = get(sleep, "http://httpbin:8000/get", &[]);
            (r.status == 200 && registered(&mesh).contains("httpbin-0")).then_some(())
        },
    );

    // keel down still stops everything, restarted processes included.
    let app = mesh.apps["httpbin-0.default"];
    mesh.down();
    assert!(std::net::TcpStream::connect(("127.0.0.1", app)).is_err());
}

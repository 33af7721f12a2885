//! `keel up` end to end on loopback: the control plane in-process, httpbin and sleep as local
//! processes with their sidecars; a request sent through sleep's sidecar (its HTTP_PROXY)
//! reaches httpbin through httpbin's sidecar; `keel down` stops everything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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

/// Where `keel up`'s stderr goes: beside its state directory, named in failure messages.
fn stderr_file(state: &Path) -> std::fs::File {
    let path = state.with_extension("stderr");
    eprintln!("keel up's stderr: {}", path.display());
    std::fs::File::create(path).expect("stderr file")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_keel"))
        .parent()
        .expect("dir")
        .to_path_buf()
}

/// A GET through an HTTP proxy (absolute form), as curl with HTTP_PROXY sends it.
fn get_via_proxy(proxy_port: u16, url: &str, host: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn up_routes_through_both_sidecars_and_down_stops_everything() {
    let bins = bin_dir();
    for b in ["keel-proxy", "keel-sample"] {
        if !bins.join(b).is_file() {
            eprintln!(
                "skipped: {} not built (cargo build -p keel-proxy -p keel-samples)",
                bins.join(b).display()
            );
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("mesh.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let state = dir.path().join("state");
    let mut up = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("up")
        .arg("-f")
        .arg(&manifests)
        .arg("--state-dir")
        .arg(&state)
        .arg("--bin-dir")
        .arg(&bins)
        .args(["--listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        // A file, not the test's own stderr: a `keel up` left running by a failed test must
        // not hold the harness's output open (cargo test would wait for it forever).
        .stderr(stderr_file(&state))
        .spawn()
        .expect("keel up");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = up.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("keel up: {line}");
            // Keep reading after the test stops listening: keel up must not see a closed pipe.
            let _ = tx.send(line);
        }
    });
    // Wait for "ready" and the sleep workload's HTTP_PROXY port.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sleep_proxy = None;
    let mut ready = false;
    while !(ready && sleep_proxy.is_some()) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = up.kill();
            let _ = up.wait();
            panic!("keel up not ready within 60 s, or it exited (its stderr is above)");
        };
        if line.starts_with("ready") {
            ready = true;
        }
        if let Some(rest) = line
            .trim()
            .strip_prefix("sleep-0.default: HTTP_PROXY=http://127.0.0.1:")
        {
            sleep_proxy = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
    }
    let port = sleep_proxy.unwrap();
    let response = get_via_proxy(port, "http://httpbin:8000/headers", "httpbin:8000");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"Host\""), "{response}");
    // The app saw the request (it listens only on its own port, behind its sidecar).
    let app_log = std::fs::read_to_string(state.join("logs/httpbin-0.log")).unwrap();
    assert!(app_log.contains("GET /headers"), "{app_log}");
    let response = get_via_proxy(
        port,
        "http://httpbin.default.svc.cluster.local:8000/get",
        "httpbin.default.svc.cluster.local:8000",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let down = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("down")
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("keel down");
    assert!(down.status.success(), "{down:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = up.kill();
            let _ = up.wait();
            panic!("keel up did not stop after keel down");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "keel up exited {status}");
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

/// Starts `keel up` on `files`, waits for "ready", returns the process, its output lines and
/// each pod's HTTP_PROXY port.
fn start(
    files: &[&Path],
    state: &Path,
) -> (std::process::Child, std::collections::BTreeMap<String, u16>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.arg("up");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let mut up = cmd
        .arg("--state-dir")
        .arg(state)
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        // A file, not the test's own stderr: a `keel up` left running by a failed test must
        // not hold the harness's output open (cargo test would wait for it forever).
        .stderr(stderr_file(state))
        .spawn()
        .expect("keel up");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = up.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("keel up: {line}");
            // Keep reading after the test stops listening: keel up must not see a closed pipe.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut proxies = std::collections::BTreeMap::new();
    let mut ready = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = up.kill();
            let _ = up.wait();
            panic!("keel up not ready within 90 s, or it exited (its stderr is above)");
        };
        if line.starts_with("ready") {
            ready = true;
        }
        if let Some((pod, rest)) = line.trim().split_once(": HTTP_PROXY=http://127.0.0.1:") {
            let port = rest.split_whitespace().next().unwrap().parse().unwrap();
            proxies.insert(pod.to_string(), port);
        }
        if ready && line.trim_start().starts_with("productpage-v1-0.") {
            return (up, proxies);
        }
    }
}

#[test]
fn bookinfo_from_the_repo_manifests_serves_all_three_reviews_versions() {
    let bins = bin_dir();
    for b in ["keel-proxy", "keel-sample"] {
        if !bins.join(b).is_file() {
            eprintln!("skipped: {} not built", bins.join(b).display());
            return;
        }
    }
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo/app.yaml");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (mut up, proxies) = start(&[&app], &state);
    let port = proxies["productpage-v1-0.default"];
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..15 {
        let page = get_via_proxy(
            port,
            "http://productpage:9080/productpage",
            "productpage:9080",
        );
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
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
    let down = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("down")
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("keel down");
    assert!(down.status.success(), "{down:?}");
    assert!(up.wait().unwrap().success());
}

//! A local mesh for tests: `keel up` on loopback with its own state directory and its own
//! control-plane ports (`127.0.0.1:0`, so meshes of tests running at once never collide),
//! `keel apply` against its API, plain HTTP through a pod's sidecar, and `keel down`.
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const KEEL: &str = env!("CARGO_BIN_EXE_keel");

/// Where `keel`, `keel-proxy` and `keel-sample` are built.
pub fn bin_dir() -> PathBuf {
    Path::new(KEEL).parent().expect("dir").to_path_buf()
}

/// Whether the processes a mesh runs are built; says why not (the test then passes).
pub fn binaries_built() -> bool {
    for b in ["keel-proxy", "keel-sample"] {
        let path = bin_dir().join(b);
        if !path.is_file() {
            eprintln!(
                "skipped: {} not built (cargo build -p keel-proxy -p keel-samples)",
                path.display()
            );
            return false;
        }
    }
    true
}

/// Istio's samples and task YAML (`../shared/istio-samples` beside the repository), or `None`
/// after saying why (a fresh clone has no `../shared`; `KEEL_NO_ISTIO_SAMPLES=1` acts as one).
pub fn istio_samples() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples");
    // KEEL_NO_ISTIO_SAMPLES=1 runs the tests as a fresh clone would, on the repo's fixtures.
    if std::env::var_os("KEEL_NO_ISTIO_SAMPLES").is_some() {
        eprintln!("skipped: KEEL_NO_ISTIO_SAMPLES is set (Istio's own YAML is not read)");
        return None;
    }
    if root.join("samples").is_dir() {
        Some(root)
    } else {
        eprintln!(
            "skipped: Istio's samples are not at {} (this test runs Istio's own YAML)",
            root.display()
        );
        None
    }
}

/// httpbin as Istio's tasks deploy it: its ServiceAccount, Service (8000 → 8080) and a
/// one-replica Deployment labelled `app: httpbin, version: v1`.
pub const HTTPBIN: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: httpbin}
---
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
    metadata: {labels: {app: httpbin, version: v1}}
    spec:
      serviceAccountName: httpbin
      containers:
      - {name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0, ports: [{containerPort: 8080}]}
"#;

/// sleep as Istio's tasks deploy it (the client they `kubectl exec` curl from): its
/// ServiceAccount and a one-replica Deployment; starts with `---`, to follow [`HTTPBIN`].
pub const SLEEP: &str = r#"
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: sleep}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep}
spec:
  selector: {matchLabels: {app: sleep}}
  template:
    metadata: {labels: {app: sleep}}
    spec:
      serviceAccountName: sleep
      containers: [{name: sleep, image: curlimages/curl}]
"#;

/// One pod of the mesh, as `keel up`'s summary names it.
#[derive(Debug, Clone, Copy)]
pub struct Pod {
    /// Its sidecar's outbound port (the app's `HTTP_PROXY`).
    pub proxy: u16,
    /// Its sidecar's admin port.
    pub admin: u16,
}

/// A running `keel up`; killed (with its children) if still running when dropped.
pub struct Mesh {
    up: Child,
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    /// The API's URL, for `keel apply --server`.
    pub api: String,
    /// By pod name and namespace (`productpage-v1-0.default`).
    pub pods: BTreeMap<String, Pod>,
    /// Each pod's app port, by pod name and namespace.
    pub apps: BTreeMap<String, u16>,
    /// Every line `keel up` printed so far.
    printed: Arc<Mutex<Vec<String>>>,
}

impl Mesh {
    /// `keel up -f FILE...`, waiting for its summary.
    pub fn up(files: &[&Path]) -> Mesh {
        Mesh::up_with(files, &[], &[])
    }

    /// `keel up` with extra arguments and environment (which its sidecars inherit).
    pub fn up_with(files: &[&Path], args: &[&str], env: &[(&str, &str)]) -> Mesh {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let stderr_path = dir.path().join("keel-up.stderr");
        let mut cmd = Command::new(KEEL);
        cmd.arg("up");
        for f in files {
            cmd.arg("-f").arg(f);
        }
        let mut up = cmd
            .arg("--state-dir")
            .arg(&state)
            .arg("--bin-dir")
            .arg(bin_dir())
            .args(["--listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"])
            .args(["--monitoring-listen", "127.0.0.1:0"])
            .args(["--ca-listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            // A file, not the test's own stderr: a `keel up` left running by a failed test
            // must not hold the harness's output open (cargo test would wait for it forever).
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("keel up");
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = up.stdout.take().expect("stdout");
        let printed = Arc::new(Mutex::new(Vec::new()));
        let lines = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("keel up: {line}");
                if let Ok(mut l) = lines.lock() {
                    l.push(line.clone());
                }
                // Keep reading after the test stops listening: keel up must not see a closed
                // pipe.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut api = String::new();
        let mut pods = BTreeMap::new();
        let mut apps = BTreeMap::new();
        let mut workloads = None;
        let mut summary = 0;
        while workloads != Some(summary) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = up.kill();
                let _ = up.wait();
                panic!(
                    "keel up not ready within 90 s, or it exited; its stderr: {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            };
            if let Some(rest) = line.strip_prefix("ready — ") {
                workloads = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
            if let Some((pod, rest)) = line
                .strip_prefix("… starting ")
                .and_then(|l| l.split_once(" (app 127.0.0.1:"))
            {
                let port = rest.split([',', ')']).next().and_then(|p| p.parse().ok());
                apps.insert(pod.to_string(), port.expect("app port"));
            }
            if let Some(url) = line.trim().strip_prefix("API: export KEEL_SERVER=") {
                api = url.to_string();
            }
            if workloads.is_some() && line.starts_with("  ") && line.contains(".log") {
                summary += 1;
                if let Some((pod, rest)) = line.trim().split_once(": HTTP_PROXY=http://127.0.0.1:")
                {
                    let port = |s: &str| s.parse::<u16>().expect("port");
                    let proxy = port(rest.split_whitespace().next().expect("proxy port"));
                    let admin = rest
                        .split_once("admin http://127.0.0.1:")
                        .and_then(|(_, a)| a.split(';').next())
                        .map(port)
                        .expect("admin port");
                    pods.insert(pod.to_string(), Pod { proxy, admin });
                }
            }
        }
        assert!(!api.is_empty(), "keel up printed no API address");
        Mesh {
            up,
            dir,
            state,
            api,
            pods,
            apps,
            printed,
        }
    }

    /// The lines `keel up` printed so far that contain `needle`.
    pub fn printed(&self, needle: &str) -> Vec<String> {
        self.printed
            .lock()
            .map(|l| l.iter().filter(|l| l.contains(needle)).cloned().collect())
            .unwrap_or_default()
    }

    /// The pod whose name starts with `prefix` (`sleep` finds `sleep-0.default`).
    pub fn pod(&self, prefix: &str) -> Pod {
        self.pods
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no pod {prefix}* in {:?}", self.pods))
    }

    /// The pod whose name starts with `prefix` in namespace `ns`.
    pub fn pod_in(&self, prefix: &str, ns: &str) -> Pod {
        self.pods
            .iter()
            .find(|(name, _)| name.starts_with(prefix) && name.ends_with(&format!(".{ns}")))
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no pod {prefix}*.{ns} in {:?}", self.pods))
    }

    /// `keel apply -f FILE --wait` on this mesh's control plane: returns once every sidecar
    /// has the change, as Istio's tasks wait a few seconds after `kubectl apply`.
    pub fn apply(&self, file: &Path) {
        self.kubectl("apply", None, file);
    }

    /// Writes `yaml` to a file of the mesh's directory and applies it.
    pub fn apply_yaml(&self, name: &str, yaml: &str) {
        self.kubectl("apply", None, &self.write(name, yaml));
    }

    /// Like [`Mesh::apply_yaml`], for objects that name no namespace: they go to `ns`, as
    /// with `kubectl apply -n NS`.
    pub fn apply_yaml_in(&self, ns: &str, name: &str, yaml: &str) {
        self.kubectl("apply", Some(ns), &self.write(name, yaml));
    }

    /// `keel delete -n NS -f` of a file [`Mesh::apply_yaml_in`] wrote.
    pub fn delete_in(&self, ns: &str, name: &str) {
        self.kubectl("delete", Some(ns), &self.dir.path().join(name));
    }

    fn write(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).expect("write");
        path
    }

    /// `keel apply` (waiting for every sidecar) or `keel delete`, which must succeed.
    fn kubectl(&self, verb: &str, ns: Option<&str>, file: &Path) {
        let mut cmd = Command::new(KEEL);
        cmd.arg(verb);
        if let Some(ns) = ns {
            cmd.args(["-n", ns]);
        }
        cmd.arg("-f").arg(file).args(["--server", &self.api]);
        if verb == "apply" {
            cmd.arg("--wait");
        }
        let out = cmd.output().expect("keel");
        assert!(
            out.status.success(),
            "keel {verb} -f {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The app's log of `pod` (`httpbin-v1-0`).
    pub fn app_log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.state.join(format!("logs/{pod}.log"))).unwrap_or_default()
    }

    /// The sidecar's log of `pod`, its access log included.
    pub fn proxy_log(&self, pod: &str) -> String {
        std::fs::read_to_string(self.state.join(format!("logs/{pod}.proxy.log")))
            .unwrap_or_default()
    }

    /// Waits until `pod`'s sidecar has logged a line containing `needle`. A sidecar writes the
    /// access-log line once the response is sent, which can be just after the client has read
    /// it.
    pub fn assert_proxy_logged(&self, pod: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.proxy_log(pod);
            if log.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{pod}'s sidecar never logged {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `keel down`, then `keel up` must exit 0.
    pub fn down(mut self) {
        let down = Command::new(KEEL)
            .arg("down")
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .expect("keel down");
        assert!(down.status.success(), "{down:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.up.try_wait().expect("wait") {
                assert!(status.success(), "keel up exited {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "keel up did not stop after keel down"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Ok(None) = self.up.try_wait() {
            // SIGTERM, so that keel up stops its children too.
            let _ = Command::new("kill").arg(self.up.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(self.up.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.up.kill();
            let _ = self.up.wait();
        }
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Head and body, as received.
    pub text: String,
}

impl Response {
    /// A header's value (the first), by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A GET through a sidecar's outbound port in absolute form, as an app with `HTTP_PROXY`
/// (curl, productpage) sends it, with extra header lines (`Cookie: user=jason`).
pub fn get(proxy: u16, url: &str, headers: &[&str]) -> Response {
    let host = url
        .strip_prefix("http://")
        .and_then(|u| u.split('/').next())
        .expect("an http:// URL");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", proxy)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Response { status, text }
}

/// A GET on an admin port (`/stats/prometheus`, `/clusters`).
pub fn admin(port: u16, path: &str) -> String {
    get(port, &format!("http://127.0.0.1:{port}{path}"), &[]).text
}

/// Waits (10 s at most) until `check` holds, then returns what it saw last.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! End-to-end tests of `keel control-plane` with `keel apply`, `keel get` and `keel delete`:
//! real processes on loopback, an ephemeral port, a temporary config directory.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use predicates::prelude::*;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A running `keel control-plane`, stopped (SIGKILL) when dropped.
struct ControlPlane {
    child: Child,
    server: String,
    /// `http://ADDR/metrics` of the monitoring port.
    metrics: String,
    dir: tempfile::TempDir,
    lines: Receiver<String>,
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir)
    }

    fn start_in(dir: tempfile::TempDir) -> ControlPlane {
        let mut child = Command::new(KEEL)
            .args([
                "control-plane",
                "--listen",
                "127.0.0.1:0",
                "--xds-listen",
                "127.0.0.1:0",
                "--monitoring-listen",
                "127.0.0.1:0",
                "--ca-listen",
                "127.0.0.1:0",
                "--config-dir",
            ])
            .arg(dir.path().join("config"))
            .arg("--ca-dir")
            .arg(dir.path().join("ca"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keel control-plane");
        let (tx, rx) = channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut cp = ControlPlane {
            child,
            server: String::new(),
            metrics: String::new(),
            dir,
            lines: rx,
        };
        let mut seen = Vec::new();
        let ready = cp.wait_for_line(Duration::from_secs(20), &mut seen, |l| {
            l.starts_with("ready")
        });
        assert!(ready, "the control plane didn't start: {seen:#?}");
        let api = seen
            .iter()
            .find_map(|l| l.split("API on ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("API address printed");
        cp.server = api.to_string();
        cp.metrics = seen
            .iter()
            .find_map(|l| l.strip_prefix("✔ metrics on "))
            .expect("metrics address printed")
            .to_string();
        assert!(
            seen.iter()
                .any(|l| l.starts_with("✔ xDS on http://127.0.0.1:")),
            "{seen:#?}"
        );
        // The CA serves from a root it created in --ca-dir.
        let root = cp.dir.path().join("ca/root-cert.pem");
        let ca = seen
            .iter()
            .find_map(|l| l.strip_prefix("✔ CA on https://"))
            .unwrap_or_else(|| panic!("CA address printed: {seen:#?}"));
        assert!(
            ca.ends_with(&format!(
                "(trust domain cluster.local; root {})",
                root.display()
            )),
            "{ca}"
        );
        let ca_addr = ca.split_whitespace().next().expect("CA address");
        assert!(std::net::TcpStream::connect(ca_addr).is_ok(), "{ca_addr}");
        assert!(
            std::fs::read_to_string(&root)
                .unwrap_or_default()
                .starts_with("-----BEGIN CERTIFICATE-----"),
            "{root:?}"
        );
        cp
    }

    fn wait_for_line(
        &self,
        timeout: Duration,
        seen: &mut Vec<String>,
        want: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = want(&line);
                    seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// `keel` pointed at this control plane.
    fn keel(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(KEEL);
        cmd.env("KEEL_SERVER", &self.server);
        cmd
    }

    fn stdout(&self, args: &[&str]) -> String {
        let out = self.keel().args(args).output().expect("run keel");
        assert!(
            out.status.success(),
            "keel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// SIGTERM, then the exit status and what it printed after.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "didn't stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.try_iter().collect();
        (status, rest)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` with its content.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("ls").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = std::fs::read_to_string(&p).expect("read");
                out.push((p, text));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn apply_get_delete_with_short_names() {
    let cp = ControlPlane::start();
    let traffic = examples().join("bookinfo/traffic.yaml");
    let traffic = traffic.to_str().expect("path");
    cp.keel()
        .args(["apply", "-f", traffic])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("destinationrule.networking.istio.io/reviews created\n").and(
                predicate::str::contains("virtualservice.networking.istio.io/ratings created\n"),
            ),
        );
    cp.keel()
        .args(["apply", "-f", traffic])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "virtualservice.networking.istio.io/reviews unchanged\n",
        ));
    assert!(
        cp.config_dir()
            .join("default/virtualservices.networking.istio.io/reviews.yaml")
            .is_file()
    );

    // A table like kubectl's, by short, plural or full name, any case.
    let table = cp.stdout(&["get", "vs"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "GATEWAYS", "HOSTS", "AGE"]);
    let rows: Vec<&str> = lines
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(rows, ["ratings", "reviews"]);
    assert_eq!(cp.stdout(&["get", "VirtualServices"]), table);
    assert_eq!(
        cp.stdout(&["get", "virtualservice.networking.istio.io"]),
        table
    );
    let dr = cp.stdout(&["get", "dr", "reviews"]);
    assert!(
        dr.starts_with("NAME ") && dr.contains("\nreviews   reviews   "),
        "{dr}"
    );

    // -o yaml / json of one object; -o name.
    let yaml = cp.stdout(&["get", "vs", "reviews", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("  resourceVersion: \"1\"\n") && yaml.contains("  namespace: default\n"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cp.stdout(&["get", "vs", "-o", "json"])).expect("json");
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().expect("items").len(), 2);
    assert_eq!(
        cp.stdout(&["get", "vs/ratings", "-o", "name"]),
        "virtualservice.networking.istio.io/ratings\n"
    );

    // Delete, then the names are gone.
    cp.keel()
        .args(["delete", "-f", traffic])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "virtualservice.networking.istio.io \"reviews\" deleted\n",
        ));
    cp.keel()
        .args(["get", "vs", "reviews"])
        .assert()
        .code(1)
        .stderr("Error from server (NotFound): virtualservices.networking.istio.io \"reviews\" not found\n");
    cp.keel()
        .args(["delete", "-f", traffic])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not found"));
    cp.keel()
        .args(["delete", "-f", traffic, "--ignore-not-found"])
        .assert()
        .success();
    cp.keel()
        .args(["get", "vs"])
        .assert()
        .success()
        .stdout("")
        .stderr("No resources found in default namespace.\n");
    assert!(files(&cp.config_dir()).is_empty(), "files removed");
}

#[test]
fn an_invalid_apply_is_rejected_with_reasons_and_changes_nothing() {
    let cp = ControlPlane::start();
    let app = examples().join("bookinfo/app.yaml");
    cp.keel()
        .args(["apply", "-f", app.to_str().unwrap()])
        .assert()
        .success();
    let before = files(&cp.config_dir());
    let version_before = cp.stdout(&["get", "svc", "-o", "json"]);

    let mistakes = examples().join("mistakes/mistakes.yaml");
    let mistakes = mistakes.to_str().unwrap();
    cp.keel()
        .args(["apply", "-f", app.to_str().unwrap(), "-f", mistakes])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains(format!(
                "{mistakes}:12:7: error: VirtualService default/reviews: spec.http[0].match[0].hedears: unknown field \"hedears\" (did you mean \"headers\"?)"
            ))
            .and(predicate::str::contains("nothing was changed")),
        );
    // The same lines `keel validate` prints.
    let validate = assert_cmd::Command::new(KEEL)
        .args(["validate", "-f", mistakes])
        .output()
        .expect("validate");
    let first = String::from_utf8(validate.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    cp.keel()
        .args(["apply", "-f", mistakes])
        .assert()
        .stderr(predicate::str::contains(first));
    assert_eq!(files(&cp.config_dir()), before);
    assert_eq!(cp.stdout(&["get", "svc", "-o", "json"]), version_before);

    // From standard input, named <stdin>.
    cp.keel()
        .args(["apply", "-f", "-"])
        .write_stdin("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {}\n")
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("<stdin>:"));
}

#[test]
fn namespaces_all_namespaces_and_kubernetes_objects() {
    let cp = ControlPlane::start();
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";
    for ns in ["prod", "test"] {
        cp.keel()
            .args(["apply", "-n", ns, "-f", "-"])
            .write_stdin(vs)
            .assert()
            .success()
            .stdout("virtualservice.networking.istio.io/reviews created\n");
    }
    // -n with an object naming another namespace is refused, as kubectl does.
    cp.keel()
        .args(["apply", "-n", "prod", "-f", "-"])
        .write_stdin(vs.replace("{name: reviews}", "{name: reviews, namespace: test}"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "does not match the namespace \"prod\"",
        ));
    cp.keel()
        .args(["get", "vs"])
        .assert()
        .success()
        .stderr("No resources found in default namespace.\n");
    let all = cp.stdout(&["get", "vs", "-A"]);
    let rows: Vec<Vec<&str>> = all
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..2], ["NAMESPACE", "NAME"]);
    assert_eq!(rows[1][..2], ["prod", "reviews"]);
    assert_eq!(rows[2][..2], ["test", "reviews"]);
    assert_eq!(
        cp.stdout(&["get", "vs", "-n", "test", "-o", "name"]),
        "virtualservice.networking.istio.io/reviews\n"
    );

    let app = examples().join("bookinfo/app.yaml");
    cp.keel()
        .args(["apply", "-f", app.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "deployment.apps/reviews-v2 created",
        ));
    let svc = cp.stdout(&["get", "svc", "-o", "wide"]);
    assert!(
        svc.starts_with(
            "NAME          TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)    AGE   SELECTOR\n"
        ),
        "{svc}"
    );
    assert!(
        svc.contains("\nreviews       ClusterIP   <none>       <none>        9080/TCP   "),
        "{svc}"
    );
    let deploy = cp.stdout(&["get", "deploy"]);
    assert!(deploy.starts_with("NAME "), "{deploy}");
    assert_eq!(deploy.lines().count(), 7, "{deploy}");
    assert_eq!(cp.stdout(&["get", "sa", "-o", "name"]).lines().count(), 4);
    cp.keel()
        .args(["get", "pods-of-doom"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "doesn't have a resource type \"pods-of-doom\"",
        ));
}

#[test]
fn edits_by_hand_are_picked_up_and_invalid_ones_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("gw.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n",
    )
    .unwrap();
    let cp = ControlPlane::start_in(dir);
    assert!(cp.stdout(&["get", "gw"]).contains("\ngw "));

    std::fs::write(
        config.join("pa.yaml"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls: {mode: STRICT}\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cp.stdout(&["get", "pa"]).contains("STRICT") {
        assert!(Instant::now() < deadline, "edit not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Broken by hand: reported with file and line; the last good content stays.
    std::fs::write(
        config.join("pa.yaml"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls: {mode: STRICTER}\n",
    )
    .unwrap();
    let mut seen = Vec::new();
    let reported = cp.wait_for_line(Duration::from_secs(10), &mut seen, |l| {
        l.contains("pa.yaml:5:") && l.contains("error")
    });
    assert!(reported, "{seen:#?}");
    assert!(cp.stdout(&["get", "pa"]).contains("STRICT "));

    let (status, after) = cp.terminate();
    assert!(status.success(), "{status:?}");
    assert!(after.iter().any(|l| l == "stopped"), "{after:#?}");
}

#[test]
fn without_a_control_plane_the_cli_says_how_to_start_one() {
    // Nothing listens on a port we just bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    assert_cmd::Command::new(KEEL)
        .args(["get", "vs", "--server", &server])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains(format!("cannot reach the control plane at {server}")).and(
                predicate::str::contains("start it with `keel control-plane` or `keel up`"),
            ),
        );
    let vs = examples().join("bookinfo/traffic.yaml");
    assert_cmd::Command::new(KEEL)
        .env("KEEL_SERVER", &server)
        .args(["apply", "-f", vs.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot reach the control plane"));
}

#[test]
fn dry_run_and_wait() {
    let cp = ControlPlane::start();
    let traffic = examples().join("bookinfo/traffic.yaml");
    let traffic = traffic.to_str().unwrap();
    cp.keel()
        .args(["apply", "--dry-run", "-f", traffic])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "virtualservice.networking.istio.io/reviews created (server dry run)",
        ));
    assert!(files(&cp.config_dir()).is_empty());
    cp.keel()
        .args(["apply", "--wait", "-f", traffic])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "virtualservice.networking.istio.io/reviews created",
        ))
        // No proxy is connected: nothing to wait for.
        .stderr(predicate::str::contains(
            "no proxies are connected: nothing to wait for",
        ));
}

#[test]
fn proxy_status_with_no_proxy_and_the_xds_port_printed() {
    let cp = ControlPlane::start();
    cp.keel()
        .args(["proxy-status"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::starts_with(
            "No proxies are connected to http://",
        ));
    let json = cp.stdout(&["proxy-status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["proxies"], serde_json::json!([]));
    assert!(v["controlPlaneVersion"].is_string(), "{v}");
    cp.keel()
        .args(["proxy-status", "nobody.default"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no proxy named \"nobody.default\" is connected",
        ));
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(authority).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn the_monitoring_port_serves_istiods_metrics_and_nothing_else() {
    let cp = ControlPlane::start();
    let (status, body) = http_get(&cp.metrics);
    assert_eq!(status, 200, "{body}");
    for name in [
        "pilot_xds{",
        "pilot_xds_pushes{type=\"cds\"}",
        "pilot_total_xds_rejects{type=\"lds\"}",
        "pilot_proxy_convergence_time_count",
        "# TYPE pilot_xds_push_time histogram",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    // The API serves the same; the monitoring port takes no API calls.
    let (status, _) = http_get(&format!("{}/metrics", cp.server));
    assert_eq!(status, 200);
    let (status, body) = http_get(&cp.metrics.replace("/metrics", "/apis/resources?kind=vs"));
    assert_eq!(status, 404, "{body}");
    let _ = cp.terminate();
}

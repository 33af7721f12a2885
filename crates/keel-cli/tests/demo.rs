//! `keel demo` end to end on loopback: Bookinfo through the ingress gateway, the three reviews
//! versions in turn, and Istio's routing tasks applied live (all-v1, then jason on v2, then
//! ratings aborting for jason); Istio's own bookinfo.yaml and bookinfo-gateway.yaml under
//! `keel up`; the repository's manifests against Istio's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keel_config::{LoadOptions, Spec, load_str};

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_keel"))
        .parent()
        .expect("dir")
        .to_path_buf()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Istio's samples, where the project keeps them (absent: the tests using them are skipped).
fn istio_samples() -> Option<PathBuf> {
    let dir = repo().join("../shared/istio-samples/samples/bookinfo");
    dir.join("platform/kube/bookinfo.yaml")
        .is_file()
        .then_some(dir)
}

fn binaries_built() -> bool {
    for b in ["keel-proxy", "keel-sample"] {
        if !bin_dir().join(b).is_file() {
            eprintln!(
                "skipped: {} not built (cargo build -p keel-proxy -p keel-samples)",
                bin_dir().join(b).display()
            );
            return false;
        }
    }
    true
}

/// A running `keel demo` or `keel up`: stopped through SIGTERM when dropped (a failed
/// assertion included), so its children stop with it; SIGKILL would leave them running.
struct Mesh {
    child: Child,
    state: PathBuf,
    /// `http://127.0.0.1:PORT` of the API.
    api: String,
    /// The ingress gateway's port.
    ingress: u16,
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `keel ARGS` and waits until its summary names the API and the ingress gateway's URL.
fn start(args: &[&str], state: &Path) -> Mesh {
    let stderr = state.with_extension("stderr");
    eprintln!("keel's stderr: {}", stderr.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"])
        .args(["--monitoring-listen", "none", "--ca-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        // A file, not the test's own stderr: a keel left running by a failed test must not
        // hold the harness's output open.
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("keel");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("keel: {line}");
            // Keep reading after the test stops listening: keel must not see a closed pipe.
            let _ = tx.send(line);
        }
    });
    let mut mesh = Mesh {
        child,
        state: state.to_path_buf(),
        api: String::new(),
        ingress: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while !(ready && mesh.ingress != 0 && !mesh.api.is_empty()) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("not ready within 60 s, or it exited (its stderr is named above)");
        };
        let line = line.trim();
        ready |= line.starts_with("ready");
        if let Some(url) = line.strip_prefix("API: export KEEL_SERVER=") {
            mesh.api = url.to_string();
        }
        if let Some(rest) =
            line.strip_prefix("istio-ingressgateway.istio-system: http://127.0.0.1:")
        {
            mesh.ingress = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    }
    mesh
}

/// One HTTP/1.1 request to the gateway; the whole response.
fn request(port: u16, head: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "{head}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn product_page(port: u16, cookie: Option<&str>) -> String {
    let head = match cookie {
        Some(c) => format!("GET /productpage HTTP/1.1\r\nCookie: {c}"),
        None => "GET /productpage HTTP/1.1".to_string(),
    };
    let page = request(port, &head, "");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("<title>Simple Bookstore App</title>"),
        "{page}"
    );
    page
}

/// Which reviews version served the page, checked against its stars.
fn reviews_version(page: &str) -> &'static str {
    let pod = page
        .split("Reviews served by: ")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap_or("")
        .trim();
    let (version, stars) = match pod {
        "reviews-v1-0" => ("v1", None),
        "reviews-v2-0" => ("v2", Some("black")),
        "reviews-v3-0" => ("v3", Some("red")),
        other => panic!("reviews served by {other:?}:\n{page}"),
    };
    match stars {
        Some(color) => assert!(page.contains(&format!("color=\"{color}\"")), "{page}"),
        None => assert!(!page.contains("color=\""), "v1 has no stars:\n{page}"),
    }
    version
}

/// `keel apply --wait`: returns once every proxy has the change.
fn apply(mesh: &Mesh, files: &[PathBuf]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.args(["apply", "--wait", "--server", &mesh.api]);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let out = cmd.output().expect("keel apply");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stop(mut mesh: Mesh) {
    let down = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("down")
        .arg("--state-dir")
        .arg(&mesh.state)
        .output()
        .expect("keel down");
    assert!(down.status.success(), "{down:?}");
    let status = mesh.child.wait().unwrap();
    assert!(status.success(), "exited {status}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", mesh.ingress)).is_err());
}

#[test]
fn demo_serves_bookinfo_through_the_gateway_and_follows_istios_tasks_live() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mesh = start(&["demo", "--ingress-port", "0"], &dir.path().join("state"));
    let port = mesh.ingress;

    // No routing rules: every version in turn (the balancer spreads them; 30 tries is
    // far more than enough).
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(reviews_version(&product_page(port, None)));
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    // Istio's "request routing" task, with Keel's copies of its files.
    let tasks = repo().join("examples/bookinfo-networking");
    apply(
        &mesh,
        &[
            tasks.join("destination-rule-all.yaml"),
            tasks.join("virtual-service-all-v1.yaml"),
        ],
    );
    for _ in 0..10 {
        assert_eq!(reviews_version(&product_page(port, None)), "v1");
    }
    apply(&mesh, &[tasks.join("virtual-service-reviews-test-v2.yaml")]);
    // Signing in through the gateway sets the cookie productpage turns into `end-user`.
    let login = request(
        port,
        "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        "username=jason&passwd=jason",
    );
    let cookie = login
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no cookie: {login}"))
        .to_string();
    assert_eq!(cookie, "user=jason");
    for _ in 0..5 {
        let page = product_page(port, Some(&cookie));
        assert!(page.contains("jason"), "{page}");
        assert_eq!(reviews_version(&page), "v2");
        assert_eq!(reviews_version(&product_page(port, None)), "v1");
    }

    // The fault-injection task's abort: jason's ratings fail, nobody else's.
    apply(
        &mesh,
        &[tasks.join("virtual-service-ratings-test-abort.yaml")],
    );
    let page = product_page(port, Some(&cookie));
    assert!(
        page.contains("Ratings service is currently unavailable"),
        "{page}"
    );
    let page = product_page(port, None);
    assert!(
        !page.contains("Ratings service is currently unavailable"),
        "{page}"
    );
    stop(mesh);
}

#[test]
fn istios_own_bookinfo_and_gateway_run_under_keel_up() {
    let Some(istio) = istio_samples() else {
        eprintln!("skipped: Istio's samples are not in ../shared/istio-samples");
        return;
    };
    if !binaries_built() {
        return;
    }
    // Istio's bookinfo-gateway.yaml names port 8080 (the ingress pod's own port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let app = istio.join("platform/kube/bookinfo.yaml");
    let gateway = istio.join("networking/bookinfo-gateway.yaml");
    let mapping = format!("8080={port}");
    let mesh = start(
        &[
            "up",
            "-f",
            app.to_str().unwrap(),
            "-f",
            gateway.to_str().unwrap(),
            "--gateway-port",
            &mapping,
        ],
        &dir.path().join("state"),
    );
    assert_eq!(mesh.ingress, port);
    product_page(port, None);
    // Istio's own task files.
    let net = istio.join("networking");
    apply(
        &mesh,
        &[
            net.join("destination-rule-all.yaml"),
            net.join("virtual-service-all-v1.yaml"),
        ],
    );
    for _ in 0..5 {
        assert_eq!(reviews_version(&product_page(port, None)), "v1");
    }
    stop(mesh);
}

/// What must match between two Bookinfo manifests, per `Kind name`.
fn shape(text: &str) -> BTreeMap<String, String> {
    let loaded = load_str(text, "bookinfo.yaml", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let mut out = BTreeMap::new();
    for r in &loaded.resources {
        let labels = &r.meta.labels;
        let what = match &r.spec {
            Spec::Service(s) => format!(
                "labels {labels:?} selector {:?} ports {:?}",
                s.spec.selector,
                s.spec
                    .ports
                    .iter()
                    .map(|p| (&p.name, p.port, &p.target_port))
                    .collect::<Vec<_>>()
            ),
            Spec::Deployment(d) => {
                let t = &d.spec.template;
                let containers: Vec<_> = t
                    .spec
                    .containers
                    .iter()
                    .map(|c| {
                        let ports: Vec<i32> = c.ports.iter().map(|p| p.container_port).collect();
                        (&c.name, &c.image, ports)
                    })
                    .collect();
                format!(
                    "labels {labels:?} replicas {:?} selector {:?} pod labels {:?} account {} containers {containers:?}",
                    d.spec.replicas,
                    d.spec.selector,
                    t.metadata.labels,
                    t.spec.service_account(),
                )
            }
            _ => format!("labels {labels:?}"),
        };
        out.insert(format!("{:?} {}", r.kind(), r.name()), what);
    }
    out
}

#[test]
fn the_repository_bookinfo_matches_istios() {
    let Some(istio) = istio_samples() else {
        eprintln!("skipped: Istio's samples are not in ../shared/istio-samples");
        return;
    };
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let ours = shape(&read(repo().join("examples/bookinfo/app.yaml")));
    let theirs = shape(&read(istio.join("platform/kube/bookinfo.yaml")));
    assert_eq!(ours, theirs);
    // The Gateway and VirtualService: the same routes; the port differs on purpose (80, the
    // ingress Service's port, which keel up listens for on 8080 as Istio's pod does).
    let ours = read(repo().join("examples/bookinfo/gateway.yaml"));
    let theirs = read(istio.join("networking/bookinfo-gateway.yaml"));
    let routes = |text: &str| {
        let loaded = load_str(text, "gw.yaml", &LoadOptions::default());
        loaded
            .resources
            .iter()
            .map(|r| match &r.spec {
                Spec::Gateway(g) => format!("{} {:?}", r.name(), g.selector),
                Spec::VirtualService(v) => format!("{} {:?}", r.name(), v),
                _ => r.name().to_string(),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(routes(&ours), routes(&theirs));
}

#[test]
fn a_taken_ingress_port_is_refused_before_anything_starts() {
    if !binaries_built() {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["demo", "--ingress-port", &port, "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--listen", "127.0.0.1:0", "--xds-listen", "127.0.0.1:0"])
        .args(["--monitoring-listen", "none", "--ca-listen", "127.0.0.1:0"])
        .output()
        .expect("keel demo");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "the ingress gateway cannot listen on 127.0.0.1:{port} for port 80 of Gateway default/bookinfo-gateway"
        )),
        "{err}"
    );
    assert!(err.contains("--ingress-port PORT"), "{err}");
    assert!(!dir.path().join("state/keel-up.pid").exists());
}

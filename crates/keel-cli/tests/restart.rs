//! The control plane goes away and comes back while a sidecar serves traffic: every process
//! real (`keel control-plane`, `keel-proxy sidecar --xds`, `keel-sample httpbin`), and not one
//! request fails — the proxy keeps its last good configuration, reconnects and resyncs.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{bin_dir, binaries_built, get};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the process (and waits) when dropped, so a failing test leaves nothing running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn control_plane(dir: &std::path::Path, xds: u16, api: u16) -> Running {
    Running(
        Command::new(KEEL)
            .arg("control-plane")
            .arg("--config-dir")
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .args(["--xds-listen", &format!("127.0.0.1:{xds}")])
            .args(["--monitoring-listen", "none", "--ca-listen", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keel control-plane"),
    )
}

fn httpbin(port: u16) -> Running {
    Running(
        Command::new(bin_dir().join("keel-sample"))
            .arg("httpbin")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keel-sample"),
    )
}

fn wait_for_api(api: u16) {
    eventually("the control plane's API", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
    });
}

fn eventually(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn synced(api: u16) -> bool {
    proxy_status(api)["proxies"].as_array().is_some_and(|ps| {
        ps.iter().any(|p| {
            p["name"] == "client-0.default"
                && p["types"]["listeners"]["state"] == "SYNCED"
                && p["types"]["clusters"]["state"] == "SYNCED"
        })
    })
}

#[test]
fn a_control_plane_restart_fails_no_request() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let (xds, api, app) = (free_port(), free_port(), free_port());
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    std::fs::create_dir_all(config.join("default")).unwrap();
    std::fs::write(
        dir.path().join("httpbin.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {app}}}}}]
"
        ),
    )
    .unwrap();
    let _app = httpbin(app);
    let mut cp = control_plane(&config, xds, api);
    wait_for_api(api);
    let applied = Command::new(KEEL)
        .args(["apply", "-f"])
        .arg(dir.path().join("httpbin.yaml"))
        .args(["--server", &format!("http://127.0.0.1:{api}")])
        .output()
        .expect("keel apply");
    assert!(applied.status.success(), "{applied:?}");
    let _proxy = Running(
        Command::new(bin_dir().join("keel-proxy"))
            .arg("sidecar")
            .args(["--xds", &format!("http://127.0.0.1:{xds}")])
            .args(["--node-id", "client-0.default", "-n", "default"])
            .args([
                "--workload",
                "client",
                "--workers",
                "1",
                "--bind",
                "127.0.0.1",
            ])
            .args(["--outbound-port", &outbound.to_string()])
            .args(["--inbound-port", &inbound.to_string()])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(["--stats", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keel-proxy"),
    );
    eventually(
        "a first 200 through the sidecar",
        Duration::from_secs(30),
        || {
            std::net::TcpStream::connect(("127.0.0.1", outbound)).is_ok()
                && get(outbound, "http://httpbin.test:8000/get", &[]).status == 200
        },
    );

    // Steady requests while the control plane stops, stays away and comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = get(outbound, "http://httpbin.test:8000/get", &[]);
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    failures.push(r.text);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            failures
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let status = Command::new("kill")
        .args(["-TERM", &cp.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = cp.0.wait();
    let during = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sent.load(Ordering::Relaxed) > during,
        "requests kept being served while the control plane was away"
    );
    cp = control_plane(&config, xds, api);
    eventually(
        "the proxy reconnected and in sync",
        Duration::from_secs(30),
        || synced(api),
    );
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let failures = load.join().unwrap();
    assert!(sent.load(Ordering::Relaxed) > 20, "too few requests");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{failures:#?}");
    drop(cp);
}

fn proxy_status(api: u16) -> serde_json::Value {
    let out = Command::new(KEEL)
        .args(["proxy-status", "-o", "json"])
        .args(["--server", &format!("http://127.0.0.1:{api}")])
        .output()
        .expect("keel proxy-status");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// A Gateway on `ports`, routing everything to httpbin.test.
fn gateway(ports: &[u16], app: u16) -> String {
    let servers: String = ports
        .iter()
        .map(|p| {
            format!(
                "  - {{port: {{number: {p}, name: http-{p}, protocol: HTTP}}, hosts: [\"*\"]}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ingress, namespace: default}}
spec:
  hosts: [\"*\"]
  gateways: [istio-system/ingress]
  http:
  - route: [{{destination: {{host: httpbin.test}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {app}}}}}]
"
    )
}

/// A configuration the proxy can't take (a Gateway port another process holds) is NACKed
/// with the reason, `keel proxy-status` shows it, and the last good configuration keeps
/// serving; every process real.
#[test]
fn a_config_the_gateway_cannot_take_is_nacked_and_the_last_good_one_serves() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (xds, api, app, admin, good) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let _app = httpbin(app);
    let _cp = control_plane(&dir.path().join("config"), xds, api);
    wait_for_api(api);
    let apply = |name: &str, yaml: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(KEEL)
            .args(["apply", "-f"])
            .arg(&path)
            .args(["--server", &format!("http://127.0.0.1:{api}")])
            .output()
            .expect("keel apply");
        assert!(out.status.success(), "{out:?}");
    };
    apply("good.yaml", gateway(&[good], app));
    let _gw = Running(
        Command::new(bin_dir().join("keel-proxy"))
            .arg("gateway")
            .args(["--xds", &format!("http://127.0.0.1:{xds}")])
            .args(["--node-id", "ingress-0.istio-system", "-n", "istio-system"])
            .args(["--label", "istio=ingressgateway", "--workers", "1"])
            .args(["--bind", "127.0.0.1"])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(["--stats", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("keel-proxy gateway"),
    );
    let through = |port: u16| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && get(port, "http://anything/get", &[]).status == 200
    };
    eventually("a 200 through the gateway", Duration::from_secs(30), || {
        through(good)
    });
    apply("bad.yaml", gateway(&[good, taken_port], app));
    let mut reason = String::new();
    eventually("the NACK in proxy-status", Duration::from_secs(30), || {
        let status = proxy_status(api);
        let listeners = &status["proxies"][0]["types"]["listeners"];
        reason = listeners["nackReason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        listeners["state"] == "NACK"
    });
    assert!(reason.contains(&taken_port.to_string()), "{reason}");
    // The last good configuration still serves.
    assert!(through(good));
    // The table says it too, with the reason under it.
    let out = Command::new(KEEL)
        .args([
            "proxy-status",
            "--server",
            &format!("http://127.0.0.1:{api}"),
        ])
        .output()
        .expect("keel proxy-status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NACK"), "{text}");
    assert!(
        text.contains("ingress-0.istio-system rejected listeners"),
        "{text}"
    );
    drop(taken);
}

//! The local mesh's ingress gateway follows the store: a mesh started without a Gateway gets
//! one when a Gateway selecting `istio: ingressgateway` is applied (as Istio's ingress tasks
//! apply `httpbin-gateway.yaml` to a running cluster), a Gateway added later adds its port, and
//! a gateway that dies is restarted like any pod.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Mesh, binaries_built, eventually, get};

/// A Gateway named `name` on `port` and a VirtualService sending its traffic to httpbin.
fn gateway(name: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - {{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: [\"*\"]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [\"*\"]
  gateways: [{name}]
  http:
  - route: [{{destination: {{host: httpbin, port: {{number: 8000}}}}}}]
"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The pid of the process whose stdout is `log` (the gateway writes to its own log file).
fn writer_of(log: &std::path::Path) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read_link(e.path().join("fd/1")).ok()? == log).then_some(pid)
    })
}

fn served_through(port: u16) -> Option<()> {
    let r = std::panic::catch_unwind(|| get(port, &format!("http://127.0.0.1:{port}/get"), &[]));
    (r.ok()?.status == 200).then_some(())
}

#[test]
fn a_gateway_applied_later_starts_the_ingress_gateway_and_it_is_restarted_when_it_dies() {
    if !binaries_built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("httpbin.yaml");
    std::fs::write(&manifests, common::HTTPBIN).unwrap();
    let mesh = Mesh::up_with(&[&manifests], &[], &[("KEEL_RESTART_BACKOFF_MS", "50")]);
    let log = mesh.state.join("logs/istio-ingressgateway.log");
    assert!(!log.exists(), "no Gateway yet, so no ingress gateway");

    // `keel get endpoints` shows where a client outside the mesh reaches httpbin: its sidecar's
    // inbound port, which takes plaintext (PERMISSIVE, the default).
    let out = std::process::Command::new(common::KEEL)
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
    assert!(out.status.success(), "{out:?}");
    let ep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ep["kind"], "Endpoints", "{ep}");
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1", "{ep}");
    let port = ep["subsets"][0]["ports"][0]["port"].as_u64().unwrap() as u16;
    let table = std::process::Command::new(common::KEEL)
        .args(["get", "ep", "--server", &mesh.api])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("httpbin   127.0.0.1:{port}")),
        "{table}"
    );
    let direct = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /get HTTP/1.1\r\nHost: httpbin:8000\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    assert!(direct.starts_with("HTTP/1.1 200"), "{direct}");

    let first = free_port();
    mesh.apply_yaml("gw.yaml", &gateway("first", first));
    eventually("the ingress gateway to serve the applied Gateway", || {
        served_through(first)
    });

    // A second Gateway adds a listener to the running gateway.
    let second = free_port();
    mesh.apply_yaml("gw2.yaml", &gateway("second", second));
    eventually("the second Gateway's port", || served_through(second));

    // Killed, it comes back (after a 50 ms back-off here) and serves again.
    let pid = writer_of(&log).expect("the gateway's process");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually("the gateway to be restarted", || {
        writer_of(&log).filter(|p| *p != pid)
    });
    std::thread::sleep(Duration::from_millis(100));
    eventually("the restarted gateway to serve both ports", || {
        served_through(first)?;
        served_through(second)
    });
    let stderr = std::fs::read_to_string(mesh.dir.path().join("keel-up.stderr")).unwrap();
    assert!(
        stderr.contains("↻ istio-ingressgateway.istio-system:"),
        "{stderr}"
    );
    mesh.down();
}

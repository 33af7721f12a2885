//! A sidecar's certificate end to end: `keel control-plane` (its CA on an ephemeral port),
//! `keel-proxy sidecar --ca-address` with a token the CA's key issued, and
//! `keel proxy-config secret` reading the certificate through the control plane's registry.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

/// Kills the process when the test ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn proxy_config_secret_shows_the_sidecars_certificate_and_root() {
    let proxy_bin = Path::new(KEEL).parent().unwrap().join("keel-proxy");
    if !proxy_bin.is_file() {
        eprintln!(
            "skipped: {} not built (cargo build -p keel-proxy)",
            proxy_bin.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cp = Command::new(KEEL)
        .args([
            "control-plane",
            "--listen",
            "127.0.0.1:0",
            "--xds-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--monitoring-listen",
            "none",
            "--ca-listen",
            "127.0.0.1:0",
            "--config-dir",
        ])
        .arg(dir.path().join("config"))
        .arg("--ca-dir")
        .arg(dir.path().join("ca"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let stdout = cp.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let _cp = Kill(cp);
    let (mut api, mut xds, mut ca) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.is_none() || xds.is_none() || ca.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the control plane's addresses");
        let word = |prefix: &str| {
            line.split(prefix)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        };
        api = api.or(word("API on "));
        xds = xds.or(word("xDS on "));
        ca = ca.or(word("CA on https://"));
    }
    let (api, xds, ca) = (api.unwrap(), xds.unwrap(), ca.unwrap());

    let tokens = keel_control::ca::token::LocalTokens::load_or_create(
        &dir.path().join("ca/token-key"),
        "cluster.local",
    )
    .unwrap();
    let token_file = dir.path().join("sleep.token");
    std::fs::write(&token_file, tokens.issue("default", "sleep")).unwrap();
    let proxy = Command::new(&proxy_bin)
        .args([
            "sidecar",
            "--xds",
            &xds,
            "--node-id",
            "sleep-0.default",
            "-n",
            "default",
        ])
        .args([
            "--label",
            "app=sleep",
            "--bind",
            "127.0.0.1",
            "--workers",
            "1",
        ])
        .args(["--outbound-port", &free_port().to_string()])
        .args(["--inbound-port", &free_port().to_string()])
        .args([
            "--admin",
            "127.0.0.1:0",
            "--stats",
            "none",
            "--service-account",
            "sleep",
        ])
        .args(["--ca-address", &ca, "--ca-root-cert"])
        .arg(dir.path().join("ca/root-cert.pem"))
        .arg("--ca-token-file")
        .arg(&token_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _proxy = Kill(proxy);

    let deadline = Instant::now() + Duration::from_secs(20);
    let table = loop {
        let out = Command::new(KEEL)
            .args(["proxy-config", "secret", "sleep", "--server", &api])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("Cert Chain") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate shown: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RESOURCE NAME     TYPE"), "{table}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let leaf = cols(lines[1]);
    assert_eq!(
        &leaf[..5],
        ["default", "Cert", "Chain", "ACTIVE", "true"],
        "{table}"
    );
    let root = cols(lines[2]);
    assert_eq!(&root[..4], ["ROOTCA", "CA", "ACTIVE", "true"], "{table}");

    let out = Command::new(KEEL)
        .args([
            "proxy-config",
            "secret",
            "sleep-0",
            "-o",
            "json",
            "--server",
            &api,
        ])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["certificates"][0]["cert_chain"][0]["subject_alt_names"][0]["uri"],
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert_eq!(doc["workload"]["serial_number"], leaf[5].as_str());
}

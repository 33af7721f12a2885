//! Configuration changes while serving: responses in flight finish on the configuration they
//! started with, new requests take the new routes, and an invalid change is rejected whole.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use keel_proxy::standalone::{self, StandaloneConfig};
use keel_snapshot::compile::gateway::GatewayOptions;
use support::*;

fn config(port: u16, dest: &str, extra: &[&Upstream]) -> String {
    let mut parts = vec![gateway("gw", port, &["*"])];
    for u in extra {
        parts.push(se(&format!("{}.test", u.name), &[u]));
    }
    parts.push(format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app, namespace: default}}\nspec:\n  hosts: [app.test]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: {dest}.test}}}}]\n---\n"
    ));
    parts.concat()
}

#[tokio::test]
async fn in_flight_response_completes_and_new_requests_take_new_routes() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let old = slow("old", gate, 5).await;
    let new = echo("new").await;
    let mut p = Proxy::start(|port| config(port, "old", &[&old, &new])).await;

    // A keep-alive connection opened before the change, and a response streaming on another.
    let mut before = H1::connect(p.port).await;
    assert_eq!(before.send(get("other.test", "/")).await.status, 404);
    let mut streaming = H1::connect(p.port).await;
    let mut resp = streaming.send_streaming(get("app.test", "/stream")).await;
    assert_eq!(resp.status(), 200);
    let first = within("first chunk", resp.body_mut().frame())
        .await
        .expect("a frame")
        .expect("frame ok")
        .into_data()
        .expect("data");
    assert_eq!(&first[..], b"first\n");

    // The new configuration drops the old service altogether.
    p.install(&config(p.port, "new", &[&new])).await;

    // New requests, on new and on existing connections, use the new routes.
    assert_eq!(fetch(p.port, "app.test", "/").await.upstream(), "new");
    assert_eq!(before.send(get("app.test", "/")).await.upstream(), "new");

    // The old response streams on to its end.
    open.send(true).expect("gate");
    let rest = within("rest of body", resp.into_body().collect())
        .await
        .expect("body completes")
        .to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "chunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\n"
    );
}

#[tokio::test]
async fn reload_binds_new_ports_and_releases_old_ones() {
    let up = echo("app").await;
    let mut p = Proxy::start(|port| config(port, "app", &[&up])).await;
    assert_eq!(fetch(p.port, "app.test", "/").await.upstream(), "app");
    let old_port = p.port;
    let new_port = free_port();
    p.install(&config(new_port, "app", &[&up])).await;
    assert_eq!(fetch(new_port, "app.test", "/").await.upstream(), "app");
    // The old port no longer accepts (its accept loop is stopped).
    let refused = within("connect", async {
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", old_port))
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    })
    .await;
    assert!(refused, "port {old_port} still accepts");
    p.port = new_port;
}

fn standalone_config(path: std::path::PathBuf) -> StandaloneConfig {
    StandaloneConfig {
        paths: vec![path],
        namespace: "default".into(),
        gateway: GatewayOptions {
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
            ..Default::default()
        },
        compiler: Default::default(),
    }
}

#[tokio::test]
async fn invalid_file_change_is_rejected_and_old_snapshot_kept() {
    let a = echo("a").await;
    let b = echo("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.yaml");
    let cfg = standalone_config(file.clone());
    let p = Proxy::start(|port| config(port, "a", &[&a, &b])).await;
    let port = p.port;

    std::fs::write(&file, config(port, "b", &[&a, &b])).expect("write");
    let (snapshot, warnings) = standalone::load(&cfg).expect("valid configuration");
    assert!(warnings.is_empty(), "{warnings:?}");
    let errors = standalone::apply(&p.shared, &p.listeners, snapshot).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(fetch(port, "app.test", "/").await.upstream(), "b");
    let good_version = p.shared.runtime.load().snapshot.version.clone();

    // An unknown field, then a broken regex: each reported with file and line.
    for (change, expect) in [
        ("    bogusField: 1\n", "bogusField"),
        ("    match: [{uri: {regex: \"(\"}}]\n", "regex"),
    ] {
        let broken = config(port, "a", &[&a, &b]).replace(
            "  - route:",
            &format!("  - name: broken\n{change}    route:"),
        );
        std::fs::write(&file, broken).expect("write");
        let errors = standalone::load(&cfg).expect_err("invalid configuration");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("gateway.yaml:") && e.contains(expect)),
            "{errors:#?}"
        );
    }
    // Nothing was applied: the last good configuration serves.
    assert_eq!(p.shared.runtime.load().snapshot.version, good_version);
    assert_eq!(fetch(port, "app.test", "/").await.upstream(), "b");
}

#[tokio::test]
async fn watched_file_changes_are_applied() {
    let a = echo("a").await;
    let b = echo("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.yaml");
    let p = Proxy::start(|port| {
        let yaml = config(port, "a", &[&a, &b]);
        std::fs::write(&file, &yaml).expect("write");
        yaml
    })
    .await;
    let port = p.port;
    // No RequestAuthentication here, so the key cache has nothing to fetch.
    let jwks = keel_jwks::JwksHandle::http(&Default::default(), Default::default()).unwrap();
    let watcher = tokio::spawn(standalone::watch(
        p.shared.clone(),
        p.listeners.clone(),
        standalone_config(file.clone()),
        jwks,
    ));
    assert_eq!(fetch(port, "app.test", "/").await.upstream(), "a");
    // Give the watcher a moment to register before writing (bounded, not a timing assert).
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&file, config(port, "b", &[&a, &b])).expect("write");
    let switched = within("reload", async {
        loop {
            if fetch(port, "app.test", "/").await.upstream() == "b" {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(switched);
    watcher.abort();
}

/// `standalone` compiles in a child process (`keel-proxy compile`): the same snapshot as in
/// process, and the same errors with file and line when the YAML is wrong.
#[tokio::test]
async fn child_process_compiles_the_same_snapshot_and_errors() {
    let a = echo("a").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, config(free_port(), "a", &[&a])).expect("write");
    let in_process = standalone_config(file.clone());
    let child = StandaloneConfig {
        compiler: standalone::Compiler::Child(env!("CARGO_BIN_EXE_keel-proxy").into()),
        ..standalone_config(file.clone())
    };
    let (mut expected, _) = standalone::load(&in_process).expect("valid configuration");
    let (mut got, warnings) = standalone::load(&child).expect("valid configuration");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_ne!(
        expected.version, got.version,
        "each load gets a new version"
    );
    expected.version.clear();
    got.version.clear();
    assert_eq!(expected, got);

    let broken = config(free_port(), "a", &[&a]).replace(
        "  - route:",
        "  - name: broken\n    bogusField: 1\n    route:",
    );
    std::fs::write(&file, broken).expect("write");
    let errors = standalone::load(&child).expect_err("invalid configuration");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("gateway.yaml:") && e.contains("bogusField")),
        "{errors:#?}"
    );
    // A compiler that cannot run falls back to compiling in this process.
    std::fs::write(&file, config(free_port(), "a", &[&a])).expect("write");
    let missing = StandaloneConfig {
        compiler: standalone::Compiler::Child("/nonexistent/keel-proxy".into()),
        ..standalone_config(file)
    };
    assert!(standalone::load(&missing).is_ok());
}

//! The `keel-sample` binary: configured by environment like Istio's containers, logs a line per
//! request, stops cleanly on SIGTERM.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn keel_sample() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel-sample"))
}

#[test]
fn help_explains_flags_and_environment() {
    let out = keel_sample().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "productpage",
        "reviews",
        "httpbin",
        "tcp-echo",
        "sleep",
        "HTTP_PROXY",
        "PORT",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let out = keel_sample().args(["reviews", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "SERVICE_VERSION",
        "STAR_COLOR",
        "ENABLE_RATINGS",
        "RATINGS_HOSTNAME",
        "SERVICES_DOMAIN",
        "--ratings-timeout-ms",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
}

#[test]
fn bad_settings_are_reported_not_panicked_on() {
    let out = keel_sample()
        .args(["productpage", "--port", "0"])
        .env("HTTP_PROXY", "https://proxy:443")
        .env_remove("http_proxy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid HTTP proxy"));
    let out = keel_sample()
        .args(["tcp-echo", "99999", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Starts `keel-sample ARGS` with `env`, returns it and the address from its first log line.
fn spawn(
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    SocketAddr,
    impl Iterator<Item = String>,
) {
    let mut cmd = keel_sample();
    cmd.args(args).env("PORT", "0").stdout(Stdio::piped());
    for name in ["http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"] {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let addr = loop {
        let line = lines.next().expect("a 'listening on' line");
        if let Some((_, addr)) = line.split_once("listening on http://") {
            break addr.parse().unwrap();
        }
    };
    (child, addr, lines)
}

#[tokio::test]
async fn productpage_calls_through_http_proxy_from_its_environment() {
    use keel_samples::bookinfo::details::Details;
    use keel_samples::bookinfo::reviews::{Reviews, ReviewsConfig};
    use keel_samples::client::Target;
    use support::{MeshProxy, start};

    let proxy = MeshProxy::default();
    let proxy_server = start("proxy", proxy.clone()).await;
    let details = start("details", Details::default()).await;
    let cfg = ReviewsConfig::for_version(
        "v1",
        Target::new("ratings", 9080),
        "reviews-v1-env".into(),
        Default::default(),
    );
    let reviews = start("reviews", Reviews::new(cfg)).await;
    proxy.route("details.bookinfo.svc", details.local_addr().port());
    proxy.route("reviews.bookinfo.svc", reviews.local_addr().port());

    let proxy_url = format!("http://127.0.0.1:{}", proxy_server.local_addr().port());
    let (mut child, addr, _) = spawn(
        &["productpage"],
        &[
            ("http_proxy", proxy_url.as_str()),
            ("HTTP_PROXY", "http://127.0.0.1:1"),
            ("SERVICES_DOMAIN", "bookinfo.svc"),
        ],
    );
    let page = support::get(addr, "/productpage", &[("x-request-id", "env-test")]).await;
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        page.body.contains("<dt>Type:</dt>paperback"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Reviews served by: reviews-v1-env"),
        "{}",
        page.body
    );
    let calls = proxy.log.all();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| c.absolute && c.header("x-request-id") == Some("env-test"))
    );
    assert_eq!(calls[0].authority, "details.bookinfo.svc:9080");
}

#[tokio::test]
async fn serves_logs_and_stops_on_sigterm() {
    let mut child = keel_sample()
        .arg("ratings")
        .env("PORT", "0")
        .env("SERVICE_VERSION", "v1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first.rsplit("http://").next().unwrap().parse().unwrap();
    let got = support::get(addr, "/ratings/0", &[]).await;
    assert_eq!(
        got.body,
        r#"{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}"#
    );
    let log = lines.next().unwrap().unwrap();
    assert!(
        log.contains("ratings \"GET /ratings/0 HTTP/1.1\" 200"),
        "{log}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for _ in 0..50 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    panic!("keel-sample did not stop on SIGTERM");
}

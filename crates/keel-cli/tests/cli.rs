//! End-to-end tests of the `keel` binary: real process, real files, exit codes and output.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;

fn keel() -> Command {
    Command::cargo_bin("keel").expect("keel binary")
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn help_teaches_and_version_prints() {
    keel()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("keel validate -f"));
    keel()
        .args(["validate", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit status").and(predicate::str::contains("Examples")));
    keel()
        .arg("version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("keel version "));
    let out = keel()
        .args(["version", "-o", "json"])
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["version"].is_string());
}

#[test]
fn wrong_usage_exits_64() {
    keel().args(["validate"]).assert().code(64);
    keel()
        .args(["analyze", "-f", "x", "--failure-threshold", "Severe"])
        .assert()
        .code(64);
    keel().args(["frobnicate"]).assert().code(64);
}

#[test]
fn validate_accepts_the_bookinfo_example() {
    keel()
        .args(["validate", "-f"])
        .arg(examples().join("bookinfo"))
        .assert()
        .success()
        .stderr(predicate::str::contains("valid"));
}

#[test]
fn validate_reports_each_problem_on_one_line_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        &dir,
        "pa.yaml",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: prod}\nspec:\n  mtls: {mode: STRCT}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: b}\nspec:\n  mtls: {mode: STRICT}\n",
    );
    let out = keel()
        .args(["validate", "-f"])
        .arg(&f)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(lines[0].ends_with(
        "pa.yaml:5:16: error: PeerAuthentication prod/a: spec.mtls.mode: unknown value \"STRCT\" (did you mean \"STRICT\"?); resource skipped"
    ), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 error") && stderr.contains("1 valid"),
        "{stderr}"
    );
}

#[test]
fn validate_json_and_stdin() {
    let out = keel()
        .args(["validate", "-o", "json", "-n", "team", "-f", "-"])
        .write_stdin("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {}\n")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert_eq!(v["resources"], 1);

    let out = keel()
        .args(["validate", "-o", "json", "-f", "-"])
        .write_stdin("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {mtls: {mode: NOPE}}\n")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["file"], "<stdin>");
    assert_eq!(d["line"], 4);
    assert_eq!(d["field"], "spec.mtls.mode");
    assert_eq!(d["resource"]["namespace"], "default");
}

#[test]
fn validate_missing_file_names_it() {
    keel()
        .args(["validate", "-f", "/nonexistent/keel.yaml"])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("/nonexistent/keel.yaml")
                .and(predicate::str::contains("check the path")),
        );
}

#[test]
fn analyze_clean_config_exits_0() {
    keel()
        .args(["analyze", "-A", "-f"])
        .arg(examples().join("bookinfo"))
        .assert()
        .success()
        .stderr(predicate::str::contains("No validation issues found"));
}

#[test]
fn analyze_unparseable_input_exits_65() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        &dir,
        "bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a\n",
    );
    keel().args(["analyze", "-f"]).arg(&f).assert().code(65);
    keel()
        .args(["analyze", "--ignore-unknown", "-f"])
        .arg(&f)
        .assert()
        .code(0);
}

#[test]
fn analyze_schema_errors_reach_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        &dir,
        "pa.yaml",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ports, namespace: default}\nspec:\n  portLevelMtls:\n    \"80\": {mode: STRICT}\n",
    );
    let out = keel()
        .args(["analyze", "-f"])
        .arg(&f)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(79));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("Error [IST0106] (PeerAuthentication default/ports "),
        "{stdout}"
    );
    assert!(
        stdout.contains("pa.yaml:5) Schema validation error: portLevelMtls requires selector"),
        "{stdout}"
    );
    // Other namespaces' messages are not shown with -n, and nothing then fails.
    keel()
        .args(["analyze", "-n", "other", "-f"])
        .arg(&f)
        .assert()
        .code(0);
    // Suppressed by code and resource glob.
    keel()
        .args([
            "analyze",
            "-S",
            "IST0106=PeerAuthentication default/*",
            "-f",
        ])
        .arg(&f)
        .assert()
        .code(0);
    let out = keel()
        .args(["analyze", "-o", "json", "-f"])
        .arg(&f)
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["code"], "IST0106");
    assert_eq!(v[0]["origin"], "PeerAuthentication default/ports");
    let out = keel()
        .args(["analyze", "-o", "yaml", "-f"])
        .arg(&f)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("- code: IST0106\n"));
}

#[test]
fn analyze_lists_analyzers() {
    keel()
        .args(["analyze", "-L"])
        .assert()
        .success()
        .stdout(predicate::str::contains("schema.ValidationAnalyzer"));
}

#[test]
fn analyze_reports_unreachable_routes_with_istio_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        &dir,
        "vs.yaml",
        r#"apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews}}]
  - name: shadowed
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews}}]
"#,
    );
    let out = keel()
        .args(["analyze", "-f"])
        .arg(&f)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Warning [IST0130] (VirtualService default/reviews ")
            && stdout.contains(
                ") VirtualService rule \"shadowed\" not used (all matches used by prior rules)."
            ),
        "{stdout}"
    );
    assert!(stdout.contains("Info [IST0131]"), "{stdout}");
    // Warnings don't reach the default failure threshold (Error).
    assert_eq!(out.status.code(), Some(0));
    keel()
        .args(["analyze", "--failure-threshold", "warning", "-f"])
        .arg(&f)
        .assert()
        .code(79);
    let out = keel()
        .args(["analyze", "--output-threshold", "Warning", "-f"])
        .arg(&f)
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("IST0131"));
}

#[test]
fn analyze_reads_a_mesh_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mesh = write(
        &dir,
        "mesh.yaml",
        "extensionProviders:\n- name: ls\n  lightstep: {address: collector:8080}\n",
    );
    let tel = write(
        &dir,
        "tel.yaml",
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, namespace: istio-system}\nspec:\n  tracing:\n  - providers: [{name: ls}]\n",
    );
    let out = keel()
        .args(["analyze", "-A", "--meshConfigFile"])
        .arg(&mesh)
        .arg("-f")
        .arg(&tel)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Warning [IST0002] (Telemetry istio-system/mesh-default"),
        "{stdout}"
    );
    // Without the mesh config nothing names ls as a lightstep provider.
    let out = keel()
        .args(["analyze", "-A", "-f"])
        .arg(&tel)
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("IST0002"));
    keel()
        .args(["analyze", "--meshConfigFile", "/nonexistent.yaml", "-f"])
        .arg(&tel)
        .assert()
        .code(1);
}

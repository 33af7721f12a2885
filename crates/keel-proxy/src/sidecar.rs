//! Sidecar mode with a static configuration: the proxy runs beside one workload, capturing
//! its outbound (15001) and inbound (15006) traffic, from a snapshot that does not change
//! while it runs. The snapshot comes from a JSON file (what `/config_dump` shows, or what
//! `keel-proxy sidecar -f ... --print-snapshot` writes), or is compiled from Istio YAML with
//! [`keel_snapshot::compile::sidecar`].
//!
//! Connections reach the listeners either redirected by iptables (the original destination
//! then picks the route, as in Istio) or addressed to them directly, e.g. an application
//! using `HTTP_PROXY=http://127.0.0.1:15001`, whose absolute-form requests
//! (`GET http://reviews:9080/ HTTP/1.1`) route on the URI's authority.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_config::{Level, LoadOptions, Resource, load_paths, validate_resources};
use keel_jwks::JwksHandle;
use keel_snapshot::Snapshot;
use keel_snapshot::compile::sidecar::{SidecarOptions, compile};

use crate::server::{Listeners, Shared};

/// Reads a snapshot written as JSON. The error says which file and what is wrong in it.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read snapshot {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not a keel snapshot: {e} (write one with `keel-proxy sidecar -f ... --print-snapshot`, or save /config_dump)",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Reads and validates Istio YAML (resources that name no namespace are in `namespace`).
/// Errors are the lines a user must fix.
pub fn load_yaml(paths: &[PathBuf], namespace: &str) -> Result<Vec<Resource>, Vec<String>> {
    let loaded = load_paths(
        paths,
        &LoadOptions {
            default_namespace: namespace.to_string(),
            ..Default::default()
        },
    );
    let mut errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .map(|d| d.to_string())
        .collect();
    errors.extend(
        validate_resources(&loaded.resources, "istio-system")
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| d.to_string()),
    );
    if errors.is_empty() {
        Ok(loaded.resources)
    } else {
        Err(errors)
    }
}

/// Compiles `resources` for the workload `opts` describes (with the key sets in
/// `opts.jwks`); the warnings are what the proxy can run without.
pub fn compile_resources(resources: &[Resource], opts: &SidecarOptions) -> (Snapshot, Vec<String>) {
    let compiled = compile(resources, opts);
    let warnings = compiled
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.resource, w.message))
        .collect();
    (compiled.snapshot, warnings)
}

/// Reads, validates and compiles Istio YAML for the workload `opts` describes. Errors are
/// the lines a user must fix; warnings are what the proxy can run without.
pub fn compile_yaml(
    paths: &[PathBuf],
    opts: &SidecarOptions,
) -> Result<(Snapshot, Vec<String>), Vec<String>> {
    let resources = load_yaml(paths, &opts.namespace)?;
    Ok(compile_resources(&resources, opts))
}

/// A static sidecar (`-f`) whose RequestAuthentications fetch keys: the files are read once,
/// but the keys are refreshed, so each change of keys recompiles the same resources and
/// applies the result, as the control plane would push it.
pub async fn follow_keys(
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
    resources: Vec<Resource>,
    mut opts: SidecarOptions,
    jwks: JwksHandle,
) {
    let resources = Arc::new(resources);
    let mut keys = jwks.subscribe();
    keys.mark_unchanged();
    while keys.changed().await.is_ok() {
        opts.jwks = keys.borrow_and_update().clone();
        let (job_resources, job_opts) = (resources.clone(), opts.clone());
        let compiled =
            tokio::task::spawn_blocking(move || compile_resources(&job_resources, &job_opts)).await;
        let Ok((snapshot, warnings)) = compiled else {
            tracing::error!(
                "recompiling for the new JWT key sets failed; the last configuration keeps serving"
            );
            continue;
        };
        if crate::standalone::same_config(&shared.runtime.load().snapshot, &snapshot) {
            continue;
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        for e in crate::standalone::apply(&shared, &listeners, snapshot).await {
            tracing::error!("{e}");
        }
        tracing::info!("JWT key sets changed; configuration recompiled");
    }
}

/// `key=value` → the pair (for `--label`).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("\"{s}\" is not key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_round_trip_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snap.json");
        let snap = Snapshot {
            version: "7".into(),
            ..Default::default()
        };
        std::fs::write(&path, serde_json::to_string(&snap).expect("json")).expect("write");
        assert_eq!(load_snapshot(&path).expect("load"), snap);
        std::fs::write(&path, "{\"listeners\": 3}").expect("write");
        let e = load_snapshot(&path).expect_err("invalid");
        assert!(e.contains("snap.json:1:"), "{e}");
        assert_eq!(
            parse_label("app=reviews"),
            Ok(("app".into(), "reviews".into()))
        );
        assert!(parse_label("=x").is_err());
    }
}

//! Shared harness for an2's analyzer tests: load YAML as istioctl's test harness does
//! (namespace-less objects stay namespace-less), add the default ingress objects, run some
//! analyzers.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use keel_analyze::analyzers::run_only;
use keel_analyze::{AnalysisContext, MeshConfig, Message, default_resources};
use keel_config::{LoadOptions, Resource, load_str};

/// Istio's analyzer testdata, when `../shared` is checked out next to the repository.
pub fn testdata() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/istio-samples/pkg/config/analysis/analyzers/testdata");
    dir.is_dir().then_some(dir)
}

fn opts() -> LoadOptions {
    LoadOptions {
        default_namespace: String::new(),
        ..Default::default()
    }
}

/// Resources from `(file name, text)` pairs, then the default ingress Pod and Service.
pub fn load(files: &[(&str, &str)]) -> (Vec<Resource>, Vec<String>) {
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in files {
        let loaded = load_str(text, name, &opts());
        problems.extend(
            loaded
                .diagnostics
                .iter()
                .filter(|d| d.level == keel_config::Level::Error)
                .map(ToString::to_string),
        );
        resources.extend(loaded.resources);
    }
    let defaults = load_str(
        &default_resources("istio-system"),
        "internal-ingress",
        &opts(),
    );
    resources.extend(defaults.resources);
    (resources, problems)
}

/// Messages of the named analyzers over `files`.
pub fn analyze(files: &[(&str, &str)], mesh: MeshConfig, analyzers: &[&str]) -> Vec<Message> {
    let (resources, _) = load(files);
    let ctx = AnalysisContext::new(&resources, mesh);
    run_only(&ctx, analyzers)
}

/// One inline YAML file named `t.yaml`, default mesh config; messages as istioctl prints them.
pub fn lines(yaml: &str, analyzer: &str) -> Vec<String> {
    lines_with(yaml, MeshConfig::default(), analyzer)
}

pub fn lines_with(yaml: &str, mesh: MeshConfig, analyzer: &str) -> Vec<String> {
    analyze(&[("t.yaml", yaml)], mesh, &[analyzer])
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// `CODE Kind ns/name`, sorted: what Istio's table tests compare.
pub fn origins(messages: &[Message]) -> Vec<String> {
    let mut v: Vec<String> = messages
        .iter()
        .map(|m| {
            let o = m
                .origin
                .as_ref()
                .map(|o| o.friendly_name())
                .unwrap_or_default();
            format!("{} {o}", m.code())
        })
        .collect();
    v.sort();
    v
}

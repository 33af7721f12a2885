//! Shared harness for the webhook and injection analyzer tests: load YAML as istioctl's test
//! harness does (namespace-less objects stay namespace-less), add the default ingress objects,
//! run one analyzer; and the webhook configurations several tests need.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use keel_analyze::analyzers::run_only;
use keel_analyze::{AnalysisContext, MeshConfig, Message, default_resources};
use keel_config::{LoadOptions, Resource, load_str};

pub const WEBHOOK: &str = "webhook.Analyzer";
pub const IMAGE_AUTO: &str = "injection.ImageAutoAnalyzer";
pub const IMAGE: &str = "injection.ImageAnalyzer";
pub const EXTERNAL: &str = "externalcontrolplane.ExternalControlPlaneAnalyzer";

/// Resources from `(file name, text)` pairs plus istioctl's default ingress objects, read the
/// way Istio's test harness does (no default namespace).
pub fn load(files: &[(&str, &str)]) -> Vec<Resource> {
    let opts = LoadOptions {
        default_namespace: String::new(),
        ..LoadOptions::default()
    };
    let mut resources = Vec::new();
    for (name, text) in files {
        let loaded = load_str(text, name, &opts);
        assert!(
            loaded.skipped.is_empty(),
            "{name}: {:?}",
            loaded.diagnostics
        );
        resources.extend(loaded.resources);
    }
    resources.extend(
        load_str(
            &default_resources("istio-system"),
            "internal-ingress",
            &opts,
        )
        .resources,
    );
    resources
}

pub fn analyze_with(analyzer: &str, mesh: MeshConfig, files: &[(&str, &str)]) -> Vec<Message> {
    let resources = load(files);
    let ctx = AnalysisContext::new(&resources, mesh);
    run_only(&ctx, &[analyzer])
}

pub fn run(analyzer: &str, text: &str) -> Vec<String> {
    analyze_with(analyzer, MeshConfig::default(), &[("f.yaml", text)])
        .iter()
        .map(|m| m.to_string())
        .collect()
}

pub fn testdata() -> Option<PathBuf> {
    let dir = std::env::var_os("KEEL_ANALYZER_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/istio-samples/pkg/config/analysis/analyzers/testdata")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} not found (Istio's testdata is only in the CI checkout)",
            dir.display()
        );
        None
    }
}

/// Runs one table row: Istio's files (relative to its testdata) plus inline `(name, text)`
/// files, then compares the multiset of (code, "Kind ns/name").
pub fn table_case(
    analyzer: &str,
    files: &[&str],
    inline: &[(&str, &str)],
    mesh: MeshConfig,
    expected: &[(&str, &str)],
) {
    let Some(dir) = testdata() else { return };
    let mut texts = Vec::new();
    for f in files {
        let path = dir.join(f);
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("skipping: {} not found", path.display());
            return;
        };
        texts.push((f.to_string(), text));
    }
    let mut all: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    all.extend_from_slice(inline);
    let msgs = analyze_with(analyzer, mesh, &all);
    let shown: Vec<String> = msgs.iter().map(|m| m.to_string()).collect();
    let mut got: Vec<(String, String)> = msgs
        .iter()
        .map(|m| {
            let o = m
                .origin
                .as_ref()
                .map(|o| o.friendly_name())
                .unwrap_or_default();
            (m.code().to_string(), o)
        })
        .collect();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(c, r)| (c.to_string(), r.to_string()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{files:?}:\n{}", shown.join("\n"));
}

pub fn mesh_distroless() -> MeshConfig {
    MeshConfig::from_yaml(
        "defaultConfig:\n  image:\n    imageType: distroless\n",
        "mesh.yaml",
    )
    .expect("mesh config")
}

/// A MutatingWebhookConfiguration with `hooks` (YAML list items indented by 0).
pub fn mwc(name: &str, hooks: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: {name}\nwebhooks:\n{hooks}---\n"
    )
}

pub fn hook(name: &str, service: &str, selectors: &str) -> String {
    format!(
        "- name: {name}\n  clientConfig:\n    service: {{name: {service}, namespace: istio-system, path: /inject}}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n{selectors}"
    )
}

pub const ISTIOD_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: istiod, namespace: istio-system}\nspec:\n  ports: [{name: https-webhook, port: 443}]\n---\n";

/// Istio's own injector layout: one hook for labelled namespaces, one for labelled pods in
/// unlabelled namespaces. They never both apply.
pub fn istio_injector(name: &str, service: &str) -> String {
    mwc(
        name,
        &(hook(
            "namespace.sidecar-injector.istio.io",
            service,
            "  namespaceSelector:\n    matchLabels: {istio-injection: enabled}\n  objectSelector:\n    matchExpressions: [{key: sidecar.istio.io/inject, operator: NotIn, values: [\"false\"]}]\n",
        ) + &hook(
            "object.sidecar-injector.istio.io",
            service,
            "  namespaceSelector:\n    matchExpressions: [{key: istio-injection, operator: DoesNotExist}, {key: istio.io/rev, operator: DoesNotExist}]\n  objectSelector:\n    matchLabels: {sidecar.istio.io/inject: \"true\"}\n",
        )),
    )
}

pub fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {labels}\n---\n")
}

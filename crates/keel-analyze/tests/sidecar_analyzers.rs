//! `sidecar.SelectorAnalyzer` and `deprecation.DeprecationAnalyzer`: Istio's test tables
//! (`analyzers_test.go`: sidecarDefaultSelector, sidecarSelector, deprecation) over its testdata
//! when `../shared/istio-samples` is present, and Keel's own fixtures that always run.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::path::{Path, PathBuf};

use keel_analyze::analyzers::run_only;
use keel_analyze::{AnalysisContext, MeshConfig, Message, default_resources};
use keel_config::{LoadOptions, Resource, load_str};

const SELECTOR: &str = "sidecar.SelectorAnalyzer";
const DEPRECATION: &str = "deprecation.DeprecationAnalyzer";

/// Resources from `(file name, text)` pairs plus istioctl's default ingress objects, read the
/// way Istio's test harness does (no default namespace).
fn load(files: &[(&str, &str)]) -> Vec<Resource> {
    let opts = LoadOptions {
        default_namespace: String::new(),
        ..LoadOptions::default()
    };
    let mut resources = Vec::new();
    for (name, text) in files {
        resources.extend(load_str(text, name, &opts).resources);
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

fn analyze(analyzer: &str, files: &[(&str, &str)]) -> Vec<Message> {
    let resources = load(files);
    let ctx = AnalysisContext::new(&resources, MeshConfig::default());
    run_only(&ctx, &[analyzer])
}

fn texts(msgs: &[Message]) -> Vec<String> {
    msgs.iter().map(|m| m.to_string()).collect()
}

// ------------------------------------------------------------------------------------------
// Istio's tables
// ------------------------------------------------------------------------------------------

fn testdata() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/istio-samples/pkg/config/analysis/analyzers/testdata");
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

/// Runs one table row and compares the multiset of (code, "Kind ns/name").
fn table_case(analyzer: &str, file: &str, expected: &[(&str, &str)]) {
    let Some(dir) = testdata() else { return };
    let path = dir.join(file);
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipping: {} not found", path.display());
        return;
    };
    let msgs = analyze(analyzer, &[(file, &text)]);
    for m in &msgs {
        eprintln!("{m}");
    }
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
    assert_eq!(got, want, "{file}:\n{}", texts(&msgs).join("\n"));
}

#[test]
fn istio_sidecar_default_selector() {
    table_case(
        SELECTOR,
        "sidecar-default-selector.yaml",
        &[
            ("IST0111", "Sidecar ns2/has-conflict-2"),
            ("IST0111", "Sidecar ns2/has-conflict-1"),
            ("IST0167", "Sidecar ns-ambient/namespace-scoped"),
            ("IST0167", "Sidecar ns-ambient/pod-scoped"),
        ],
    );
}

#[test]
fn istio_sidecar_selector() {
    table_case(
        SELECTOR,
        "sidecar-selector.yaml",
        &[
            ("IST0101", "Sidecar default/maps-to-nonexistent"),
            ("IST0101", "Sidecar other/maps-to-different-ns"),
            ("IST0110", "Sidecar default/dupe-1"),
            ("IST0110", "Sidecar default/dupe-2"),
            ("IST0110", "Sidecar default/overlap-1"),
            ("IST0110", "Sidecar default/overlap-2"),
        ],
    );
}

#[test]
fn istio_deprecation() {
    table_case(
        DEPRECATION,
        "deprecation.yaml",
        &[
            ("IST0002", "VirtualService foo/productpage"),
            ("IST0002", "Sidecar default/no-selector"),
        ],
    );
}

// ------------------------------------------------------------------------------------------
// Keel's fixtures
// ------------------------------------------------------------------------------------------

fn pod(name: &str, ns: &str, labels: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {labels}\n  annotations: {annotations}\nspec:\n  containers: [{{name: app, image: app}}]\n---\n"
    )
}

fn sidecar(name: &str, ns: &str, selector: Option<&str>) -> String {
    let sel = selector
        .map(|s| format!("  workloadSelector:\n    labels:\n      {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{sel}  egress:\n  - hosts: [\"./*\"]\n---\n"
    )
}

fn selector(text: &str) -> Vec<String> {
    texts(&analyze(SELECTOR, &[("sc.yaml", text)]))
}

#[test]
fn selector_not_found() {
    // Sidecar at line 1: name line 4, the selector label at line 9.
    let text =
        sidecar("web", "shop", Some("app: web")) + &pod("web-1", "other", "{app: web}", "{}");
    assert_eq!(
        selector(&text),
        ["Error [IST0101] (Sidecar shop/web sc.yaml:9) Referenced selector not found: \"app=web\""]
    );
    // The first key of the sorted selector gives the line, dotted keys included.
    let text = sidecar(
        "web",
        "shop",
        Some("zone: a\n      app.kubernetes.io/name: web"),
    );
    assert_eq!(
        selector(&text),
        [
            "Error [IST0101] (Sidecar shop/web sc.yaml:10) Referenced selector not found: \"app.kubernetes.io/name=web,zone=a\""
        ]
    );
    // A pod with all the labels (and more) in the same namespace matches.
    let text = sidecar("web", "shop", Some("app: web"))
        + &pod("web-1", "shop", "{app: web, version: v1}", "{}");
    assert!(selector(&text).is_empty());
}

#[test]
fn conflicting_selectors() {
    let text = sidecar("a", "shop", Some("app: web"))
        + &sidecar("b", "shop", Some("tier: front"))
        + &pod("web-1", "shop", "{app: web, tier: front}", "{}");
    assert_eq!(
        selector(&text),
        [
            "Error [IST0110] (Sidecar shop/a sc.yaml:4) The Sidecars [a b] in namespace \"shop\" select the same workload pod \"web-1\", which can lead to undefined behavior.",
            "Error [IST0110] (Sidecar shop/b sc.yaml:16) The Sidecars [a b] in namespace \"shop\" select the same workload pod \"web-1\", which can lead to undefined behavior.",
        ]
    );
    // Each Sidecar selecting its own pod is fine.
    let text = sidecar("a", "shop", Some("app: web"))
        + &sidecar("b", "shop", Some("app: api"))
        + &pod("web-1", "shop", "{app: web}", "{}")
        + &pod("api-1", "shop", "{app: api}", "{}");
    assert!(selector(&text).is_empty());
}

#[test]
fn several_sidecars_without_selector() {
    let text = sidecar("one", "shop", None)
        + &sidecar("two", "shop", None)
        + &sidecar("three", "other", None);
    assert_eq!(
        selector(&text),
        [
            "Error [IST0111] (Sidecar shop/one sc.yaml:1) The Sidecars [one two] in namespace \"shop\" have no workload selector, which can lead to undefined behavior.",
            "Error [IST0111] (Sidecar shop/two sc.yaml:10) The Sidecars [one two] in namespace \"shop\" have no workload selector, which can lead to undefined behavior.",
        ]
    );
    // An empty selector counts as none.
    let text = sidecar("one", "shop", None)
        + "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: two, namespace: shop}\nspec:\n  workloadSelector: {}\n  egress: [{hosts: [\"./*\"]}]\n";
    assert_eq!(selector(&text).len(), 2);
}

fn namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {labels}\n---\n")
}

#[test]
fn ambient_mode() {
    // A pod redirected to ztunnel: the Sidecar selecting it has nothing to configure.
    let text = sidecar("a", "mesh", Some("app: web"))
        + &pod(
            "web-1",
            "mesh",
            "{app: web}",
            "{ambient.istio.io/redirection: enabled}",
        );
    assert_eq!(
        selector(&text),
        [
            "Warning [IST0167] (Sidecar mesh/a sc.yaml:1) The policy has no impact: selected workload is in ambient mode, the policy has no impact."
        ]
    );
    // Even two Sidecars on an ambient pod are reported as ineffective, not as conflicting.
    let text = sidecar("a", "mesh", Some("app: web"))
        + &sidecar("b", "mesh", Some("app: web"))
        + &pod(
            "web-1",
            "mesh",
            "{app: web}",
            "{ambient.istio.io/redirection: enabled}",
        );
    let got = selector(&text);
    assert!(
        got.len() == 2 && got.iter().all(|m| m.contains("[IST0167]")),
        "{got:?}"
    );

    // A selector-less Sidecar in an ambient namespace.
    let text = namespace("mesh", "{istio.io/dataplane-mode: ambient}")
        + &sidecar("a", "mesh", None)
        + &sidecar("b", "mesh", None);
    assert_eq!(
        selector(&text),
        [
            "Warning [IST0167] (Sidecar mesh/a sc.yaml:7) The policy has no impact: namespace is in ambient mode, the policy has no impact.",
            "Warning [IST0167] (Sidecar mesh/b sc.yaml:16) The policy has no impact: namespace is in ambient mode, the policy has no impact.",
        ]
    );
    // Sidecar injection (label or revision) wins over the ambient label.
    for labels in [
        "{istio.io/dataplane-mode: ambient, istio-injection: enabled}",
        "{istio.io/dataplane-mode: ambient, istio.io/rev: canary}",
    ] {
        let text = namespace("mesh", labels) + &sidecar("a", "mesh", None);
        assert!(selector(&text).is_empty(), "{labels}");
    }
}

fn deprecation(text: &str) -> Vec<String> {
    texts(&analyze(DEPRECATION, &[("d.yaml", text)]))
}

#[test]
fn deprecated_fault_delay_percent() {
    let vs = |delay: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: shop}}\nspec:\n  hosts: [r]\n  http:\n  - fault:\n      delay: {delay}\n    route: [{{destination: {{host: r}}}}]\n"
        )
    };
    assert_eq!(
        deprecation(&vs("{fixedDelay: 1s, percent: 10}")),
        [
            "Warning [IST0002] (VirtualService shop/r d.yaml:1) Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage"
        ]
    );
    assert!(deprecation(&vs("{fixedDelay: 1s, percentage: {value: 10}}")).is_empty());
    assert!(deprecation(&vs("{fixedDelay: 1s, percent: 0}")).is_empty());
}

#[test]
fn deprecated_egress_proxy() {
    let sc = |policy: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s, namespace: shop}}\nspec:\n  outboundTrafficPolicy: {policy}\n"
        )
    };
    assert_eq!(
        deprecation(&sc(
            "{mode: ALLOW_ANY, egressProxy: {host: proxy.example.com, port: {number: 3128}}}"
        )),
        [
            "Warning [IST0002] (Sidecar shop/s d.yaml:1) Deprecated: OutboundTrafficPolicy.EgressProxy ignored"
        ]
    );
    assert!(deprecation(&sc("{mode: ALLOW_ANY}")).is_empty());
}

//! `webhook.Analyzer` and `externalcontrolplane.ExternalControlPlaneAnalyzer`, and Istio's
//! test tables (`analyzers_test.go`) for all four webhook and injection analyzers over its
//! testdata where it is present; Keel's own fixtures always run.
//!
//! Istio's testdata is read from `../shared/istio-samples/...` (or the directory named by
//! `KEEL_ANALYZER_TESTDATA`); rows whose files are missing are skipped with a note. Most of
//! these rows' files are only in Istio's repository, not in the local sample set.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod webhook_common;

use keel_analyze::MeshConfig;
use webhook_common::*;

// ------------------------------------------------------------------------------------------
// Istio's tables
// ------------------------------------------------------------------------------------------

#[test]
fn istio_webhook() {
    table_case(
        WEBHOOK,
        &["webhook.yaml"],
        &[],
        MeshConfig::default(),
        &[
            (
                "IST0139",
                "MutatingWebhookConfiguration istio-sidecar-injector-missing-overlap",
            ),
            (
                "IST0139",
                "MutatingWebhookConfiguration istio-sidecar-injector-missing-overlap",
            ),
            (
                "IST0139",
                "MutatingWebhookConfiguration istio-sidecar-injector-overlap",
            ),
        ],
    );
}

#[test]
fn istio_image_auto() {
    table_case(
        IMAGE_AUTO,
        &["image-auto.yaml"],
        &[],
        MeshConfig::default(),
        &[
            (
                "IST0146",
                "Deployment not-injected/non-injected-gateway-deployment",
            ),
            ("IST0147", "Pod default/injected-pod"),
        ],
    );
}

#[test]
fn istio_external_control_plane() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "externalcontrolplane-missing-urls.yaml",
            &[
                (
                    "IST0163",
                    "MutatingWebhookConfiguration istio-sidecar-injector-external-istiod",
                ),
                (
                    "IST0163",
                    "ValidatingWebhookConfiguration istio-validator-external-istiod",
                ),
            ],
        ),
        (
            "externalcontrolplane-missing-urls-custom-ns.yaml",
            &[
                (
                    "IST0163",
                    "MutatingWebhookConfiguration istio-sidecar-injector-custom-ns",
                ),
                (
                    "IST0163",
                    "ValidatingWebhookConfiguration istio-validator-custom-ns",
                ),
            ],
        ),
        (
            "externalcontrolplane-using-ip-addr.yaml",
            &[(
                "IST0164",
                "MutatingWebhookConfiguration istio-sidecar-injector-external-istiod",
            )],
        ),
        // Istio expects nothing because the host names resolve; Keel doesn't look them up.
        ("externalcontrolplane-valid-urls.yaml", &[]),
        ("externalcontrolplane-valid-urls-custom-ns.yaml", &[]),
    ];
    for (file, expected) in cases {
        table_case(EXTERNAL, &[file], &[], MeshConfig::default(), expected);
    }
}

#[test]
fn istio_proxy_image_mismatch() {
    let mismatched = "injection-with-mismatched-sidecar.yaml";
    let both = [
        ("IST0158", "Namespace enabled-namespace"),
        ("IST0158", "Namespace enabled-namespace-native"),
    ];
    let cm = "common/sidecar-injector-configmap.yaml";
    table_case(IMAGE, &[mismatched, cm], &[], MeshConfig::default(), &both);
    table_case(
        IMAGE,
        &["injection-image-distroless.yaml", cm],
        &[],
        mesh_distroless(),
        &[("IST0158", "Namespace enabled-namespace")],
    );
    table_case(
        IMAGE,
        &["injection-image-distroless-no-meshconfig.yaml", cm],
        &[],
        MeshConfig::default(),
        &[],
    );
    table_case(
        IMAGE,
        &[
            mismatched,
            "sidecar-injector-configmap-absolute-override.yaml",
        ],
        &[],
        MeshConfig::default(),
        &both,
    );
    let mut with_canary = both.to_vec();
    with_canary.push(("IST0158", "Namespace revision-namespace"));
    table_case(
        IMAGE,
        &[
            mismatched,
            "sidecar-injector-configmap-with-revision-canary.yaml",
        ],
        &[],
        MeshConfig::default(),
        &with_canary,
    );
}

/// Keel's own injector ConfigMap for the image Istio's local distroless file expects
/// (`registry.istio.io/release/proxyv2:1.3.1`).
const INJECTOR_CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\ndata:\n  values: '{\"global\": {\"hub\": \"registry.istio.io/release\", \"tag\": \"1.3.1\", \"proxy\": {\"image\": \"proxyv2\"}}}'\n";

#[test]
fn istio_distroless_overrides_with_keel_config_map() {
    // ProxyConfig (namespace and workload) and annotation overrides make the
    // `-distroless` images expected: nothing to report.
    table_case(
        IMAGE,
        &["injection-image-distroless-no-meshconfig.yaml"],
        &[("cm.yaml", INJECTOR_CM)],
        MeshConfig::default(),
        &[],
    );
}

// ------------------------------------------------------------------------------------------
// Keel's fixtures: webhook.Analyzer
// ------------------------------------------------------------------------------------------

#[test]
fn webhook_service_must_exist() {
    let text = istio_injector("istio-sidecar-injector", "istiod") + ISTIOD_SERVICE;
    assert!(run(WEBHOOK, &text).is_empty(), "{:?}", run(WEBHOOK, &text));

    let text = istio_injector("istio-sidecar-injector", "istiod-canary") + ISTIOD_SERVICE;
    let msg = "Error [IST0139] (MutatingWebhookConfiguration istio-sidecar-injector f.yaml:1) Injector refers to a control plane service that does not exist: istio-system/istiod-canary.";
    assert_eq!(run(WEBHOOK, &text), [msg]);
}

#[test]
fn webhook_overlaps() {
    // A second configuration injecting the same namespaces: both report the other.
    let second = mwc(
        "istio-sidecar-injector-canary",
        &hook(
            "sidecar-injector.istio.io",
            "istiod",
            "  namespaceSelector:\n    matchLabels: {istio-injection: enabled}\n",
        ),
    );
    let text = istio_injector("istio-sidecar-injector", "istiod") + &second + ISTIOD_SERVICE;
    assert_eq!(
        run(WEBHOOK, &text),
        [
            "Error [IST0139] (MutatingWebhookConfiguration istio-sidecar-injector-canary f.yaml:25) Webhook overlaps with others: [istio-sidecar-injector/namespace.sidecar-injector.istio.io]. This may cause injection to occur twice.",
            "Error [IST0139] (MutatingWebhookConfiguration istio-sidecar-injector f.yaml:1) Webhook overlaps with others: [istio-sidecar-injector-canary/sidecar-injector.istio.io]. This may cause injection to occur twice.",
        ]
    );

    // Revisioned injectors select disjoint `istio.io/rev` values: no overlap. The second
    // only counts as Istio's through the revision in its selector.
    let rev = |name: &str, rev: &str| {
        mwc(
            name,
            &hook(
                "rev.namespace.sidecar-injector.example.com",
                "istiod",
                &format!("  namespaceSelector:\n    matchLabels: {{istio.io/rev: {rev}}}\n"),
            ),
        )
    };
    let text = rev("injector-blue", "blue") + &rev("injector-green", "green") + ISTIOD_SERVICE;
    assert!(run(WEBHOOK, &text).is_empty(), "{:?}", run(WEBHOOK, &text));
    let text = rev("injector-blue", "blue") + &rev("injector-blue-2", "blue") + ISTIOD_SERVICE;
    assert_eq!(run(WEBHOOK, &text).len(), 2, "{:?}", run(WEBHOOK, &text));

    // Hooks that are not Istio's (no revision, name not ending in istio.io) are ignored.
    let other = |name: &str| mwc(name, &hook("inject.vault.example.com", "vault", ""));
    assert!(run(WEBHOOK, &(other("vault-a") + &other("vault-b"))).is_empty());
}

// ------------------------------------------------------------------------------------------
// Keel's fixtures: externalcontrolplane.ExternalControlPlaneAnalyzer
// ------------------------------------------------------------------------------------------

fn remote_hooks(kind: &str, name: &str, client_config: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: {name}\nwebhooks:\n- name: rev.validation.istio.io\n  clientConfig: {client_config}\n  sideEffects: None\n  admissionReviewVersions: [v1]\n---\n"
    )
}

#[test]
fn external_control_plane_blank_and_invalid() {
    let blank = remote_hooks(
        "ValidatingWebhookConfiguration",
        "istio-validator-remote",
        "{url: null}",
    );
    assert_eq!(
        run(EXTERNAL, &blank),
        [
            "Warning [IST0163] (ValidatingWebhookConfiguration istio-validator-remote f.yaml:1) The hostname () that was provided for the webhook (rev.validation.istio.io) to reach the ingress gateway on the external control plane cluster is blank. Traffic may not flow properly."
        ]
    );
    let invalid = remote_hooks(
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector-remote",
        "{url: 'https://istiod.example.com:port/inject'}",
    );
    assert_eq!(
        run(EXTERNAL, &invalid),
        [
            "Warning [IST0163] (MutatingWebhookConfiguration istio-sidecar-injector-remote f.yaml:1) The hostname (https://istiod.example.com:port/inject) that was provided for the webhook (rev.validation.istio.io) to reach the ingress gateway on the external control plane cluster was provided in an invalid format. Traffic may not flow properly."
        ]
    );
    // No host at all never resolves.
    let no_host = remote_hooks(
        "ValidatingWebhookConfiguration",
        "istiod-default-validator",
        "{url: 'istiod.example.com/validate'}",
    );
    let got = run(EXTERNAL, &no_host);
    assert!(
        got.len() == 1
            && got[0].contains("(istiod.example.com/validate)")
            && got[0]
                .ends_with("cannot be resolved via a DNS lookup. Traffic may not flow properly."),
        "{got:?}"
    );
    // A host name (not looked up offline) or an in-cluster service is fine.
    for cc in [
        "{url: 'https://istiod.example.com:15017/validate'}",
        "{service: {name: istiod, namespace: istio-system}}",
    ] {
        assert!(
            run(
                EXTERNAL,
                &remote_hooks(
                    "ValidatingWebhookConfiguration",
                    "istio-validator-remote",
                    cc
                )
            )
            .is_empty(),
            "{cc}"
        );
    }
    // Other configurations are not checked.
    assert!(
        run(
            EXTERNAL,
            &remote_hooks(
                "ValidatingWebhookConfiguration",
                "vault-validator",
                "{url: null}"
            )
        )
        .is_empty()
    );
    assert!(
        run(
            EXTERNAL,
            &remote_hooks(
                "MutatingWebhookConfiguration",
                "istio-validator-x",
                "{url: null}"
            )
        )
        .is_empty()
    );
}

#[test]
fn external_control_plane_ip_addresses() {
    let text = remote_hooks(
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector-remote",
        "{url: 'https://10.0.0.7:15017/inject/cluster/c1/net/n1'}",
    ) + &remote_hooks(
        "ValidatingWebhookConfiguration",
        "istio-validator-remote",
        "{url: 'https://[2001:db8::7]:15017/validate'}",
    );
    assert_eq!(
        run(EXTERNAL, &text),
        [
            "Info [IST0164] (MutatingWebhookConfiguration istio-sidecar-injector-remote f.yaml:1) The address (https://10.0.0.7:15017/inject/cluster/c1/net/n1) that was provided for the webhook (rev.validation.istio.io) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment.",
            "Info [IST0164] (ValidatingWebhookConfiguration istio-validator-remote f.yaml:11) The address (https://[2001:db8::7]:15017/validate) that was provided for the webhook (rev.validation.istio.io) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment.",
        ]
    );
    // A name that merely looks numeric is a host name.
    let text = remote_hooks(
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector-remote",
        "{url: 'https://10.0.0.7.nip.io/inject'}",
    );
    assert!(run(EXTERNAL, &text).is_empty());
}

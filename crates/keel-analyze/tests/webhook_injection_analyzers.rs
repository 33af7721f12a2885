//! Keel's own fixtures for `injection.ImageAutoAnalyzer` and `injection.ImageAnalyzer`: each
//! message with its full text and line, and the cases that must stay quiet. (Istio's tables
//! for them are in `webhook_analyzers.rs`.)
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod webhook_common;

use webhook_common::*;

// ------------------------------------------------------------------------------------------
// Keel's fixtures: injection.ImageAutoAnalyzer
// ------------------------------------------------------------------------------------------

fn deployment(name: &str, ns: &str, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels: {labels}\n  template:\n    metadata:\n      labels: {labels}\n    spec:\n      containers:\n      - name: istio-proxy\n        image: auto\n---\n"
    )
}

#[test]
fn image_auto_pods() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: gw, namespace: edge}\nspec:\n  containers:\n  - {name: istio-proxy, image: auto}\n---\n";
    assert_eq!(
        run(IMAGE_AUTO, pod),
        [
            "Error [IST0147] (Pod edge/gw f.yaml:1) Pod gw contains `image: auto` but does not match any Istio injection webhook selectors."
        ]
    );
    // A real image, or `auto` on another container, is fine.
    let ok = pod.replace("image: auto", "image: istio/proxyv2:1.24.0");
    assert!(run(IMAGE_AUTO, &ok).is_empty());
    let ok = pod.replace("name: istio-proxy", "name: app");
    assert!(run(IMAGE_AUTO, &ok).is_empty());
}

#[test]
fn image_auto_deployments() {
    let injector = istio_injector("istio-sidecar-injector", "istiod");
    // Injected namespace: selected.
    let text = injector.clone()
        + &namespace("edge", "{istio-injection: enabled}")
        + &deployment("gw", "edge", "{app: gw}");
    assert!(
        run(IMAGE_AUTO, &text).is_empty(),
        "{:?}",
        run(IMAGE_AUTO, &text)
    );
    // Plain namespace, but the pods ask for injection: selected by the object hook.
    let text = injector.clone()
        + &namespace("edge", "{}")
        + &deployment("gw", "edge", "{app: gw, sidecar.istio.io/inject: \"true\"}");
    assert!(
        run(IMAGE_AUTO, &text).is_empty(),
        "{:?}",
        run(IMAGE_AUTO, &text)
    );
    // Plain namespace and pods: no hook selects them. The Deployment starts at line 31.
    let text = injector.clone() + &namespace("edge", "{}") + &deployment("gw", "edge", "{app: gw}");
    assert_eq!(
        run(IMAGE_AUTO, &text),
        [
            "Warning [IST0146] (Deployment edge/gw f.yaml:31) Deployment gw contains `image: auto` but does not match any Istio injection webhook selectors."
        ]
    );
    // Without any injector webhook nothing can inject it.
    let text =
        namespace("edge", "{istio-injection: enabled}") + &deployment("gw", "edge", "{app: gw}");
    assert_eq!(run(IMAGE_AUTO, &text).len(), 1);
}

// ------------------------------------------------------------------------------------------
// Keel's fixtures: injection.ImageAnalyzer
// ------------------------------------------------------------------------------------------

fn injector_cm(name: &str, values: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: istio-system}}\ndata:\n  values: '{values}'\n---\n"
    )
}

fn proxy_pod(name: &str, ns: &str, image: &str, meta: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n{meta}spec:\n  containers:\n  - {{name: app, image: app}}\n  - {{name: istio-proxy, image: \"{image}\"}}\n---\n"
    )
}

const VALUES: &str =
    r#"{"global": {"hub": "docker.io/istio", "tag": "1.24.0", "proxy": {"image": "proxyv2"}}}"#;

#[test]
fn proxy_image_mismatch() {
    let base = injector_cm("istio-sidecar-injector", VALUES)
        + &namespace("shop", "{istio-injection: enabled}");
    let text = base.clone()
        + &proxy_pod("new", "shop", "docker.io/istio/proxyv2:1.24.0", "")
        + &proxy_pod("old", "shop", "docker.io/istio/proxyv2:1.23.2", "")
        + &proxy_pod("older", "shop", "docker.io/istio/proxyv2:1.22.0", "")
        + &proxy_pod(
            "pinned",
            "shop",
            "docker.io/istio/proxyv2:1.22.0",
            "  annotations: {sidecar.istio.io/proxyImage: docker.io/istio/proxyv2:1.22.0}\n",
        )
        + &proxy_pod("elsewhere", "other", "docker.io/istio/proxyv2:1.22.0", "");
    assert_eq!(
        run(IMAGE, &text),
        [
            "Warning [IST0158] (Namespace shop f.yaml:7) The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: [old older]). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods."
        ]
    );
    let up_to_date = base + &proxy_pod("new", "shop", "docker.io/istio/proxyv2:1.24.0", "");
    assert!(run(IMAGE, &up_to_date).is_empty());
}

#[test]
fn proxy_image_per_revision_and_absolute_image() {
    let canary = r#"{"global": {"proxy": {"image": "gcr.io/mesh/proxyv2:1.25.0"}}}"#;
    let text = injector_cm("istio-sidecar-injector", VALUES)
        + &injector_cm("istio-sidecar-injector-canary", canary)
        + &namespace("blue", "{istio.io/rev: canary}")
        + &proxy_pod("a", "blue", "gcr.io/mesh/proxyv2:1.25.0", "")
        + &proxy_pod("b", "blue", "docker.io/istio/proxyv2:1.24.0", "");
    let got = run(IMAGE, &text);
    assert!(
        got.len() == 1
            && got[0].contains("(Namespace blue f.yaml:13)")
            && got[0].contains("(pod names: [b])"),
        "{got:?}"
    );
    // A revision whose injector ConfigMap is not in the input is not checked.
    let text = injector_cm("istio-sidecar-injector", VALUES)
        + &namespace("blue", "{istio.io/rev: stable}")
        + &proxy_pod("b", "blue", "docker.io/istio/proxyv2:1.0.0", "");
    assert!(run(IMAGE, &text).is_empty());
    // Nor is anything when the values can't be read.
    let text = injector_cm("istio-sidecar-injector", "{not json")
        + &namespace("shop", "{istio-injection: enabled}")
        + &proxy_pod("b", "shop", "docker.io/istio/proxyv2:1.0.0", "");
    assert!(run(IMAGE, &text).is_empty());
}

#[test]
fn proxy_image_types() {
    let base = injector_cm("istio-sidecar-injector", VALUES)
        + &namespace("shop", "{istio-injection: enabled}");
    let distroless = proxy_pod(
        "p",
        "shop",
        "docker.io/istio/proxyv2:1.24.0-distroless",
        "  labels: {app: web}\n",
    );
    // Not expected by default...
    let got = run(IMAGE, &(base.clone() + &distroless));
    assert!(
        got.len() == 1 && got[0].contains("(pod names: [p])"),
        "{got:?}"
    );
    // ...but with the mesh default, a root, namespace or matching workload ProxyConfig, or
    // the pod's annotation.
    let msgs = analyze_with(
        IMAGE,
        mesh_distroless(),
        &[("f.yaml", &(base.clone() + &distroless))],
    );
    assert!(msgs.is_empty(), "{msgs:?}");
    let pc = |ns: &str, selector: &str| {
        format!(
            "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {{name: pc, namespace: {ns}}}\nspec:\n{selector}  image: {{imageType: distroless}}\n---\n"
        )
    };
    for extra in [
        pc("istio-system", ""),
        pc("shop", ""),
        pc("shop", "  selector: {matchLabels: {app: web}}\n"),
    ] {
        let text = base.clone() + &extra + &distroless;
        assert!(
            run(IMAGE, &text).is_empty(),
            "{extra}: {:?}",
            run(IMAGE, &text)
        );
    }
    // A workload ProxyConfig selecting other pods, or in another namespace, doesn't apply.
    for extra in [
        pc("shop", "  selector: {matchLabels: {app: api}}\n"),
        pc("other", "  selector: {matchLabels: {app: web}}\n"),
    ] {
        assert_eq!(
            run(IMAGE, &(base.clone() + &extra + &distroless)).len(),
            1,
            "{extra}"
        );
    }
    let annotated = proxy_pod(
        "p",
        "shop",
        "docker.io/istio/proxyv2:1.24.0-distroless",
        "  annotations:\n    proxy.istio.io/config: |\n      image:\n        imageType: distroless\n",
    );
    assert!(run(IMAGE, &(base.clone() + &annotated)).is_empty());
    // `default` means the plain image even where the mesh says otherwise.
    let plain = proxy_pod(
        "p",
        "shop",
        "docker.io/istio/proxyv2:1.24.0",
        "  annotations:\n    proxy.istio.io/config: '{image: {imageType: default}}'\n",
    );
    let msgs = analyze_with(IMAGE, mesh_distroless(), &[("f.yaml", &(base + &plain))]);
    assert!(msgs.is_empty(), "{msgs:?}");
}

#[test]
fn proxy_image_native_sidecars() {
    let text = injector_cm("istio-sidecar-injector", VALUES)
        + &namespace("shop", "{istio-injection: enabled}")
        + "apiVersion: v1\nkind: Pod\nmetadata: {name: native, namespace: shop}\nspec:\n  initContainers:\n  - {name: istio-proxy, image: docker.io/istio/proxyv2:1.23.0, restartPolicy: Always}\n  containers:\n  - {name: app, image: app}\n";
    let got = run(IMAGE, &text);
    assert!(
        got.len() == 1 && got[0].contains("(pod names: [native])"),
        "{got:?}"
    );
}

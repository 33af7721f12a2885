//! Helpers for selector-based analyzers (Istio's `analyzers/util` and k8s `labels`), written for
//! `sidecar.SelectorAnalyzer`; Telemetry's and AuthorizationPolicy's selector checks need the
//! same ones.

use keel_config::Resource;

pub(crate) use super::util::selector_string;

/// Istio's `util.ExtractLabelFromSelectorString`: the first label key of a selector string.
pub(crate) fn first_selector_label(selector: &str) -> &str {
    selector.split('=').next().unwrap_or_default()
}

pub(crate) use super::util::selector_matches;

/// Istio's field path for a workload selector label, in the form Keel's paths read: a key
/// with dots (`app.kubernetes.io/name`) is bracketed so it stays one segment.
pub(crate) fn workload_selector_label_path(key: &str) -> String {
    if key.contains(['.', '[', ']']) {
        format!("spec.workloadSelector.labels[{key}]")
    } else {
        format!("spec.workloadSelector.labels.{key}")
    }
}

/// Istio's `util.PodInAmbientMode`: the CNI has redirected the pod's traffic to ztunnel.
pub(crate) fn pod_in_ambient_mode(pod: &Resource) -> bool {
    pod.meta
        .annotations
        .get("ambient.istio.io/redirection")
        .is_some_and(|v| v == "enabled")
}

/// Istio's `util.NamespaceInAmbientMode`: labelled for ambient and not for sidecar injection.
pub(crate) fn namespace_in_ambient_mode(ns: Option<&Resource>) -> bool {
    let Some(ns) = ns else { return false };
    let labels = &ns.meta.labels;
    labels
        .get("istio.io/dataplane-mode")
        .is_some_and(|v| v == "ambient")
        && labels.get("istio-injection").is_none_or(|v| v != "enabled")
        && labels.get("istio.io/rev").is_none_or(String::is_empty)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let sel = map(&[("b", "2"), ("a", "1")]);
        assert_eq!(selector_string(&sel), "a=1,b=2");
        assert_eq!(first_selector_label("a=1,b=2"), "a");
        assert!(selector_matches(
            &sel,
            &map(&[("a", "1"), ("b", "2"), ("c", "3")])
        ));
        assert!(!selector_matches(&sel, &map(&[("a", "1")])));
        assert!(!selector_matches(&sel, &map(&[("a", "1"), ("b", "3")])));
        assert_eq!(
            workload_selector_label_path("app.kubernetes.io/name"),
            "spec.workloadSelector.labels[app.kubernetes.io/name]"
        );
        assert_eq!(
            workload_selector_label_path("app"),
            "spec.workloadSelector.labels.app"
        );
    }
}

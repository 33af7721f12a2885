//! Helpers every selector-based analyzer uses.

use std::collections::BTreeMap;

/// Kubernetes' `labels.SelectorFromSet(s).String()`: `k1=v1,k2=v2`, keys sorted.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `labels.SelectorFromSet(selector).Matches(labels)`: every pair of `selector` is in
/// `labels`; an empty selector matches everything.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

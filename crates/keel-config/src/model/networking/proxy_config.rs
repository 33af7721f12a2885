//! `ProxyConfig` (networking.istio.io v1beta1): per-workload proxy settings (worker
//! threads, environment, image flavour).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::common::WorkloadSelector;
use crate::validate::common::{check_max_len, validate_workload_selector_labels};
use crate::validate::{Validate, Validator};

/// `istio.networking.v1beta1.ProxyConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ProxyConfig {
    /// Workloads this applies to; absent means the namespace (or the mesh, in the root
    /// namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Worker threads; 0 means one per CPU, absent means the mesh default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// Extra environment variables for the proxy.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ProxyImage>,
}

/// `istio.networking.v1beta1.ProxyImage`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ProxyImage {
    /// Image flavour: `default`, `debug` or `distroless`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_type: String,
}

impl Validate for ProxyConfig {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| {
            if let Some(sel) = &self.selector {
                v.field("selector", |v| {
                    if sel.match_labels.is_empty() {
                        v.warn("workload selector specified without labels: the ProxyConfig applies to every workload in the namespace");
                    }
                    validate_workload_selector_labels(v, &sel.match_labels);
                    v.field("matchLabels", |v| {
                        for (k, val) in &sel.match_labels {
                            check_max_len(v, k, val, 63);
                        }
                    });
                });
            }
            if let Some(c) = self.concurrency
                && c < 0
            {
                v.error_at(
                    "concurrency",
                    format!("concurrency must be greater than or equal to 0 (got {c}; 0 means one worker per CPU)"),
                );
            }
            v.field("environmentVariables", |v| {
                for (k, val) in &self.environment_variables {
                    check_max_len(v, k, val, 2048);
                }
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::{LoadOptions, load_str, validate_resources};

    fn check(spec: &str) -> Vec<String> {
        let text = format!(
            "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}"
        );
        let loaded = load_str(&text, "pc.yaml", &LoadOptions::default());
        let mut out: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        out.extend(
            validate_resources(&loaded.resources, "istio-system")
                .iter()
                .map(|d| d.to_string()),
        );
        out
    }

    #[test]
    fn accepts_istio_shapes() {
        let ok = "  concurrency: 0\n  selector: {matchLabels: {foo: bar}}\n  image: {imageType: distroless}\n  environmentVariables: {foo: baz}\n";
        assert!(check(ok).is_empty(), "{:?}", check(ok));
        let w = check("  selector: {matchLabels: {}}\n");
        assert!(
            w.len() == 1 && w[0].contains("warning") && w[0].contains("without labels"),
            "{w:?}"
        );
    }

    #[test]
    fn rejects_what_istio_rejects() {
        let e = check("  concurrency: -1\n");
        assert!(
            e[0].contains("pc.yaml:5:16")
                && e[0].contains("concurrency must be greater than or equal to 0"),
            "{e:?}"
        );
        let e = check("  selector: {matchLabels: {\"\": bar}}\n");
        assert!(e[0].contains("key must not be empty"), "{e:?}");
        let e = check("  selector: {matchLabels: {app: \"a*\"}}\n");
        assert!(e[0].contains("wildcard not allowed"), "{e:?}");
        let e = check("  image: {type: debug}\n");
        assert!(e[0].contains("unknown field \"type\""), "{e:?}");
        let e = check(&format!(
            "  environmentVariables: {{A: {}}}\n",
            "x".repeat(2049)
        ));
        assert!(e[0].contains("Too long"), "{e:?}");
        let e = check("  concurrency: \"2\"\n");
        assert!(!e.is_empty(), "{e:?}");
    }
}

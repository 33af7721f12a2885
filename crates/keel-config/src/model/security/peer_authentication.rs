//! `PeerAuthentication` (security.istio.io v1, v1beta1): which mTLS mode a workload's
//! inbound side accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::istio_enum;
use crate::model::common::WorkloadSelector;
use crate::validate::common::validate_workload_selector_labels;
use crate::validate::{Validate, Validator};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PeerAuthentication {
    /// Workloads this policy applies to; absent means every workload in the namespace
    /// (or the mesh, in the root namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Per-port overrides, keyed by the workload's port number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_level_mtls: Option<BTreeMap<u32, MutualTls>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MutualTls {
    pub mode: MtlsMode,
}

istio_enum! {
    /// `PeerAuthentication.MutualTLS.Mode`.
    pub enum MtlsMode {
        /// Inherit from the parent policy; PERMISSIVE if there is none.
        Unset = "UNSET" = 0,
        /// Plaintext only.
        Disable = "DISABLE" = 1,
        /// Both plaintext and mTLS.
        Permissive = "PERMISSIVE" = 2,
        /// mTLS only; plaintext connections are refused.
        Strict = "STRICT" = 3,
    }
}

impl Validate for PeerAuthentication {
    fn validate(&self, v: &mut Validator) {
        v.field("spec", |v| {
            if let Some(sel) = &self.selector {
                v.field("selector", |v| validate_workload_selector_labels(v, &sel.match_labels));
            }
            let Some(ports) = &self.port_level_mtls else { return };
            v.field("portLevelMtls", |v| {
                if ports.is_empty() {
                    v.error("spec.portLevelMtls in body should have at least 1 properties: remove it or name a port");
                }
                if self.selector.as_ref().is_none_or(|s| s.match_labels.is_empty()) {
                    v.error("portLevelMtls requires selector: port numbers only mean something for specific workloads");
                }
                for port in ports.keys() {
                    if !(1..=65535).contains(port) {
                        v.error_at(&port.to_string(), format!("port must be between 1-65535 (got {port})"));
                    }
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
            "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: foo}}\nspec:\n{spec}"
        );
        let loaded = load_str(&text, "pa.yaml", &LoadOptions::default());
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
        assert!(check("  mtls: {mode: STRICT}\n").is_empty());
        assert!(check("  selector: {matchLabels: {app: a}}\n  mtls: {mode: 2}\n  portLevelMtls:\n    \"8080\": {mode: DISABLE}\n").is_empty());
        assert!(check("  selector: {}\n").is_empty());
    }

    #[test]
    fn rejects_what_istio_rejects() {
        let e = check("  mtls: {mode: STRCT}\n");
        assert!(
            e[0].contains("pa.yaml:5:16") && e[0].contains("did you mean \"STRICT\""),
            "{e:?}"
        );
        let e = check("  portLevelMtls:\n    \"80\": {mode: STRICT}\n");
        assert!(e[0].contains("portLevelMtls requires selector"), "{e:?}");
        let e = check(
            "  selector: {matchLabels: {a: b}}\n  portLevelMtls:\n    \"0\": {mode: STRICT}\n",
        );
        assert!(
            e[0].contains("spec.portLevelMtls.0: port must be between 1-65535"),
            "{e:?}"
        );
        let e = check(
            "  selector: {matchLabels: {a: b}}\n  portLevelMtls:\n    \"acd\": {mode: STRICT}\n",
        );
        assert!(e[0].contains("type conversion error"), "{e:?}");
        let e = check("  selector: {matchLabels: {a: b}}\n  portLevelMtls: {}\n");
        assert!(e[0].contains("at least 1 properties"), "{e:?}");
        let e = check("  selector: {matchLabels: {\"*\": b}}\n");
        assert!(
            e[0].contains("wildcard not allowed in label key match"),
            "{e:?}"
        );
    }
}

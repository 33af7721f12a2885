//! Namespace, ServiceAccount and ConfigMap (Secret is in `secret.rs`), and the object
//! reference type they share with endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::checks::{DNS1123_LABEL_MSG, config_key_errors};
use super::pod::LocalObjectReference;
use crate::validate::common::{is_dns1123_label, is_dns1123_subdomain};
use crate::validate::{Validate, Validator};

/// `corev1.Namespace`. What the mesh reads is in `metadata.labels` (`istio-injection`,
/// `istio.io/rev`, `istio.io/dataplane-mode`, `topology.istio.io/network`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Namespace {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<NamespaceSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NamespaceStatus>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NamespaceSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NamespaceStatus {
    /// `Active` or `Terminating`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<serde_json::Value>,
}

impl Namespace {
    /// Whether the namespace is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating")
    }
}

impl Validate for Namespace {
    fn validate(&self, v: &mut Validator) {
        // Namespace names become DNS labels (`<svc>.<ns>.svc.cluster.local`).
        let name = v.ctx.name.clone();
        // Names that are not even DNS subdomains are reported by the metadata rules.
        if is_dns1123_subdomain(&name) && !is_dns1123_label(&name) {
            v.field("metadata", |v| {
                v.error_at(
                    "name",
                    format!("Invalid value: \"{name}\": a namespace name must be a DNS label: {DNS1123_LABEL_MSG}"),
                )
            });
        }
    }
}

/// `corev1.ObjectReference`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field_path: String,
}

/// `corev1.ServiceAccount`: a workload identity. Istio issues certificates for
/// `spiffe://<trust domain>/ns/<namespace>/sa/<name>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceAccount {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<ObjectReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
}

impl Validate for ServiceAccount {
    fn validate(&self, _v: &mut Validator) {}
}

/// `corev1.ConfigMap` (e.g. Istio's mesh config `istio` / `istio-<rev>` in the root namespace).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMap {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Base64-encoded values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl ConfigMap {
    /// A `data` value (e.g. `mesh` of Istio's config map).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// A `binaryData` value, decoded; `None` if absent, an error if not valid base64.
    pub fn get_binary(&self, key: &str) -> Option<Result<Vec<u8>, String>> {
        self.binary_data
            .get(key)
            .map(|b| super::secret::base64_decode(b))
    }
}

/// Config keys at the current path (`data` or `binaryData`).
pub(crate) fn check_config_keys<'a>(
    v: &mut Validator,
    field: &str,
    keys: impl Iterator<Item = &'a String>,
) {
    v.field(field, |v| {
        for k in keys {
            let errs = config_key_errors(k);
            if !errs.is_empty() {
                v.error_at(k, format!("Invalid value: \"{k}\": {}", errs.join(", ")));
            }
        }
    });
}

impl Validate for ConfigMap {
    fn validate(&self, v: &mut Validator) {
        check_config_keys(v, "data", self.data.keys());
        check_config_keys(v, "binaryData", self.binary_data.keys());
        v.field("binaryData", |v| {
            for (k, b) in &self.binary_data {
                if self.data.contains_key(k) {
                    v.error_at(
                        k,
                        format!("Invalid value: \"{k}\": duplicate of key present in data"),
                    );
                }
                if let Err(e) = super::secret::base64_decode(b) {
                    v.error_at(k, e);
                }
            }
        });
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

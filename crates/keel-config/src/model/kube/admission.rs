//! `admissionregistration.k8s.io/v1` MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration: Istio's sidecar injector and config validation hooks.
//!
//! Both are cluster-scoped lists of webhooks. `istioctl analyze` reads them to find injector
//! webhooks that overlap or point at a missing Service (IST0139), workloads with
//! `image: auto` that no injector selects (IST0146/IST0147), and remote clusters whose hooks
//! reach an external control plane by IP address or not at all (IST0163/IST0164).
//!
//! Decoding is lenient like the other Kubernetes kinds: unknown fields are ignored and enum
//! values are kept as text. Validation follows the API server's rules
//! (`pkg/apis/admissionregistration/validation`); they are warnings, since Keel's mesh
//! doesn't call these hooks, except invalid label selectors, which are errors because they
//! change which objects a hook selects.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::checks::{DNS1123_SUBDOMAIN_MSG, is_dns1035_label, is_port_num, unsupported};
use super::selector::LabelSelector;
use crate::validate::common::{is_dns1123_subdomain, validate_label_key, validate_label_value};
use crate::validate::{Validate, Validator};

#[path = "admission_url.rs"]
pub mod url;

/// `admissionregistration.k8s.io/v1.MutatingWebhookConfiguration`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MutatingWebhookConfiguration {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
}

/// `admissionregistration.k8s.io/v1.ValidatingWebhookConfiguration`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ValidatingWebhookConfiguration {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
}

/// One webhook: `MutatingWebhook` or `ValidatingWebhook` (the same fields, except that only
/// mutating hooks have `reinvocationPolicy`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Webhook {
    /// Fully qualified, e.g. `namespace.sidecar-injector.istio.io`; Istio's hooks end in
    /// `istio.io`.
    pub name: String,
    pub client_config: WebhookClientConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleWithOperations>,
    /// `Fail` (the default) or `Ignore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<String>,
    /// `Equivalent` (the default) or `Exact`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_policy: Option<String>,
    /// Namespaces whose objects are sent to the hook; absent selects every namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Objects sent to the hook; absent selects every object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// `None` or `NoneOnDryRun` (required in v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side_effects: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// AdmissionReview versions the hook understands, in order of preference.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admission_review_versions: Vec<String>,
    /// Mutating hooks only: `Never` (the default) or `IfNeeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reinvocation_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_conditions: Vec<MatchCondition>,
}

/// How the API server reaches the hook: a `url`, or a `service` in the cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookClientConfig {
    /// `https://host[:port][/path]`; an external control plane's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceReference>,
    /// PEM bundle (base64) to verify the hook's serving certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// `admissionregistration.k8s.io/v1.ServiceReference`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceReference {
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Defaults to 443.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// Which operations on which resources are sent to the hook.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleWithOperations {
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `*`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A CEL expression that must hold for a request to be sent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MatchCondition {
    pub name: String,
    pub expression: String,
}

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const REINVOCATION_POLICIES: &[&str] = &["IfNeeded", "Never"];
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// Whether a webhook's selector picks an object with `labels`, as the API server decides: an
/// absent selector picks everything; one the server would reject (`LabelSelectorAsSelector`
/// fails) picks nothing.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(s) = selector else { return true };
    selector_is_valid(s) && s.matches(labels)
}

/// What `metav1.LabelSelectorAsSelector` accepts.
fn selector_is_valid(s: &LabelSelector) -> bool {
    use super::selector::SelectorOperator::*;
    let labels_ok = s
        .match_labels
        .iter()
        .all(|(k, v)| validate_label_key(k).is_ok() && validate_label_value(v).is_ok());
    let exprs_ok = s.match_expressions.iter().all(|r| {
        validate_label_key(&r.key).is_ok()
            && r.values.iter().all(|v| validate_label_value(v).is_ok())
            && match r.operator {
                Some(In | NotIn) => !r.values.is_empty(),
                Some(Exists | DoesNotExist) => r.values.is_empty(),
                None => false,
            }
    });
    labels_ok && exprs_ok
}

impl Webhook {
    /// Whether the hook receives an object with `object_labels` in a namespace with
    /// `namespace_labels`.
    pub fn selects(
        &self,
        namespace_labels: &BTreeMap<String, String>,
        object_labels: &BTreeMap<String, String>,
    ) -> bool {
        selector_matches(self.namespace_selector.as_ref(), namespace_labels)
            && selector_matches(self.object_selector.as_ref(), object_labels)
    }

    fn validate(&self, v: &mut Validator, mutating: bool) {
        if self.name.is_empty() {
            v.warn_at("name", "Required value");
        } else if !is_dns1123_subdomain(&self.name) {
            let msg = format!("Invalid value: \"{}\": {DNS1123_SUBDOMAIN_MSG}", self.name);
            v.warn_at("name", msg);
        } else if self.name.split('.').count() < 3 {
            let msg = format!(
                "Invalid value: \"{}\": should be a domain with at least three segments separated by dots",
                self.name
            );
            v.warn_at("name", msg);
        }
        v.each("rules", &self.rules, |v, r| r.validate(v));
        let enums = [
            ("failurePolicy", &self.failure_policy, FAILURE_POLICIES),
            ("matchPolicy", &self.match_policy, MATCH_POLICIES),
            ("sideEffects", &self.side_effects, SIDE_EFFECTS),
            (
                "reinvocationPolicy",
                &self.reinvocation_policy,
                REINVOCATION_POLICIES,
            ),
        ];
        for (field, value, names) in enums {
            if let Some(value) = value
                && !names.contains(&value.as_str())
            {
                v.warn_at(field, unsupported(value, names));
            }
        }
        if self.side_effects.is_none() {
            v.warn_at(
                "sideEffects",
                "Required value: must specify one of None, NoneOnDryRun",
            );
        }
        if !mutating && self.reinvocation_policy.is_some() {
            v.warn_at(
                "reinvocationPolicy",
                "unknown field: only mutating webhooks are reinvoked; the API server drops it",
            );
        }
        if let Some(t) = self.timeout_seconds
            && !(1..=30).contains(&t)
        {
            let msg =
                format!("Invalid value: {t}: the timeout value must be between 1 and 30 seconds");
            v.warn_at("timeoutSeconds", msg);
        }
        if let Some(s) = &self.namespace_selector {
            v.field("namespaceSelector", |v| s.validate(v));
        }
        if let Some(s) = &self.object_selector {
            v.field("objectSelector", |v| s.validate(v));
        }
        v.field("clientConfig", |v| self.client_config.validate(v));
        v.field("admissionReviewVersions", |v| {
            validate_review_versions(v, &self.admission_review_versions)
        });
    }
}

impl WebhookClientConfig {
    fn validate(&self, v: &mut Validator) {
        match (&self.url, &self.service) {
            (Some(_), Some(_)) | (None, None) => {
                v.warn("Required value: exactly one of url or service is required")
            }
            (Some(url), None) => v.field("url", |v| validate_url(v, url)),
            (None, Some(svc)) => v.field("service", |v| svc.validate(v)),
        }
    }
}

/// `webhook.ValidateWebhookURL` with `forceHttps`.
fn validate_url(v: &mut Validator, raw: &str) {
    const FORM: &str = "; desired format: https://host[/path]";
    let u = match url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            v.warn(format!(
                "Required value: url must be a valid URL: {e}{FORM}"
            ));
            return;
        }
    };
    if u.scheme != "https" {
        v.warn(format!(
            "Invalid value: \"{}\": 'https' is the only allowed URL scheme{FORM}",
            u.scheme
        ));
    }
    if u.host.is_empty() {
        v.warn(format!("Invalid value: \"\": host must be specified{FORM}"));
    }
    if u.user.is_some() {
        v.warn("user information is not permitted in the URL");
    }
    if !u.fragment.is_empty() {
        v.warn(format!(
            "Invalid value: \"{}\": fragments are not permitted in the URL",
            u.fragment
        ));
    }
    if !u.raw_query.is_empty() {
        v.warn(format!(
            "Invalid value: \"{}\": query parameters are not permitted in the URL",
            u.raw_query
        ));
    }
}

impl ServiceReference {
    /// `webhook.ValidateWebhookService`.
    fn validate(&self, v: &mut Validator) {
        if self.name.is_empty() {
            v.warn_at("name", "Required value: service name is required");
        }
        if self.namespace.is_empty() {
            v.warn_at("namespace", "Required value: service namespace is required");
        }
        let port = self.port.unwrap_or(443);
        if !is_port_num(port) {
            let msg = format!(
                "Invalid value: {port}: port is not valid: must be between 1 and 65535, inclusive"
            );
            v.warn_at("port", msg);
        }
        let Some(path) = self.path.as_deref() else {
            return;
        };
        if path.is_empty() || path == "/" {
            return;
        }
        v.field("path", |v| {
            if path == "//" {
                v.warn(format!(
                    "Invalid value: \"{path}\": segment[0] may not be empty"
                ));
                return;
            }
            let rest = match path.strip_prefix('/') {
                Some(r) => r,
                None => {
                    v.warn(format!("Invalid value: \"{path}\": must start with a '/'"));
                    &path[1..]
                }
            };
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            for (i, step) in rest.split('/').enumerate() {
                if step.is_empty() {
                    v.warn(format!(
                        "Invalid value: \"{path}\": segment[{i}] may not be empty"
                    ));
                } else if !is_dns1123_subdomain(step) {
                    v.warn(format!(
                        "Invalid value: \"{path}\": segment[{i}]: {DNS1123_SUBDOMAIN_MSG}"
                    ));
                }
            }
        });
    }
}

impl RuleWithOperations {
    fn validate(&self, v: &mut Validator) {
        for (field, list) in [
            ("operations", &self.operations),
            ("apiGroups", &self.api_groups),
            ("apiVersions", &self.api_versions),
            ("resources", &self.resources),
        ] {
            if list.is_empty() {
                v.warn_at(field, "Required value");
            }
        }
        v.field("operations", |v| {
            for (i, op) in self.operations.iter().enumerate() {
                if !OPERATIONS.contains(&op.as_str()) {
                    v.index(i, |v| v.warn(unsupported(op, OPERATIONS)));
                }
            }
        });
        if let Some(scope) = &self.scope
            && !SCOPES.contains(&scope.as_str())
        {
            v.warn_at("scope", unsupported(scope, SCOPES));
        }
    }
}

/// `validateAdmissionReviewVersions` (v1 requires a version the API server knows).
fn validate_review_versions(v: &mut Validator, versions: &[String]) {
    if versions.is_empty() {
        v.warn("Required value: must specify one of v1, v1beta1");
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, ver) in versions.iter().enumerate() {
        if !seen.insert(ver.as_str()) {
            v.index(i, |v| {
                v.warn(format!("Invalid value: \"{ver}\": duplicate version"))
            });
        } else if !is_dns1035_label(ver) {
            v.index(i, |v| {
                v.warn(format!("Invalid value: \"{ver}\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"))
            });
        }
    }
    if !versions
        .iter()
        .any(|x| REVIEW_VERSIONS.contains(&x.as_str()))
    {
        v.warn("Invalid value: must include at least one of v1, v1beta1");
    }
}

fn validate_webhooks(v: &mut Validator, hooks: &[Webhook], mutating: bool) {
    let mut names = BTreeSet::new();
    v.each("webhooks", hooks, |v, h| {
        h.validate(v, mutating);
        if !h.name.is_empty() && !names.insert(h.name.clone()) {
            v.warn_at("name", format!("Duplicate value: \"{}\"", h.name));
        }
    });
}

impl Validate for MutatingWebhookConfiguration {
    fn validate(&self, v: &mut Validator) {
        validate_webhooks(v, &self.webhooks, true);
    }
}

impl Validate for ValidatingWebhookConfiguration {
    fn validate(&self, v: &mut Validator) {
        validate_webhooks(v, &self.webhooks, false);
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;

//! `metav1.LabelSelector`: how workloads pick their pods (and the mesh picks workloads).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::Validator;
use crate::validate::common::{validate_label_key, validate_label_value, validate_labels};

/// A label query: every `matchLabels` pair and every `matchExpressions` requirement must
/// hold. An empty selector matches everything; an absent one (`None`) matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry: `key <operator> values`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: Option<SelectorOperator>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

kube_enum! {
    /// `metav1.LabelSelectorOperator`.
    pub enum SelectorOperator {
        /// The label is present and its value is one of `values`.
        In = "In",
        /// The label is absent, or its value is none of `values`.
        NotIn = "NotIn",
        /// The label is present (any value).
        Exists = "Exists",
        /// The label is absent.
        DoesNotExist = "DoesNotExist",
    }
}

impl LabelSelector {
    /// True if the selector has no terms (and so selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy the selector, with Kubernetes' semantics: every
    /// `matchLabels` pair present with that value, and every requirement true. A requirement
    /// with no (or an unknown) operator matches nothing, as the API server would not have
    /// admitted it.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// `ValidateLabelSelector` at the current path.
    pub(crate) fn validate(&self, v: &mut Validator) {
        validate_labels(v, "matchLabels", &self.match_labels);
        v.each("matchExpressions", &self.match_expressions, |v, r| {
            r.validate(v)
        });
    }
}

impl LabelSelectorRequirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Some(SelectorOperator::In) => value.is_some_and(|v| self.values.contains(v)),
            Some(SelectorOperator::NotIn) => value.is_none_or(|v| !self.values.contains(v)),
            Some(SelectorOperator::Exists) => value.is_some(),
            Some(SelectorOperator::DoesNotExist) => value.is_none(),
            None => false,
        }
    }

    fn validate(&self, v: &mut Validator) {
        if let Err(e) = validate_label_key(&self.key) {
            v.error_at("key", e);
        }
        match self.operator {
            None => v.error_at(
                "operator",
                "Required value: one of In, NotIn, Exists, DoesNotExist",
            ),
            Some(SelectorOperator::In | SelectorOperator::NotIn) => {
                if self.values.is_empty() {
                    v.error_at(
                        "values",
                        "Required value: must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            Some(SelectorOperator::Exists | SelectorOperator::DoesNotExist) => {
                if !self.values.is_empty() {
                    v.error_at(
                        "values",
                        "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
        }
        v.field("values", |v| {
            for (i, value) in self.values.iter().enumerate() {
                if let Err(e) = validate_label_value(value) {
                    v.index(i, |v| v.error(e));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: Some(op),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn matches_with_kubernetes_semantics() {
        let pod = labels(&[("app", "reviews"), ("version", "v2")]);
        assert!(LabelSelector::default().matches(&pod));
        assert!(LabelSelector::default().matches(&BTreeMap::new()));
        let by_app = LabelSelector {
            match_labels: labels(&[("app", "reviews")]),
            ..Default::default()
        };
        assert!(by_app.matches(&pod));
        assert!(!by_app.matches(&labels(&[("app", "ratings")])));
        assert!(!by_app.matches(&BTreeMap::new()));

        use SelectorOperator::*;
        let cases = [
            (req("version", In, &["v1", "v2"]), true),
            (req("version", In, &["v1"]), false),
            (req("track", In, &["stable"]), false),
            (req("version", NotIn, &["v1"]), true),
            (req("version", NotIn, &["v2"]), false),
            (req("track", NotIn, &["stable"]), true),
            (req("version", Exists, &[]), true),
            (req("track", Exists, &[]), false),
            (req("track", DoesNotExist, &[]), true),
            (req("app", DoesNotExist, &[]), false),
        ];
        for (r, want) in cases {
            assert_eq!(r.matches(&pod), want, "{r:?}");
            let sel = LabelSelector {
                match_labels: labels(&[("app", "reviews")]),
                match_expressions: vec![r],
            };
            assert_eq!(sel.matches(&pod), want);
        }
        let no_op = LabelSelectorRequirement {
            key: "app".into(),
            ..Default::default()
        };
        assert!(!no_op.matches(&pod));
    }

    fn issues(sel: &LabelSelector) -> Vec<String> {
        let mut v = Validator::default();
        sel.validate(&mut v);
        v.issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect()
    }

    #[test]
    fn validates_requirements() {
        use SelectorOperator::*;
        let ok = LabelSelector {
            match_labels: labels(&[("app", "a")]),
            match_expressions: vec![req("v", In, &["1"]), req("w", DoesNotExist, &[])],
        };
        assert!(issues(&ok).is_empty());
        let bad = LabelSelector {
            match_labels: labels(&[("app", "a b")]),
            match_expressions: vec![
                req("v", In, &[]),
                req("w", Exists, &["x"]),
                req("-k", NotIn, &["bad value"]),
                LabelSelectorRequirement {
                    key: "k".into(),
                    ..Default::default()
                },
            ],
        };
        let e = issues(&bad);
        assert!(
            e[0].contains("matchLabels.app: invalid label value"),
            "{e:?}"
        );
        assert!(
            e[1].contains("matchExpressions[0].values: Required value"),
            "{e:?}"
        );
        assert!(
            e[2].contains("matchExpressions[1].values: Forbidden"),
            "{e:?}"
        );
        assert!(
            e[3].contains("matchExpressions[2].key: invalid label key"),
            "{e:?}"
        );
        assert!(
            e[4].contains("matchExpressions[2].values[0]: invalid label value"),
            "{e:?}"
        );
        assert!(
            e[5].contains("matchExpressions[3].operator: Required value"),
            "{e:?}"
        );
    }
}

//! TODO(scaffold): replaced by the full model.
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {}

impl Validate for Pod {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Deployment {}

impl Validate for Deployment {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatefulSet {}

impl Validate for StatefulSet {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaSet {}

impl Validate for ReplicaSet {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DaemonSet {}

impl Validate for DaemonSet {
    fn validate(&self, _v: &mut Validator) {}
}

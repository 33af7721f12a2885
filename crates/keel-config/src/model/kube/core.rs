//! TODO(scaffold): replaced by the full model.
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Namespace {}

impl Validate for Namespace {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceAccount {}

impl Validate for ServiceAccount {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Secret {}

impl Validate for Secret {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMap {}

impl Validate for ConfigMap {
    fn validate(&self, _v: &mut Validator) {}
}

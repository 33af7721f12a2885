//! TODO(scaffold): replaced by the full model.
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Service {}

impl Validate for Service {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Endpoints {}

impl Validate for Endpoints {
    fn validate(&self, _v: &mut Validator) {}
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlice {}

impl Validate for EndpointSlice {
    fn validate(&self, _v: &mut Validator) {}
}

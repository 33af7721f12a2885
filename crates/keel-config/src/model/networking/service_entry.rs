//! TODO(scaffold): replaced by the full model.
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceEntry {}

impl Validate for ServiceEntry {
    fn validate(&self, _v: &mut Validator) {}
}

//! TODO(scaffold): replaced by the full model.
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WasmPlugin {}

impl Validate for WasmPlugin {
    fn validate(&self, _v: &mut Validator) {}
}

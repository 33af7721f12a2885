//! Rules for `metadata` that the Kubernetes API server applies to every object.

use super::Validator;
use super::common::{is_dns1123_subdomain, validate_label_key, validate_label_value};
use crate::resource::Resource;

pub fn validate_meta(r: &Resource, v: &mut Validator) {
    if r.kind().spec_required() && r.origin.node.get("spec").is_none_or(|s| s.is_null()) {
        let name = r.kind().name();
        let article = if name.starts_with(['A', 'E', 'I', 'O', 'U']) || name.starts_with("HTTP") {
            "an"
        } else {
            "a"
        };
        v.error_at(
            "spec",
            format!("Required value: {article} {name} needs a spec"),
        );
    }
    v.field("metadata", |v| {
        let name = &r.meta.name;
        if name.is_empty() {
            if r.meta.generate_name.is_empty() {
                v.error_at("name", "name is required");
            }
        } else if !is_dns1123_subdomain(name) {
            v.error_at(
                "name",
                format!(
                    "invalid name \"{name}\": must be lower-case alphanumerics, '-' or '.', start and end with an alphanumeric, at most 253 characters"
                ),
            );
        }
        if !r.meta.namespace.is_empty() && !super::common::is_dns1123_label(&r.meta.namespace) {
            v.error_at(
                "namespace",
                format!("invalid namespace \"{}\": must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63 characters)", r.meta.namespace),
            );
        }
        v.field("labels", |v| {
            for (k, val) in &r.meta.labels {
                if let Err(e) = validate_label_key(k).and_then(|_| validate_label_value(val)) {
                    v.error_at(k, e);
                }
            }
        });
        v.field("annotations", |v| {
            for k in r.meta.annotations.keys() {
                if let Err(e) = validate_label_key(k) {
                    v.error_at(k, e.replace("label key", "annotation key"));
                }
            }
        });
    });
}

//! Istio's `exportTo`: which namespaces see a VirtualService, DestinationRule, ServiceEntry
//! or Kubernetes Service (annotation `networking.istio.io/exportTo`). A resource not exported
//! to a sidecar's namespace does not exist for that sidecar.
//!
//! Entries: `*` every namespace, `.` the resource's own, `~` none (Services only; validation
//! refuses it elsewhere), or namespace names. No entries means the mesh default, which Keel
//! takes as Istio's default of `*` (`meshConfig.defaultVirtualServiceExportTo` and friends
//! are not modelled).

use keel_config::{Resource, Spec};

/// The Kubernetes Service annotation that stands in for `exportTo`.
pub const SERVICE_EXPORT_TO: &str = "networking.istio.io/exportTo";

/// Whether a resource in `owner` with `export_to` is visible from namespace `client`.
pub fn exported_to(export_to: &[String], owner: &str, client: &str) -> bool {
    export_to.is_empty()
        || export_to.iter().any(|e| match e.trim() {
            "*" => true,
            "." => owner == client,
            "~" => false,
            ns => ns == client,
        })
}

/// The `exportTo` of a registry resource (ServiceEntry field, Service annotation);
/// empty for everything else.
pub fn export_to_of(r: &Resource) -> Vec<String> {
    match &r.spec {
        Spec::ServiceEntry(se) => se.export_to.clone(),
        Spec::Service(_) => r
            .meta
            .annotations
            .get(SERVICE_EXPORT_TO)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Whether a registry resource (Service, ServiceEntry) is visible from `client`; `None`
/// (no client namespace: a gateway) sees everything.
pub fn service_visible(r: &Resource, client: Option<&str>) -> bool {
    client.is_none_or(|c| exported_to(&export_to_of(r), r.namespace(), c))
}

/// Istio's order of the VirtualServices a sidecar in `client` considers (the first naming
/// a host wins): those private to its namespace (`.` or its own name), then those exported
/// to it by name, then public ones (`*` or no `exportTo`). `None` when not visible.
pub fn virtual_service_rank(export_to: &[String], owner: &str, client: &str) -> Option<u8> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return Some(2);
    }
    if owner == client && export_to.iter().any(|e| e == "." || e == owner) {
        return Some(0);
    }
    export_to.iter().any(|e| e == client).then_some(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn export_to_entries() {
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&v(&["*"]), "a", "b"));
        assert!(exported_to(&v(&["."]), "a", "a"));
        assert!(!exported_to(&v(&["."]), "a", "b"));
        assert!(exported_to(&v(&[".", "b"]), "a", "b"));
        assert!(!exported_to(&v(&["~"]), "a", "a"));
        assert!(!exported_to(&v(&["c"]), "a", "b"));
    }

    #[test]
    fn virtual_service_order() {
        assert_eq!(virtual_service_rank(&v(&["."]), "a", "a"), Some(0));
        assert_eq!(virtual_service_rank(&v(&["a"]), "a", "a"), Some(0));
        assert_eq!(virtual_service_rank(&v(&["b"]), "a", "b"), Some(1));
        assert_eq!(virtual_service_rank(&[], "a", "a"), Some(2));
        assert_eq!(virtual_service_rank(&v(&["*"]), "a", "b"), Some(2));
        assert_eq!(virtual_service_rank(&v(&["."]), "a", "b"), None);
    }
}

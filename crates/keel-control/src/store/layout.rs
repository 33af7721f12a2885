//! Where a resource lives in a [`DirStore`](super::DirStore):
//! `<root>/<namespace>/<resource>/<name>.yaml`, with kubectl's resource names
//! (`virtualservices.networking.istio.io`, `deployments.apps`, `services`) and `_cluster` in
//! place of the namespace for cluster-scoped kinds (`_cluster/namespaces/prod.yaml`).
//!
//! Namespaces are DNS labels, so `_cluster` can't clash with one; the group in the directory
//! name tells Istio's Gateway from the Gateway API's.

use std::path::PathBuf;

use keel_config::Kind;

use super::ResourceKey;

/// The directory that holds cluster-scoped resources in place of a namespace.
pub const CLUSTER_DIR: &str = "_cluster";

/// kubectl's plural resource name, qualified with the group unless it is core:
/// `virtualservices.networking.istio.io`, `services`.
pub fn resource_dir_name(kind: Kind) -> String {
    let info = kind.info();
    // The longest alias is the plural (`virtualservices`, `endpoints`, `telemetries`).
    let plural = info
        .aliases
        .iter()
        .max_by_key(|a| a.len())
        .map_or_else(|| info.name.to_ascii_lowercase(), |a| a.to_string());
    if info.group.is_empty() {
        plural
    } else {
        format!("{plural}.{}", info.group)
    }
}

/// The file a resource is written to, relative to the store's root; `None` when its name or
/// namespace can't be a file name (validation rejects those first).
pub fn canonical_path(key: &ResourceKey) -> Option<PathBuf> {
    let ns = if key.kind.info().namespaced {
        key.namespace.as_str()
    } else {
        CLUSTER_DIR
    };
    if !is_safe_component(&key.name) || !(ns == CLUSTER_DIR || is_safe_component(ns)) {
        return None;
    }
    Some(
        PathBuf::from(ns)
            .join(resource_dir_name(key.kind))
            .join(format!("{}.yaml", key.name)),
    )
}

/// A single path component that is not hidden, `..`, or anything a shell would trip over.
fn is_safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let key = ResourceKey::new(Kind::VirtualService, "default", "reviews");
        assert_eq!(
            canonical_path(&key),
            Some(PathBuf::from(
                "default/virtualservices.networking.istio.io/reviews.yaml"
            ))
        );
        let key = ResourceKey::new(Kind::Namespace, "ignored", "prod");
        assert_eq!(
            canonical_path(&key),
            Some(PathBuf::from("_cluster/namespaces/prod.yaml"))
        );
        assert_eq!(resource_dir_name(Kind::Deployment), "deployments.apps");
        assert_eq!(resource_dir_name(Kind::Endpoints), "endpoints");
        assert_eq!(
            resource_dir_name(Kind::KubernetesGateway),
            "gateways.gateway.networking.k8s.io"
        );
        assert_eq!(
            resource_dir_name(Kind::AuthorizationPolicy),
            "authorizationpolicies.security.istio.io"
        );
        for bad in ["", "..", ".hidden", "a/b", "A"] {
            let key = ResourceKey::new(Kind::Service, "default", bad);
            assert_eq!(canonical_path(&key), None, "{bad}");
        }
        // Every kind gets its own directory.
        let mut seen = std::collections::BTreeSet::new();
        for info in keel_config::kinds::KINDS {
            assert!(seen.insert(resource_dir_name(info.kind)), "{}", info.name);
        }
    }
}

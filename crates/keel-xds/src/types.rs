//! Keel's resource types and their type URLs.
//!
//! Type URLs name Keel's own types under `type.keel.dev/`, so they can never be mistaken for
//! Envoy's (`type.googleapis.com/envoy.config.listener.v3.Listener`): an Envoy connecting by
//! mistake subscribes to types Keel doesn't serve and gets nothing it could misread.

use std::fmt;

/// `keel_snapshot::Listener` resources, keyed by listener name.
pub const LISTENER_TYPE_URL: &str = "type.keel.dev/keel.Listener";
/// `keel_snapshot::Cluster` resources (endpoints inside), keyed by cluster name.
pub const CLUSTER_TYPE_URL: &str = "type.keel.dev/keel.Cluster";

/// The resource types the control plane serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Listener,
}

impl ResourceType {
    /// Every type, in the order a push sends them: clusters before the listeners whose routes
    /// name them (Envoy's CDS-before-LDS), so a new route never points at a cluster the proxy
    /// doesn't have yet.
    pub const ALL: [ResourceType; 2] = [ResourceType::Cluster, ResourceType::Listener];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => CLUSTER_TYPE_URL,
            ResourceType::Listener => LISTENER_TYPE_URL,
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// `listeners`, `clusters`: how status output and `keel proxy-status` name the type.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceType::Cluster => "clusters",
            ResourceType::Listener => "listeners",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_round_trip() {
        for t in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
        }
        assert_eq!(
            ResourceType::from_type_url("type.googleapis.com/envoy.config.listener.v3.Listener"),
            None
        );
    }
}

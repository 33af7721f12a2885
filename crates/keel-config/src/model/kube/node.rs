//! `corev1.Node` (cluster-scoped): what the mesh reads of a node is its topology labels
//! (`topology.kubernetes.io/region`, `…/zone`, `topology.istio.io/subzone`), which the pods
//! scheduled on it (`spec.nodeName`) inherit for locality load balancing and subsets, and its
//! addresses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::{Validate, Validator};

/// The node's region.
pub const TOPOLOGY_REGION: &str = "topology.kubernetes.io/region";
/// The node's zone.
pub const TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// Istio's subzone, below the zone.
pub const TOPOLOGY_SUBZONE: &str = "topology.istio.io/subzone";
/// The node's hostname (Istio sets it to the node name on its endpoints).
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// The node labels a pod inherits, in locality order.
pub const TOPOLOGY_LABELS: [&str; 3] = [TOPOLOGY_REGION, TOPOLOGY_ZONE, TOPOLOGY_SUBZONE];

/// `corev1.Node`. Its labels are in the object's metadata.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<NodeSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

/// `corev1.NodeSpec`: the parts about networking.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSpec {
    #[serde(rename = "podCIDR", skip_serializing_if = "String::is_empty")]
    pub pod_cidr: String,
    #[serde(rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
    #[serde(rename = "providerID", skip_serializing_if = "String::is_empty")]
    pub provider_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<bool>,
}

/// `corev1.NodeStatus`: its addresses (capacity, conditions and the rest are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeStatus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

/// `corev1.NodeAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, `InternalDNS` or `ExternalDNS`.
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}

impl Node {
    /// The first address of a type (`InternalIP`, …).
    pub fn address(&self, type_: &str) -> Option<&str> {
        self.status
            .as_ref()?
            .addresses
            .iter()
            .find(|a| a.type_ == type_)
            .map(|a| a.address.as_str())
    }
}

/// The labels a pod on the node named `node_name` carries for the mesh: its own, plus the
/// node's non-empty topology labels and `kubernetes.io/hostname` = the node name (as Istio
/// adds them to the pod's endpoints). `node_labels` is `None` when the node is unknown, and
/// then the pod's labels are returned as they are.
pub fn pod_labels_on_node(
    pod_labels: &BTreeMap<String, String>,
    node_name: &str,
    node_labels: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out = pod_labels.clone();
    let Some(node) = node_labels.filter(|_| !node_name.is_empty()) else {
        return out;
    };
    for key in TOPOLOGY_LABELS {
        if let Some(v) = node.get(key).filter(|v| !v.is_empty()) {
            out.insert(key.to_string(), v.clone());
        }
    }
    out.insert(HOSTNAME.to_string(), node_name.to_string());
    out
}

impl Validate for Node {
    fn validate(&self, _v: &mut Validator) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Spec;
    use crate::model::kube::checks::check_yaml;

    const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels:\n    topology.kubernetes.io/region: us-west-1\n    topology.kubernetes.io/zone: us-west-1a\n    topology.istio.io/subzone: ''\nspec: {podCIDR: 10.244.1.0/24, providerID: 'aws:///us-west-1a/i-0abc'}\nstatus:\n  capacity: {cpu: 4, memory: 16Gi}\n  addresses:\n  - {type: InternalIP, address: 10.0.1.7}\n  - {type: Hostname, address: worker-1}\n";

    #[test]
    fn nodes_are_cluster_scoped_and_lend_topology_labels() {
        assert!(check_yaml(NODE).is_empty(), "{:?}", check_yaml(NODE));
        let loaded = crate::load_str(NODE, "k.yaml", &crate::LoadOptions::default());
        let r = &loaded.resources[0];
        assert_eq!(r.namespace(), "");
        assert_eq!(r.reference().to_string(), "Node worker-1");
        let Spec::Node(node) = &r.spec else {
            panic!("not a node")
        };
        assert_eq!(node.address("InternalIP"), Some("10.0.1.7"));
        assert_eq!(node.address("ExternalIP"), None);
        assert_eq!(
            node.spec.as_ref().map(|s| s.pod_cidr.as_str()),
            Some("10.244.1.0/24")
        );

        let pod: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let got = pod_labels_on_node(&pod, "worker-1", Some(&r.meta.labels));
        let want: BTreeMap<String, String> = [
            ("app", "web"),
            (HOSTNAME, "worker-1"),
            (TOPOLOGY_REGION, "us-west-1"),
            (TOPOLOGY_ZONE, "us-west-1a"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // The empty subzone is not inherited.
        assert_eq!(got, want);
        assert_eq!(pod_labels_on_node(&pod, "worker-9", None), pod);
        assert_eq!(pod_labels_on_node(&pod, "", Some(&r.meta.labels)), pod);
    }
}

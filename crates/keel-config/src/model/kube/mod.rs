//! The Kubernetes objects the mesh reads, with the fields it needs. Fields Keel doesn't
//! model are ignored (not errors): these objects carry far more than a mesh cares about.
//!
//! Each struct decodes the whole object; `apiVersion`, `kind` and `metadata` are read by the
//! loader (into [`crate::meta::ObjectMeta`]) and skipped here. Validation keeps to the few
//! rules the API server enforces that change what the mesh would do with the object; what the
//! server rejects but the mesh doesn't care about is at most a warning.

#[macro_use]
pub(crate) mod checks;
pub mod admission;
pub mod core;
pub mod endpoints;
pub mod node;
pub mod pod;
pub mod protocol;
pub mod secret;
pub mod selector;
pub mod service;
pub mod workloads;

pub use admission::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration, Webhook};
pub use core::{ConfigMap, Namespace, ServiceAccount};
pub use endpoints::{EndpointSlice, Endpoints};
pub use node::Node;
pub use pod::{Container, ContainerPort, PodSpec, PodTemplateMeta, PodTemplateSpec};
pub use protocol::{MeshProtocol, Protocol, convert_protocol};
pub use secret::Secret;
pub use selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
pub use service::{Service, ServicePort, ServiceType};
pub use workloads::{DaemonSet, Deployment, Pod, ReplicaSet, StatefulSet, Workload};

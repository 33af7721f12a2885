//! The Kubernetes objects the mesh reads, with the fields it needs. Fields Keel doesn't
//! model are ignored (not errors): these objects carry far more than a mesh cares about.

pub mod core;
pub mod service;
pub mod workloads;

pub use core::{ConfigMap, Namespace, Secret, ServiceAccount};
pub use service::{EndpointSlice, Endpoints, Service};
pub use workloads::{DaemonSet, Deployment, Pod, ReplicaSet, StatefulSet};

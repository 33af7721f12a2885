//! Keel's control plane.
//!
//! - [`store`]: the config store — every Istio and Kubernetes resource the mesh knows, kept in
//!   a watched directory of YAML ([`store::DirStore`]) behind the [`store::ConfigStore`] trait,
//!   validated before every write and written atomically. Subscribers get versioned snapshots.
//! - [`api`]: the HTTP API that `keel apply`, `keel delete` and `keel get` talk to, and its client.
//!
//! Next (issue 5): the service registry built from the store's Kubernetes objects and
//! ServiceEntries, per-proxy views, and the delta-xDS push that subscribes to the store.

pub mod api;
pub mod emit;
pub mod store;
pub mod time;

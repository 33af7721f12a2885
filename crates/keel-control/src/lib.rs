//! Keel's control plane.
//!
//! - [`store`]: the config store — every Istio and Kubernetes resource the mesh knows, kept in
//!   a watched directory of YAML ([`store::DirStore`]) behind the [`store::ConfigStore`] trait,
//!   validated before every write and written atomically. Subscribers get versioned snapshots.
//! - [`api`]: the HTTP API that `keel apply`, `keel delete`, `keel get` and
//!   `keel proxy-status` talk to, and its client.
//! - [`xds`]: the push — delta xDS to every connected proxy, each with its own view compiled
//!   from the store, debounced, only changes sent, ACK/NACK tracked per proxy and type.
//!
//! Next (issue 5): the service registry built from the store's Kubernetes objects and
//! ServiceEntries (today the snapshot compilers read them straight from the store).

pub mod api;
pub mod ca;
pub mod emit;
pub mod store;
pub mod time;
pub mod xds;

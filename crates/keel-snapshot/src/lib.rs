//! The configuration a `keel-proxy` runs: a [`Snapshot`] of listeners, HTTP route tables,
//! TCP/TLS routes and clusters with their endpoints, in Keel's own small model.
//!
//! The control plane (and `keel-proxy standalone`) compiles Istio resources into a snapshot
//! with [`compile`]; the proxy swaps snapshots atomically. Everything here is plain data:
//! serialisable (for `/config_dump` and the push protocol), comparable, and free of runtime
//! state such as compiled regexes or load-balancer counters, which the proxy derives.

pub mod authz;
pub mod cluster;
pub mod compile;
pub mod identity;
pub mod jwt;
pub mod listener;
pub mod route;
pub mod tls;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use cluster::{
    Cluster, Endpoint, EndpointAddress, HashKey, LbPolicy, LocalityLb, UpstreamProtocol,
};
pub use listener::{Listener, ListenerKind, ListenerProtocol, MtlsMode, PeerAuthn};
pub use route::{
    ClaimMatcher, HeaderMatcher, HeaderOps, HttpRoute, L4Match, Redirect, RequestMatch, Rewrite,
    RouteAction, RoutePolicy, RouteTable, StringMatcher, TcpRoute, TlsRoute, VirtualHost,
    WeightedCluster,
};

/// Everything one proxy needs, as of one configuration version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Identifies the configuration this was compiled from (shown by `/config_dump`).
    pub version: String,
    pub listeners: Vec<Listener>,
    /// Upstream clusters by name (`outbound|9080|v1|reviews.default.svc.cluster.local`).
    pub clusters: BTreeMap<String, Cluster>,
}

impl Snapshot {
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// Istio's cluster name: `outbound|<port>|<subset>|<host>`.
pub fn cluster_name(direction: &str, port: u16, subset: &str, host: &str) -> String {
    format!("{direction}|{port}|{subset}|{host}")
}

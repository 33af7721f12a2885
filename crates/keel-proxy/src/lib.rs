//! `keel-proxy`: Keel's data plane. One binary runs as a sidecar (outbound and inbound
//! capture) or as a gateway, applying Istio's routing with a snapshot swapped atomically.
//!
//! The request path reads top to bottom: listener → detect protocol → route → balance →
//! upstream, with telemetry recorded at the end of every request.

pub mod balance;
pub mod telemetry;

//! `keel-proxy`: Keel's data plane. One binary runs as a sidecar (outbound and inbound
//! capture) or as a gateway, applying Istio's routing with a snapshot swapped atomically.
//!
//! The request path reads top to bottom: [`server`] (listener, connection) → [`l4`]
//! (protocol detection; TCP and TLS passthrough end here) → [`http::server`] (HTTP/1.1,
//! HTTP/2) → [`route`] (virtual host, first matching route) → [`http::forward`] (action,
//! [`balance`], [`upstream`]) → response, with every failure a flagged
//! [`error::ProxyError`]. [`sidecar`] and [`standalone`] run it from files; [`xds`] from the control plane's push.

pub mod admin;
pub mod authz;
pub mod balance;
pub mod error;
pub mod fastrand;
pub mod http;
pub mod identity;
pub mod jwt;
pub mod l4;
pub mod resilience;
pub mod route;
pub mod runtime;
pub mod server;
pub mod sidecar;
pub mod standalone;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod xds;

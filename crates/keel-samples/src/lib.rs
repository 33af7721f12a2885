//! Istio's sample applications, written in Rust and behaving like Istio's containers, so that
//! Istio's tasks run the same on Keel's local mesh (`keel up`, `keel demo`) with no container
//! runtime.
//!
//! - [`bookinfo`]: productpage, details, reviews (v1, v2, v3) and ratings, on port 9080.
//! - [`httpbin`]: go-httpbin's endpoints and JSON, on port 8080 (Istio's service port 8000).
//! - [`tcp_echo`]: Istio's tcp-echo server: each line comes back prefixed.
//! - `sleep` (only in the binary): a client workload that does nothing until stopped.
//!
//! Each app is a [`server::Handler`] served by [`server::Server`]; its configuration is a plain
//! struct, so tests start the apps in-process on ephemeral ports. Outgoing calls go through
//! [`client::Client`], which honours `HTTP_PROXY` — how Keel's sidecar captures an app's
//! traffic without privileges.

pub mod bookinfo;
pub mod client;
pub mod http_util;
pub mod httpbin;
pub mod log;
pub mod propagate;
pub mod server;
pub mod tcp_echo;

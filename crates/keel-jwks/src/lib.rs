//! Remote JSON Web Key Sets for RequestAuthentication.
//!
//! Istio's control plane fetches the keys of a rule's `jwksUri` — or, for a rule with only an
//! `issuer`, of the `jwks_uri` its OpenID configuration names — and pushes them inline, so
//! proxies never reach out (`PILOT_JWT_ENABLE_REMOTE_JWKS=false`, its default). This crate is
//! that fetcher, shared by everything in Keel that compiles configuration: the control plane
//! (`keel-control`), and `keel-proxy standalone` and `keel-proxy sidecar -f`, which are their
//! own control planes.
//!
//! - [`fetch`]: the HTTP GET behind a trait ([`Fetcher`]); the real one is hyper over rustls
//!   (ring), Mozilla's roots plus the system bundle plus `--jwks-ca`.
//! - [`resolve`]: one attempt for one source — timeout, OpenID discovery, "is it a key set".
//! - [`cache`]: the schedule and what a result changes, as a state machine on given instants
//!   (Istio's rules: fetch at once, refresh every 20 minutes, keep the last good keys on
//!   failure, push when the keys change).
//! - [`service`]: [`JwksHandle`], the cache run in the background.
//!
//! ```no_run
//! # async fn example(resources: Vec<keel_config::Resource>) -> Result<(), String> {
//! use std::time::Duration;
//! use keel_jwks::{JwksHandle, ClientOptions, Settings};
//!
//! let jwks = JwksHandle::http(&ClientOptions::default(), Settings::default())?;
//! // After every configuration change: what it needs, waiting briefly for new sources.
//! jwks.want(&keel_snapshot::compile::jwt::remote_sources(&resources), Duration::from_secs(5)).await;
//! let keys = jwks.current(); // GatewayOptions/SidecarOptions::jwks for the compile
//! // ...and recompile whenever `jwks.subscribe()` says the keys changed.
//! # Ok(()) }
//! ```

pub mod cache;
pub mod fetch;
pub mod resolve;
pub mod service;

pub use cache::{Report, SourceStatus, Timing};
pub use fetch::{ClientOptions, Fetcher, HttpFetcher};
pub use service::{JwksHandle, Reporter, Settings, Stats};

/// How long a compile waits for the first answer of a source it hasn't seen before: Istio's
/// fetch timeout, which bounds istiod's own wait when it meets a new `jwksUri`.
pub const FIRST_FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

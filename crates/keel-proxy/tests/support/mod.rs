//! Test support for keel-proxy's end-to-end tests: real upstream servers on `127.0.0.1:0`,
//! the proxy running in-process on a free port, and a small HTTP/1.1 and h2c client.
//!
//! Upstreams:
//! - [`echo`]: HTTP/1.1 and h2c; answers JSON naming itself and echoing method, path, query,
//!   version, headers and a digest of the body. Request headers steer it: `x-echo-status`
//!   (status), `x-echo-response-header: name=value` (extra response headers), `x-echo-size: N`
//!   (answer N streamed bytes instead of JSON).
//! - [`echo_h2_only`]: the same speaking only HTTP/2 (prior knowledge).
//! - [`slow`]: streams a first chunk, then waits for a gate before the rest.
//! - [`grpc`]: h2c only; echoes the body and ends with `grpc-status` trailers.
//! - [`upgrade_echo`]: HTTP/1.1; accepts `Upgrade` with 101 and echoes bytes afterwards.
#![allow(dead_code)] // each test binary uses a different part of this module
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod client;
mod raw;
mod upstreams;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use keel_config::{Level, LoadOptions, Resource, load_str, validate_resources};
use keel_proxy::server::{Listeners, Shared};
use keel_snapshot::Snapshot;
use keel_snapshot::compile::gateway::{GatewayOptions, compile};

// Not every test file uses both.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use upstreams::*;

/// Bodies sent by the test client and the upstreams.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// How long any single step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(5);

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().boxed()
}

/// A body streamed from `chunks` with no length known up front (sent chunked over HTTP/1.1).
pub fn chunked(chunks: Vec<Bytes>) -> TestBody {
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, Infallible>(Frame::data(c))),
    );
    StreamBody::new(stream).boxed()
}

/// FNV-1a, to compare bodies without echoing megabytes back.
pub fn digest(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Bytes `0..n` of a repeating pattern (what `x-echo-size` streams).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// A Gateway named `name` in `default` with one HTTP server on `port` for `hosts`.
pub fn gateway(name: &str, port: u16, hosts: &[&str]) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}
    hosts: [{}]
---
",
        hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One endpoint of a [`service_entry`]: an upstream, and the labels it carries.
pub struct Ep<'a> {
    pub upstream: &'a Upstream,
    pub labels: &'a [(&'a str, &'a str)],
}

/// A STATIC ServiceEntry for `host` with service port 80 (`protocol`) served by `eps`.
pub fn service_entry(host: &str, protocol: &str, eps: &[Ep<'_>]) -> String {
    let name = host.replace(['.', '*'], "-");
    let mut s = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: se-{name}, namespace: default}}
spec:
  hosts: [\"{host}\"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: {protocol}}}
  endpoints:
"
    );
    for ep in eps {
        let labels = ep
            .labels
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!(
            "  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{{labels}}}}}\n",
            ep.upstream.port()
        ));
    }
    s.push_str("---\n");
    s
}

/// [`service_entry`] for plain HTTP with unlabelled endpoints.
pub fn se(host: &str, upstreams: &[&Upstream]) -> String {
    let eps: Vec<Ep<'_>> = upstreams
        .iter()
        .map(|u| Ep {
            upstream: u,
            labels: &[],
        })
        .collect();
    service_entry(host, "HTTP", &eps)
}

/// Reads `yaml`, failing the test on any load or validation error (fixtures must be valid
/// Istio configuration).
pub fn resources(yaml: &str) -> Vec<Resource> {
    let loaded = load_str(yaml, "test.yaml", &LoadOptions::default());
    let mut errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .map(|d| d.to_string())
        .collect();
    errors.extend(
        validate_resources(&loaded.resources, "istio-system")
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| d.to_string()),
    );
    assert!(errors.is_empty(), "invalid fixture: {errors:#?}\n{yaml}");
    loaded.resources
}

/// Compiles resources into a gateway snapshot bound on 127.0.0.1; returns the warnings too.
pub fn snapshot_of(resources: &[Resource]) -> (Snapshot, Vec<String>) {
    let compiled = compile(
        resources,
        &GatewayOptions {
            bind: "127.0.0.1".parse().expect("ip"),
            ..Default::default()
        },
    );
    let warnings = compiled
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.resource, w.message))
        .collect();
    (compiled.snapshot, warnings)
}

pub fn free_port() -> u16 {
    closed_port()
}

// ---------------------------------------------------------------------------------------
// The proxy

/// keel-proxy running in this process.
pub struct Proxy {
    pub shared: Arc<Shared>,
    pub listeners: Arc<Listeners>,
    /// The first gateway port (the one `start`'s closure was given).
    pub port: u16,
    /// Compile warnings of the last installed configuration.
    pub warnings: Vec<String>,
}

impl Proxy {
    /// Starts the proxy with the configuration `yaml(port)` for a free `port`; retries with
    /// another port if the chosen one was taken meanwhile.
    pub async fn start(yaml: impl Fn(u16) -> String) -> Proxy {
        Self::start_resources(|port| resources(&yaml(port))).await
    }

    pub async fn start_resources(res: impl Fn(u16) -> Vec<Resource>) -> Proxy {
        Self::start_with(|| Shared::new(""), res).await
    }

    /// Like [`Proxy::start`], on a `Shared` made by `shared` (own telemetry, say).
    pub async fn start_with(
        shared: impl Fn() -> Arc<Shared>,
        res: impl Fn(u16) -> Vec<Resource>,
    ) -> Proxy {
        let mut last = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let (snapshot, warnings) = snapshot_of(&res(port));
            let shared = shared();
            let listeners = Arc::new(Listeners::default());
            shared.install(snapshot);
            let errors = listeners.reconcile(&shared).await;
            if errors.is_empty() {
                return Proxy {
                    shared,
                    listeners,
                    port,
                    warnings,
                };
            }
            listeners.stop_all();
            last = errors;
        }
        panic!("proxy could not bind: {last:?}");
    }

    /// Installs a new configuration, as a reload does.
    pub async fn install(&mut self, yaml: &str) {
        let (snapshot, warnings) = snapshot_of(&resources(yaml));
        self.warnings = warnings;
        let errors = keel_proxy::standalone::apply(&self.shared, &self.listeners, snapshot).await;
        assert!(errors.is_empty(), "{errors:?}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listeners.stop_all();
    }
}

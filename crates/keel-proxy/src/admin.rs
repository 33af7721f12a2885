//! The admin port (localhost by default): readiness, the live configuration, clusters,
//! statistics, log level, drain and shutdown — Envoy's paths, so habits carry over.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::server::Shared;
use crate::upstream::Body;

/// Private keys from Secrets travel in the snapshot (gateway and DestinationRule
/// `credentialName`); `/config_dump` shows `[redacted]` in their place, as Envoy's does.
fn redact_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains("PRIVATE KEY-----") => {
            *s = "[redacted]".into();
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_keys),
        serde_json::Value::Object(o) => o.values_mut().for_each(redact_keys),
        _ => {}
    }
}

/// Admin actions the binary performs (log level, shutdown) and extra pages.
pub trait AdminHooks: Send + Sync + 'static {
    /// `/logging?level=debug`: returns the new level or why not.
    fn set_log_level(&self, level: &str) -> Result<String, String>;
    /// `/quitquitquit`: exit now (after replying).
    fn quit(&self);
    /// Whether the first configuration has been applied (`/ready`).
    fn ready(&self) -> bool;
    /// What `/ready` is waiting for while not ready.
    fn not_ready_reason(&self) -> String {
        "no configuration applied yet".into()
    }
    /// `/certs`: the workload certificate and roots (`identity::WorkloadIdentity::certs_json`);
    /// `None` when the proxy has no identity.
    fn certs(&self) -> Option<serde_json::Value> {
        None
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|n: Infallible| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

/// Serves the admin API on `addr` until the process exits. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
    hooks: Arc<dyn AdminHooks>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            let hooks = hooks.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let shared = shared.clone();
                    let hooks = hooks.clone();
                    async move { Ok::<_, Infallible>(handle(&shared, hooks.as_ref(), req)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn handle(shared: &Arc<Shared>, hooks: &dyn AdminHooks, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    match (req.method(), path) {
        (_, "/ready") | (_, "/healthz/ready") => {
            if hooks.ready() && !*shared.drain.borrow() {
                text(StatusCode::OK, "LIVE\n")
            } else if *shared.drain.borrow() {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("PRE_INITIALIZING: {}\n", hooks.not_ready_reason()),
                )
            }
        }
        (_, "/healthz") => text(StatusCode::OK, "OK\n"),
        (_, "/config_dump") => {
            let rt = shared.runtime.load_full();
            let json = serde_json::to_value(&*rt.snapshot)
                .map(|mut v| {
                    redact_keys(&mut v);
                    v
                })
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            let mut r = text(StatusCode::OK, json);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        (_, "/clusters") => text(StatusCode::OK, clusters_text(shared)),
        // Envoy's page: without an identity, no certificates.
        (_, "/certs") => {
            let doc = hooks
                .certs()
                .unwrap_or_else(|| serde_json::json!({"certificates": []}));
            let body = serde_json::to_string_pretty(&doc)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        (_, "/stats/prometheus") | (_, "/metrics") => {
            let mut r = text(StatusCode::OK, shared.telemetry.render_prometheus());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::telemetry::CONTENT_TYPE),
            );
            r
        }
        (_, "/stats") => text(StatusCode::OK, shared.telemetry.render_prometheus()),
        (_, "/logging") => match crate::route::query_value(query, "level") {
            Some(level) => match hooks.set_log_level(&level) {
                Ok(now) => text(StatusCode::OK, format!("active log level: {now}\n")),
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            },
            None => text(
                StatusCode::OK,
                "usage: /logging?level=trace|debug|info|warn|error\n",
            ),
        },
        (_, "/access_log") => {
            use crate::telemetry::AccessLogFormat;
            let format = match crate::route::query_value(query, "format").as_deref() {
                Some("text") => AccessLogFormat::Text,
                Some("json") => AccessLogFormat::Json,
                Some("off") => AccessLogFormat::Off,
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "usage: /access_log?format=text|json|off\n",
                    );
                }
            };
            shared.telemetry.set_access_log(format);
            text(StatusCode::OK, format!("access log: {format:?}\n"))
        }
        (&Method::POST, "/drain") | (&Method::POST, "/drain_listeners") => {
            let _ = shared.drain.send(true);
            text(StatusCode::OK, "draining\n")
        }
        (&Method::POST, "/quitquitquit") => {
            hooks.quit();
            text(StatusCode::OK, "OK\n")
        }
        (_, "/drain" | "/drain_listeners" | "/quitquitquit") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "admin paths: /ready /healthz /config_dump /clusters /certs /stats /stats/prometheus /logging?level= /access_log?format= POST /drain POST /quitquitquit\n",
        ),
    }
}

/// Serves the scrape endpoints Istio exposes on 15090 and 15020 (`/stats/prometheus`) and the
/// readiness probe of 15020/15021 (`/healthz/ready`): no admin actions, so it may listen on
/// every interface.
pub async fn serve_stats(
    addr: SocketAddr,
    shared: Arc<Shared>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let shared = shared.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let shared = shared.clone();
                    let ready = ready.load(std::sync::atomic::Ordering::Relaxed);
                    async move {
                        Ok::<_, Infallible>(match req.uri().path() {
                            "/stats/prometheus" | "/metrics" => {
                                let mut r =
                                    text(StatusCode::OK, shared.telemetry.render_prometheus());
                                r.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    http::HeaderValue::from_static(crate::telemetry::CONTENT_TYPE),
                                );
                                r
                            }
                            "/healthz/ready" if ready && !*shared.drain.borrow() => {
                                text(StatusCode::OK, "")
                            }
                            "/healthz/ready" => {
                                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                            }
                            _ => text(
                                StatusCode::NOT_FOUND,
                                "paths: /stats/prometheus /healthz/ready\n",
                            ),
                        })
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// The `/clusters` page: every cluster's limits and occupancy, every endpoint's load, health
/// and outlier state, one `cluster::[endpoint::]name::value` line each, as Envoy prints them.
pub fn clusters_text(shared: &Shared) -> String {
    let rt = shared.runtime.load_full();
    let mut names: Vec<&String> = rt.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let Some(c) = rt.clusters.get(name) else {
            continue;
        };
        if c.balancer.is_empty() {
            out.push_str(&format!("{name}::no_endpoints\n"));
        }
        cluster_lines(&mut out, name, c);
    }
    out
}

/// Envoy-style `/clusters` lines for one cluster: circuit-breaker limits, occupancy and
/// overflows, then per endpoint its load, health and outlier-detection state.
fn cluster_lines(out: &mut String, name: &str, c: &crate::runtime::ClusterRuntime) {
    use std::fmt::Write;
    let pool = c.policies.breakers.snapshot();
    let _ = write!(
        out,
        "{name}::circuit_breakers::max_connections::{}\n{name}::circuit_breakers::max_pending_requests::{}\n{name}::circuit_breakers::max_requests::{}\n{name}::circuit_breakers::max_retries::{}\n",
        pool.max_connections, pool.max_pending_requests, pool.max_requests, pool.max_retries
    );
    let _ = write!(
        out,
        "{name}::pool::connections::{}\n{name}::pool::pending::{}\n{name}::pool::requests::{}\n{name}::pool::retries::{}\n",
        pool.connections, pool.pending, pool.requests, pool.retries
    );
    let _ = write!(
        out,
        "{name}::overflow::connections::{}\n{name}::overflow::pending::{}\n{name}::overflow::requests::{}\n{name}::overflow::retries::{}\n",
        pool.overflow_connections,
        pool.overflow_pending,
        pool.overflow_requests,
        pool.overflow_retries
    );
    let outlier = c
        .policies
        .outlier
        .as_ref()
        .map(|o| o.snapshot(tokio::time::Instant::now().into_std()));
    for (i, e) in c.balancer.endpoint_stats().into_iter().enumerate() {
        let a = &e.address;
        let _ = write!(
            out,
            "{name}::{a}::active_requests::{}\n{name}::{a}::total_requests::{}\n{name}::{a}::weight::{}\n{name}::{a}::locality::{}\n",
            e.active_requests, e.total_requests, e.weight, e.locality
        );
        let state = outlier.as_ref().and_then(|s| s.endpoints.get(i));
        let health = match state {
            Some(s) if s.ejected => "/failed_outlier_check",
            _ if !e.healthy => "/failed_outlier_check",
            _ => "healthy",
        };
        let _ = writeln!(out, "{name}::{a}::health_flags::{health}");
        if let Some(s) = state {
            let _ = write!(
                out,
                "{name}::{a}::outlier::consecutive_5xx::{}\n{name}::{a}::outlier::consecutive_gateway_errors::{}\n{name}::{a}::outlier::consecutive_local_origin_failures::{}\n{name}::{a}::outlier::ejections::{}\n",
                s.consecutive_5xx,
                s.consecutive_gateway_errors,
                s.consecutive_local_origin_failures,
                s.ejections
            );
            if let Some(left) = s.returns_in.filter(|_| s.ejected) {
                let reason = s.reason.map_or("", |r| r.field());
                let _ = writeln!(
                    out,
                    "{name}::{a}::outlier::ejected_for::{}ms::{reason}",
                    left.as_millis()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_keys_are_redacted_wherever_they_sit() {
        let mut v = serde_json::json!({
            "listeners": [{"terminate_tls": [{"certificates": [{
                "chain": {"inline": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
                "key": {"inline": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"},
            }]}]}],
            "ec": "-----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----",
        });
        super::redact_keys(&mut v);
        let text = v.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(
            text.contains("BEGIN CERTIFICATE"),
            "certificates stay: {text}"
        );
        assert_eq!(v["ec"], "[redacted]");
    }
}

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

/// Admin actions the binary performs (log level, shutdown) and extra pages.
pub trait AdminHooks: Send + Sync + 'static {
    /// `/logging?level=debug`: returns the new level or why not.
    fn set_log_level(&self, level: &str) -> Result<String, String>;
    /// `/quitquitquit`: exit now (after replying).
    fn quit(&self);
    /// Whether the first configuration has been applied (`/ready`).
    fn ready(&self) -> bool;
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
                    "PRE_INITIALIZING: no configuration applied yet\n",
                )
            }
        }
        (_, "/healthz") => text(StatusCode::OK, "OK\n"),
        (_, "/config_dump") => {
            let rt = shared.runtime.load_full();
            let json = serde_json::to_string_pretty(&*rt.snapshot)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
            let mut r = text(StatusCode::OK, json);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        (_, "/clusters") => {
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
                for e in c.balancer.endpoint_stats() {
                    out.push_str(&format!(
                        "{name}::{}::active_requests::{}\n{name}::{}::total_requests::{}\n{name}::{}::weight::{}\n{name}::{}::locality::{}\n",
                        e.address, e.active_requests, e.address, e.total_requests, e.address, e.weight, e.address, e.locality
                    ));
                }
            }
            text(StatusCode::OK, out)
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
            "admin paths: /ready /healthz /config_dump /clusters /stats /stats/prometheus /logging?level= /access_log?format= POST /drain POST /quitquitquit\n",
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

//! Serving the API over HTTP/1.1 with hyper.
//!
//! Plain hyper rather than axum: six routes don't need a router, hyper is already in the
//! workspace for the proxy, and the control plane stays a few crates lighter to build.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use keel_config::source::Input;
use keel_config::{Kind, Level};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::{
    ApplyResponse, ApplyResult, DeleteResponse, DeleteResult, ErrorBody, FILENAME_HEADER,
    INPUTS_CONTENT_TYPE, Inputs, MAX_BODY_BYTES, Message, ResourceId,
};
use crate::store::{
    ConfigStore, Filter, ReadOptions, ResourceKey, StoreError, WriteOptions, read_for_apply,
    read_for_delete, resource_dir_name,
};

/// How long in-flight requests may run on after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(5);

/// What the API serves.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn ConfigStore>,
    /// Shown by `/version`.
    pub version: String,
    pub git_commit: String,
    /// The mesh's root namespace, for validation.
    pub root_namespace: String,
    /// The connected proxies, when the xDS server runs beside the API (`/apis/proxies`).
    pub proxies: Option<Arc<crate::xds::ProxyRegistry>>,
    /// The push metrics, when the xDS server runs beside the API (`/metrics`).
    pub metrics: Option<Arc<crate::xds::metrics::XdsMetrics>>,
    /// Serve only `/metrics`, `/healthz` and `/version`: the monitoring port (15014 as
    /// istiod's), which must not take writes.
    pub monitoring_only: bool,
    /// The JWT key cache of the xDS server beside the API (`/debug/jwksz`).
    pub jwks: Option<keel_jwks::JwksHandle>,
}

type Reply = Response<Full<Bytes>>;

/// Serves until `shutdown` completes, then lets in-flight requests finish (up to 5 s).
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = Arc::new(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connections so the set doesn't grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn handle(state: &Arc<ApiState>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let monitoring = matches!(
        path.as_str(),
        "/metrics" | "/stats/prometheus" | "/healthz" | "/version"
    );
    if state.monitoring_only && !monitoring {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "no such endpoint on the monitoring port: {path} (it serves /metrics, /healthz and /version)"
            ),
        );
    }
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics" | "/stats/prometheus") => match &state.metrics {
            Some(m) => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                m.render().into_bytes(),
            ),
            None => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no xDS server runs beside this API: no push metrics".to_string(),
            ),
        },
        (&Method::GET, "/version") => json(
            StatusCode::OK,
            &serde_json::json!({
                "version": state.version,
                "gitCommit": state.git_commit,
                "storeVersion": state.store.snapshot().version,
            }),
        ),
        (&Method::GET, "/apis/resources") => list(state, &query),
        (&Method::GET, "/apis/problems") => {
            let problems: Vec<Message> = state.store.problems().iter().map(Message::from).collect();
            json(StatusCode::OK, &serde_json::json!({ "problems": problems }))
        }
        (&Method::GET, "/apis/proxies") => proxies(state),
        // Each jwksUri and issuer the configuration names: fetched or not, and why (Istio's
        // debug endpoints are `/debug/*z`).
        (&Method::GET, "/debug/jwksz") => json(
            StatusCode::OK,
            &serde_json::json!({
                "sources": state.jwks.as_ref().map(|j| j.status()).unwrap_or_default(),
            }),
        ),
        (&Method::POST, "/apis/apply") => write(state, req, query, true).await,
        (&Method::POST, "/apis/delete") => write(state, req, query, false).await,
        (
            _,
            "/healthz" | "/version" | "/apis/resources" | "/apis/problems" | "/apis/proxies"
            | "/apis/apply" | "/apis/delete" | "/debug/jwksz",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no such endpoint: {path}"),
        ),
    }
}

/// `GET /apis/proxies`: the connected proxies and where each stands, per type.
fn proxies(state: &ApiState) -> Reply {
    let body = crate::xds::ProxiesResponse {
        control_plane_version: state.store.snapshot().version.to_string(),
        proxies: state.proxies.as_ref().map(|r| r.list()).unwrap_or_default(),
    };
    json(StatusCode::OK, &body)
}

fn list(state: &ApiState, query: &[(String, String)]) -> Reply {
    let get = |k: &str| {
        query
            .iter()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let Some(kind_name) = get("kind") else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the kind is required (kind=vs, kind=services, ...)".into(),
        );
    };
    let Some(kind) = Kind::from_cli_name(&kind_name) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server doesn't have a resource type \"{kind_name}\""),
        );
    };
    let filter = Filter {
        kind: Some(kind),
        namespace: get("namespace"),
        name: get("name"),
    };
    let snapshot = state.store.snapshot();
    let items: Vec<serde_json::Value> = if kind == Kind::Endpoints {
        super::endpoints::list(&snapshot, &filter)
    } else {
        snapshot.list(&filter).map(|r| r.object.clone()).collect()
    };
    if let (Some(name), true) = (&filter.name, items.is_empty()) {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", resource_dir_name(kind)),
        );
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "metadata": { "resourceVersion": snapshot.version.to_string() },
            "items": items,
        }),
    )
}

/// `POST /apis/apply` and `/apis/delete`.
async fn write(
    state: &Arc<ApiState>,
    req: Request<Incoming>,
    query: Vec<(String, String)>,
    apply: bool,
) -> Reply {
    let inputs = match read_inputs(req).await {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    let flag = |k: &str| {
        query
            .iter()
            .any(|(q, v)| q == k && (v == "true" || v == "All" || v.is_empty()))
    };
    let opts = ReadOptions {
        namespace: query
            .iter()
            .find(|(q, _)| q == "namespace")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty()),
        root_namespace: state.root_namespace.clone(),
    };
    let write_opts = WriteOptions {
        dry_run: flag("dryRun"),
    };
    let store = state.store.clone();
    // Parsing, validation and disk writes block: keep them off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        if apply {
            do_apply(&*store, &inputs, &opts, write_opts)
        } else {
            do_delete(&*store, &inputs, &opts, write_opts)
        }
    })
    .await;
    result.unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("the request failed: {e}"),
        )
    })
}

fn do_apply(
    store: &dyn ConfigStore,
    inputs: &[Input],
    opts: &ReadOptions,
    write: WriteOptions,
) -> Reply {
    let (resources, notes) = match read_for_apply(inputs, opts) {
        Ok(r) => r,
        Err(diags) => return rejected(&diags),
    };
    match store.apply(resources, write) {
        Ok(report) => {
            let mut messages: Vec<Message> = notes.iter().map(Message::from).collect();
            for w in report.warnings.iter().map(Message::from) {
                if !messages.contains(&w) {
                    messages.push(w);
                }
            }
            let body = ApplyResponse {
                store_version: report.version,
                dry_run: write.dry_run,
                results: report
                    .results
                    .iter()
                    .map(|(k, outcome)| ApplyResult {
                        id: ResourceId::from(k),
                        outcome: *outcome,
                    })
                    .collect(),
                messages,
            };
            json(StatusCode::OK, &body)
        }
        Err(e) => store_error(e),
    }
}

fn do_delete(
    store: &dyn ConfigStore,
    inputs: &[Input],
    opts: &ReadOptions,
    write: WriteOptions,
) -> Reply {
    let keys: Vec<ResourceKey> = match read_for_delete(inputs, opts) {
        Ok(k) => k,
        Err(diags) => return rejected(&diags),
    };
    match store.delete(&keys, write) {
        Ok(report) => json(
            StatusCode::OK,
            &DeleteResponse {
                store_version: report.version,
                dry_run: write.dry_run,
                results: report
                    .results
                    .iter()
                    .map(|(k, outcome)| DeleteResult {
                        id: ResourceId::from(k),
                        outcome: *outcome,
                    })
                    .collect(),
            },
        ),
        Err(e) => store_error(e),
    }
}

/// The request body as named inputs.
async fn read_inputs(req: Request<Incoming>) -> Result<Vec<Input>, Reply> {
    let header_str = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header_str(header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let name = header_str(FILENAME_HEADER).unwrap_or_else(|| "<request>".to_string());
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("cannot read the request body: {e}"),
            ));
        }
    };
    if content_type.starts_with(INPUTS_CONTENT_TYPE) {
        let parsed: Inputs = serde_json::from_slice(&body).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("invalid {INPUTS_CONTENT_TYPE} body: {e}"),
            )
        })?;
        return Ok(parsed
            .inputs
            .into_iter()
            .map(|i| Input {
                name: Arc::from(i.name),
                text: i.text,
            })
            .collect());
    }
    let text = String::from_utf8(body.to_vec()).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not UTF-8 text".into(),
        )
    })?;
    Ok(vec![Input {
        name: Arc::from(name),
        text,
    }])
}

fn rejected(diags: &[keel_config::Diagnostic]) -> Reply {
    let errors = diags.iter().filter(|d| d.level == Level::Error).count();
    let resources: std::collections::BTreeSet<_> = diags
        .iter()
        .filter(|d| d.level == Level::Error)
        .filter_map(|d| d.resource.clone())
        .collect();
    let message = format!(
        "{} in {}; nothing was changed",
        plural(errors, "error"),
        if resources.is_empty() {
            "the input".to_string()
        } else {
            plural(resources.len(), "resource")
        }
    );
    let body = ErrorBody {
        reason: "Rejected".into(),
        message,
        diagnostics: diags.iter().map(Message::from).collect(),
    };
    json(StatusCode::UNPROCESSABLE_ENTITY, &body)
}

fn store_error(e: StoreError) -> Reply {
    match e {
        StoreError::Rejected(diags) => rejected(&diags),
        StoreError::Conflict(msg) => error(StatusCode::CONFLICT, "Conflict", msg),
        e @ StoreError::Io { .. } => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string())
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn error(status: StatusCode, reason: &str, message: String) -> Reply {
    json(
        status,
        &ErrorBody {
            reason: reason.into(),
            message,
            diagnostics: Vec::new(),
        },
    )
}

fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    respond(status, "application/json", bytes)
}

fn text(status: StatusCode, body: &str) -> Reply {
    respond(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Reply {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// `a=1&b=x%2Fy` → pairs, percent-decoded (`+` is a space, as in forms).
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        assert_eq!(
            parse_query("kind=vs&namespace=a%2Db&name=&x+y=1%"),
            vec![
                ("kind".into(), "vs".into()),
                ("namespace".into(), "a-b".into()),
                ("name".into(), String::new()),
                ("x y".into(), "1%".into()),
            ]
        );
        assert_eq!(percent_decode(&percent_encode("a/b c%é")), "a/b c%é");
    }
}

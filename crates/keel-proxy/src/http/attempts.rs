//! The upstream exchange of one forwarded request under its route's and cluster's policies:
//! the request deadline (`timeout`), attempts with retries and back-off (`retries`), the
//! circuit breakers (`connectionPool`), outlier detection (`outlierDetection`) and mirrors.
//! The policies themselves are in [`crate::resilience`]; this is where they meet sockets.
//!
//! With nothing configured the cost is one request counter, a copy of the request head for
//! the mesh-default retry, and no timer.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use keel_snapshot::{LbPolicy, WeightedCluster};

use super::forward::{empty, full, resolve};
use super::observe::Counted;
use crate::balance::{ActiveRequest, PickContext};
use crate::error::ProxyError;
use crate::resilience::{
    AttemptResult, Outcome as OutlierOutcome, RETRY_BUFFER_LIMIT, RetryDecision, RetryState,
    RouteTimeouts, all_ejected_error, exhausted_flag, flags, shadow_authority, timeout_error,
};
use crate::route::CompiledRoute;
use crate::runtime::ClusterRuntime;
use crate::server::{ConnInfo, Shared};
use crate::upstream::{Body, BoxError, Outbound, SendError};

pub(crate) type DownstreamBody = Counted<Body>;

/// What one exchange needs besides the request.
pub(crate) struct Exchange<'a> {
    pub shared: &'a Arc<Shared>,
    pub conn: &'a ConnInfo,
    pub route: &'a CompiledRoute,
    pub cluster: &'a ClusterRuntime,
    /// The weighted destination, for the share of traffic a failing subset still gets.
    pub destination: &'a WeightedCluster,
    /// The route's other destinations' total weight plus this one's (0: single destination).
    pub total_weight: u64,
    pub h2: bool,
    pub grpc: bool,
    /// A protocol upgrade (WebSocket): one attempt and no deadline on the stream.
    pub upgrade: bool,
}

/// How the exchange ended.
pub(crate) struct Exchanged {
    pub result: Result<Response<Body>, ProxyError>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<(usize, SocketAddr)>,
    /// The last attempt's endpoint as configured, for error sentences.
    pub endpoint_text: String,
    pub set_cookie: Option<String>,
    /// Flags of a response that went through retries (`URX`, `UO`); errors carry their own.
    pub flag: &'static str,
    /// Counts the request on its endpoint for LEAST_REQUEST until the response head is in.
    pub guard: Option<ActiveRequest>,
}

impl Exchanged {
    fn failed(e: ProxyError) -> Exchanged {
        Exchanged {
            result: Err(e),
            endpoint: None,
            endpoint_text: String::new(),
            set_cookie: None,
            flag: "",
            guard: None,
        }
    }
}

/// The request body: buffered when it may be sent more than once (retries, mirrors), else
/// streamed to a single attempt.
enum RequestBody {
    Buffered(Bytes),
    Stream(Option<DownstreamBody>),
}

/// Sends the prepared request (`head` as the upstream should see it) under the policies.
pub(crate) async fn exchange(
    x: &Exchange<'_>,
    head: Box<http::request::Parts>,
    body: DownstreamBody,
) -> Exchanged {
    let policies = &x.route.policies;
    let breakers = &x.cluster.policies.breakers;
    let _request = match breakers.try_request() {
        Ok(g) => g,
        Err(overflow) => return Exchanged::failed(overflow.to_proxy_error()),
    };
    let retry = &policies.retry;
    let retries = retry.is_enabled() && !x.upgrade;
    let mirrors = !policies.mirror.is_empty() && !x.upgrade;
    let body = if (retries || mirrors) && body.is_end_stream() {
        RequestBody::Buffered(Bytes::new())
    } else if (retries || mirrors) && replayable(&body) {
        match body.collect().await {
            Ok(collected) => RequestBody::Buffered(collected.to_bytes()),
            Err(e) => {
                return Exchanged::failed(ProxyError {
                    status: http::StatusCode::BAD_REQUEST,
                    flag: flags::DC,
                    detail: format!("downstream request body failed: {e}"),
                });
            }
        }
    } else {
        RequestBody::Stream(Some(body))
    };
    if mirrors && let RequestBody::Buffered(bytes) = &body {
        mirror(x, &head, bytes);
    }
    let deadline = if x.upgrade {
        None
    } else {
        policies.timeouts.for_request(&head.headers, x.grpc)
    };
    // The attempts' future is made in each branch: made once and then moved into the
    // timeout, it would take its room in this future twice (and be copied with it).
    let Some(limit) = deadline else {
        return attempts(x, head, body, None).await;
    };
    let started = tokio::time::Instant::now();
    match within(
        std::pin::pin!(attempts(x, head, body, deadline)),
        std::pin::pin!(tokio::time::sleep(limit)),
    )
    .await
    {
        Some(mut done) => {
            // The route timeout covers the whole response, body included, as Envoy's does.
            if let Ok(resp) = done.result {
                done.result =
                    Ok(resp.map(|b| crate::upstream::boxed(Deadline::new(b, started + limit))));
            }
            done
        }
        None => Exchanged::failed(timeout_error(&x.route.name, &x.cluster.name, limit)),
    }
}

/// `fut`'s output, or `None` once `sleep` fires first: `tokio::time::timeout` without moving
/// `fut` into it. Both stay where the caller pinned them (`std::pin::pin!` makes them in
/// place), so the request's future — several hundred bytes per layer — is not copied into
/// a `Timeout` at every request that has a deadline.
fn within<'a, T>(
    mut fut: Pin<&'a mut (impl Future<Output = T> + ?Sized)>,
    mut sleep: Pin<&'a mut tokio::time::Sleep>,
) -> impl Future<Output = Option<T>> + 'a
where
    T: 'a,
{
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
}

/// A body that can be read whole within the retry buffer limit.
fn replayable(body: &DownstreamBody) -> bool {
    body.is_end_stream()
        || body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= RETRY_BUFFER_LIMIT as u64)
}

async fn attempts(
    x: &Exchange<'_>,
    head: Box<http::request::Parts>,
    body: RequestBody,
    deadline: Option<Duration>,
) -> Exchanged {
    // Reading the clock costs a little on every request; only a deadline needs it.
    let started = deadline.map(|_| tokio::time::Instant::now());
    let disabled = crate::resilience::RetryPolicy::disabled();
    let policy = if x.upgrade {
        &disabled
    } else {
        &x.route.policies.retry
    };
    // A request that may be retried after it was sent is copied for each attempt but the
    // last; one retried only when it could not be sent comes back from the pool instead.
    let copies =
        matches!(body, RequestBody::Buffered(_)) && policy.retries_after_sending(x.grpc, x.h2);
    let mut state = RetryState::new(policy);
    let hashed = matches!(x.cluster.cluster.lb, LbPolicy::ConsistentHash { .. });
    let mut head = Some(head);
    let mut body = body;
    let mut unsent: Option<Outbound> = None;
    loop {
        let pick = {
            let (headers, query) = match (&unsent, &head) {
                (Some(r), _) => (&r.head.headers, r.head.uri.query()),
                (None, Some(h)) => (&h.headers, h.uri.query()),
                (None, None) => {
                    return Exchanged::failed(ProxyError::bad_request(
                        "request could not be sent again".to_string(),
                    ));
                }
            };
            let ctx = PickContext {
                headers,
                source_ip: Some(x.conn.remote.ip()),
                query,
                exclude: state.exclude(policy, hashed),
                original_dst: x.conn.original_dst,
                other_levels: policy.retry_remote_localities,
            };
            x.cluster.balancer.pick(&ctx)
        };
        let Some(pick) = pick else {
            return Exchanged::failed(no_healthy(x));
        };
        state.start_attempt(pick.index);
        let last_attempt = !policy.is_enabled() || state_exhausted(&state, policy);
        let req = match unsent.take() {
            Some(r) => r,
            None => {
                let req_body = match &mut body {
                    RequestBody::Buffered(b) if b.is_empty() => empty(),
                    RequestBody::Buffered(b) => full(b.clone()),
                    RequestBody::Stream(s) => match s.take() {
                        Some(b) => b.boxed(),
                        None => empty(),
                    },
                };
                // The copy carries the extensions too: the downstream header case.
                match (copies && !last_attempt, head.as_ref()) {
                    (true, Some(h)) => Outbound::new(h.clone(), req_body),
                    _ => match head.take() {
                        Some(h) => Outbound::new(h, req_body),
                        None => continue,
                    },
                }
            }
        };
        let resolved = match &pick.address {
            keel_snapshot::EndpointAddress::Socket(a) => Ok(*a),
            // Boxed: DNS endpoints are the exception, and the lookup's future is large.
            dns => Box::pin(resolve(dns)).await,
        };
        let (result, addr) = match resolved {
            Ok(addr) => {
                let configured = policy.per_try_timeout;
                let per_try = RouteTimeouts::attempt(
                    deadline
                        .map(|d| d.saturating_sub(started.map_or(Duration::ZERO, |s| s.elapsed()))),
                    configured,
                );
                let pool = crate::upstream::ClusterPool {
                    breakers: &x.cluster.policies.breakers,
                };
                let send = |req| x.shared.pools.send_in(&pool, addr, x.h2, req);
                let result = match per_try {
                    Some(t) => match within(
                        std::pin::pin!(send(req)),
                        std::pin::pin!(tokio::time::sleep(t)),
                    )
                    .await
                    {
                        Some(r) => r.map_err(Failure::Send),
                        // The attempt ran under what was left of the route's deadline: its
                        // expiry is the route timeout, not `retries.perTryTimeout`.
                        None if per_try != configured => {
                            Err(Failure::RouteTimeout(deadline.unwrap_or(t)))
                        }
                        None => Err(Failure::PerTryTimeout(t)),
                    },
                    None => send(req).await.map_err(Failure::Send),
                };
                (result, Some(addr))
            }
            Err(cause) => (
                Err(Failure::Send((SendError::Connect(cause), Some(req)))),
                None,
            ),
        };
        let attempt = match &result {
            Ok(resp) => AttemptResult::Response {
                status: resp.status().as_u16(),
                headers: resp.headers(),
            },
            Err(f) => f.attempt(),
        };
        if let (Some(outlier), true) = (&x.cluster.policies.outlier, pick.index != usize::MAX)
            && let Some(outcome) = OutlierOutcome::from_attempt(&attempt, x.grpc)
            && let Some(ejection) =
                outlier.report(pick.index, outcome, tokio::time::Instant::now().into_std())
        {
            x.cluster.balancer.set_healthy(ejection.endpoint, false);
            tracing::warn!(
                cluster = %x.cluster.name, endpoint = %pick.address,
                reason = ejection.reason.field(), ejected_for = ?ejection.duration,
                "outlier detection ejected an endpoint"
            );
        }
        // The request's deadline has passed: no retry can run, and the answer is the
        // route's 504 `UT` (counted above for outlier detection, as Envoy counts it).
        if let Err(Failure::RouteTimeout(limit)) = &result {
            return Exchanged {
                result: Err(timeout_error(&x.route.name, &x.cluster.name, *limit)),
                endpoint: addr.map(|a| (pick.index, a)),
                endpoint_text: pick.address.to_string(),
                set_cookie: None,
                flag: "",
                guard: None,
            };
        }
        let decision = if last_attempt {
            if policy.is_enabled() && policy.should_retry(&attempt) {
                RetryDecision::RetriesExhausted
            } else {
                RetryDecision::Done
            }
        } else {
            crate::fastrand::with(|rng| {
                state.decide(
                    policy,
                    &attempt,
                    x.cluster.policies.breakers.retry_budget(),
                    x.cluster.policies.breakers.active_requests(),
                    rng,
                )
            })
        };
        let retried_out = match decision {
            RetryDecision::Retry { backoff } => {
                let flag = exhausted_flag(&attempt);
                let kept = match result {
                    Err(Failure::Send((_, Some(req)))) => Some(req),
                    _ => None,
                };
                // Without a copy or the unsent request there is nothing to send again.
                if kept.is_some() || head.is_some() {
                    unsent = kept;
                    tracing::debug!(
                        cluster = %x.cluster.name, endpoint = %pick.address, flag,
                        ?backoff, "retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                return Exchanged::failed(ProxyError {
                    flag,
                    ..Failure::Send((
                        SendError::Reset(
                            "not retried: the request body was streamed and cannot be sent again"
                                .to_string(),
                        ),
                        None,
                    ))
                    .error(x, &pick.address.to_string())
                });
            }
            RetryDecision::Done => "",
            RetryDecision::RetriesExhausted if state.attempts() > 1 => exhausted_flag(&attempt),
            RetryDecision::RetriesExhausted => "",
            RetryDecision::Overflow => flags::UO,
        };
        let endpoint = addr.map(|a| (pick.index, a));
        return match result {
            Ok(resp) => Exchanged {
                result: Ok(resp),
                endpoint,
                endpoint_text: String::new(),
                set_cookie: pick.set_cookie,
                flag: retried_out,
                guard: Some(pick.guard),
            },
            Err(f) => {
                let endpoint_text = pick.address.to_string();
                let mut e = f.error(x, &endpoint_text);
                if !retried_out.is_empty() {
                    e.flag = retried_out;
                }
                Exchanged {
                    result: Err(e),
                    endpoint,
                    endpoint_text,
                    set_cookie: None,
                    flag: "",
                    guard: None,
                }
            }
        };
    }
}

/// Whether the attempt just started is the last the policy allows (its retries are all used).
fn state_exhausted(state: &RetryState, retry: &crate::resilience::RetryPolicy) -> bool {
    state.attempts() > retry.num_retries
}

fn no_healthy(x: &Exchange<'_>) -> ProxyError {
    if let Some(outlier) = &x.cluster.policies.outlier {
        let snapshot = outlier.snapshot(tokio::time::Instant::now().into_std());
        if snapshot.ejections_active > 0 {
            let share = (x.total_weight > 0)
                .then(|| 100.0 * f64::from(x.destination.weight) / x.total_weight as f64);
            return all_ejected_error(&x.cluster.name, &snapshot, share);
        }
    }
    ProxyError::no_healthy_upstream(&x.cluster.name)
}

/// Why an attempt got no response.
enum Failure {
    /// With the request when it was never sent.
    Send(crate::upstream::SendFailure),
    PerTryTimeout(Duration),
    /// The request's deadline (this long) passed during the attempt.
    RouteTimeout(Duration),
}

impl Failure {
    fn attempt(&self) -> AttemptResult<'static> {
        match self {
            Failure::Send((SendError::Connect(_), _)) => AttemptResult::ConnectFailure,
            Failure::Send((SendError::Overflow(_), _)) => AttemptResult::Overflow,
            // hyper reports an HTTP/2 REFUSED_STREAM only in its error text.
            Failure::Send((SendError::Reset(cause), _)) if cause.contains("refused stream") => {
                AttemptResult::RefusedStream
            }
            Failure::Send((SendError::Reset(_), unsent)) => AttemptResult::Reset {
                request_sent: unsent.is_none(),
            },
            Failure::PerTryTimeout(_) | Failure::RouteTimeout(_) => AttemptResult::PerTryTimeout,
        }
    }

    fn error(self, x: &Exchange<'_>, endpoint: &str) -> ProxyError {
        match self {
            Failure::Send((SendError::Connect(cause), _)) => {
                ProxyError::connect_failed(&x.cluster.name, endpoint, &cause)
            }
            Failure::Send((SendError::Overflow(overflow), _)) => overflow.to_proxy_error(),
            Failure::Send((SendError::Reset(cause), _)) => {
                ProxyError::upstream_reset(&x.cluster.name, endpoint, &cause)
            }
            Failure::RouteTimeout(t) => timeout_error(&x.route.name, &x.cluster.name, t),
            Failure::PerTryTimeout(t) => {
                let mut e = timeout_error(&x.route.name, &x.cluster.name, t);
                e.detail = format!("{} (retries.perTryTimeout, endpoint {endpoint})", e.detail);
                e
            }
        }
    }
}

/// Fire-and-forget copies to the route's mirrors: their answers are read and dropped, their
/// failures only logged; the original request never waits for them.
fn mirror(x: &Exchange<'_>, head: &http::request::Parts, body: &Bytes) {
    let rt = x.shared.runtime.load_full();
    let shadow = x.shared.shadow_host();
    let drawn = x
        .route
        .policies
        .mirror
        .targets
        .iter()
        .filter(|t| crate::fastrand::with(|rng| t.share.hit(rng)));
    for target in drawn {
        let Some(cluster) = rt.clusters.get(&target.cluster).cloned() else {
            tracing::debug!(cluster = %target.cluster, "mirror cluster unknown; copy dropped");
            continue;
        };
        let mut req = Outbound::new(Box::new(head.clone()), full(body.clone()));
        let authority = req
            .head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.head.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let shadowed = shadow_authority(&authority, shadow);
        if shadowed != authority
            && let Ok(v) = http::HeaderValue::from_str(&shadowed)
        {
            req.head.headers.insert(http::header::HOST, v);
        }
        let h2 = matches!(
            cluster.cluster.protocol,
            keel_snapshot::UpstreamProtocol::Http2
        ) || (x.h2
            && matches!(
                cluster.cluster.protocol,
                keel_snapshot::UpstreamProtocol::SameAsDownstream
            ));
        let pools = x.shared.pools.clone();
        let source_ip = x.conn.remote.ip();
        // Envoy sends the shadow request with the route's timeout (none when the route has
        // none), so a hung mirror target cannot hold copies and connections forever.
        let limit = x.route.policies.timeouts.route;
        tokio::spawn(async move {
            let ctx = PickContext {
                headers: &req.head.headers,
                source_ip: Some(source_ip),
                query: req.head.uri.query(),
                exclude: &[],
                original_dst: None,
                other_levels: false,
            };
            let Some(pick) = cluster.balancer.pick(&ctx) else {
                tracing::debug!(cluster = %cluster.name, "mirror has no endpoint; copy dropped");
                return;
            };
            let Ok(addr) = resolve(&pick.address).await else {
                return;
            };
            let copy = async {
                match pools.send(addr, h2, req).await {
                    Ok(resp) => {
                        // Read the answer to the end so the connection can be reused.
                        let _ = resp.into_body().collect().await;
                    }
                    Err(e) => {
                        tracing::debug!(cluster = %cluster.name, "mirror copy failed: {e:?}")
                    }
                }
            };
            match limit {
                Some(t) => {
                    if tokio::time::timeout(t, copy).await.is_err() {
                        tracing::debug!(cluster = %cluster.name, "mirror copy timed out after {t:?}");
                    }
                }
                None => copy.await,
            }
            drop(pick.guard);
        });
    }
}

/// A response body that fails when the route's deadline passes mid-stream: Envoy's route
/// timeout covers the whole response, and a response already started can only be cut.
struct Deadline {
    inner: Body,
    at: tokio::time::Instant,
    /// Made the first time the body has to wait: most bodies are already in when the head
    /// is, and then no timer is made at all.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    fn new(inner: Body, at: tokio::time::Instant) -> Deadline {
        Deadline {
            inner,
            at,
            sleep: None,
        }
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let at = self.at;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err("upstream request timeout".into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

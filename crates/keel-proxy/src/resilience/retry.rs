//! Retries: which failures are retried, how often, after how long, and to which host.
//!
//! [`RetryPolicy::from_route`] is Istio's `retry.ConvertPolicy`
//! (`pilot/pkg/networking/core/route/retry/retry.go`) fused with the Envoy route retry policy
//! it produces; [`RetryState`] is Envoy's per-request `RetryStateImpl`
//! (`source/common/router/retry_state_impl.cc`): the classifier, the remaining-retries count,
//! the fully jittered exponential [`Backoff`] and the cluster's retry circuit breaker
//! ([`RetryBudget`]).
//!
//! ```
//! use keel_proxy::resilience::{AttemptResult, RetryOn, RetryPolicy};
//!
//! // No `retries:` on the route: Istio's mesh default.
//! let policy = RetryPolicy::from_route(None);
//! assert_eq!(policy.num_retries, 2);
//! assert!(policy.retry_on.contains(RetryOn::CONNECT_FAILURE));
//! assert!(policy.should_retry(&AttemptResult::ConnectFailure));
//! let headers = http::HeaderMap::new();
//! assert!(!policy.should_retry(&AttemptResult::Response { status: 503, headers: &headers }));
//! ```

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;
use keel_config::model::networking::virtual_service::HttpRetry;

use super::budget::{RetryBudget, RetryGuard};
use super::flags;

/// Envoy's default retry back-off base interval (`upstream.base_retry_backoff_ms`).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// Istio's mesh-default retries when a route sets none (`retry.DefaultPolicy`).
pub const DEFAULT_NUM_RETRIES: u32 = 2;

/// Istio's default `retryOn`. It names `retriable-status-codes` but lists no code: 503 is
/// only added when istiod runs with `EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY=false` (default
/// true), because a 503 may come after the upstream acted on the request.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// Envoy's `host_selection_retry_max_attempts` as Istio sets it: how many picks a retry may
/// spend looking for a host it has not tried yet before taking any host.
pub const HOST_SELECTION_MAX_ATTEMPTS: u32 = 5;

/// A set of Envoy retry conditions (`x-envoy-retry-on` and `x-envoy-retry-grpc-on` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RetryOn(u32);

impl RetryOn {
    pub const NONE: RetryOn = RetryOn(0);
    /// Any 5xx response, and any reset, connect failure or per-try timeout.
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// 502, 503, 504, and any reset, connect failure or per-try timeout.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// No response at all: reset, disconnect, connect failure, per-try timeout.
    pub const RESET: RetryOn = RetryOn(1 << 2);
    /// Like `reset`, but only when no request byte reached the upstream.
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 3);
    /// The TCP connection could not be made (refused, timed out).
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 4);
    /// 409 Conflict.
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    /// HTTP/2 `REFUSED_STREAM`: the server did not process the request.
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 6);
    /// A status in [`RetryPolicy::retriable_status_codes`].
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 7);
    /// A response header in [`RetryPolicy::retriable_headers`].
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 8);
    /// A response carrying `x-envoy-ratelimited` (from an upstream Envoy).
    pub const ENVOY_RATELIMITED: RetryOn = RetryOn(1 << 9);
    /// Accepted for compatibility; Keel has no HTTP/3 upstreams, so it never fires.
    pub const HTTP3_POST_CONNECT_FAILURE: RetryOn = RetryOn(1 << 10);
    /// `grpc-status` 1 in the response headers.
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 11);
    /// `grpc-status` 4.
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 12);
    /// `grpc-status` 13.
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 13);
    /// `grpc-status` 8.
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 14);
    /// `grpc-status` 14.
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 15);

    const NAMES: [(&'static str, RetryOn); 16] = [
        ("5xx", RetryOn::FIVE_XX),
        ("gateway-error", RetryOn::GATEWAY_ERROR),
        ("reset", RetryOn::RESET),
        ("reset-before-request", RetryOn::RESET_BEFORE_REQUEST),
        ("connect-failure", RetryOn::CONNECT_FAILURE),
        ("retriable-4xx", RetryOn::RETRIABLE_4XX),
        ("refused-stream", RetryOn::REFUSED_STREAM),
        ("retriable-status-codes", RetryOn::RETRIABLE_STATUS_CODES),
        ("retriable-headers", RetryOn::RETRIABLE_HEADERS),
        ("envoy-ratelimited", RetryOn::ENVOY_RATELIMITED),
        (
            "http3-post-connect-failure",
            RetryOn::HTTP3_POST_CONNECT_FAILURE,
        ),
        ("cancelled", RetryOn::GRPC_CANCELLED),
        ("deadline-exceeded", RetryOn::GRPC_DEADLINE_EXCEEDED),
        ("internal", RetryOn::GRPC_INTERNAL),
        ("resource-exhausted", RetryOn::GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", RetryOn::GRPC_UNAVAILABLE),
    ];

    /// The condition an Envoy `retry_on` token names (case-sensitive, as Envoy).
    pub fn from_name(name: &str) -> Option<RetryOn> {
        RetryOn::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn intersects(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The conditions as Envoy spells them, comma-separated (for the admin page).
    pub fn names(self) -> String {
        RetryOn::NAMES
            .iter()
            .filter(|(_, v)| self.contains(*v))
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, rhs: RetryOn) -> RetryOn {
        RetryOn(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for RetryOn {
    fn bitor_assign(&mut self, rhs: RetryOn) {
        self.0 |= rhs.0;
    }
}

/// The route's retry policy, ready for the request path.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (Istio's `attempts`); 0 disables retries.
    pub num_retries: u32,
    pub retry_on: RetryOn,
    /// Statuses `retriable-status-codes` retries (the bare numbers in `retryOn`).
    pub retriable_status_codes: Vec<u16>,
    /// Response headers `retriable-headers` retries on. Istio's API cannot set any, so this is
    /// empty unless the caller fills it (Envoy's `x-envoy-retriable-header-names`).
    pub retriable_headers: Vec<HeaderName>,
    /// Time limit of each attempt (`perTryTimeout`); none by default.
    pub per_try_timeout: Option<Duration>,
    pub backoff_base: Duration,
    /// Envoy caps the back-off at 10 × the base interval.
    pub backoff_max: Duration,
    /// `retryIgnorePreviousHosts` as written; see [`RetryPolicy::ignore_previous_hosts`].
    pub retry_ignore_previous_hosts: Option<bool>,
    /// `retryRemoteLocalities`: retries may move to the next locality priority
    /// (Envoy's `previous_priorities` with update frequency 2). Off by default.
    pub retry_remote_localities: bool,
    /// Conditions in `retryOn` Keel ignored, each with why (as Envoy ignores them).
    pub warnings: Vec<String>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::from_route(None)
    }
}

impl RetryPolicy {
    /// Istio's `ConvertPolicy`: the mesh default when the route has no `retries`; `attempts`
    /// ≤ 0 disables retries; otherwise the default with the route's fields overriding it
    /// (`retryOn` replaces conditions *and* codes; bare status codes in it become
    /// `retriable-status-codes`). With a mesh-wide `defaultHttpRetryPolicy`, pass
    /// `route.retries.or(mesh_default)`, as istiod does.
    pub fn from_route(retries: Option<&HttpRetry>) -> RetryPolicy {
        let mut policy = RetryPolicy {
            num_retries: DEFAULT_NUM_RETRIES,
            retry_on: RetryOn::NONE,
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            per_try_timeout: None,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_BASE * 10,
            retry_ignore_previous_hosts: None,
            retry_remote_localities: false,
            warnings: Vec::new(),
        };
        (policy.retry_on, policy.retriable_status_codes, _) = parse_retry_on(DEFAULT_RETRY_ON);
        let Some(r) = retries else {
            return policy;
        };
        if r.attempts <= 0 {
            return RetryPolicy::disabled();
        }
        policy.num_retries = r.attempts as u32;
        if !r.retry_on.is_empty() {
            let (on, codes, warnings) = parse_retry_on(&r.retry_on);
            policy.retry_on = on;
            policy.retriable_status_codes = codes;
            policy.warnings = warnings;
        }
        policy.per_try_timeout = r
            .per_try_timeout
            .map(|d| d.to_std())
            .filter(|d| !d.is_zero());
        policy.retry_ignore_previous_hosts = r.retry_ignore_previous_hosts;
        policy.retry_remote_localities = r.retry_remote_localities == Some(true);
        if let Some(b) = r.backoff.map(|d| d.to_std()) {
            // Envoy rounds a base below 1 ms up to 1 ms.
            policy.backoff_base = b.max(Duration::from_millis(1));
            policy.backoff_max = policy.backoff_base * 10;
        }
        policy
    }

    /// Istio's inbound (sidecar → local application) policy: retry twice, only requests that
    /// never reached the application (`reset-before-request`), and none for gRPC, whose
    /// streams do not replay well (`BuildDefaultHTTPInboundRoute`, `ENABLE_INBOUND_RETRY_POLICY`).
    pub fn inbound_default(grpc: bool) -> RetryPolicy {
        if grpc {
            return RetryPolicy::disabled();
        }
        RetryPolicy {
            num_retries: DEFAULT_NUM_RETRIES,
            retry_on: RetryOn::RESET_BEFORE_REQUEST,
            retry_ignore_previous_hosts: Some(false),
            ..RetryPolicy::disabled()
        }
    }

    /// No retries (`attempts: 0`).
    pub fn disabled() -> RetryPolicy {
        RetryPolicy {
            num_retries: 0,
            retry_on: RetryOn::NONE,
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            per_try_timeout: None,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_BASE * 10,
            retry_ignore_previous_hosts: Some(false),
            retry_remote_localities: false,
            warnings: Vec::new(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.num_retries > 0 && !self.retry_on.is_empty()
    }

    /// Whether a retry should avoid the endpoints already tried. Istio adds Envoy's
    /// `previous_hosts` predicate by default, except when the route's single destination uses
    /// consistent hashing (`hashed`), where a retry must stay on the hashed host; an explicit
    /// `retryIgnorePreviousHosts` wins either way.
    pub fn ignore_previous_hosts(&self, hashed: bool) -> bool {
        self.retry_ignore_previous_hosts.unwrap_or(!hashed)
    }

    /// Envoy's `wouldRetryFromHeaders` / `wouldRetryFromReset`: whether this attempt's result
    /// is one the policy retries (before counting retries left or the budget).
    pub fn should_retry(&self, attempt: &AttemptResult<'_>) -> bool {
        let on = self.retry_on;
        let any_reset = RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET;
        match *attempt {
            // A circuit breaker refused it: retrying would only add load.
            AttemptResult::Overflow => false,
            AttemptResult::ConnectFailure => {
                on.intersects(any_reset | RetryOn::CONNECT_FAILURE | RetryOn::RESET_BEFORE_REQUEST)
            }
            AttemptResult::Reset { request_sent } => {
                on.intersects(any_reset)
                    || (!request_sent && on.contains(RetryOn::RESET_BEFORE_REQUEST))
            }
            AttemptResult::RefusedStream => on.intersects(any_reset | RetryOn::REFUSED_STREAM),
            AttemptResult::PerTryTimeout => on.intersects(any_reset),
            AttemptResult::Response { status, headers } => self.retries_response(status, headers),
        }
    }

    /// Whether the policy may retry a request after it was sent (so the request must be kept
    /// to be sent again). When it retries only failures that happen before sending (connect
    /// failures, and refused streams on HTTP/1.1 where there are none), the pool hands the
    /// unsent request back and nothing needs to be copied.
    pub fn retries_after_sending(&self, grpc: bool, h2: bool) -> bool {
        let on = self.retry_on;
        let grpc_conditions = RetryOn::GRPC_CANCELLED
            | RetryOn::GRPC_DEADLINE_EXCEEDED
            | RetryOn::GRPC_INTERNAL
            | RetryOn::GRPC_RESOURCE_EXHAUSTED
            | RetryOn::GRPC_UNAVAILABLE;
        self.is_enabled()
            && (on.intersects(
                RetryOn::FIVE_XX
                    | RetryOn::GATEWAY_ERROR
                    | RetryOn::RESET
                    | RetryOn::RETRIABLE_4XX
                    | RetryOn::RETRIABLE_HEADERS
                    | RetryOn::ENVOY_RATELIMITED,
            ) || (on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                && !self.retriable_status_codes.is_empty())
                || self.per_try_timeout.is_some()
                || (grpc && on.intersects(grpc_conditions))
                || (h2 && on.contains(RetryOn::REFUSED_STREAM)))
    }

    fn retries_response(&self, status: u16, headers: &HeaderMap) -> bool {
        let on = self.retry_on;
        let by_status = (on.contains(RetryOn::FIVE_XX) && (500..600).contains(&status))
            || (on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (on.contains(RetryOn::RETRIABLE_4XX) && status == 409)
            || (on.contains(RetryOn::RETRIABLE_STATUS_CODES)
                && self.retriable_status_codes.contains(&status));
        let by_headers = on.intersects(
            RetryOn::RETRIABLE_HEADERS
                | RetryOn::ENVOY_RATELIMITED
                | RetryOn::GRPC_CANCELLED
                | RetryOn::GRPC_DEADLINE_EXCEEDED
                | RetryOn::GRPC_INTERNAL
                | RetryOn::GRPC_RESOURCE_EXHAUSTED
                | RetryOn::GRPC_UNAVAILABLE,
        );
        // The common answer (a success, nothing header-based configured) needs no lookup.
        if !by_status && !by_headers {
            return false;
        }
        let (ratelimited, grpc) = ratelimited_and_grpc_status(headers);
        // A rate-limited answer from an upstream Envoy is only retried when asked for.
        if ratelimited {
            return on.contains(RetryOn::ENVOY_RATELIMITED);
        }
        if on.contains(RetryOn::FIVE_XX) && (500..600).contains(&status) {
            return true;
        }
        if on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_STATUS_CODES)
            && self.retriable_status_codes.contains(&status)
        {
            return true;
        }
        if on.contains(RetryOn::RETRIABLE_HEADERS)
            && self
                .retriable_headers
                .iter()
                .any(|h| headers.contains_key(h))
        {
            return true;
        }
        // Envoy reads `grpc-status` from the response headers only (trailers-only responses).
        match grpc {
            Some(1) => on.contains(RetryOn::GRPC_CANCELLED),
            Some(4) => on.contains(RetryOn::GRPC_DEADLINE_EXCEEDED),
            Some(8) => on.contains(RetryOn::GRPC_RESOURCE_EXHAUSTED),
            Some(13) => on.contains(RetryOn::GRPC_INTERNAL),
            Some(14) => on.contains(RetryOn::GRPC_UNAVAILABLE),
            _ => false,
        }
    }
}

static X_ENVOY_RATELIMITED: http::HeaderName = http::HeaderName::from_static("x-envoy-ratelimited");
static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Whether `x-envoy-ratelimited` is present, and `grpc-status` as a number. The default
/// mesh retry policy (`cancelled`, `unavailable`) asks this of every response, and most
/// have a handful of headers: comparing their names (an integer comparison for the standard
/// ones) is cheaper than hashing these two names for lookups.
fn ratelimited_and_grpc_status(headers: &HeaderMap) -> (bool, Option<u32>) {
    let parse = |v: &http::HeaderValue| v.to_str().ok().and_then(|v| v.trim().parse().ok());
    if headers.keys_len() > 8 {
        let status = headers.get(&GRPC_STATUS).and_then(parse);
        return (headers.contains_key(&X_ENVOY_RATELIMITED), status);
    }
    let (mut ratelimited, mut status) = (false, None);
    for name in headers.keys() {
        if *name == X_ENVOY_RATELIMITED {
            ratelimited = true;
        } else if *name == GRPC_STATUS {
            // The first value, as `get` returns it.
            status = headers.get(name).and_then(parse);
        }
    }
    (ratelimited, status)
}

/// Istio's `parseRetryOn` followed by Envoy's parse: tokens trimmed, empty ones skipped;
/// a number that is a known HTTP status (Go's `http.StatusText`) becomes a retriable status
/// code (and turns on `retriable-status-codes`); any other token must be an Envoy condition,
/// or it is ignored with a warning, as Envoy ignores it.
pub fn parse_retry_on(value: &str) -> (RetryOn, Vec<u16>, Vec<String>) {
    let mut on = RetryOn::NONE;
    let mut codes = Vec::new();
    let mut warnings = Vec::new();
    for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if let Some(code) = token.parse::<u16>().ok().filter(|c| is_known_status(*c)) {
            if !codes.contains(&code) {
                codes.push(code);
            }
        } else if let Some(v) = RetryOn::from_name(token) {
            if v == RetryOn::HTTP3_POST_CONNECT_FAILURE {
                warnings.push(format!(
                    "retryOn \"{token}\" has no effect: keel-proxy does not use HTTP/3 upstream"
                ));
            }
            on |= v;
        } else {
            warnings.push(format!(
                "retryOn \"{token}\" is not a retry condition Envoy knows; ignored (known: {}, or an HTTP status code)",
                RetryOn::NAMES.map(|(n, _)| n).join(", ")
            ));
        }
    }
    if !codes.is_empty() {
        on |= RetryOn::RETRIABLE_STATUS_CODES;
    }
    (on, codes, warnings)
}

/// Whether Go's `http.StatusText` knows the code (Istio only treats those as status codes).
fn is_known_status(code: u16) -> bool {
    matches!(code,
        100..=103
        | 200..=208 | 226
        | 300..=305 | 307 | 308
        | 400..=418 | 421..=426 | 428 | 429 | 431 | 451
        | 500..=508 | 510 | 511)
}

/// How one upstream attempt ended, as the retry classifier and outlier detection see it.
#[derive(Debug, Clone, Copy)]
pub enum AttemptResult<'a> {
    /// No TCP connection (refused, unreachable, connect timeout): `UF`.
    ConnectFailure,
    /// The stream was reset or the connection closed before response headers; `request_sent`
    /// says whether any request byte had been written (for `reset-before-request`).
    Reset { request_sent: bool },
    /// HTTP/2 `REFUSED_STREAM`: the upstream did not process the request.
    RefusedStream,
    /// The per-try timeout fired before response headers.
    PerTryTimeout,
    /// A circuit breaker refused the attempt (`UO`); never retried.
    Overflow,
    /// Response headers arrived.
    Response { status: u16, headers: &'a HeaderMap },
}

/// What to do after an attempt ([`RetryState::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Sleep this long, then try again (another host if the policy says so).
    Retry { backoff: Duration },
    /// The result is final: return it (success, or a failure the policy does not retry).
    Done,
    /// Retriable, but no retries are left: return the last result, flagged `URX`.
    RetriesExhausted,
    /// Retriable, but the cluster's retry budget / `maxRetries` is spent: return the last
    /// result, flagged `UO`.
    Overflow,
}

/// Envoy's fully jittered exponential back-off: the n-th retry waits a uniform random time in
/// `[0, min(base × 2^(n-1), max))`, in whole milliseconds.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u64,
    max_ms: u64,
    next_ms: u64,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let base_ms = (base.as_millis() as u64).max(1);
        let max_ms = (max.as_millis() as u64).max(base_ms);
        Backoff {
            base_ms,
            max_ms,
            next_ms: base_ms,
        }
    }

    /// The next wait (Envoy's `JitteredExponentialBackOffStrategy::nextBackOffMs`).
    pub fn next(&mut self, rng: &mut impl rand::RngCore) -> Duration {
        let interval = self.next_ms;
        self.next_ms = if interval < self.max_ms / 2 {
            interval * 2
        } else {
            self.max_ms
        };
        Duration::from_millis(rng.next_u64() % interval)
    }

    /// Back to the base interval.
    pub fn reset(&mut self) {
        self.next_ms = self.base_ms;
    }
}

/// One request's retry bookkeeping (Envoy's `RetryStateImpl`).
#[derive(Debug)]
pub struct RetryState {
    retries_remaining: u32,
    backoff: Backoff,
    attempts: u32,
    /// Inline for the usual one or two attempts: a heap list cost an allocation per request.
    tried: smallvec::SmallVec<[usize; 3]>,
    /// The cluster's retry slot held from a retry's scheduling until the next decision, as
    /// Envoy holds `retries().inc()` until `resetRetry()`.
    active_retry: Option<RetryGuard>,
}

impl RetryState {
    pub fn new(policy: &RetryPolicy) -> RetryState {
        RetryState {
            retries_remaining: if policy.is_enabled() {
                policy.num_retries
            } else {
                0
            },
            backoff: Backoff::new(policy.backoff_base, policy.backoff_max),
            attempts: 0,
            tried: smallvec::SmallVec::new(),
            active_retry: None,
        }
    }

    /// Records that an attempt goes to `endpoint` (index in the cluster).
    pub fn start_attempt(&mut self, endpoint: usize) {
        self.attempts += 1;
        if !self.tried.contains(&endpoint) {
            self.tried.push(endpoint);
        }
    }

    /// Attempts started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Endpoints the next pick should avoid (for `PickContext::exclude`): those tried, when
    /// the policy ignores previous hosts.
    pub fn exclude(&self, policy: &RetryPolicy, hashed: bool) -> &[usize] {
        if policy.ignore_previous_hosts(hashed) {
            &self.tried
        } else {
            &[]
        }
    }

    /// Decides after an attempt, as Envoy's `shouldRetry`: not retriable → done; no retries
    /// left → exhausted; otherwise one retry is used up, and the cluster's budget (given the
    /// requests active and pending on it) must allow one more concurrent retry.
    pub fn decide(
        &mut self,
        policy: &RetryPolicy,
        result: &AttemptResult<'_>,
        budget: &Arc<RetryBudget>,
        active_requests: u64,
        rng: &mut impl rand::RngCore,
    ) -> RetryDecision {
        self.active_retry = None;
        if !policy.should_retry(result) {
            return RetryDecision::Done;
        }
        if self.retries_remaining == 0 {
            return RetryDecision::RetriesExhausted;
        }
        self.retries_remaining -= 1;
        match budget.try_acquire(active_requests) {
            Some(guard) => {
                self.active_retry = Some(guard);
                RetryDecision::Retry {
                    backoff: self.backoff.next(rng),
                }
            }
            None => RetryDecision::Overflow,
        }
    }
}

/// The response flag of a request whose retries ran out after `last` (Envoy prints the
/// attempt's own flag with `URX`): `UF,URX`, `UC,URX`, `UT,URX`, or `URX` for a response.
pub fn exhausted_flag(last: &AttemptResult<'_>) -> &'static str {
    match last {
        AttemptResult::ConnectFailure => "UF,URX",
        AttemptResult::Reset { .. } | AttemptResult::RefusedStream => "UC,URX",
        AttemptResult::PerTryTimeout => "UT,URX",
        AttemptResult::Overflow => flags::UO,
        AttemptResult::Response { .. } => flags::URX,
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;

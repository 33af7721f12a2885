//! Fault injection (`http[].fault`): delay and/or abort a share of a route's requests.
//!
//! [`FaultPolicy::from_route`] is Istio's `TranslateFault` (`pilot/pkg/networking/core/route/
//! route.go`) with the Envoy fault filter's reading of the result:
//!
//! * delay: `fixedDelay` for `percentage` of requests, else for the deprecated integer
//!   `percent`; exponential delays are dropped (Istio warns "not yet supported");
//! * abort: `httpStatus`, or `grpcStatus` by name (answered as HTTP 200 with that
//!   `grpc-status`, as Envoy does); `http2Error` is dropped (Istio: "Only HTTP and gRPC type
//!   abort faults are supported");
//! * **a missing percentage means 0 %**, not the 100 % the API reference promises: Istio sends
//!   Envoy an unset (zero) fraction, so the fault never fires (istio/istio#36303, #39969). Keel
//!   does the same and says so in [`FaultPolicy::warnings`].
//!
//! Delay and abort are drawn independently on every request; a delayed request may then be
//! aborted.
//!
//! ```
//! use keel_config::model::networking::virtual_service::{FaultAbort, HttpFaultInjection};
//! use keel_config::types::Percent;
//! use keel_proxy::resilience::{Abort, FaultPolicy};
//!
//! let fault = HttpFaultInjection {
//!     abort: Some(FaultAbort {
//!         http_status: Some(500),
//!         percentage: Some(Percent { value: 100.0 }),
//!         ..Default::default()
//!     }),
//!     ..Default::default()
//! };
//! let policy = FaultPolicy::from_route(Some(&fault));
//! let decision = policy.decide(&mut rand::rng());
//! assert_eq!(decision.abort, Some(Abort::Http(500)));
//! assert_eq!(decision.flags(), "FI");
//! ```

use std::time::Duration;

use http::StatusCode;
use keel_config::model::networking::virtual_service::{FaultAbort, FaultDelay, HttpFaultInjection};

use super::{Fraction, flags, grpc_status_code, http_to_grpc_status};
use crate::error::ProxyError;

/// How an aborted request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// This HTTP status (a gRPC request gets the matching `grpc-status` instead).
    Http(u16),
    /// HTTP 200 with this `grpc-status` (trailers-only gRPC answer).
    Grpc(u32),
}

impl Abort {
    /// The HTTP status of the answer: the configured one, or 200 for a gRPC status.
    pub fn http_status(&self) -> StatusCode {
        match *self {
            Abort::Http(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            Abort::Grpc(_) => StatusCode::OK,
        }
    }

    /// The `grpc-status` of the answer: the configured gRPC status, or for an HTTP status on a
    /// gRPC request Envoy's HTTP→gRPC mapping; none for plain HTTP requests.
    pub fn grpc_status(&self, grpc_request: bool) -> Option<u32> {
        match *self {
            Abort::Grpc(c) => Some(c),
            Abort::Http(s) if grpc_request => Some(http_to_grpc_status(s)),
            Abort::Http(_) => None,
        }
    }
}

/// What to inject into one request ([`FaultPolicy::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultDecision {
    /// Wait this long before going on (flag `DI`).
    pub delay: Option<Duration>,
    /// Then answer this instead of forwarding (flag `FI`).
    pub abort: Option<Abort>,
}

impl FaultDecision {
    /// The response flags, as Envoy prints them: `DI`, `FI`, `DI,FI` or empty.
    pub fn flags(&self) -> &'static str {
        match (self.delay.is_some(), self.abort.is_some()) {
            (true, true) => "DI,FI",
            (true, false) => flags::DI,
            (false, true) => flags::FI,
            (false, false) => "",
        }
    }

    pub fn is_empty(&self) -> bool {
        self.delay.is_none() && self.abort.is_none()
    }
}

/// A route's fault injection, ready for the request path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultPolicy {
    /// The delay and the share of requests it applies to.
    pub delay: Option<(Duration, Fraction)>,
    /// The abort and the share of requests it applies to.
    pub abort: Option<(Abort, Fraction)>,
    /// What Keel (like Istio) dropped or reads differently from the API reference.
    pub warnings: Vec<String>,
}

impl FaultPolicy {
    /// Istio's `TranslateFault` of the route's `fault`.
    pub fn from_route(fault: Option<&HttpFaultInjection>) -> FaultPolicy {
        let mut policy = FaultPolicy::default();
        let Some(fault) = fault else {
            return policy;
        };
        if let Some(d) = &fault.delay {
            policy.delay = delay(d, &mut policy.warnings);
        }
        if let Some(a) = &fault.abort {
            policy.abort = abort(a, &mut policy.warnings);
        }
        policy
    }

    /// Whether the route has a fault Istio would configure. Istio documents that a route's
    /// timeout and retries are not enabled when it has one.
    pub fn is_active(&self) -> bool {
        self.delay.is_some() || self.abort.is_some()
    }

    /// Draws the delay and the abort independently, as Envoy's fault filter does.
    pub fn decide(&self, rng: &mut impl rand::RngCore) -> FaultDecision {
        FaultDecision {
            delay: self
                .delay
                .filter(|(_, share)| share.hit(rng))
                .map(|(d, _)| d),
            abort: self
                .abort
                .filter(|(_, share)| share.hit(rng))
                .map(|(a, _)| a),
        }
    }

    /// The answer to an aborted request on `route` (flag `FI`). The detail starts with
    /// Envoy's body, `fault filter abort`.
    pub fn abort_error(&self, route: &str, abort: Abort) -> ProxyError {
        let share = self.abort.map_or(0.0, |(_, f)| f.percent());
        let what = match abort {
            Abort::Http(s) => format!("HTTP {s}"),
            Abort::Grpc(c) => format!("gRPC status {c}"),
        };
        ProxyError {
            status: abort.http_status(),
            flag: flags::FI,
            detail: format!(
                "fault filter abort: route {route} aborts {share}% of requests with {what} (VirtualService fault.abort)"
            ),
        }
    }
}

fn delay(d: &FaultDelay, warnings: &mut Vec<String>) -> Option<(Duration, Fraction)> {
    let share = match d.percentage {
        Some(p) => Fraction::from_percent(p.value),
        None => Fraction::from_integer_percent(d.percent),
    };
    let Some(fixed) = d.fixed_delay else {
        warnings.push(if d.exponential_delay.is_some() {
            "fault.delay.exponentialDelay is not supported (Istio drops it); use fixedDelay".into()
        } else {
            "fault.delay has no fixedDelay; ignored".into()
        });
        return None;
    };
    // Envoy reads the delay in whole milliseconds and skips a zero delay.
    let ms = fixed.to_std().as_millis() as u64;
    if ms == 0 {
        warnings.push("fault.delay.fixedDelay is under 1ms; Envoy injects no delay".into());
        return None;
    }
    if d.percentage.is_none() && d.percent == 0 {
        warnings.push(
            "fault.delay has no percentage: Istio injects it into 0% of requests (istio/istio#36303); set percentage: {value: 100} to delay every request".into(),
        );
    }
    Some((Duration::from_millis(ms), share))
}

fn abort(a: &FaultAbort, warnings: &mut Vec<String>) -> Option<(Abort, Fraction)> {
    let kind = if let Some(s) = a.http_status {
        match u16::try_from(s).ok().filter(|s| (200..600).contains(s)) {
            Some(s) => Abort::Http(s),
            None => {
                warnings.push(format!(
                    "fault.abort.httpStatus {s} is outside 200-599; ignored"
                ));
                return None;
            }
        }
    } else if let Some(name) = &a.grpc_status {
        match grpc_status_code(name) {
            Some(c) => Abort::Grpc(c),
            None => {
                warnings.push(format!(
                    "fault.abort.grpcStatus \"{name}\" is not a gRPC status name (e.g. UNAVAILABLE); ignored"
                ));
                return None;
            }
        }
    } else {
        warnings.push(if a.http2_error.is_some() {
            "fault.abort.http2Error is not supported (Istio supports only HTTP and gRPC aborts); ignored".into()
        } else {
            "fault.abort has no httpStatus or grpcStatus; ignored".into()
        });
        return None;
    };
    let share = match a.percentage {
        Some(p) => Fraction::from_percent(p.value),
        None => {
            warnings.push(
                "fault.abort has no percentage: Istio aborts 0% of requests (istio/istio#36303); set percentage: {value: 100} to abort every request".into(),
            );
            Fraction::NEVER
        }
    };
    Some((kind, share))
}

#[cfg(test)]
#[path = "fault_tests.rs"]
mod tests;

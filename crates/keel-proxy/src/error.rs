//! Errors the proxy answers itself. Each maps to an Envoy/Istio response flag and a sentence
//! that says exactly what failed, sent in the `x-keel-error` header and the access log, so a
//! 503 is never a mystery.

use http::StatusCode;

/// A response the proxy generates instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub status: StatusCode,
    /// Envoy's response flag: `NR`, `UH`, `UF`, `NC`, `UC`, `URX`, ...
    pub flag: &'static str,
    /// What happened, naming the route, cluster and endpoint involved.
    pub detail: String,
}

impl ProxyError {
    /// No route matched the request (404 NR).
    pub fn no_route(authority: &str, path: &str, listener: &str) -> Self {
        ProxyError {
            status: StatusCode::NOT_FOUND,
            flag: "NR",
            detail: format!("no route matched {authority}{path} on listener {listener}"),
        }
    }

    /// The route's destination host is in no registry (503 NC).
    pub fn no_cluster(cluster: &str) -> Self {
        let host = cluster.rsplit('|').next().unwrap_or(cluster);
        ProxyError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            flag: "NC",
            detail: format!("no cluster {cluster}: host {host} is in no ServiceEntry or Service"),
        }
    }

    /// The cluster has no (healthy) endpoints (503 UH).
    pub fn no_healthy_upstream(cluster: &str) -> Self {
        ProxyError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            flag: "UH",
            detail: format!("no healthy upstream: cluster {cluster} has no endpoints"),
        }
    }

    /// Connecting to the chosen endpoint failed (503 UF).
    pub fn connect_failed(cluster: &str, endpoint: &str, cause: &str) -> Self {
        ProxyError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            flag: "UF",
            detail: format!("upstream connect failed: {cluster} {endpoint} {cause}"),
        }
    }

    /// The upstream connection broke before a response arrived (503 UC).
    pub fn upstream_reset(cluster: &str, endpoint: &str, cause: &str) -> Self {
        ProxyError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            flag: "UC",
            detail: format!("upstream connection terminated: {cluster} {endpoint} {cause}"),
        }
    }

    /// No TCP or TLS route took the connection (NR); `what` describes it (`TCP connection
    /// to 10.0.0.1:3306`, `TLS connection to ... with SNI "a.example.com"`).
    pub fn no_l4_route(what: &str, listener: &str) -> Self {
        ProxyError {
            status: StatusCode::NOT_FOUND,
            flag: "NR",
            detail: format!("no route matched {what} on listener {listener}"),
        }
    }

    /// A PASSTHROUGH cluster for a connection that was not redirected (503 UH): there is no
    /// original destination to forward to.
    pub fn no_original_dst(cluster: &str) -> Self {
        ProxyError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            flag: "UH",
            detail: format!(
                "no healthy upstream: cluster {cluster} forwards to the original destination, and this connection has none (it was not redirected by iptables)"
            ),
        }
    }

    /// A request the proxy can't forward as given (400 DPE).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ProxyError {
            status: StatusCode::BAD_REQUEST,
            flag: "DPE",
            detail: detail.into(),
        }
    }

    /// The header value: `UF upstream connect failed: ...`.
    pub fn header_value(&self) -> String {
        // Header values must be visible ASCII; anything else is replaced.
        format!("{} {}", self.flag, self.detail)
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.flag, self.detail)
    }
}

/// The header carrying [`ProxyError::header_value`].
pub const ERROR_HEADER: &str = "x-keel-error";

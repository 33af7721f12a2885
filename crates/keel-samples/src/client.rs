//! Outgoing calls, made as the samples' containers make them: an HTTP/1.1 `GET` to
//! `http://NAME:PORT/PATH`, one connection per call, within a timeout.
//!
//! When an HTTP proxy is configured (`http_proxy`/`HTTP_PROXY`, as Python's requests, Ruby's
//! Net::HTTP and curl read them) the call goes to the proxy in absolute form —
//! `GET http://reviews:9080/reviews/0 HTTP/1.1` — unless `no_proxy`/`NO_PROXY` names the host.
//! This is how Keel's local mesh captures an app's traffic without privileges: the sidecar's
//! outbound listener is handed to the app as its HTTP proxy.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue, USER_AGENT};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http_util::read_body;

/// Replies larger than this are treated as failures.
pub const MAX_REPLY: usize = 4 << 20;

/// Where a call goes: a host name (or address) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Target {
            host: host.into(),
            port,
        }
    }

    /// A Kubernetes-style service name as the Bookinfo apps build it: `NAME` or, with a
    /// services domain, `NAME.DOMAIN` (`SERVICES_DOMAIN`).
    pub fn service(name: &str, domain: Option<&str>, port: u16) -> Self {
        match domain.filter(|d| !d.is_empty()) {
            Some(domain) => Target::new(format!("{name}.{domain}"), port),
            None => Target::new(name, port),
        }
    }
}

impl fmt::Display for Target {
    /// The authority: `reviews:9080`, `[::1]:9080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A proxy setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid HTTP proxy {value:?}: {reason}")]
pub struct ProxyError {
    value: String,
    reason: &'static str,
}

/// The HTTP proxy calls go through, if any, and the hosts that bypass it.
#[derive(Clone, Debug, Default)]
pub struct Proxy {
    via: Option<Target>,
    no_proxy: Vec<String>,
}

impl Proxy {
    /// No proxy: every call connects to its target.
    pub fn none() -> Self {
        Proxy::default()
    }

    /// Every call goes through the HTTP proxy at `host:port`.
    pub fn via(host: impl Into<String>, port: u16) -> Self {
        Proxy {
            via: Some(Target::new(host, port)),
            no_proxy: Vec::new(),
        }
    }

    /// Reads `http_proxy` (then `HTTP_PROXY`) and `no_proxy` (then `NO_PROXY`), the lowercase
    /// names first as curl and Python's requests do.
    pub fn from_env() -> Result<Self, ProxyError> {
        let var = |lower: &str, upper: &str| {
            std::env::var(lower)
                .ok()
                .or_else(|| std::env::var(upper).ok())
        };
        Proxy::parse(
            var("http_proxy", "HTTP_PROXY").as_deref(),
            var("no_proxy", "NO_PROXY").as_deref(),
        )
    }

    /// Parses a proxy URL (`http://127.0.0.1:15001`, `127.0.0.1:15001`; an empty value means
    /// none) and a `no_proxy` list (`localhost,.svc,example.com:8080`, `*`).
    pub fn parse(proxy: Option<&str>, no_proxy: Option<&str>) -> Result<Self, ProxyError> {
        let no_proxy = no_proxy
            .unwrap_or("")
            .split(',')
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        let Some(value) = proxy.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Proxy {
                via: None,
                no_proxy,
            });
        };
        let err = |reason| ProxyError {
            value: value.to_owned(),
            reason,
        };
        let with_scheme = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        let uri: Uri = with_scheme.parse().map_err(|_| err("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(err("only http:// proxies are supported"));
        }
        let authority = uri.authority().ok_or_else(|| err("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(err("no host"));
        }
        Ok(Proxy {
            via: Some(Target::new(host, authority.port_u16().unwrap_or(80))),
            no_proxy,
        })
    }

    /// The proxy a call to `target` goes through, if any.
    pub fn for_target(&self, target: &Target) -> Option<&Target> {
        let via = self.via.as_ref()?;
        let host = target.host.to_ascii_lowercase();
        let with_port = format!("{host}:{}", target.port);
        let bypass = self.no_proxy.iter().any(|e| {
            e == "*"
                || *e == host
                || *e == with_port
                || host.ends_with(&format!(".{e}"))
                || with_port.ends_with(&format!(".{e}"))
        });
        if bypass { None } else { Some(via) }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled (the proxy's, when there is one).
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No complete reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The exchange failed (connection closed, malformed reply, ...).
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (an unusable path or header).
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    /// The reply body could not be read.
    #[error("reading the reply failed: {0}")]
    Body(String),
}

/// A reply: status and whole body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

/// Makes outgoing calls, through the configured proxy.
#[derive(Clone, Debug, Default)]
pub struct Client {
    proxy: Proxy,
}

impl Client {
    /// A client using `proxy`.
    pub fn new(proxy: Proxy) -> Self {
        Client { proxy }
    }

    /// `GET http://target/path` with `headers`, complete within `timeout` (connecting, sending
    /// and reading the whole reply).
    pub async fn get(
        &self,
        target: &Target,
        path: &str,
        headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        tokio::time::timeout(timeout, self.exchange(target, path, headers))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn exchange(
        &self,
        target: &Target,
        path: &str,
        mut headers: HeaderMap,
    ) -> Result<Reply, ClientError> {
        let (dial, uri) = match self.proxy.for_target(target) {
            Some(proxy) => (proxy, format!("http://{target}{path}")),
            None => (target, path.to_owned()),
        };
        let stream = TcpStream::connect((dial.host.as_str(), dial.port))
            .await
            .map_err(|source| ClientError::Connect {
                addr: dial.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = if target.port == 80 {
            target.host.clone()
        } else {
            target.to_string()
        };
        headers.insert(
            HOST,
            HeaderValue::from_str(&authority).map_err(http::Error::from)?,
        );
        if !headers.contains_key(USER_AGENT) {
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("keel-sample/", env!("CARGO_PKG_VERSION"))),
            );
        }
        let mut req = Request::get(uri).body(Empty::<Bytes>::new())?;
        *req.headers_mut() = headers;
        let res = sender.send_request(req).await?;
        let status = res.status();
        let body = read_body(res.into_body(), MAX_REPLY)
            .await
            .map_err(ClientError::Body)?;
        Ok(Reply { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_like_curl() {
        let p = Proxy::parse(Some("http://127.0.0.1:15001/"), None).unwrap_or_default();
        assert_eq!(p.via, Some(Target::new("127.0.0.1", 15001)));
        let p = Proxy::parse(Some("localhost:3128"), None).unwrap_or_default();
        assert_eq!(p.via, Some(Target::new("localhost", 3128)));
        let p = Proxy::parse(Some("http://[::1]"), None).unwrap_or_default();
        assert_eq!(p.via, Some(Target::new("::1", 80)));
        assert!(Proxy::parse(Some(""), None).is_ok_and(|p| p.via.is_none()));
        assert!(Proxy::parse(Some("https://proxy:443"), None).is_err());
        assert!(Proxy::parse(Some("http://"), None).is_err());
    }

    #[test]
    fn no_proxy_matches_hosts_suffixes_and_ports() {
        let p = Proxy::parse(
            Some("proxy:1"),
            Some("localhost, .svc.cluster.local,ratings:9080"),
        )
        .unwrap_or_default();
        assert!(p.for_target(&Target::new("localhost", 80)).is_none());
        assert!(
            p.for_target(&Target::new("reviews.default.svc.cluster.local", 9080))
                .is_none()
        );
        assert!(p.for_target(&Target::new("ratings", 9080)).is_none());
        assert!(p.for_target(&Target::new("ratings", 9081)).is_some());
        assert!(p.for_target(&Target::new("reviews", 9080)).is_some());
        let all = Proxy::parse(Some("proxy:1"), Some("*")).unwrap_or_default();
        assert!(all.for_target(&Target::new("reviews", 9080)).is_none());
    }

    #[test]
    fn service_names_take_the_domain() {
        assert_eq!(
            Target::service("reviews", Some("default.svc.cluster.local"), 9080).to_string(),
            "reviews.default.svc.cluster.local:9080"
        );
        assert_eq!(
            Target::service("reviews", Some(""), 9080).to_string(),
            "reviews:9080"
        );
        assert_eq!(Target::new("::1", 9080).to_string(), "[::1]:9080");
    }
}

//! A client for the API: one HTTP/1.1 connection per call, which is all a CLI needs.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::server::percent_encode;
use super::{ApplyResponse, DeleteResponse, ErrorBody, INPUTS_CONTENT_TYPE, InputFile, Inputs};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the address (the control plane isn't running, or runs elsewhere).
    #[error("cannot reach the control plane at {server}: {source}")]
    Unreachable {
        server: String,
        source: std::io::Error,
    },
    /// The control plane answered with an error.
    #[error("{}", .body.message)]
    Api { status: StatusCode, body: ErrorBody },
    /// The server is not a Keel control plane, or the connection broke.
    #[error("{0}")]
    Protocol(String),
    #[error("invalid server address {0:?}: use http://HOST:PORT")]
    BadAddress(String),
}

/// Talks to one control plane.
#[derive(Debug, Clone)]
pub struct Client {
    /// `host:port`.
    authority: String,
    /// As the user gave it, for messages.
    server: String,
}

impl Client {
    /// `http://127.0.0.1:15080`, or just `127.0.0.1:15080`.
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let rest = server.strip_prefix("http://").unwrap_or(server);
        if rest.contains("://") {
            return Err(ClientError::BadAddress(server.to_string()));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
            return Err(ClientError::BadAddress(server.to_string()));
        }
        Ok(Client {
            authority: authority.to_string(),
            server: format!("http://{authority}"),
        })
    }

    /// The server's URL, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Applies files as one all-or-nothing change.
    pub async fn apply(
        &self,
        inputs: Vec<InputFile>,
        namespace: Option<&str>,
        dry_run: bool,
    ) -> Result<ApplyResponse, ClientError> {
        let path = write_path("/apis/apply", namespace, dry_run);
        self.send_inputs(&path, inputs).await
    }

    /// Deletes the resources the files name.
    pub async fn delete(
        &self,
        inputs: Vec<InputFile>,
        namespace: Option<&str>,
        dry_run: bool,
    ) -> Result<DeleteResponse, ClientError> {
        let path = write_path("/apis/delete", namespace, dry_run);
        self.send_inputs(&path, inputs).await
    }

    /// A `kind: List` of the stored objects of a kind (any name kubectl takes for it).
    pub async fn list(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut path = format!("/apis/resources?kind={}", percent_encode(kind));
        if let Some(ns) = namespace {
            path.push_str(&format!("&namespace={}", percent_encode(ns)));
        }
        if let Some(n) = name {
            path.push_str(&format!("&name={}", percent_encode(n)));
        }
        self.call(Method::GET, &path, None).await
    }

    /// The connected proxies and where each stands (`keel proxy-status`).
    pub async fn proxies(&self) -> Result<crate::xds::ProxiesResponse, ClientError> {
        self.call(Method::GET, "/apis/proxies", None).await
    }

    /// The body of a GET to any path of this server, for servers that aren't the control
    /// plane's API (a proxy's admin port: `/config_dump`, `/clusters`). Non-2xx is an error.
    pub async fn get_bytes(&self, path: &str) -> Result<Bytes, ClientError> {
        let (status, bytes) = self.request(Method::GET, path, None).await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(ClientError::Protocol(format!(
                "{}{path} answered {status}",
                self.server
            )))
        }
    }

    /// `{"version", "gitCommit", "storeVersion"}`.
    pub async fn version(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/version", None).await
    }

    async fn send_inputs<T: DeserializeOwned>(
        &self,
        path: &str,
        inputs: Vec<InputFile>,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(&Inputs { inputs })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(Method::POST, path, Some(body)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.request(method, path, body).await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Protocol(format!(
                    "unexpected answer from {} ({e}); is it a Keel control plane?",
                    self.server
                ))
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status, body }),
            Err(_) => Err(ClientError::Protocol(format!(
                "{} answered {status}; is it a Keel control plane?",
                self.server
            ))),
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            server: self.server.clone(),
            source,
        };
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
        let broken = |e: hyper::Error| {
            ClientError::Protocol(format!("the connection to {} failed: {e}", self.server))
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(broken)?;
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(
                header::USER_AGENT,
                concat!("keel/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, INPUTS_CONTENT_TYPE);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(broken)?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(broken)?.to_bytes();
        driver.abort();
        Ok((status, bytes))
    }
}

fn write_path(base: &str, namespace: Option<&str>, dry_run: bool) -> String {
    let mut params = Vec::new();
    if let Some(ns) = namespace {
        params.push(format!("namespace={}", percent_encode(ns)));
    }
    if dry_run {
        params.push("dryRun=true".to_string());
    }
    if params.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", params.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let c = Client::new("http://127.0.0.1:15080/").expect("valid");
        assert_eq!(c.server(), "http://127.0.0.1:15080");
        assert_eq!(
            Client::new("localhost:1").expect("valid").authority,
            "localhost:1"
        );
        for bad in ["https://x:1", "x", "http://x:1/path", ""] {
            assert!(Client::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            write_path("/a", Some("p q"), true),
            "/a?namespace=p%20q&dryRun=true"
        );
    }
}

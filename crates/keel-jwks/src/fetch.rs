//! The one side effect of fetching: an HTTP GET. [`Fetcher`] is what the resolver calls
//! (tests give it a fake); [`HttpFetcher`] is the real one — hyper's client over rustls with
//! ring, HTTP/1.1 or HTTP/2 by ALPN, redirects followed, the body capped.

use std::error::Error as StdError;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// A boxed future that owns what it needs, so a fetch can run in a task of its own.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An HTTP GET. No timeout of its own: the resolver bounds every call.
pub trait Fetcher: Send + Sync {
    /// The body of a 2xx answer to `GET url`, or why there is none (a sentence that names
    /// the cause, for the log and `/debug/jwksz`).
    fn get(&self, url: &str) -> BoxFuture<Result<Vec<u8>, String>>;
}

/// Where the system's CA bundle is on Debian, Ubuntu, Alpine and Arch (and what Keel's TLS
/// origination reads): added to Mozilla's roots, so a CA installed on the host is trusted
/// too, as Go's `x509.SystemCertPool` makes istiod trust it.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A key set or an OpenID configuration larger than this is refused: real ones are a few
/// kilobytes, and a fetch must not let a misbehaving server fill the control plane's memory.
pub const MAX_BODY: usize = 1024 * 1024;

/// Go's `http.Client` gives up after 10 redirects; so does Keel.
const MAX_REDIRECTS: usize = 10;

/// How the real fetcher trusts HTTPS servers.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// A PEM bundle of further CAs (`--jwks-ca`, `KEEL_JWKS_CA`): for issuers under a
    /// private CA (Istio's `/cacerts/extra.pem`).
    pub extra_ca: Option<PathBuf>,
}

/// The real fetcher. The HTTP client (and its root store) is built at the first fetch, so a
/// proxy whose configuration fetches nothing never holds it.
#[derive(Clone)]
pub struct HttpFetcher {
    inner: Arc<HttpInner>,
}

struct HttpInner {
    extra: Vec<CertificateDer<'static>>,
    client: OnceLock<Result<HttpClient, String>>,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

impl HttpFetcher {
    /// Reads `--jwks-ca` now, so a wrong path stops the program at start with the reason
    /// rather than failing every fetch later.
    pub fn new(options: &ClientOptions) -> Result<HttpFetcher, String> {
        let extra = match &options.extra_ca {
            Some(path) => read_ca(path)?,
            None => Vec::new(),
        };
        Ok(HttpFetcher {
            inner: Arc::new(HttpInner {
                extra,
                client: OnceLock::new(),
            }),
        })
    }
}

fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the JWKS CA bundle {}: {e} (give a PEM file of CA certificates with --jwks-ca or KEEL_JWKS_CA)",
            path.display()
        )
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the JWKS CA bundle {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the JWKS CA bundle {} holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

impl HttpInner {
    fn client(&self) -> Result<HttpClient, String> {
        self.client
            .get_or_init(|| build_client(&self.extra))
            .clone()
    }
}

fn build_client(extra: &[CertificateDer<'static>]) -> Result<HttpClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Ok(pem) = std::fs::read(SYSTEM_BUNDLE) {
        // A bundle entry rustls can't read is skipped: the others still count.
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
    }
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| format!("a certificate of the JWKS CA bundle is not a usable CA: {e}"))?;
    }
    // ring, never the process default: two providers would make rustls panic.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("cannot set up TLS for JWKS fetches: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

impl Fetcher for HttpFetcher {
    fn get(&self, url: &str) -> BoxFuture<Result<Vec<u8>, String>> {
        let inner = self.inner.clone();
        let url = url.to_string();
        Box::pin(async move {
            let client = inner.client()?;
            get_following_redirects(&client, &url).await
        })
    }
}

/// An `http://` or `https://` URL with a host, or why not.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not an http:// or https:// URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(format!("{url:?} is not an http:// or https:// URL")),
    }
}

async fn get_following_redirects(client: &HttpClient, url: &str) -> Result<Vec<u8>, String> {
    let mut uri = parse_url(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let req = Request::get(uri.clone())
            .header(
                header::USER_AGENT,
                concat!("keel/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("cannot build a request for {uri}: {e}"))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("GET {uri}: {}", with_hint(describe(&e))))?;
        let status = resp.status();
        if status.is_redirection()
            && let Some(location) = resp.headers().get(header::LOCATION)
        {
            let location = location
                .to_str()
                .map_err(|_| format!("GET {uri}: {status} with a Location that is not text"))?;
            uri = redirect_target(&uri, location)?;
            continue;
        }
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                format!(
                    "GET {uri}: reading the body: {} (at most {} KiB are read)",
                    describe(e.as_ref()),
                    MAX_BODY / 1024
                )
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "GET {uri}: status {status}, body {}",
                excerpt(&body)
            ));
        }
        return Ok(body.to_vec());
    }
    Err(format!(
        "GET {url}: more than {MAX_REDIRECTS} redirects; give the final URL"
    ))
}

/// Where a redirect leads: an absolute URL, or a path on the same server. An `https` URL
/// is never followed to plain `http`: the keys would then arrive unauthenticated.
fn redirect_target(from: &Uri, location: &str) -> Result<Uri, String> {
    let target = if location.starts_with('/') && !location.starts_with("//") {
        let (Some(scheme), Some(authority)) = (from.scheme_str(), from.authority()) else {
            return Err(format!(
                "cannot follow the redirect from {from} to {location}"
            ));
        };
        parse_url(&format!("{scheme}://{authority}{location}"))?
    } else {
        parse_url(location).map_err(|e| format!("redirect from {from}: {e}"))?
    };
    if from.scheme_str() == Some("https") && target.scheme_str() != Some("https") {
        return Err(format!(
            "{from} redirects to {target}, from HTTPS to plain HTTP; refused (give an https:// jwksUri that answers directly)"
        ));
    }
    Ok(target)
}

/// An error and its causes, `a: b: c` (hyper's outer errors alone say only "client error").
fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// What to do about a failed exchange: a certificate the roots don't cover (a private CA),
/// or a server that can't be reached.
fn with_hint(cause: String) -> String {
    let hint = if cause.contains("certificate") {
        "if the issuer's certificate is from a private CA, give that CA with --jwks-ca (KEEL_JWKS_CA)"
    } else {
        "is the URL right, and is its server up and reachable from here?"
    };
    format!("{cause} ({hint})")
}

/// The start of a body for an error message (Istio quotes the first 100 characters).
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let quoted = format!("{:?}", text.chars().take(100).collect::<String>());
    if text.chars().count() > 100 {
        format!("{quoted} (truncated)")
    } else {
        quoted
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod server_tests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_and_redirects() {
        assert!(parse_url("https://issuer.example/keys").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/jwks.json").is_ok());
        let e = parse_url("testing@secure.istio.io/.well-known/openid-configuration").unwrap_err();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        assert!(parse_url("ftp://x/y").is_err());
        let from = parse_url("https://a.example/keys").unwrap();
        assert_eq!(
            redirect_target(&from, "/v2/keys").unwrap().to_string(),
            "https://a.example/v2/keys"
        );
        assert_eq!(
            redirect_target(&from, "https://b.example/k")
                .unwrap()
                .to_string(),
            "https://b.example/k"
        );
        let e = redirect_target(&from, "http://b.example/k").unwrap_err();
        assert!(e.contains("from HTTPS to plain HTTP"), "{e}");
        assert!(redirect_target(&from, "k").is_err());
        assert_eq!(excerpt(b"not found"), "\"not found\"");
        assert!(excerpt(&[b'x'; 300]).ends_with("(truncated)"));
    }

    #[test]
    fn a_missing_or_empty_ca_bundle_is_refused_with_the_fix() {
        let e = HttpFetcher::new(&ClientOptions {
            extra_ca: Some("/nonexistent/ca.pem".into()),
        })
        .err()
        .unwrap();
        assert!(e.contains("--jwks-ca"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let e = HttpFetcher::new(&ClientOptions {
            extra_ca: Some(empty),
        })
        .err()
        .unwrap();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}

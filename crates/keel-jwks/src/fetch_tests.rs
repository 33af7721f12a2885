//! The real fetcher against local servers: plain HTTP, HTTPS under a private CA (trusted only
//! with `--jwks-ca`), redirects, error statuses and the body cap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::*;

const KEYS: &str = r#"{"keys":[{"kid":"a","kty":"EC"}]}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    Ok(match req.uri().path() {
        "/keys" => resp(StatusCode::OK, Bytes::from_static(KEYS.as_bytes())),
        "/moved" => {
            let mut r = resp(StatusCode::FOUND, Bytes::new());
            r.headers_mut()
                .insert(http::header::LOCATION, "/keys".parse().unwrap());
            r
        }
        "/loop" => {
            let mut r = resp(StatusCode::FOUND, Bytes::new());
            r.headers_mut()
                .insert(http::header::LOCATION, "/loop".parse().unwrap());
            r
        }
        "/huge" => resp(StatusCode::OK, Bytes::from(vec![b' '; MAX_BODY + 1])),
        _ => resp(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"no such key set"),
        ),
    })
}

/// Serves [`answer`] on 127.0.0.1, over TLS when `tls` is given.
async fn serve(tls: Option<rustls::ServerConfig>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(a) => {
                        if let Ok(s) = a.accept(s).await {
                            let _ = conn
                                .serve_connection(TokioIo::new(s), service_fn(answer))
                                .await;
                        }
                    }
                    None => {
                        let _ = conn
                            .serve_connection(TokioIo::new(s), service_fn(answer))
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// A private CA's root (PEM) and a server configuration for 127.0.0.1 under it.
fn private_ca() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    (root, config)
}

#[tokio::test]
async fn plain_http_with_redirects_statuses_and_the_body_cap() {
    let addr = serve(None).await;
    let f = HttpFetcher::new(&ClientOptions::default()).unwrap();
    let url = |p: &str| format!("http://{addr}{p}");
    assert_eq!(f.get(&url("/keys")).await.unwrap(), KEYS.as_bytes());
    assert_eq!(f.get(&url("/moved")).await.unwrap(), KEYS.as_bytes());
    let e = f.get(&url("/nope")).await.unwrap_err();
    assert!(
        e.contains("status 404") && e.contains("no such key set"),
        "{e}"
    );
    let e = f.get(&url("/loop")).await.unwrap_err();
    assert!(e.contains("more than 10 redirects"), "{e}");
    let e = f.get(&url("/huge")).await.unwrap_err();
    assert!(e.contains("at most 1024 KiB"), "{e}");
    // Nobody listening: the cause is named, not just "client error".
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = f.get(&format!("http://{closed}/keys")).await.unwrap_err();
    assert!(e.to_lowercase().contains("connection refused"), "{e}");
    assert!(e.contains("is the URL right"), "{e}");
}

#[tokio::test]
async fn https_under_a_private_ca_needs_jwks_ca() {
    let (root, config) = private_ca();
    let addr = serve(Some(config)).await;
    let url = format!("https://{addr}/keys");
    let public_only = HttpFetcher::new(&ClientOptions::default()).unwrap();
    let e = public_only.get(&url).await.unwrap_err();
    assert!(e.contains("certificate") && e.contains("--jwks-ca"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, root).unwrap();
    let trusting = HttpFetcher::new(&ClientOptions { extra_ca: Some(ca) }).unwrap();
    assert_eq!(trusting.get(&url).await.unwrap(), KEYS.as_bytes());
}

//! DestinationRule `tls` SIMPLE and MUTUAL: the proxy originates TLS to an external service
//! (a ServiceEntry), verifying it with the configured CA by name or `subjectAltNames`, and
//! presenting a client certificate for MUTUAL — as Istio's egress TLS origination task does.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        (
            params.signed_by(&key, &self.issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

/// An HTTPS server for `cert`, requiring a client certificate from `clients` if given;
/// answers `tls-ok` to every request.
async fn https_server(cert: &(String, String), clients: Option<&Ca>) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match clients {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
                .unwrap();
            b.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        }
        None => b.with_no_client_auth(),
    };
    let config = b
        .with_single_cert(
            CertificateDer::pem_slice_iter(cert.0.as_bytes())
                .map(Result::unwrap)
                .collect(),
            PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ntls-ok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn config(port: u16, upstream: SocketAddr, tls: &str) -> String {
    format!(
        "{gw}apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  hosts: [api.example.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: http-port, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http-port: {up}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: external, namespace: default}}
spec:
  host: api.example.test
  trafficPolicy:
    tls: {tls}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: external, namespace: default}}
spec:
  hosts: [\"*\"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: api.example.test, port: {{number: 443}}}}}}]
---
",
        gw = gateway("gw", port, &["*"]),
        up = upstream.port()
    )
}

#[tokio::test]
async fn simple_and_mutual_tls_origination_verify_the_server_and_present_the_client() {
    let ca = Ca::new();
    let clients = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let ca_file = file("ca.pem", &ca.pem);
    let server = https_server(&ca.issue(&["api.example.test"]), None).await;

    // SIMPLE, verified by the host's name.
    let tls = format!("{{mode: SIMPLE, caCertificates: {ca_file}}}");
    let p = Proxy::start(|port| config(port, server, &tls)).await;
    let r = fetch(p.port, "anything", "/").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.as_ref(), b"tls-ok");
    drop(p);

    // SIMPLE with subjectAltNames the server doesn't have: refused (UF).
    let tls = format!("{{mode: SIMPLE, caCertificates: {ca_file}, subjectAltNames: [other.test]}}");
    let p = Proxy::start(|port| config(port, server, &tls)).await;
    let r = fetch(p.port, "anything", "/").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.headers
            .get("x-keel-error")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|e| e.starts_with("UF") && e.contains("NotValidForName")),
        "{r:?}"
    );
    drop(p);

    // MUTUAL: the client certificate from files.
    let mutual = https_server(&ca.issue(&["api.example.test"]), Some(&clients)).await;
    let (cert, key) = clients.issue(&["client.test"]);
    let (cert_file, key_file) = (file("client.pem", &cert), file("client.key", &key));
    let tls = format!(
        "{{mode: MUTUAL, caCertificates: {ca_file}, clientCertificate: {cert_file}, privateKey: {key_file}}}"
    );
    let p = Proxy::start(|port| config(port, mutual, &tls)).await;
    let r = fetch(p.port, "anything", "/").await;
    assert_eq!(r.status, 200, "{r:?}");
    drop(p);
    // SIMPLE (no client certificate) to the server that requires one: refused.
    let tls = format!("{{mode: SIMPLE, caCertificates: {ca_file}}}");
    let p = Proxy::start(|port| config(port, mutual, &tls)).await;
    assert_ne!(fetch(p.port, "anything", "/").await.status, 200);
}

fn tls_secret(name: &str, fields: &[(&str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\nstringData:\n"
    );
    for (k, v) in fields {
        out.push_str(&format!("  {k}: |\n"));
        for line in v.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out.push_str("---\n");
    out
}

/// `credentialName`: the client certificate, key and CA from a Secret in the gateway's
/// namespace (Istio's egress TLS origination with a Secret); a missing Secret fails the
/// connection with a reason that names it.
#[tokio::test]
async fn mutual_origination_with_a_credential_name_secret() {
    let ca = Ca::new();
    let clients = Ca::new();
    let mutual = https_server(&ca.issue(&["api.example.test"]), Some(&clients)).await;
    let (cert, key) = clients.issue(&["client.test"]);
    let secret = tls_secret(
        "client-credential",
        &[("tls.crt", &cert), ("tls.key", &key), ("ca.crt", &ca.pem)],
    );
    let tls = "{mode: MUTUAL, credentialName: client-credential}";
    let p = Proxy::start(|port| format!("{secret}{}", config(port, mutual, tls))).await;
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let r = fetch(p.port, "anything", "/").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.as_ref(), b"tls-ok");
    drop(p);

    // The CA alone, in `<name>-cacert`, does for SIMPLE.
    let simple = https_server(&ca.issue(&["api.example.test"]), None).await;
    let ca_only = tls_secret("server-ca-cacert", &[("ca.crt", &ca.pem)]);
    let placeholder = tls_secret("server-ca", &[("note", "the CA is in server-ca-cacert")]);
    let tls = "{mode: SIMPLE, credentialName: server-ca}";
    let p =
        Proxy::start(|port| format!("{ca_only}{placeholder}{}", config(port, simple, tls))).await;
    let r = fetch(p.port, "anything", "/").await;
    assert_eq!(r.status, 200, "{r:?}");
    drop(p);

    let tls = "{mode: MUTUAL, credentialName: nowhere}";
    let p = Proxy::start(|port| config(port, mutual, tls)).await;
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("no Secret istio-system/nowhere")),
        "{:?}",
        p.warnings
    );
    let r = fetch(p.port, "anything", "/").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.headers
            .get("x-keel-error")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|e| e.starts_with("UF") && e.contains("no Secret istio-system/nowhere")),
        "{r:?}"
    );
}

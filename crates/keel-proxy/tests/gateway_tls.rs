//! TLS terminated at the gateway (Istio's Gateway `tls` SIMPLE, MUTUAL, OPTIONAL_MUTUAL and
//! `httpsRedirect`), with real handshakes: rustls clients, and `curl`/`openssl` when the
//! machine has them. Certificates come from a Secret (`credentialName`) or from files, are
//! chosen by SNI, and changes are picked up without a restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and certificates it issues.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for `names` (DNS SANs).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

fn secret(name: &str, cert: &str, key: &str, ca: Option<&str>) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert),
        indent(key)
    );
    if let Some(ca) = ca {
        s.push_str(&format!("  ca.crt: |\n{}", indent(ca)));
    }
    s.push_str("---\n");
    s
}

/// A client trusting `root`, offering `alpn`, presenting `client` (cert, key) if given.
fn client(
    root: &str,
    alpn: &[&str],
    client: Option<&(String, String)>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 GET over TLS with SNI `host`; the response text, or the TLS error.
async fn get_tls(
    port: u16,
    host: &str,
    connector: &tokio_rustls::TlsConnector,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!("GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn gateway_and_routes(http: u16, https: u16, mutual: u16, files: &std::path::Path) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {http}, name: http, protocol: HTTP}}
    hosts: [shop.test]
    tls: {{httpsRedirect: true}}
  - port: {{number: {https}, name: https, protocol: HTTPS}}
    hosts: [shop.test]
    tls: {{mode: SIMPLE, credentialName: shop-cert}}
  - port: {{number: {https}, name: https-files, protocol: HTTPS}}
    hosts: [\"*.files.test\"]
    tls: {{mode: SIMPLE, serverCertificate: {dir}/files.pem, privateKey: {dir}/files.key}}
  - port: {{number: {mutual}, name: https-mutual, protocol: HTTPS}}
    hosts: [\"*\"]
    tls: {{mode: MUTUAL, credentialName: mutual-cert, subjectAltNames: [good.client.test]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: all, namespace: default}}
spec:
  hosts: [\"*\"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: echo.test}}}}]
---
",
        dir = files.display()
    )
}

#[tokio::test]
async fn https_servers_terminate_tls_by_sni_with_secrets_and_files_and_redirect_plain_http() {
    let up = echo("echo").await;
    let ca = Ca::new("Test CA");
    let clients = Ca::new("Client CA");
    let shop = ca.issue(&["shop.test"]);
    let wild = ca.issue(&["*.files.test"]);
    let mutual = ca.issue(&["mutual.test"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("files.pem"), &wild.0).unwrap();
    std::fs::write(dir.path().join("files.key"), &wild.1).unwrap();
    let (https, mutual_port) = (free_port(), free_port());
    let config = |port: u16, shop: &(String, String)| {
        [
            secret("shop-cert", &shop.0, &shop.1, None),
            secret("mutual-cert", &mutual.0, &mutual.1, Some(&clients.pem)),
            gateway_and_routes(port, https, mutual_port, dir.path()),
            se("echo.test", &[&up]),
        ]
        .concat()
    };
    let mut p = Proxy::start(|port| config(port, &shop)).await;
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let plain = client(&ca.pem, &["http/1.1"], None);

    // SIMPLE with the Secret's certificate, chosen by SNI; the app sees https.
    let r = get_tls(https, "shop.test", &plain).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("https"), "x-forwarded-proto: {r}");
    // The port's second server: the file certificate for its wildcard.
    let r = get_tls(https, "a.files.test", &plain).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // A name no server of the port has: no handshake.
    assert!(get_tls(https, "other.test", &plain).await.is_err());
    // HTTP/2 when ALPN agrees it.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https))
        .await
        .unwrap();
    let tls = client(&ca.pem, &["h2"], None)
        .connect(ServerName::try_from("shop.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get("https://shop.test/h2")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // httpsRedirect: plain HTTP is told to come back over HTTPS.
    let r = fetch(p.port, "shop.test", "/cart").await;
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("https://shop.test/cart")
    );

    // MUTUAL: a client certificate from the Secret's ca.crt with an accepted SAN passes;
    // none, or one with another SAN, does not.
    let good = clients.issue(&["good.client.test"]);
    let bad = clients.issue(&["bad.client.test"]);
    let r = get_tls(
        mutual_port,
        "mutual.test",
        &client(&ca.pem, &[], Some(&good)),
    )
    .await
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let refused = |r: Result<String, String>| r.map_or(true, |t| t.is_empty());
    assert!(refused(get_tls(mutual_port, "mutual.test", &plain).await));
    assert!(refused(
        get_tls(
            mutual_port,
            "mutual.test",
            &client(&ca.pem, &[], Some(&bad))
        )
        .await
    ));

    // A changed certificate file is picked up without a restart.
    let renewed = ca.issue(&["*.files.test", "renewed.files.test"]);
    std::fs::write(dir.path().join("files.pem"), &renewed.0).unwrap();
    std::fs::write(dir.path().join("files.key"), &renewed.1).unwrap();
    let r = within("the renewed file certificate", async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if let Ok(r) = get_tls(https, "renewed.files.test", &plain).await {
                return r;
            }
        }
    })
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    // A new Secret, pushed as configuration, replaces the certificate at the next handshake.
    let other = Ca::new("Other CA");
    let replaced = other.issue(&["shop.test"]);
    let port = p.port;
    p.install(&config(port, &replaced)).await;
    let r = get_tls(https, "shop.test", &client(&other.pem, &["http/1.1"], None))
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(get_tls(https, "shop.test", &plain).await.is_err());

    // Outside tools agree, where the machine has them.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &other.pem).unwrap();
    // The proxy runs on this test's runtime: the tool runs on a thread of its own.
    let curl = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&ca_file)
            .args(["--resolve", &format!("shop.test:{https}:127.0.0.1")])
            .arg(format!("https://shop.test:{https}/curl"))
            .output()
    })
    .await
    .unwrap();
    match curl {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}"),
        Err(e) => println!("skipping the curl check: curl can't run here ({e})"),
    }

    // openssl s_client: the certificate chosen by SNI verifies against its CA, and MUTUAL
    // refuses a client without a certificate and serves one with a good one.
    let files_ca = dir.path().join("files-ca.pem");
    std::fs::write(&files_ca, &ca.pem).unwrap();
    let good_cert = dir.path().join("good.pem");
    let good_key = dir.path().join("good.key");
    std::fs::write(&good_cert, &good.0).unwrap();
    std::fs::write(&good_key, &good.1).unwrap();
    let s_client = move |port: u16, sni: &'static str, extra: Vec<std::ffi::OsString>| {
        let mut child = std::process::Command::new("timeout")
            .args([
                "10",
                "openssl",
                "s_client",
                "-ign_eof",
                "-verify_return_error",
            ])
            .args(["-connect", &format!("127.0.0.1:{port}"), "-servername", sni])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        use std::io::Write;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = write!(
                stdin,
                "GET /openssl HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
            );
        }
        let out = child.wait_with_output()?;
        Ok::<String, std::io::Error>(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    let ca_arg = |f: &std::path::Path| vec!["-CAfile".into(), f.as_os_str().to_owned()];
    let (a, b, c) = (ca_arg(&files_ca), ca_arg(&files_ca), {
        let mut v = ca_arg(&files_ca);
        v.extend(["-cert".into(), good_cert.into_os_string()]);
        v.extend(["-key".into(), good_key.into_os_string()]);
        v
    });
    let runs = tokio::task::spawn_blocking(move || {
        (
            s_client(https, "renewed.files.test", a),
            s_client(mutual_port, "mutual.test", b),
            s_client(mutual_port, "mutual.test", c),
        )
    })
    .await
    .unwrap();
    match runs {
        (Ok(by_sni), Ok(no_cert), Ok(with_cert)) => {
            assert!(
                by_sni.contains("Verify return code: 0 (ok)") && by_sni.contains("HTTP/1.1 200"),
                "{by_sni}"
            );
            assert!(!no_cert.contains("HTTP/1.1 200"), "{no_cert}");
            assert!(with_cert.contains("HTTP/1.1 200"), "{with_cert}");
        }
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            println!("skipping the openssl check: openssl can't run here ({e})")
        }
    }
}

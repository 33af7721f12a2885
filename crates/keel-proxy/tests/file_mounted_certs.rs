//! Two `keel-proxy sidecar` processes with file-mounted certificates (Istio's
//! FILE_MOUNTED_CERTS: --cert-chain, --key, --root-cert) and no CA: `sleep`'s sidecar calls
//! `web` through a service port listener, auto mTLS carries it to web's sidecar, whose STRICT
//! PeerAuthentication lets only mTLS in, and web's metrics name sleep's SPIFFE ID from its
//! certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every wait is bounded by this; none of them is a speed assertion.
const WAIT: Duration = Duration::from_secs(20);

/// Writes `DIR/SA/{cert-chain,key,root-cert}.pem` for `spiffe://cluster.local/ns/default/sa/SA`.
fn write_certs(dir: &Path, issuer: &CertifiedIssuer<'static, KeyPair>, sa: &str) {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let uri = format!("spiffe://cluster.local/ns/default/sa/{sa}");
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, &**issuer).unwrap();
    let out = dir.join(sa);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("cert-chain.pem"), cert.pem()).unwrap();
    std::fs::write(out.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(out.join("root-cert.pem"), issuer.pem()).unwrap();
}

/// Stops the proxy when the test ends, passed or not.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `keel-proxy sidecar -f CONFIG` for the workload `app` with the certificates of `sa`.
fn sidecar(dir: &Path, config: &Path, app: &str, admin: SocketAddr, extra: &[String]) -> Kill {
    let certs = dir.join(app);
    let child = Command::new(env!("CARGO_BIN_EXE_keel-proxy"))
        .arg("sidecar")
        .arg("-f")
        .arg(config)
        .args(["-n", "default", "--label", &format!("app={app}")])
        .args(["--bind", "127.0.0.1", "--admin", &admin.to_string()])
        .args(["--stats", "none", "--workers", "1"])
        .arg("--cert-chain")
        .arg(certs.join("cert-chain.pem"))
        .arg("--key")
        .arg(certs.join("key.pem"))
        .arg("--root-cert")
        .arg(certs.join("root-cert.pem"))
        .args(extra)
        .env("KEEL_LOG", "warn")
        .spawn()
        .unwrap();
    Kill(child)
}

/// Status and body of `GET path` on the admin port; status 0 when it doesn't answer.
async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(admin),
    )
    .await
    else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn wait_ready(admin: SocketAddr) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while admin_get(admin, "/healthz/ready").await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sidecar at {admin} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_sidecars_with_mounted_certificates_talk_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let mut root = CertificateParams::default();
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.distinguished_name = DistinguishedName::new();
    root.distinguished_name
        .push(DnType::OrganizationName, "file-mounted-mesh");
    let issuer = CertifiedIssuer::self_signed(
        root,
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
    )
    .unwrap();
    write_certs(dir.path(), &issuer, "sleep");
    write_certs(dir.path(), &issuer, "web");

    let app = http_server("web").await;
    let (service_port, web_inbound) = (free_port(), free_port());
    // What both sidecars read: web's Service and where its sidecar is (a WorkloadEntry on
    // web's inbound port, with the sidecar label auto mTLS looks for and web's service
    // account, the identity sleep's sidecar expects there), and STRICT for the namespace.
    let config = dir.path().join("mesh.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: {service_port}, targetPort: {app_port}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web-0, namespace: default}}
spec:
  address: 127.0.0.1
  labels: {{app: web, security.istio.io/tlsMode: istio}}
  serviceAccount: web
  ports: {{http: {web_inbound}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: default}}
spec:
  mtls: {{mode: STRICT}}
",
            app_port = app.port()
        ),
    )
    .unwrap();

    let web_admin = local(free_port());
    let _web = sidecar(
        dir.path(),
        &config,
        "web",
        web_admin,
        &[
            "--inbound-port".into(),
            web_inbound.to_string(),
            "--app-port".into(),
            format!("{}/HTTP", app.port()),
            "--outbound-port".into(),
            free_port().to_string(),
        ],
    );
    let sleep_admin = local(free_port());
    let _sleep = sidecar(
        dir.path(),
        &config,
        "sleep",
        sleep_admin,
        &[
            "--outbound-listener".into(),
            service_port.to_string(),
            "--outbound-port".into(),
            free_port().to_string(),
            "--inbound-port".into(),
            free_port().to_string(),
        ],
    );
    wait_ready(web_admin).await;
    wait_ready(sleep_admin).await;

    // Each proxy's identity is its certificate's, shown as mounted files.
    let (_, certs) = admin_get(sleep_admin, "/certs").await;
    let doc: serde_json::Value = serde_json::from_str(&certs).unwrap();
    assert_eq!(
        doc["workload"]["identity"],
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert_eq!(doc["workload"]["source"], "files", "{doc}");
    assert_eq!(doc["workload"]["state"], "ACTIVE", "{doc}");

    let host = format!("web.default:{service_port}");
    let (status, upstream, body) =
        raw_get(local(service_port), "/files", &[("host", host.as_str())]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream, "web");
    assert!(body.contains("/files"), "{body}");

    // Without mTLS, web's sidecar refuses (STRICT): the 200 above came over mTLS.
    let refused = exchange_keep_open(
        local(web_inbound),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(refused.is_empty(), "{}", String::from_utf8_lossy(&refused));

    // web's metrics name the hop mutual TLS from sleep's SPIFFE ID.
    let (_, metrics) = admin_get(web_admin, "/stats/prometheus").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
        .unwrap_or_else(|| panic!("no request counted on web's sidecar:\n{metrics}"));
    assert!(
        line.contains("connection_security_policy=\"mutual_tls\""),
        "{line}"
    );
    assert!(
        line.contains("source_principal=\"spiffe://cluster.local/ns/default/sa/sleep\""),
        "{line}"
    );
    assert!(
        line.contains("destination_principal=\"spiffe://cluster.local/ns/default/sa/web\""),
        "{line}"
    );
}

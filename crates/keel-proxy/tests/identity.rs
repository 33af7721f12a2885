//! The proxy's workload identity against the real CA (keel-control's, in-process on
//! 127.0.0.1): the certificate's identity and lifetime, rotation with a short TTL, recovery
//! after the CA goes away, a rejected token, and the binary's readiness and `/certs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keel_control::ca::service::{self, CertificateService};
use keel_control::ca::token::LocalTokens;
use keel_control::ca::{Ca, CaOptions};
use keel_proxy::identity::{
    self, IdentityConfig, KeyAlgorithm, RotationPolicy, San, SpiffeId, TokenSource,
    WorkloadIdentity,
};

/// Every wait is bounded by this; none of them is a speed assertion.
const LIMIT: Duration = Duration::from_secs(10);
const SECRET: [u8; 32] = [9u8; 32];

/// A running CA: keel-control's certificate API over TLS on loopback.
struct RunningCa {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningCa {
    /// Serves the CA kept in `dir` (created on first use, the same root after) on `addr`.
    async fn start(dir: &Path, addr: SocketAddr) -> RunningCa {
        let ca = Arc::new(Ca::load_or_create(dir, None, CaOptions::default()).unwrap());
        let tokens = Arc::new(LocalTokens::from_secret(&SECRET, "cluster.local"));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = service::tls_config(&ca, &["127.0.0.1"]).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service::serve(
            listener,
            config,
            CertificateService::new(ca, tokens),
            async {
                let _ = stopped.await;
            },
        ));
        RunningCa {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the CA stops")
            .unwrap()
            .unwrap();
    }
}

fn token(ns: &str, sa: &str) -> String {
    LocalTokens::from_secret(&SECRET, "cluster.local").issue(ns, sa)
}

/// The CA directory's root, and a token file for `token`.
fn files(dir: &Path, token: &str) -> (PathBuf, PathBuf) {
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    (dir.join("ca").join("root-cert.pem"), token_file)
}

fn config(addr: SocketAddr, root: &Path, token_file: &Path, ttl: Duration) -> IdentityConfig {
    IdentityConfig {
        ca_address: addr.to_string(),
        root_cert: root.to_path_buf(),
        token: TokenSource::File(token_file.to_path_buf()),
        id: SpiffeId::new("cluster.local", "default", "sleep"),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        policy: RotationPolicy {
            ttl,
            // Short retries so the tests see several within their bounds.
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            ..RotationPolicy::default()
        },
    }
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn serial(identity: &WorkloadIdentity) -> Option<String> {
    identity.current().map(|m| m.leaf.serial.clone())
}

fn last_error(identity: &WorkloadIdentity) -> Option<String> {
    identity.certs_json(SystemTime::now())["workload"]["last_error"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn the_certificate_names_the_workload_and_rotates_before_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RunningCa::start(&dir.path().join("ca"), "127.0.0.1:0".parse().unwrap()).await;
    let (root, token_file) = files(dir.path(), &token("default", "sleep"));
    let ttl = Duration::from_secs(4);
    let identity = identity::manager::spawn(config(ca.addr, &root, &token_file, ttl)).unwrap();
    tokio::time::timeout(LIMIT, identity.wait_for_certificate())
        .await
        .expect("a certificate");

    let first = identity.current().unwrap();
    assert_eq!(
        first.leaf.sans,
        vec![San::Uri(
            "spiffe://cluster.local/ns/default/sa/sleep".into()
        )]
    );
    // The lifetime asked for, plus the minute the CA back-dates for clock skew.
    let lifetime = first
        .leaf
        .not_after
        .duration_since(first.leaf.not_before)
        .unwrap();
    assert_eq!(lifetime, ttl + Duration::from_secs(60));
    // Renewal due at half of what is left at receipt, ± 1 % of it.
    let due = first.rotate_at.duration_since(first.received_at).unwrap();
    let half = first.lifetime() / 2;
    assert!(
        due.abs_diff(half) <= first.lifetime() / 100 + Duration::from_millis(1),
        "{due:?} vs {half:?}"
    );

    // Watch every moment until the next certificate: one is always in use, and the new one
    // arrives while the old one is still valid.
    let watcher = identity.clone();
    let sampler = tokio::spawn(async move {
        let mut gaps = 0;
        loop {
            match serial(&watcher) {
                None => gaps += 1,
                Some(s) if s != first.leaf.serial => return (gaps, first, s),
                Some(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let (gaps, first, second) = tokio::time::timeout(LIMIT, sampler).await.unwrap().unwrap();
    assert_eq!(gaps, 0, "never without a certificate");
    let now = identity.current().unwrap();
    assert_eq!(now.leaf.serial, second);
    assert!(
        now.received_at < first.leaf.not_after,
        "renewed before the old one expired"
    );
    assert!(identity.subscribe().borrow().to_owned() >= 2);
    ca.stop().await;
}

#[tokio::test]
async fn a_ca_that_goes_away_is_retried_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = RunningCa::start(&ca_dir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = ca.addr;
    let (root, token_file) = files(dir.path(), &token("default", "sleep"));
    let identity =
        identity::manager::spawn(config(addr, &root, &token_file, Duration::from_secs(2))).unwrap();
    tokio::time::timeout(LIMIT, identity.wait_for_certificate())
        .await
        .expect("a certificate");
    let first = serial(&identity).unwrap();
    ca.stop().await;

    // The renewal at about 1 s fails and is retried; the certificate stays in use meanwhile.
    let error = until("a failed renewal", || last_error(&identity)).await;
    assert!(
        error.contains(&format!("the CA at {addr} is unreachable")),
        "{error}"
    );
    assert!(error.contains("--ca-address"), "{error}");
    assert_eq!(serial(&identity).as_deref(), Some(first.as_str()));
    let failures = until("several attempts", || {
        let n = identity.certs_json(SystemTime::now())["workload"]["failed_attempts"]
            .as_u64()
            .unwrap();
        (n >= 2).then_some(n)
    })
    .await;
    assert!(failures >= 2);

    // Back on the same address with the same root: the next attempt succeeds.
    let ca = RunningCa::start(&ca_dir, addr).await;
    let second = until("a certificate from the restarted CA", || {
        serial(&identity).filter(|s| *s != first)
    })
    .await;
    assert_ne!(second, first);
    assert_eq!(last_error(&identity), None);
    ca.stop().await;
}

#[tokio::test]
async fn a_rejected_token_or_a_foreign_root_is_reported_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = RunningCa::start(&dir.path().join("ca"), "127.0.0.1:0".parse().unwrap()).await;
    let forged = token("default", "sleep").replace(":sleep:", ":httpbin:");
    let (root, token_file) = files(dir.path(), &forged);
    let identity =
        identity::manager::spawn(config(ca.addr, &root, &token_file, Duration::from_secs(60)))
            .unwrap();
    let error = until("the token refused", || last_error(&identity)).await;
    assert!(
        error.contains(&format!(
            "the CA rejected the token in {}",
            token_file.display()
        )),
        "{error}"
    );
    assert!(!identity.has_certificate());

    // Another mesh's root: the CA's TLS certificate doesn't verify.
    let other = tempfile::tempdir().unwrap();
    let stranger = Ca::load_or_create(other.path(), None, CaOptions::default()).unwrap();
    let foreign = other.path().join("root-cert.pem");
    assert!(!stranger.root_pem().is_empty());
    let (_, token_file) = files(dir.path(), &token("default", "sleep"));
    let identity = identity::manager::spawn(config(
        ca.addr,
        &foreign,
        &token_file,
        Duration::from_secs(60),
    ))
    .unwrap();
    let error = until("TLS refused", || last_error(&identity)).await;
    assert!(error.contains("TLS to the CA"), "{error}");
    assert!(error.contains("--ca-root-cert"), "{error}");

    // An unreadable root stops the start, naming the file and the flag.
    let err = identity::manager::spawn(config(
        ca.addr,
        &dir.path().join("missing.pem"),
        &token_file,
        Duration::from_secs(60),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("missing.pem") && err.contains("--ca-root-cert"),
        "{err}"
    );
    ca.stop().await;
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_default();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The binary: not ready while the CA is away (saying why), ready once the certificate is
/// in, and `/certs` shows it.
#[tokio::test]
async fn the_sidecar_is_ready_only_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    // The CA's root exists before the CA listens, as when the control plane restarts.
    drop(Ca::load_or_create(&ca_dir, None, CaOptions::default()).unwrap());
    let ca_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (root, token_file) = files(dir.path(), &token("default", "sleep"));
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(
        &snapshot,
        serde_json::to_string(&keel_snapshot::Snapshot::default()).unwrap(),
    )
    .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_keel-proxy"))
        .args(["sidecar", "--snapshot"])
        .arg(&snapshot)
        .args([
            "--admin",
            &admin.to_string(),
            "--stats",
            "none",
            "--workers",
            "1",
        ])
        .args(["--ca-address", &ca_addr.to_string(), "--ca-root-cert"])
        .arg(&root)
        .arg("--ca-token-file")
        .arg(&token_file)
        .args(["--service-account", "sleep", "-n", "default"])
        .env("KEEL_LOG", "warn")
        .spawn()
        .unwrap();
    let _child = Kill(child);

    let deadline = tokio::time::Instant::now() + LIMIT;
    let (status, body) = loop {
        let (status, body) = get(admin, "/healthz/ready").await;
        if status != 0 {
            break (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "admin never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no workload certificate yet"), "{body}");

    let ca = RunningCa::start(&ca_dir, ca_addr).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while get(admin, "/healthz/ready").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = get(admin, "/certs").await;
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        doc["certificates"][0]["cert_chain"][0]["subject_alt_names"][0]["uri"],
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert_eq!(doc["workload"]["state"], "ACTIVE");
    assert!(doc["workload"]["last_error"].is_null(), "{doc}");
    assert!(doc["workload"]["failed_attempts"].as_u64().unwrap() >= 1);
    assert_eq!(doc["root"][0]["subject"], "O=cluster.local");
    ca.stop().await;
}

/// Stops the proxy when the test ends, passed or not.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--key-algorithm rsa-2048`: the CA signs the RSA key's request, and two proxies holding
/// such certificates complete mesh mTLS with each other.
#[tokio::test]
async fn an_rsa_2048_workload_key_is_certified_and_does_mesh_mtls() {
    use keel_proxy::tls::mesh::{Carries, MeshTls};
    let dir = tempfile::tempdir().unwrap();
    let ca = RunningCa::start(&dir.path().join("ca"), "127.0.0.1:0".parse().unwrap()).await;
    let (root, token_file) = files(dir.path(), &token("default", "sleep"));
    let mut cfg = config(ca.addr, &root, &token_file, Duration::from_secs(3600));
    cfg.key_algorithm = KeyAlgorithm::Rsa2048;
    let identity = identity::manager::spawn(cfg).unwrap();
    tokio::time::timeout(LIMIT, identity.wait_for_certificate())
        .await
        .expect("a certificate for the RSA key");
    let leaf = identity.current().unwrap();
    let der = leaf.certified_key.cert[0].as_ref().to_vec();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        cert.public_key().parsed().unwrap().key_size(),
        2048,
        "an RSA 2048 public key"
    );

    let mesh = MeshTls::new(identity.clone()).unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio_rustls::TlsAcceptor::from(mesh.server_config());
    let client = tokio_rustls::TlsConnector::from(
        mesh.client_config("spiffe://cluster.local/ns/default/sa/sleep", Carries::Http1)
            .unwrap(),
    );
    let name = rustls::pki_types::ServerName::try_from("outbound_.8000_._.httpbin").unwrap();
    let (s, c) = tokio::join!(server.accept(a), client.connect(name, b));
    let (s, _c) = (s.expect("server side"), c.expect("client side"));
    assert!(s.get_ref().1.peer_certificates().is_some(), "mutual");
    ca.stop().await;
}

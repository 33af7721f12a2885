//! RequestAuthentication with `jwksUri` and OpenID discovery on a real `keel-proxy
//! standalone` gateway (its own control plane, compiling in its child process): a local HTTP
//! server serves the key set, the gateway fetches it, verifies tokens against it and routes
//! on a claim (`@request.auth.claims.groups`); rotated keys are picked up by the background
//! refresh; a key set that was never fetched makes tokens fail with 401 (never pass) until it
//! can be fetched.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use support::*;

const ISSUER: &str = "testing@secure.istio.io";

/// An ES256 signing key and its JWK.
struct Signer {
    key: EcdsaKeyPair,
    kid: &'static str,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    fn new(kid: &'static str) -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer { key, kid }
    }

    fn jwks(&self) -> String {
        let public = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
            "x": b64(&public[1..33]), "y": b64(&public[33..65]),
        }]})
        .to_string()
    }

    /// A token for `iss` with `groups`, valid for an hour (Istio's demo token's shape).
    fn token(&self, iss: &str, groups: &[&str]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = b64(json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"})
            .to_string()
            .as_bytes());
        let payload = b64(json!({
            "iss": iss, "sub": ISSUER, "groups": groups, "iat": now, "exp": now + 3600,
        })
        .to_string()
        .as_bytes());
        let input = format!("{header}.{payload}");
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// A JWKS server: the key set at `/jwks.json` (503 while it has none), and an OpenID
/// configuration at `/.well-known/openid-configuration` naming `/discovered/jwks.json`.
#[derive(Clone)]
struct KeyServer {
    addr: SocketAddr,
    keys: Arc<Mutex<Option<String>>>,
}

impl KeyServer {
    async fn start(keys: Option<String>) -> KeyServer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        KeyServer::serve(l, keys)
    }

    fn serve(l: tokio::net::TcpListener, keys: Option<String>) -> KeyServer {
        let addr = l.local_addr().unwrap();
        let keys = Arc::new(Mutex::new(keys));
        let state = keys.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let keys = state.lock().unwrap().clone();
                        async move {
                            let (status, body) = match (req.uri().path(), keys) {
                                ("/.well-known/openid-configuration", _) => (
                                    200,
                                    json!({
                                        "issuer": format!("http://{addr}"),
                                        "jwks_uri": format!("http://{addr}/discovered/jwks.json"),
                                    })
                                    .to_string(),
                                ),
                                ("/jwks.json" | "/discovered/jwks.json", Some(k)) => (200, k),
                                ("/jwks.json" | "/discovered/jwks.json", None) => {
                                    (503, "no keys today".to_string())
                                }
                                _ => (404, String::new()),
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        KeyServer { addr, keys }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn set(&self, keys: Option<String>) {
        *self.keys.lock().unwrap() = keys;
    }
}

/// `keel-proxy standalone` on a file; killed when dropped.
struct Standalone {
    child: Child,
    log: std::path::PathBuf,
}

impl Standalone {
    fn start(file: &Path, dir: &Path) -> Standalone {
        let log = dir.join("standalone.log");
        let child = Command::new(env!("CARGO_BIN_EXE_keel-proxy"))
            .arg("standalone")
            .arg("-f")
            .arg(file)
            .args(["--bind", "127.0.0.1", "--stats", "none"])
            .args(["--admin", &format!("127.0.0.1:{}", free_port())])
            // Rotation shows within a second instead of Istio's 20 minutes.
            .args(["--jwks-refresh-interval", "1s"])
            .env_remove("KEEL_JWKS_CA")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("keel-proxy standalone");
        Standalone { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(port: u16, group1: &Upstream, others: &Upstream, rules: &str) -> String {
    format!(
        "{gw}{se1}{se2}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: claims, namespace: default}}
spec:
  hosts: [\"*\"]
  gateways: [gw]
  http:
  - match: [{{headers: {{\"@request.auth.claims.groups\": {{exact: group1}}}}}}]
    route: [{{destination: {{host: group1.test}}}}]
  - route: [{{destination: {{host: others.test}}}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  jwtRules:
{rules}",
        gw = gateway("gw", port, &["*"]),
        se1 = se("group1.test", &[group1]),
        se2 = se("others.test", &[others]),
    )
}

/// GET / with `token` (if any) as a bearer token.
async fn call(port: u16, token: Option<&str>) -> Resp {
    let mut r = req("GET", "shop.test", "/");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    send(port, r.body(empty()).unwrap()).await
}

/// Polls `check` for up to `limit`; the last response if it never holds.
async fn until(
    limit: Duration,
    port: u16,
    token: Option<&str>,
    check: impl Fn(&Resp) -> bool,
) -> Resp {
    let deadline = Instant::now() + limit;
    loop {
        let r = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => Some(call(port, token).await),
            Err(_) => None,
        };
        match r {
            Some(r) if check(&r) || Instant::now() >= deadline => return r,
            None if Instant::now() >= deadline => panic!("the gateway never listened on {port}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn standalone_fetches_jwks_uri_verifies_tokens_and_routes_on_a_claim() {
    let (group1, others) = (echo("group1").await, echo("others").await);
    let key = Signer::new("k1");
    let keys = KeyServer::start(Some(key.jwks())).await;
    let port = free_port();
    let rules = format!(
        "  - issuer: {ISSUER}\n    jwksUri: {}\n  - issuer: http://{}\n",
        keys.url(),
        keys.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, config(port, &group1, &others, &rules)).unwrap();
    let gw = Standalone::start(&file, dir.path());

    // The first fetch happens before the gateway serves: a valid token works at once.
    let both = key.token(ISSUER, &["group1", "group2"]);
    let r = until(Duration::from_secs(10), port, Some(&both), |r| {
        r.status != 0
    })
    .await;
    assert_eq!(r.status, 200, "{r:?}\n{}", gw.log());
    assert_eq!(r.upstream(), "group1", "routed on groups containing group1");
    assert!(
        r.seen("authorization").is_empty(),
        "the token is not forwarded"
    );

    let only2 = key.token(ISSUER, &["group2"]);
    let r = call(port, Some(&only2)).await;
    assert_eq!((r.status.as_u16(), r.upstream()), (200, "others"), "{r:?}");
    let r = call(port, None).await;
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, "others"),
        "no token passes"
    );
    let r = call(port, Some("not.a.token")).await;
    assert_eq!(r.status, 401, "{r:?}");

    // OpenID discovery: a rule with only an issuer finds its keys through the issuer's
    // configuration.
    let discovered = key.token(&format!("http://{}", keys.addr), &["group1"]);
    let r = call(port, Some(&discovered)).await;
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, "group1"),
        "{r:?}\n{}",
        gw.log()
    );

    // The issuer rotates its key: the refresh (every second here) fetches the new set, the
    // gateway recompiles, and tokens signed with the old key now fail.
    let rotated = Signer::new("k2");
    keys.set(Some(rotated.jwks()));
    let fresh = rotated.token(ISSUER, &["group1"]);
    let r = until(Duration::from_secs(15), port, Some(&fresh), |r| {
        r.status == 200
    })
    .await;
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, "group1"),
        "{r:?}\n{}",
        gw.log()
    );
    let r = call(port, Some(&both)).await;
    assert_eq!(r.status, 401, "the old key is gone: {r:?}");

    // The issuer fails: the last good keys stay in use.
    keys.set(None);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = call(port, Some(&fresh)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let log = gw.log();
    assert!(
        log.contains("cannot fetch jwksUri") && log.contains("status 503 Service Unavailable"),
        "the failure is logged with its cause:\n{log}"
    );
    assert!(log.contains("the keys fetched before stay in use"), "{log}");
}

#[tokio::test]
async fn tokens_fail_until_a_jwks_uri_is_first_fetched() {
    let (group1, others) = (echo("group1").await, echo("others").await);
    let key = Signer::new("k1");
    // The issuer's address, with nothing listening yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let port = free_port();
    let rules = format!("  - issuer: {ISSUER}\n    jwksUri: http://{issuer_addr}/jwks.json\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, config(port, &group1, &others, &rules)).unwrap();
    let gw = Standalone::start(&file, dir.path());

    let token = key.token(ISSUER, &["group1"]);
    // Never fetched: refused, not let through (Istio's fake key set has the same effect).
    let r = until(Duration::from_secs(10), port, Some(&token), |r| {
        r.status != 0
    })
    .await;
    assert_eq!(r.status, 401, "{r:?}\n{}", gw.log());
    assert_eq!(r.text(), "Jwks remote fetch is failed");
    let r = call(port, None).await;
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, "others"),
        "no token still passes"
    );
    assert!(
        gw.log().contains("refused with 401 until a fetch succeeds"),
        "{}",
        gw.log()
    );

    // The issuer comes up: the retry (1 s, doubling) fetches the keys and the gateway
    // recompiles without a restart.
    let listener = tokio::net::TcpListener::bind(issuer_addr).await.unwrap();
    let _keys = KeyServer::serve(listener, Some(key.jwks()));
    let r = until(Duration::from_secs(20), port, Some(&token), |r| {
        r.status == 200
    })
    .await;
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, "group1"),
        "{r:?}\n{}",
        gw.log()
    );
}

/// `keel-proxy compile` reports the key sets a configuration needs and compiles in the key
/// sets handed to it on stdin: the split that keeps the YAML reader out of the gateway.
#[test]
fn the_compile_child_reports_sources_and_takes_keys_on_stdin() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ra.yaml");
    std::fs::write(
        &file,
        format!(
            "{}apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  jwtRules:
  - {{issuer: {ISSUER}, jwksUri: \"https://keys.example/jwks.json\"}}
",
            gateway("gw", 18080, &["*"])
        ),
    )
    .unwrap();
    let run = |stdin: Option<&str>| -> Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel-proxy"));
        cmd.arg("compile").arg("-f").arg(&file);
        if stdin.is_some() {
            cmd.arg("--jwks-stdin");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let out = run(None);
    assert_eq!(
        out["jwks_sources"],
        json!([{"uri": "https://keys.example/jwks.json"}])
    );
    let rule = &out["snapshot"]["listeners"][0]["jwt"]["rules"][0];
    assert!(rule.get("jwks").is_none(), "{rule}");
    let keys = r#"{"uris":{"https://keys.example/jwks.json":{"jwks":"{\"keys\":[]}"}}}"#;
    let out = run(Some(keys));
    let rule = &out["snapshot"]["listeners"][0]["jwt"]["rules"][0];
    assert_eq!(rule["jwks"], "{\"keys\":[]}", "{out}");
}

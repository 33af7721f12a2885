//! Istio's JWT tasks on a local mesh (`keel up`), with the key set at `jwksUri` served by a
//! local HTTP server standing in for Istio's GitHub-hosted `jwks.json`, and tokens signed
//! with this file's own key standing in for Istio's `demo.jwt` and `groups-scope.jwt` (issuer
//! and subject `testing@secure.istio.io`, groups `[group1, group2]`, or only `group2`).
//!
//! - The authorization task "JWT token" (`authz-jwt`): a RequestAuthentication on httpbin's
//!   sidecar, then an ALLOW policy on `requestPrincipals`, then the same with a `groups`
//!   claim condition; requests come from sleep through its sidecar.
//! - The authentication task "end-user authentication" (`authn-policy`): httpbin behind the
//!   ingress gateway, a RequestAuthentication on the gateway, then a DENY policy for
//!   requests without a principal, then the same only for `/headers`.
//!
//! Each runs twice, as `mesh_tasks.rs` does: with Istio's own task files from
//! `../shared/istio-samples` (skipped, saying so, when absent), rewritten in memory from
//! namespace `foo` to `default` and from the GitHub `jwksUri` to the local server; and with
//! this file's own fixtures, which also route on a claim at the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use base64::Engine;
use common::{Mesh, binaries_built, eventually, get, istio_samples};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

const ISSUER: &str = "testing@secure.istio.io";
const AUTHZ_JWT: &str = "istio.io/content/en/docs/tasks/security/authorization/authz-jwt";
const AUTHN: &str = "istio.io/content/en/docs/tasks/security/authentication/authn-policy";
const HTTPBIN_HEADERS: &str = "http://httpbin:8000/headers";

// ---------------------------------------------------------------------------------------
// The issuer: a key, its tokens, and a server for its key set

struct Issuer {
    key: EcdsaKeyPair,
    /// Where the key set is served: `http://127.0.0.1:PORT/jwks.json`.
    jwks_uri: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Issuer {
    /// A new key, its key set served on a loopback port for the rest of the test process.
    fn start() -> Issuer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = key.public_key().as_ref();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "keel-test", "alg": "ES256", "use": "sig",
            "x": b64(&public[1..33]), "y": b64(&public[33..65]),
        }]})
        .to_string();
        let addr = serve(jwks);
        Issuer {
            key,
            jwks_uri: format!("http://{addr}/jwks.json"),
        }
    }

    /// A token from `testing@secure.istio.io` about itself, with `groups` when given.
    fn token(&self, groups: Option<&[&str]>) -> String {
        let mut claims = json!({
            "iss": ISSUER, "sub": ISSUER, "foo": "bar", "iat": 1_532_389_700u64,
            // 2118, as Istio's demo tokens.
            "exp": 4_685_989_700u64,
        });
        if let Some(g) = groups {
            claims["groups"] = json!(g);
        }
        let header = b64(br#"{"alg":"ES256","kid":"keel-test","typ":"JWT"}"#);
        let input = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// Serves `body` as JSON to every request, one thread per connection; lives as long as the
/// test process.
fn serve(body: String) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                // The request head, to its empty line.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = (&stream).write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    addr
}

/// Istio's task file rewritten for this mesh: namespace `foo` is `default`, the GitHub key
/// set is the local one.
fn istio_file(path: &Path, jwks_uri: &str) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("jwksUri:") {
                let indent = &line[..line.len() - trimmed.len()];
                format!("{indent}jwksUri: \"{jwks_uri}\"")
            } else {
                line.replace("namespace: foo", "namespace: default")
                    .replace("httpbin.foo.svc", "httpbin.default.svc")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

// ---------------------------------------------------------------------------------------
// The authorization task: JWT on httpbin's sidecar

/// The files of one run of the authorization task, by step.
struct AuthzJwtSteps {
    request_authentication: String,
    require_jwt: String,
    require_group1: String,
}

fn authz_jwt_task(steps: &AuthzJwtSteps, issuer: &Issuer) {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("app.yaml");
    std::fs::write(&manifests, format!("{}{}", common::HTTPBIN, common::SLEEP)).unwrap();
    let mesh = Mesh::up(&[&manifests]);
    let sleep = mesh.pod("sleep").proxy;
    let call = |headers: &[&str]| get(sleep, HTTPBIN_HEADERS, headers);
    let token = issuer.token(Some(&["group1", "group2"]));
    let group2_only = issuer.token(Some(&["group2"]));

    // Before any policy: everything passes.
    assert_eq!(call(&[]).status, 200);

    // RequestAuthentication: an invalid token is refused, none is still fine.
    mesh.apply_yaml("jwt-example.yaml", &steps.request_authentication);
    let r = call(&[&bearer("invalidToken")]);
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        r.text.ends_with(
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
        ),
        "{}",
        r.text
    );
    assert_eq!(call(&[]).status, 200);
    // The key set was fetched before the push: a valid token passes at once.
    let r = call(&[&bearer(&token)]);
    assert_eq!(r.status, 200, "{}", r.text);

    // ALLOW requestPrincipals: without a token 403, with one 200.
    mesh.apply_yaml("require-jwt.yaml", &steps.require_jwt);
    let r = call(&[]);
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.ends_with("RBAC: access denied"), "{}", r.text);
    assert_eq!(call(&[&bearer(&token)]).status, 200);

    // ...and the groups claim: group1 passes, a token with only group2 doesn't.
    mesh.apply_yaml("require-group1.yaml", &steps.require_group1);
    assert_eq!(call(&[&bearer(&token)]).status, 200);
    let r = call(&[&bearer(&group2_only)]);
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(call(&[]).status, 403);

    // The control plane says where the keys came from, and counted the fetch.
    let jwksz = get(
        mesh_api_port(&mesh),
        &format!("{}/debug/jwksz", mesh.api),
        &[],
    );
    assert!(
        jwksz
            .text
            .contains(&format!("\"uri\":\"{}\"", issuer.jwks_uri)),
        "{}",
        jwksz.text
    );
    assert!(
        jwksz.text.contains("\"state\":\"fetched\""),
        "{}",
        jwksz.text
    );
    let stderr = std::fs::read_to_string(mesh.dir.path().join("keel-up.stderr")).unwrap();
    assert!(
        stderr.contains(&format!(
            "jwks: fetched 1 keys from jwksUri {}",
            issuer.jwks_uri
        )),
        "{stderr}"
    );
    mesh.down();
}

fn mesh_api_port(mesh: &Mesh) -> u16 {
    mesh.api
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the API's port")
}

/// Istio's own files for the authorization task.
#[test]
fn authz_jwt_task_with_istio_yaml() {
    let Some(root) = istio_samples() else { return };
    if !binaries_built() {
        return;
    }
    let issuer = Issuer::start();
    let file = |n: u32| {
        istio_file(
            &root.join(AUTHZ_JWT).join(format!(
                "snip_allow_requests_with_valid_jwt_and_listtyped_claims_{n}.yaml"
            )),
            &issuer.jwks_uri,
        )
    };
    authz_jwt_task(
        &AuthzJwtSteps {
            request_authentication: file(1),
            require_jwt: file(4),
            require_group1: file(8),
        },
        &issuer,
    );
}

/// The same task with Keel's fixtures.
#[test]
fn authz_jwt_task_with_keel_fixtures() {
    if !binaries_built() {
        return;
    }
    let issuer = Issuer::start();
    let principal = format!("{ISSUER}/{ISSUER}");
    authz_jwt_task(
        &AuthzJwtSteps {
            request_authentication: format!(
                "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: httpbin-jwt}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules: [{{issuer: {ISSUER}, jwksUri: '{}'}}]
",
                issuer.jwks_uri
            ),
            require_jwt: format!(
                "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: httpbin-principal}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules: [{{from: [{{source: {{requestPrincipals: ['{principal}']}}}}]}}]
"
            ),
            require_group1: format!(
                "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: httpbin-principal}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ['{principal}']}}}}]
    when: [{{key: 'request.auth.claims[groups]', values: [group1]}}]
"
            ),
        },
        &issuer,
    );
}

// ---------------------------------------------------------------------------------------
// The authentication task: end-user authentication at the ingress gateway

struct EndUserSteps {
    /// Gateway and VirtualService for httpbin, applied with the mesh.
    gateway: String,
    request_authentication: String,
    deny_without_principal: String,
    deny_without_principal_on_headers: String,
    /// Keel's fixtures go on to route on a claim at the gateway.
    claim_route: Option<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn enduser_task(steps: &EndUserSteps, issuer: &Issuer) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = [
        ("httpbin.yaml", common::HTTPBIN.to_string()),
        ("gateway.yaml", steps.gateway.clone()),
    ]
    .iter()
    .map(|(name, text)| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    })
    .collect();
    // The Gateway says port 80; this mesh's gateway listens for it on a free port.
    let port = free_port();
    let mesh = Mesh::up_with(
        &files.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        &["--gateway-port", &format!("80={port}")],
        &[],
    );
    let call = |path: &str, headers: &[&str]| {
        get(port, &format!("http://127.0.0.1:{port}{path}"), headers)
    };
    let token = issuer.token(None);
    eventually("the ingress gateway to serve httpbin", || {
        std::panic::catch_unwind(|| call("/headers", &[]))
            .ok()
            .filter(|r| r.status == 200)
    });

    // RequestAuthentication on the gateway: a valid token 200, an invalid one 401, none 200.
    mesh.apply_yaml("jwt-example.yaml", &steps.request_authentication);
    let r = call("/headers", &[&bearer(&token)]);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call("/headers", &[&bearer("deadbeef")]);
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{}",
        r.text
    );
    assert_eq!(call("/headers", &[]).status, 200);

    // DENY requests without a principal.
    mesh.apply_yaml("frontend-ingress.yaml", &steps.deny_without_principal);
    assert_eq!(call("/headers", &[]).status, 403);
    assert_eq!(call("/headers", &[&bearer(&token)]).status, 200);

    // Only /headers needs a token; /ip doesn't.
    mesh.apply_yaml(
        "frontend-ingress.yaml",
        &steps.deny_without_principal_on_headers,
    );
    assert_eq!(call("/headers", &[]).status, 403);
    assert_eq!(call("/ip", &[]).status, 200);
    assert_eq!(call("/headers", &[&bearer(&token)]).status, 200);

    if let Some(routes) = &steps.claim_route {
        // Routing on a claim of the token the gateway verified.
        mesh.apply_yaml("claim-route.yaml", routes);
        let group1 = issuer.token(Some(&["group1", "group2"]));
        let r = call("/headers", &[&bearer(&group1)]);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            r.text.contains("\"X-Keel-Group\""),
            "routed on groups: {}",
            r.text
        );
        let r = call("/headers", &[&bearer(&token)]);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            !r.text.contains("X-Keel-Group"),
            "no groups claim: {}",
            r.text
        );
        // A request without a token matches `withoutHeaders` on the claim (/get needs no
        // token under the per-path policy).
        let r = call("/get", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.text.contains("\"X-Keel-Anonymous\""), "{}", r.text);
        let r = call("/get", &[&bearer(&token)]);
        assert!(!r.text.contains("X-Keel-Anonymous"), "{}", r.text);
    }
    mesh.down();
}

/// Istio's own files for the end-user authentication task.
#[test]
fn enduser_authentication_task_with_istio_yaml() {
    let Some(root) = istio_samples() else { return };
    if !binaries_built() {
        return;
    }
    let issuer = Issuer::start();
    let file = |name: &str| istio_file(&root.join(AUTHN).join(name), &issuer.jwks_uri);
    enduser_task(
        &EndUserSteps {
            gateway: format!(
                "{}\n---\n{}",
                file("snip_enduser_authentication_1.yaml"),
                file("snip_enduser_authentication_2.yaml")
            ),
            request_authentication: file("snip_enduser_authentication_4.yaml"),
            deny_without_principal: file("snip_require_a_valid_token_1.yaml"),
            deny_without_principal_on_headers: file("snip_require_valid_tokens_perpath_1.yaml"),
            claim_route: None,
        },
        &issuer,
    );
}

/// The same task with Keel's fixtures, then claim-based routing at the gateway.
#[test]
fn enduser_authentication_task_with_keel_fixtures() {
    if !binaries_built() {
        return;
    }
    let issuer = Issuer::start();
    let gateway = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: ['*']
  gateways: [web]
  http: [{route: [{destination: {host: httpbin, port: {number: 8000}}}]}]
";
    let deny = |paths: &str| {
        format!(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ingress-needs-a-token, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules: [{{from: [{{source: {{notRequestPrincipals: ['*']}}}}]{paths}}}]
"
        )
    };
    enduser_task(
        &EndUserSteps {
            gateway: gateway.to_string(),
            request_authentication: format!(
                "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ingress-jwt, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules: [{{issuer: {ISSUER}, jwksUri: '{}'}}]
",
                issuer.jwks_uri
            ),
            deny_without_principal: deny(""),
            deny_without_principal_on_headers: deny(", to: [{operation: {paths: [/headers]}}]"),
            claim_route: Some(
                "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: ['*']
  gateways: [web]
  http:
  - match: [{headers: {'@request.auth.claims.groups': {exact: group1}}}]
    headers: {request: {set: {x-keel-group: group1}}}
    route: [{destination: {host: httpbin, port: {number: 8000}}}]
  - match: [{uri: {exact: /get}, withoutHeaders: {'@request.auth.claims.sub': {}}}]
    headers: {request: {set: {x-keel-anonymous: 'yes'}}}
    route: [{destination: {host: httpbin, port: {number: 8000}}}]
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]
"
                .to_string(),
            ),
        },
        &issuer,
    );
}

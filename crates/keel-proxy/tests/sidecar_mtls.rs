//! The sidecar's inbound side under PeerAuthentication: mesh mTLS from a peer sidecar is
//! terminated (its identity checked against the mesh root) and served; plaintext is accepted
//! under PERMISSIVE and refused under STRICT, as Istio's authn tasks show.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use keel_control::ca::{Ca, CaOptions};
use keel_proxy::identity::{KeyAlgorithm, Material, SpiffeId, TrustRoots, WorkloadIdentity, key};
use keel_proxy::l4::orig_dst::FixedOriginalDst;
use keel_proxy::tls::mesh::{Carries, MeshTls};
use keel_snapshot::compile::sidecar::{InboundPort, SidecarOptions, compile};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "spiffe://cluster.local/ns/foo/sa/web";

fn mesh_tls(ca: &Ca, ns: &str, sa: &str) -> Arc<MeshTls> {
    let roots = Arc::new(
        TrustRoots::from_pem(Path::new("root-cert.pem"), ca.root_pem().as_bytes()).unwrap(),
    );
    let id = SpiffeId::new("cluster.local", ns, sa);
    let identity = WorkloadIdentity::new(id.clone(), "127.0.0.1:15012", roots.clone());
    let k = key::generate(KeyAlgorithm::EcdsaP256, &id).unwrap();
    let chain = ca
        .sign_csr(
            &k.csr_pem,
            &keel_control::ca::SpiffeId::new("cluster.local", ns, sa),
            None,
        )
        .unwrap();
    identity
        .install(Material::from_ca_response(&chain, k.key, &id, roots, SystemTime::now()).unwrap());
    Arc::new(MeshTls::new(identity).unwrap())
}

fn config(mode: &str, app: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: foo}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec:
  mtls: {{mode: {mode}}}
",
        port = app.port()
    )
}

/// The sidecar of `web` in `foo`, its inbound listener on a free port, with `mode`.
async fn sidecar(
    mode: &str,
    app: SocketAddr,
    mesh: Arc<MeshTls>,
) -> (SocketAddr, Arc<keel_proxy::server::Shared>, impl Drop) {
    for _ in 0..5 {
        let inbound = free_port();
        let loaded = keel_config::load_str(&config(mode, app), "web.yaml", &Default::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let compiled = compile(
            &loaded.resources,
            &SidecarOptions {
                namespace: "foo".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                outbound_port: free_port(),
                inbound_port: inbound,
                inbound_ports: vec![InboundPort {
                    port: app.port(),
                    protocol: "HTTP".into(),
                    local: None,
                }],
                bind: "127.0.0.1".parse().unwrap(),
                ..Default::default()
            },
        );
        let orig = FixedOriginalDst::new(None);
        if let Ok((shared, listeners)) = try_start(
            compiled.snapshot,
            Duration::from_millis(200),
            Arc::new(orig),
        )
        .await
        {
            shared.pools.set_mesh(mesh.clone());
            struct Stop(keel_proxy::server::Listeners);
            impl Drop for Stop {
                fn drop(&mut self) {
                    self.0.stop_all();
                }
            }
            return (local(inbound), shared, Stop(listeners));
        }
    }
    panic!("the sidecar could not bind");
}

/// A GET over mesh mTLS as the sidecar of `client` would send it, expecting `expected`
/// behind the endpoint: the response, or the handshake's error.
async fn mtls_get(at: SocketAddr, client: &MeshTls, expected: &str) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(at).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(client.client_config(expected, Carries::Http1).unwrap());
    let name = ServerName::try_from("outbound_.80_._.web.foo.svc.cluster.local").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /mtls HTTP/1.1\r\nHost: web.foo:80\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A plaintext GET, as a client outside the mesh sends it: the response, empty if refused.
async fn plain_get(at: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    let _ = s
        .write_all(b"GET /plain HTTP/1.1\r\nHost: web.foo:80\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn permissive_takes_both_strict_refuses_plaintext_and_peers_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    let web = mesh_tls(&ca, "foo", "web");
    let sleep = mesh_tls(&ca, "foo", "sleep");
    let app = http_server("web").await;

    let (at, _, _stop) = sidecar("PERMISSIVE", app, web.clone()).await;
    let r = plain_get(at).await;
    assert!(
        r.starts_with("HTTP/1.1 200"),
        "plaintext under PERMISSIVE: {r}"
    );
    let r = mtls_get(at, &sleep, WEB).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "mTLS under PERMISSIVE: {r}");
    assert!(r.contains("web HTTP/1.1"), "{r}");
    // The client checks who answers: not the identity expected behind the endpoint.
    let err = mtls_get(at, &sleep, "spiffe://cluster.local/ns/foo/sa/other")
        .await
        .unwrap_err();
    assert!(err.contains("sa/other"), "{err}");
    // A sidecar of another mesh (another root) is refused.
    let other_dir = tempfile::tempdir().unwrap();
    let stranger_ca = Ca::load_or_create(other_dir.path(), None, CaOptions::default()).unwrap();
    let stranger = mesh_tls(&stranger_ca, "foo", "sleep");
    assert!(mtls_get(at, &stranger, "").await.is_err());
    drop(_stop);

    let (at, _, _stop) = sidecar("STRICT", app, web.clone()).await;
    let r = plain_get(at).await;
    assert!(r.is_empty(), "plaintext under STRICT is refused: {r}");
    let r = mtls_get(at, &sleep, WEB).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "mTLS under STRICT: {r}");
}

/// Two sidecars: `sleep` calls `web` through its outbound listener; auto mTLS sends mTLS to
/// web's endpoint (a sidecar, `security.istio.io/tlsMode: istio`), which STRICT requires.
#[tokio::test]
async fn auto_mtls_between_two_sidecars_passes_strict() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    let app = http_server("web").await;
    let (web_in, web_shared, _web) = sidecar("STRICT", app, mesh_tls(&ca, "foo", "web")).await;
    let client = |tls_mode: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: foo}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web-0, namespace: foo}}
spec:
  address: 127.0.0.1
  labels: {{app: web, {tls_mode}}}
  serviceAccount: web
  ports: {{http: {port}}}
",
            port = web_in.port()
        )
    };
    for (labels, want) in [
        ("security.istio.io/tlsMode: istio", 200),
        // Without the sidecar label, auto mTLS sends plaintext, which STRICT refuses.
        ("version: v1", 503),
    ] {
        let loaded = keel_config::load_str(&client(labels), "sleep.yaml", &Default::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let outbound = free_port();
        let compiled = compile(
            &loaded.resources,
            &SidecarOptions {
                namespace: "foo".into(),
                labels: [("app".to_string(), "sleep".to_string())].into(),
                outbound_port: outbound,
                inbound_port: free_port(),
                bind: "127.0.0.1".parse().unwrap(),
                ..Default::default()
            },
        );
        let (shared, listeners) = try_start(
            compiled.snapshot,
            Duration::from_millis(200),
            Arc::new(FixedOriginalDst::new(None)),
        )
        .await
        .unwrap();
        shared.pools.set_mesh(mesh_tls(&ca, "foo", "sleep"));
        let (status, _, body) = raw_get(local(outbound), "/", &[("host", "web.foo:80")]).await;
        assert_eq!(status, want, "{labels}: {body}");
        listeners.stop_all();
    }
    // The server side reports the hop as mutual TLS, naming the client's identity.
    let metrics = web_shared.telemetry.render_prometheus();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        line.contains("connection_security_policy=\"mutual_tls\""),
        "{line}"
    );
    assert!(
        line.contains("source_principal=\"spiffe://cluster.local/ns/foo/sa/sleep\""),
        "{line}"
    );
}

/// AuthorizationPolicy on TCP traffic: a DENY by principal closes the connections of that
/// peer (mTLS, ALPN `istio`) and lets the others through, as Istio's TCP task shows.
#[tokio::test]
async fn a_deny_policy_by_principal_closes_that_peers_tcp_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    let db = echo_server("db", "db-banner\n").await;
    let yaml = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: db, namespace: foo}}
spec:
  selector: {{app: db}}
  ports: [{{name: tcp, port: 3306, targetPort: {port}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-sleep, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: db}}}}
  action: DENY
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/foo/sa/sleep]}}}}]}}]
",
        port = db.port()
    );
    let loaded = keel_config::load_str(&yaml, "db.yaml", &Default::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let inbound = free_port();
    let compiled = compile(
        &loaded.resources,
        &SidecarOptions {
            namespace: "foo".into(),
            labels: [("app".to_string(), "db".to_string())].into(),
            outbound_port: free_port(),
            inbound_port: inbound,
            inbound_ports: vec![InboundPort {
                port: db.port(),
                protocol: "TCP".into(),
                local: None,
            }],
            bind: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        },
    );
    assert!(
        compiled
            .snapshot
            .listener("virtualInbound")
            .unwrap()
            .authz
            .is_some()
    );
    let (shared, listeners) = try_start(
        compiled.snapshot,
        Duration::from_millis(200),
        Arc::new(FixedOriginalDst::new(None)),
    )
    .await
    .unwrap();
    shared.pools.set_mesh(mesh_tls(&ca, "foo", "db"));
    let banner = |client: Arc<MeshTls>| async move {
        let tcp = tokio::net::TcpStream::connect(local(inbound))
            .await
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(
            client
                .client_config("spiffe://cluster.local/ns/foo/sa/db", Carries::Tcp)
                .unwrap(),
        );
        let name = ServerName::try_from("outbound_.3306_._.db.foo.svc.cluster.local").unwrap();
        let Ok(mut tls) = connector.connect(name, tcp).await else {
            return String::new();
        };
        let mut out = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut out))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).into_owned()
    };
    assert_eq!(banner(mesh_tls(&ca, "foo", "other")).await, "db-banner\n");
    assert_eq!(
        banner(mesh_tls(&ca, "foo", "sleep")).await,
        "",
        "denied: closed"
    );
    listeners.stop_all();
}

/// A Gateway server with `tls.mode: ISTIO_MUTUAL` presents the gateway's workload certificate
/// and takes only clients with a mesh certificate — a sidecar calling it over auto mTLS, with
/// Istio's ALPN; a client without one is refused.
#[tokio::test]
async fn an_istio_mutual_gateway_server_takes_mesh_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    let app = http_server("app").await;
    for _ in 0..5 {
        let port = free_port();
        let yaml = format!(
            "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: east-west, namespace: istio-system}}
spec:
  servers:
  - port: {{number: {port}, name: tls, protocol: HTTPS}}
    hosts: [\"*\"]
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: app, namespace: istio-system}}
spec:
  hosts: [app.internal]
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {app}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app, namespace: istio-system}}
spec:
  hosts: [\"*\"]
  gateways: [east-west]
  http: [{{route: [{{destination: {{host: app.internal}}}}]}}]
",
            app = app.port()
        );
        let loaded = keel_config::load_str(&yaml, "gw.yaml", &Default::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let compiled = keel_snapshot::compile::gateway::compile(
            &loaded.resources,
            &keel_snapshot::compile::gateway::GatewayOptions {
                bind: "127.0.0.1".parse().unwrap(),
                namespace: "istio-system".into(),
                ..Default::default()
            },
        );
        let Ok((shared, listeners)) = try_start(
            compiled.snapshot,
            Duration::from_millis(200),
            Arc::new(FixedOriginalDst::new(None)),
        )
        .await
        else {
            continue;
        };
        let gateway = mesh_tls(&ca, "istio-system", "ingress");
        let _ = shared.identity.set(gateway.identity().clone());
        let sleep = mesh_tls(&ca, "foo", "sleep");
        let tcp = tokio::net::TcpStream::connect(local(port)).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(
            sleep
                .client_config(
                    "spiffe://cluster.local/ns/istio-system/sa/ingress",
                    Carries::Http1,
                )
                .unwrap(),
        );
        let name = ServerName::try_from("app.internal").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("mesh client");
        tls.write_all(b"GET /east HTTP/1.1\r\nHost: app.internal\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        let _ = tls.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("app HTTP/1.1 app.internal /east"), "{out}");

        // A TLS client without a mesh certificate: no handshake.
        let plain_tls = rustls::ClientConfig::builder()
            .with_root_certificates(gateway.identity().roots().store.as_ref().clone())
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(local(port)).await.unwrap();
        let refused = async {
            let mut t = tokio_rustls::TlsConnector::from(Arc::new(plain_tls))
                .connect(ServerName::try_from("app.internal").unwrap(), tcp)
                .await
                .ok()?;
            t.write_all(b"GET / HTTP/1.1\r\nHost: app.internal\r\n\r\n")
                .await
                .ok()?;
            let mut buf = vec![0u8; 16];
            let n = t.read(&mut buf).await.ok()?;
            (n > 0).then_some(())
        };
        assert!(refused.await.is_none(), "no client certificate, no answer");
        listeners.stop_all();
        return;
    }
    panic!("the gateway could not bind");
}

/// A sidecar named `workload` (app label the same) in `foo`, from `yaml`, with mesh
/// certificates: it tells peers who it is in the metadata exchange.
async fn named_sidecar(
    workload: &str,
    yaml: &str,
    options: SidecarOptions,
    mesh: Arc<MeshTls>,
) -> (
    Arc<keel_proxy::server::Shared>,
    keel_proxy::server::Listeners,
) {
    let loaded = keel_config::load_str(yaml, "mesh.yaml", &Default::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let compiled = compile(&loaded.resources, &options);
    let identity = keel_proxy::telemetry::ProxyIdentity {
        workload: workload.into(),
        namespace: "foo".into(),
        app: workload.into(),
        version: "v1".into(),
        principal: format!("spiffe://cluster.local/ns/foo/sa/{workload}"),
        ..Default::default()
    };
    let shared = keel_proxy::server::Shared::with_parts(
        "",
        Arc::new(keel_proxy::telemetry::Telemetry::new(identity)),
        keel_proxy::l4::L4Config {
            hello_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            original_dst: Arc::new(FixedOriginalDst::new(None)),
            ..Default::default()
        },
    );
    shared.pools.set_mesh(mesh);
    shared.install(compiled.snapshot);
    let listeners = keel_proxy::server::Listeners::default();
    let errors = listeners.reconcile(&shared).await;
    assert!(errors.is_empty(), "{errors:?}");
    (shared, listeners)
}

/// TCP between two sidecars over mesh mTLS: they agree Istio's `istio-peer-exchange`, each
/// tells the other who it is, and both sides' `istio_tcp_*` series name the workload at the
/// other end — while a server-first app's greeting and the echoed bytes pass untouched.
#[tokio::test]
async fn tcp_between_two_sidecars_exchanges_peer_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), None, CaOptions::default()).unwrap();
    let db_app = echo_server("db", "db-banner\n").await;
    let (db_in, svc_port) = (free_port(), free_port());
    let server_yaml = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: db, namespace: foo}}
spec:
  selector: {{app: db}}
  ports: [{{name: tcp, port: {svc_port}, targetPort: {port}}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec:
  mtls: {{mode: STRICT}}
",
        port = db_app.port()
    );
    let (db_shared, db_listeners) = named_sidecar(
        "db",
        &server_yaml,
        SidecarOptions {
            namespace: "foo".into(),
            labels: [("app".to_string(), "db".to_string())].into(),
            outbound_port: free_port(),
            inbound_port: db_in,
            inbound_ports: vec![InboundPort {
                port: db_app.port(),
                protocol: "TCP".into(),
                local: None,
            }],
            bind: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        },
        mesh_tls(&ca, "foo", "db"),
    )
    .await;
    // The client's registry knows the endpoint's address and identity, not its workload name
    // (a WorkloadEntry without one): only the exchange can tell the client side `db`.
    let client_yaml = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: db, namespace: foo}}
spec:
  selector: {{app: db}}
  ports: [{{name: tcp, port: {svc_port}, targetPort: 3306}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: db-0, namespace: foo}}
spec:
  address: 127.0.0.1
  labels: {{app: db, security.istio.io/tlsMode: istio}}
  serviceAccount: db
  ports: {{tcp: {db_in}}}
"
    );
    let (sleep_shared, sleep_listeners) = named_sidecar(
        "sleep",
        &client_yaml,
        SidecarOptions {
            namespace: "foo".into(),
            labels: [("app".to_string(), "sleep".to_string())].into(),
            outbound_port: free_port(),
            inbound_port: free_port(),
            outbound_ports: vec![svc_port],
            bind: "127.0.0.1".parse().unwrap(),
            ..Default::default()
        },
        mesh_tls(&ca, "foo", "sleep"),
    )
    .await;

    // Server-first: the greeting arrives before the client says anything.
    let mut s = tokio::net::TcpStream::connect(local(svc_port))
        .await
        .unwrap();
    let mut greeting = vec![0u8; 10];
    tokio::time::timeout(LIMIT, s.read_exact(&mut greeting))
        .await
        .expect("the greeting in time")
        .unwrap();
    assert_eq!(greeting, b"db-banner\n");
    s.write_all(b"ping").await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut rest))
        .await
        .expect("the echo in time")
        .unwrap();
    assert_eq!(rest, b"db:ping");

    let opened = |shared: &keel_proxy::server::Shared| {
        let metrics = shared.telemetry.render_prometheus();
        metrics
            .lines()
            .find(|l| l.starts_with("istio_tcp_connections_opened_total{"))
            .unwrap_or_else(|| panic!("{metrics}"))
            .to_string()
    };
    let server = opened(&db_shared);
    for want in [
        "reporter=\"destination\"",
        "source_workload=\"sleep\"",
        "source_app=\"sleep\"",
        "source_version=\"v1\"",
        "source_principal=\"spiffe://cluster.local/ns/foo/sa/sleep\"",
        "destination_workload=\"db\"",
        "connection_security_policy=\"mutual_tls\"",
    ] {
        assert!(server.contains(want), "{want} in {server}");
    }
    let client = opened(&sleep_shared);
    for want in [
        "reporter=\"source\"",
        "source_workload=\"sleep\"",
        "destination_workload=\"db\"",
        "destination_app=\"db\"",
        "destination_principal=\"spiffe://cluster.local/ns/foo/sa/db\"",
    ] {
        assert!(client.contains(want), "{want} in {client}");
    }
    sleep_listeners.stop_all();
    db_listeners.stop_all();
}

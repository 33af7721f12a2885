//! The push end to end, in process: a control plane (directory store, xDS server, HTTP API)
//! on ephemeral loopback ports, and proxies following it with the real xDS client, serving
//! traffic to in-process upstreams.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel_control::api::client::Client;
use keel_control::api::server::ApiState;
use keel_control::store::{ConfigStore, DirStore, DirStoreOptions, WriteOptions};
use keel_control::xds::{Debounce, ProxyStatus, SyncState, XdsServer};
use keel_proxy::server::{Listeners, Shared};
use keel_proxy::xds::{ClientState, ProxySink, XdsClient, XdsConfig};
use keel_xds::node::{ProxyKind, ProxyNode};
use tokio::sync::{oneshot, watch};

/// A running control plane: store, xDS server and API.
struct ControlPlane {
    store: Arc<DirStore>,
    xds: XdsServer,
    xds_addr: SocketAddr,
    api: Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    /// Serves the store in `dir`, xDS on `xds_port` (0: any).
    async fn start(dir: &std::path::Path, xds_port: u16) -> ControlPlane {
        let (store, _) = DirStore::open(dir, DirStoreOptions::default()).expect("open store");
        let store = Arc::new(store);
        let debounce = Debounce {
            quiet: Duration::from_millis(20),
            max: Duration::from_millis(200),
        };
        let xds = XdsServer::new(&*store, "istio-system", debounce);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", xds_port))
            .await
            .expect("bind xds");
        let xds_addr = listener.local_addr().unwrap();
        let api_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Client::new(&format!("http://{}", api_listener.local_addr().unwrap())).unwrap();
        let state = ApiState {
            store: store.clone() as Arc<dyn ConfigStore>,
            version: "test".into(),
            git_commit: "test".into(),
            root_namespace: "istio-system".into(),
            proxies: Some(xds.registry()),
            metrics: Some(xds.metrics()),
            monitoring_only: false,
            jwks: xds.jwks(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (api_stop_tx, api_stop) = oneshot::channel::<()>();
        let server = xds.clone();
        let task = tokio::spawn(async move {
            let api = tokio::spawn(keel_control::api::server::serve(
                api_listener,
                state,
                async {
                    let _ = api_stop.await;
                },
            ));
            let _ = keel_control::xds::serve(listener, server, async {
                let _ = stopped.await;
            })
            .await;
            let _ = api_stop_tx.send(());
            let _ = api.await;
        });
        ControlPlane {
            store,
            xds,
            xds_addr,
            api,
            stop: Some(stop),
            task,
        }
    }

    fn apply(&self, yaml: &str) {
        let loaded = keel_config::load_str(yaml, "test.yaml", &Default::default());
        assert!(
            loaded
                .diagnostics
                .iter()
                .all(|d| d.level != keel_config::Level::Error),
            "{:?}",
            loaded.diagnostics
        );
        self.store
            .apply(loaded.resources, WriteOptions::default())
            .expect("apply");
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        within("the control plane stops", &mut self.task)
            .await
            .unwrap();
    }

    /// The status of the proxy named `name`, once `ok` holds for it.
    async fn status_when(&self, name: &str, ok: impl Fn(&ProxyStatus) -> bool) -> ProxyStatus {
        within("the proxy status", async {
            loop {
                if let Some(p) = self.xds.registry().get(name).filter(|p| ok(p)) {
                    return p;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {LIMIT:?}"))
}

/// A proxy following the control plane at `addr`.
struct Proxy {
    shared: Arc<Shared>,
    state: watch::Receiver<ClientState>,
    _listeners: Arc<Listeners>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self._listeners.stop_all();
    }
}

fn start_proxy(addr: SocketAddr, node: ProxyNode) -> Proxy {
    let shared = Shared::new("");
    let listeners = Arc::new(Listeners::default());
    let mut config = XdsConfig::new(&format!("http://{addr}"), node);
    config.initial_backoff = Duration::from_millis(20);
    config.max_backoff = Duration::from_millis(200);
    let client = XdsClient::new(
        config,
        ProxySink {
            shared: shared.clone(),
            listeners: listeners.clone(),
        },
    );
    let state = client.state();
    let task = tokio::spawn(client.run());
    Proxy {
        shared,
        state,
        _listeners: listeners,
        task,
    }
}

impl Proxy {
    async fn wait(&mut self, what: &str, f: impl Fn(&ClientState) -> bool) {
        within(what, self.state.wait_for(|s| f(s)))
            .await
            .expect("client running");
    }
}

fn types_are(p: &ProxyStatus, state: SyncState) -> bool {
    ["listeners", "clusters"]
        .iter()
        .all(|t| p.types.get(*t).is_some_and(|s| s.state == state))
}

/// reviews with a v1 and a v2 endpoint (a ServiceEntry: the store refuses loopback
/// addresses in Kubernetes Endpoints, as Kubernetes does) and a DestinationRule with both
/// subsets.
fn reviews_yaml(v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{REVIEWS}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: {REVIEWS}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"#,
        v1.port(),
        v2.port()
    )
}

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn all_to(subset: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{REVIEWS}]
  http:
  - route: [{{destination: {{host: {REVIEWS}, subset: {subset}}}}}]
"#
    )
}

fn sidecar_node(id: &str, outbound: u16) -> ProxyNode {
    ProxyNode {
        id: id.into(),
        kind: ProxyKind::Sidecar,
        namespace: "default".into(),
        labels: [("app".to_string(), "productpage".to_string())].into(),
        workload: "productpage-v1".into(),
        bind: "127.0.0.1".parse().unwrap(),
        outbound_port: outbound,
        inbound_port: free_port(),
        ..ProxyNode::default()
    }
}

/// Waits until `n` requests in a row through `outbound` reach `want`.
async fn routes_to(outbound: SocketAddr, want: &str) {
    within(&format!("requests reach {want}"), async {
        let mut streak = 0;
        while streak < 4 {
            let (_, up, _) = raw_get(outbound, &format!("http://{REVIEWS}:9080/"), &[]).await;
            streak = if up == want { streak + 1 } else { 0 };
            if streak == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_sidecar_is_configured_and_follows_routing_changes() {
    let (v1, v2) = (
        http_server("reviews-v1").await,
        http_server("reviews-v2").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), 0).await;
    cp.apply(&reviews_yaml(v1, v2));
    cp.apply(&all_to("v1"));

    let outbound = free_port();
    let mut proxy = start_proxy(
        cp.xds_addr,
        sidecar_node("productpage-v1.default", outbound),
    );
    proxy.wait("the first configuration", |s| s.synced).await;
    routes_to(local(outbound), "reviews-v1").await;

    let synced_at = |version: u64| {
        move |p: &ProxyStatus| {
            types_are(p, SyncState::Synced) && p.control_plane_version == version.to_string()
        }
    };
    let before = cp
        .status_when(
            "productpage-v1.default",
            synced_at(cp.store.snapshot().version),
        )
        .await;

    // A VirtualService change reaches the proxy and changes its routing.
    cp.apply(&all_to("v2"));
    routes_to(local(outbound), "reviews-v2").await;
    let status = cp
        .status_when(
            "productpage-v1.default",
            synced_at(cp.store.snapshot().version),
        )
        .await;
    assert_eq!(status.namespace, "default");
    assert_eq!(status.kind, "sidecar");
    assert_eq!(status.workload, "productpage-v1");
    assert_eq!(
        status.control_plane_version,
        proxy.shared.runtime.load().snapshot.version
    );
    // Only what changed was sent: the outbound listener (its routes changed), not the
    // inbound one; the v2 subset's cluster (now referenced) and v1's removal, not the others.
    let (l0, l1) = (&before.types["listeners"], &status.types["listeners"]);
    assert!(l1.resources >= 2, "{l1:?}");
    assert_eq!(l1.resources_sent - l0.resources_sent, 1, "{l0:?} {l1:?}");
    let (c0, c1) = (&before.types["clusters"], &status.types["clusters"]);
    assert!(c1.resources >= 3, "{c1:?}");
    assert_eq!(c1.resources_sent - c0.resources_sent, 2, "{c0:?} {c1:?}");
    let clusters = &proxy.shared.runtime.load().snapshot.clusters;
    assert!(clusters.contains_key(&format!("outbound|9080|v2|{REVIEWS}")));
    assert!(!clusters.contains_key(&format!("outbound|9080|v1|{REVIEWS}")));

    // The control plane's metrics, under istiod's names: one proxy connected, pushes of
    // both types, and the change's convergence (change to ACK) observed.
    let metrics = cp.xds.metrics().render();
    assert!(metrics.contains("pilot_xds{version="), "{metrics}");
    assert!(metrics.contains("\"} 1\n"), "{metrics}");
    assert!(
        !metrics.contains("pilot_xds_pushes{type=\"lds\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("pilot_xds_pushes{type=\"cds\"} 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("pilot_proxy_convergence_time_count 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pilot_total_xds_rejects{type=\"lds\"} 0\n"),
        "{metrics}"
    );

    // The same over the HTTP API, as `keel proxy-status` reads it.
    let listed = cp.api.proxies().await.expect("GET /apis/proxies");
    assert_eq!(listed.proxies.len(), 1);
    assert_eq!(listed.proxies[0].name, "productpage-v1.default");
    assert_eq!(
        listed.proxies[0].types["listeners"].state,
        SyncState::Synced
    );
    drop(proxy);
    within("the proxy is forgotten", async {
        while cp.xds.registry().get("productpage-v1.default").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    cp.stop().await;
}

/// A Gateway with an HTTP server on each of `ports`, routing `*` to reviews v1.
fn gateway_yaml(ports: &[u16]) -> String {
    let servers: String = ports
        .iter()
        .map(|p| {
            format!(
                "  - {{port: {{number: {p}, name: http-{p}, protocol: HTTP}}, hosts: [\"*\"]}}\n"
            )
        })
        .collect();
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ingress, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/ingress]
  http:
  - route: [{{destination: {{host: {REVIEWS}, subset: v1}}}}]
"#
    )
}

fn gateway_node(id: &str) -> ProxyNode {
    ProxyNode {
        id: id.into(),
        kind: ProxyKind::Gateway,
        namespace: "istio-system".into(),
        labels: [("istio".to_string(), "ingressgateway".to_string())].into(),
        bind: "127.0.0.1".parse().unwrap(),
        ..ProxyNode::default()
    }
}

#[tokio::test]
async fn an_update_the_proxy_cannot_take_is_nacked_and_the_last_good_config_serves() {
    let (v1, v2) = (
        http_server("reviews-v1").await,
        http_server("reviews-v2").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), 0).await;
    cp.apply(&reviews_yaml(v1, v2));
    let good = free_port();
    cp.apply(&gateway_yaml(&[good]));
    let mut proxy = start_proxy(cp.xds_addr, gateway_node("ingress.istio-system"));
    let version = cp.store.snapshot().version.to_string();
    proxy
        .wait("the first configuration", |s| {
            s.synced && s.version == version
        })
        .await;
    let (status, up, _) = raw_get(local(good), "/", &[("host", "bookinfo.example")]).await;
    assert_eq!((status, up.as_str()), (200, "reviews-v1"));

    // A second server port that something else holds: the listener can't bind.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    cp.apply(&gateway_yaml(&[good, taken]));
    let status = cp
        .status_when("ingress.istio-system", |p| {
            p.types["listeners"].state == SyncState::Nack
        })
        .await;
    let reason = status.types["listeners"].nack_reason.clone().unwrap();
    assert!(
        reason.contains(&format!("cannot bind 127.0.0.1:{taken}")),
        "{reason}"
    );
    assert_eq!(status.kind, "gateway");
    assert_eq!(status.types["clusters"].state, SyncState::Synced);
    proxy.wait("the NACK", |s| s.nacks == 1).await;
    let metrics = cp.xds.metrics().render();
    assert!(
        metrics.contains("pilot_total_xds_rejects{type=\"lds\"} 1\n"),
        "{metrics}"
    );
    // The proxy keeps serving its last good configuration.
    let (status, up, _) = raw_get(local(good), "/", &[("host", "bookinfo.example")]).await;
    assert_eq!((status, up.as_str()), (200, "reviews-v1"));
    assert!(proxy.shared.runtime.load().snapshot.listeners.len() == 1);
    // The reason reaches `keel proxy-status` too.
    let listed = cp.api.proxies().await.unwrap();
    assert_eq!(
        listed.proxies[0].types["listeners"].nack_reason.as_deref(),
        Some(reason.as_str())
    );

    // Fixed (the port is given back to the proxy): the next change is taken.
    drop(squatter);
    cp.apply(&gateway_yaml(&[taken]));
    cp.status_when("ingress.istio-system", |p| types_are(p, SyncState::Synced))
        .await;
    let (status, up, _) = raw_get(local(taken), "/", &[("host", "bookinfo.example")]).await;
    assert_eq!((status, up.as_str()), (200, "reviews-v1"));
    assert_eq!(proxy.state.borrow().nacks, 1);
    cp.stop().await;
}

#[tokio::test]
async fn a_control_plane_restart_resyncs_without_resending() {
    let (v1, v2) = (
        http_server("reviews-v1").await,
        http_server("reviews-v2").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), 0).await;
    let port = cp.xds_addr.port();
    cp.apply(&reviews_yaml(v1, v2));
    cp.apply(&all_to("v2"));
    let outbound = free_port();
    let mut proxy = start_proxy(
        cp.xds_addr,
        sidecar_node("productpage-v1.default", outbound),
    );
    proxy.wait("the first configuration", |s| s.synced).await;
    routes_to(local(outbound), "reviews-v2").await;
    let version = cp.store.snapshot().version.to_string();
    cp.status_when("productpage-v1.default", |p| {
        types_are(p, SyncState::Synced) && p.control_plane_version == version
    })
    .await;

    // The control plane goes away: the proxy notices and keeps serving.
    cp.stop().await;
    proxy.wait("the disconnect", |s| !s.connected).await;
    for _ in 0..3 {
        routes_to(local(outbound), "reviews-v2").await;
    }
    let acks = proxy.state.borrow().acks;

    // It comes back (same store, same port): the proxy reconnects with the versions it has,
    // which match, so nothing is sent again — one empty response per type, ACKed.
    let cp = ControlPlane::start(dir.path(), port).await;
    let status = cp
        .status_when("productpage-v1.default", |p| {
            types_are(p, SyncState::Synced) && p.types.values().all(|t| t.acks == 1)
        })
        .await;
    for (t, s) in &status.types {
        assert_eq!((s.sent, s.resources_sent), (1, 0), "{t}: {s:?}");
        assert!(s.resources >= 2, "{t}: {s:?}");
    }
    proxy
        .wait("the resync", |s| s.connected && s.acks == acks + 2)
        .await;
    routes_to(local(outbound), "reviews-v2").await;

    // And pushes flow again.
    cp.apply(&all_to("v1"));
    routes_to(local(outbound), "reviews-v1").await;
    cp.stop().await;
}

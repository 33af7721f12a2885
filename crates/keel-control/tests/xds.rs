//! The xDS server at the protocol level: a hand-driven delta-ADS client against a real
//! server on an ephemeral loopback port, checking nonces, ACK/NACK bookkeeping and status.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::sync::Arc;
use std::time::Duration;

use keel_control::store::{ConfigStore, DirStore, DirStoreOptions, WriteOptions};
use keel_control::xds::{Debounce, ProxyStatus, SyncState, XdsServer, serve};
use keel_xds::node::ProxyNode;
use keel_xds::{
    AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest, DeltaDiscoveryResponse, ResourceType,
    Status,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const LIMIT: Duration = Duration::from_secs(5);

struct Setup {
    store: Arc<DirStore>,
    xds: XdsServer,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = DirStore::open(dir.path(), DirStoreOptions::default()).unwrap();
    let store = Arc::new(store);
    let xds = XdsServer::new(
        &*store,
        "istio-system",
        Debounce {
            quiet: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, xds.clone(), std::future::pending()));
    Setup {
        store,
        xds,
        addr,
        _dir: dir,
    }
}

struct Stream {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Stream {
    /// Opens a stream subscribing to both types as `node`.
    async fn open(s: &Setup, node: Option<ProxyNode>) -> Result<Stream, tonic::Status> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(8);
        for (i, t) in ResourceType::ALL.into_iter().enumerate() {
            tx.send(DeltaDiscoveryRequest {
                node: node.as_ref().filter(|_| i == 0).map(ProxyNode::to_node),
                type_url: t.type_url().into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Stream { tx, rx })
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(LIMIT, self.rx.message())
            .await
            .expect("a response in time")
            .expect("stream ok")
            .expect("stream open")
    }

    async fn answer(&self, resp: &DeltaDiscoveryResponse, nack: Option<&str>) {
        self.tx
            .send(DeltaDiscoveryRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce.clone(),
                error_detail: nack.map(|m| Status {
                    code: 3,
                    message: m.into(),
                    details: Vec::new(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

fn node(id: &str) -> ProxyNode {
    ProxyNode {
        id: id.into(),
        ..ProxyNode::default()
    }
}

async fn status_when(s: &Setup, name: &str, ok: impl Fn(&ProxyStatus) -> bool) -> ProxyStatus {
    tokio::time::timeout(LIMIT, async {
        loop {
            if let Some(p) = s.xds.registry().get(name).filter(|p| ok(p)) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("status in time")
}

fn state(p: &ProxyStatus, t: &str) -> SyncState {
    p.types[t].state
}

const SERVICE_ENTRY: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
";

fn apply(store: &DirStore, yaml: &str) {
    let loaded = keel_config::load_str(yaml, "t.yaml", &Default::default());
    store
        .apply(loaded.resources, WriteOptions::default())
        .expect("apply");
}

#[tokio::test]
async fn clusters_come_first_and_acks_and_nacks_are_tracked_per_type() {
    let s = setup().await;
    let mut stream = Stream::open(&s, Some(node("a.default"))).await.unwrap();
    let clusters = stream.next().await;
    let listeners = stream.next().await;
    assert_eq!(clusters.type_url, ResourceType::Cluster.type_url());
    assert_eq!(listeners.type_url, ResourceType::Listener.type_url());
    assert_ne!(clusters.nonce, listeners.nonce);
    assert!(
        !listeners.resources.is_empty(),
        "virtualOutbound, virtualInbound"
    );
    let p = status_when(&s, "a.default", |_| true).await;
    assert_eq!(state(&p, "listeners"), SyncState::Stale, "sent, not ACKed");

    stream.answer(&clusters, None).await;
    stream.answer(&listeners, Some("listener x: no")).await;
    let p = status_when(&s, "a.default", |p| p.types["listeners"].nacks == 1).await;
    assert_eq!(state(&p, "clusters"), SyncState::Synced);
    assert_eq!(state(&p, "listeners"), SyncState::Nack);
    assert_eq!(
        p.types["listeners"].nack_reason.as_deref(),
        Some("listener x: no")
    );
    assert_eq!(p.types["listeners"].resources, 0, "a NACK changes nothing");

    // Not sent again while nothing changes (no NACK loop)...
    let quiet = tokio::time::timeout(Duration::from_millis(200), stream.rx.message()).await;
    assert!(quiet.is_err(), "nothing more after a NACK: {quiet:?}");
    // ...but a change in the proxy's view is.
    apply(&s.store, SERVICE_ENTRY);
    let mut again = stream.next().await;
    if again.type_url == ResourceType::Cluster.type_url() {
        stream.answer(&again, None).await;
        again = stream.next().await;
    }
    assert_eq!(again.type_url, ResourceType::Listener.type_url());
    assert_eq!(
        again.system_version_info,
        s.store.snapshot().version.to_string()
    );
    stream.answer(&again, None).await;
    let p = status_when(&s, "a.default", |p| {
        state(p, "listeners") == SyncState::Synced && state(p, "clusters") == SyncState::Synced
    })
    .await;
    assert_eq!(p.types["listeners"].nack_reason, None);
    assert_eq!(
        p.types["listeners"].acked_version.as_deref(),
        Some(again.system_version_info.as_str())
    );

    // A stale nonce is ignored; closing the stream forgets the proxy.
    stream.answer(&listeners, None).await;
    drop(stream);
    tokio::time::timeout(LIMIT, async {
        while s.xds.registry().get("a.default").is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("forgotten");
}

#[tokio::test]
async fn a_stream_without_a_usable_node_is_refused() {
    let s = setup().await;
    let err = match Stream::open(&s, None).await {
        Ok(mut stream) => stream.rx.message().await.expect_err("refused"),
        Err(e) => e,
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("must carry the node"),
        "{}",
        err.message()
    );
    let err = match Stream::open(&s, Some(node(""))).await {
        Ok(mut stream) => stream.rx.message().await.expect_err("refused"),
        Err(e) => e,
    };
    assert!(
        err.message().contains("node id is empty"),
        "{}",
        err.message()
    );
}

const INTERNAL: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: internal, namespace: default}
spec:
  hosts: [internal.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
";

/// Make before break: when a change removes a cluster (the ServiceEntry goes), the cluster's
/// removal is sent only after the proxy has ACKed the listeners that stop routing to it.
#[tokio::test]
async fn a_cluster_is_removed_only_after_the_listeners_that_used_it() {
    let s = setup().await;
    apply(&s.store, INTERNAL);
    // Past the debounce (10 ms quiet, 100 ms at most), so the first view has the entry.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut stream = Stream::open(&s, Some(node("b.default"))).await.unwrap();
    let clusters = stream.next().await;
    let listeners = stream.next().await;
    assert!(
        clusters
            .resources
            .iter()
            .any(|r| r.name.contains("internal.example.com")),
        "{:?}",
        clusters
            .resources
            .iter()
            .map(|r| &r.name)
            .collect::<Vec<_>>()
    );
    stream.answer(&clusters, None).await;
    stream.answer(&listeners, None).await;
    status_when(&s, "b.default", |p| {
        state(p, "listeners") == SyncState::Synced && state(p, "clusters") == SyncState::Synced
    })
    .await;

    let key = keel_control::store::ResourceKey::new(
        keel_config::Kind::ServiceEntry,
        "default",
        "internal",
    );
    s.store
        .delete(&[key], WriteOptions::default())
        .expect("delete");
    // The listener update comes first; no cluster response removes anything before its ACK.
    let first = stream.next().await;
    assert_eq!(
        first.type_url,
        ResourceType::Listener.type_url(),
        "removals wait for the listeners: {first:?}"
    );
    let early = tokio::time::timeout(Duration::from_millis(150), stream.rx.message()).await;
    assert!(
        early.is_err(),
        "nothing before the listeners' ACK: {early:?}"
    );
    stream.answer(&first, None).await;
    let removal = stream.next().await;
    assert_eq!(removal.type_url, ResourceType::Cluster.type_url());
    assert!(
        removal
            .removed_resources
            .iter()
            .any(|n| n.contains("internal.example.com")),
        "{removal:?}"
    );
    stream.answer(&removal, None).await;
    status_when(&s, "b.default", |p| {
        state(p, "listeners") == SyncState::Synced && state(p, "clusters") == SyncState::Synced
    })
    .await;
}

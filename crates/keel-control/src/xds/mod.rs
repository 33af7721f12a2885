//! The push: delta xDS (`envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources`)
//! from the config store to every connected proxy.
//!
//! ```text
//! ConfigStore ──subscribe──▶ debounce (100 ms quiet, ≤ 1 s) ──▶ PushContext (resources, version)
//!                                                                  │ one per store change
//!          per stream: compile the proxy's view (sidecar or gateway compiler, from its node
//!          metadata) → diff against what it ACKed → send changed and removed resources
//! ```
//!
//! - **Views.** Each proxy gets the listeners and clusters `keel_snapshot::compile::sidecar`
//!   (or `::gateway`, for nodes that say they are gateways) builds for its namespace, labels
//!   and ports, encoded by `keel_xds::codec` (JSON in `Any` for now).
//! - **Versions.** A resource's version is a hash of its encoding, so it survives restarts: a
//!   proxy reconnecting with `initial_resource_versions` is sent only what really changed.
//! - **ACK/NACK.** One response per type in flight; the ACK moves the proxy's known state,
//!   a NACK keeps its `error_detail` for `keel proxy-status` and holds that type until the
//!   view changes again. Clusters go before listeners; cluster removals wait until the
//!   listeners that stopped using them are ACKed (make before break).
//! - **Status.** [`status::ProxyRegistry`] has every connected proxy's per-type state, served
//!   by the HTTP API as `GET /apis/proxies`.

pub mod metrics;
pub mod status;
mod stream;
pub mod view;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_xds::node::ProxyNode;
use keel_xds::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer, DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Streaming};

use keel_jwks::{ClientOptions, JwksHandle, Settings};

use crate::store::ConfigStore;
pub use status::{ProxiesResponse, ProxyRegistry, ProxyStatus, SyncState, TypeStatus};
use stream::{Closed, ProxyStream};
pub use view::{Debounce, PushContext, View};

/// The xDS service: hand it to [`serve`].
#[derive(Clone)]
pub struct XdsServer {
    inner: Arc<Inner>,
}

struct Inner {
    pushes: watch::Receiver<Arc<PushContext>>,
    jwks: Option<JwksHandle>,
    registry: Arc<ProxyRegistry>,
    metrics: Arc<metrics::XdsMetrics>,
    root_namespace: String,
    next_stream: AtomicU64,
    /// Flips to `true` at shutdown: every stream ends, so the server can stop.
    stop: watch::Sender<bool>,
}

impl XdsServer {
    /// Follows `store` (debounced) and serves its proxies, fetching JWT key sets with the
    /// default HTTP client. Needs a Tokio runtime.
    pub fn new(store: &dyn ConfigStore, root_namespace: &str, debounce: Debounce) -> XdsServer {
        let jwks = JwksHandle::http(&ClientOptions::default(), Settings::default()).ok();
        XdsServer::with_jwks(store, root_namespace, debounce, jwks)
    }

    /// As [`new`](Self::new), with the key cache that fetches `jwksUri` and OpenID discovery
    /// (`None`: no fetching; such rules then carry no keys and their tokens are refused).
    pub fn with_jwks(
        store: &dyn ConfigStore,
        root_namespace: &str,
        debounce: Debounce,
        jwks: Option<JwksHandle>,
    ) -> XdsServer {
        let (stop, _) = watch::channel(false);
        let metrics = metrics::XdsMetrics::with_jwks(jwks.as_ref().map(JwksHandle::stats));
        XdsServer {
            inner: Arc::new(Inner {
                pushes: view::debounced(store.subscribe(), debounce, jwks.clone()),
                jwks,
                registry: Arc::new(ProxyRegistry::default()),
                metrics: Arc::new(metrics),
                root_namespace: root_namespace.to_string(),
                next_stream: AtomicU64::new(1),
                stop,
            }),
        }
    }

    /// The connected proxies' status (what `GET /apis/proxies` serves).
    pub fn registry(&self) -> Arc<ProxyRegistry> {
        self.inner.registry.clone()
    }

    /// The JWT key cache (`/debug/jwksz`), when there is one.
    pub fn jwks(&self) -> Option<JwksHandle> {
        self.inner.jwks.clone()
    }

    /// The push metrics (what the monitoring port serves).
    pub fn metrics(&self) -> Arc<metrics::XdsMetrics> {
        self.inner.metrics.clone()
    }

    /// Ends every stream (the proxies reconnect to whoever serves next).
    pub fn close_streams(&self) {
        let _ = self.inner.stop.send(true);
    }
}

/// Serves xDS on `listener` until `shutdown` completes, then ends every stream and stops.
pub async fn serve(
    listener: TcpListener,
    server: XdsServer,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let closer = server.clone();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(server))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            // Streams never end by themselves: end them, or graceful shutdown would wait
            // for the proxies forever.
            closer.close_streams();
        })
        .await
}

type ResponseStream = ReceiverStream<Result<DeltaDiscoveryResponse, tonic::Status>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type DeltaAggregatedResourcesStream = ResponseStream;

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, tonic::Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        // The first request names the node.
        let first = match inbound.message().await? {
            Some(r) => r,
            None => {
                return Err(tonic::Status::cancelled(
                    "the stream ended before a request",
                ));
            }
        };
        let Some(node) = first.node.as_ref() else {
            return Err(tonic::Status::invalid_argument(
                "the first request of a stream must carry the node",
            ));
        };
        let node = ProxyNode::from_node(node)
            .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let (tx, rx) = mpsc::channel(16);
        let inner = self.inner.clone();
        let id = inner.next_stream.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            tracing::info!(proxy = %node.id, peer, stream = id, "proxy connected");
            let name = node.id.clone();
            inner.metrics.connected();
            let result = run_stream(&inner, id, node, peer, first, inbound, tx).await;
            inner.metrics.disconnected();
            inner.registry.remove(id);
            match result {
                Ok(()) | Err(StreamEnd::Closed) => {
                    tracing::info!(proxy = %name, stream = id, "proxy disconnected")
                }
                Err(StreamEnd::Error(e)) => {
                    tracing::info!(proxy = %name, stream = id, "proxy disconnected: {e}")
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

enum StreamEnd {
    Closed,
    Error(tonic::Status),
}

impl From<Closed> for StreamEnd {
    fn from(_: Closed) -> Self {
        StreamEnd::Closed
    }
}

async fn run_stream(
    inner: &Arc<Inner>,
    id: u64,
    node: ProxyNode,
    peer: String,
    first: DeltaDiscoveryRequest,
    mut inbound: Streaming<DeltaDiscoveryRequest>,
    tx: stream::ResponseSender,
) -> Result<(), StreamEnd> {
    let mut pushes = inner.pushes.clone();
    let mut stop = inner.stop.subscribe();
    if *stop.borrow_and_update() {
        return Ok(());
    }
    let ctx = pushes.borrow_and_update().clone();
    let view = compute(inner, &ctx, &node).await.unwrap_or_else(|| View {
        version: ctx.version,
        ..View::default()
    });
    let mut proxy = ProxyStream::new(
        id,
        node,
        peer,
        view,
        tx,
        inner.registry.clone(),
        inner.metrics.clone(),
    );
    proxy.on_request(first).await?;
    loop {
        tokio::select! {
            req = inbound.message() => match req {
                Ok(Some(req)) => proxy.on_request(req).await?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(StreamEnd::Error(e)),
            },
            changed = pushes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let ctx = pushes.borrow_and_update().clone();
                // A view that failed to compile keeps the last one (logged).
                if let Some(view) = compute(inner, &ctx, &proxy.node).await {
                    proxy.on_view(view).await?;
                }
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Compiles off the async workers: a view is the heaviest thing a push does.
async fn compute(inner: &Arc<Inner>, ctx: &Arc<PushContext>, node: &ProxyNode) -> Option<View> {
    let (ctx, node, root) = (ctx.clone(), node.clone(), inner.root_namespace.clone());
    let id = node.id.clone();
    let job = tokio::task::spawn_blocking(move || view::compute(&ctx, &node, &root));
    match job.await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(proxy = %id, "compiling the proxy's view failed: {e}");
            None
        }
    }
}

//! The proxy's xDS client: configuration pushed by the control plane over delta xDS.
//!
//! The proxy opens one stream (`DeltaAggregatedResources`), subscribes to clusters and
//! listeners (wildcard: everything the control plane computes for it), and applies each
//! response as one new [`Snapshot`] — the resources it already has with the response's changes
//! and removals — through a [`ConfigSink`]. A response it can take is ACKed; one it can't (a
//! resource that doesn't decode, a listener that can't bind) is NACKed with the reason in
//! `error_detail`, and the last good configuration keeps serving.
//!
//! When the control plane goes away the proxy keeps serving what it has and reconnects with
//! backoff (100 ms doubling to 5 s), sending `initial_resource_versions` so the control plane
//! sends only what changed meanwhile.
//!
//! Updates of one push arrive per type, clusters before listeners, so a new route never
//! points at a cluster the proxy doesn't have yet. (A cluster removed in the same push as the
//! route that used it is gone a moment before that route; requests in that moment get 503 NR.)

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_snapshot::{Cluster, Listener, Snapshot};
use keel_xds::codec::{KeelResource, decode};
use keel_xds::node::ProxyNode;
use keel_xds::{
    AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest, DeltaDiscoveryResponse, ResourceType,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::server::{Listeners, Shared};

/// `google.rpc.Code.INVALID_ARGUMENT`, the code of a NACK.
const INVALID_ARGUMENT: i32 = 3;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct XdsConfig {
    /// `http://127.0.0.1:15010`.
    pub address: String,
    pub node: ProxyNode,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl XdsConfig {
    pub fn new(address: &str, node: ProxyNode) -> XdsConfig {
        XdsConfig {
            address: address.to_string(),
            node,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Takes a complete snapshot or says why not (the reason goes back in the NACK).
pub trait ConfigSink: Send + Sync {
    fn apply(&self, snapshot: Snapshot) -> impl Future<Output = Result<(), String>> + Send;
}

/// The running proxy: binds new listeners first (refusing the snapshot if one can't bind),
/// then swaps the snapshot in and reconciles listeners.
pub struct ProxySink {
    pub shared: Arc<Shared>,
    pub listeners: Arc<Listeners>,
}

impl ConfigSink for ProxySink {
    async fn apply(&self, snapshot: Snapshot) -> Result<(), String> {
        let prepared = self
            .listeners
            .prepare(&snapshot)
            .await
            .map_err(|e| e.join("; "))?;
        self.shared.install(snapshot);
        for e in self.listeners.commit(&self.shared, prepared).await {
            tracing::error!("{e}");
        }
        Ok(())
    }
}

/// What the client is doing, for readiness and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientState {
    /// A stream to the control plane is open.
    pub connected: bool,
    /// Every type has been received and applied at least once (the proxy is ready).
    pub synced: bool,
    /// Responses applied (ACKed) and rejected (NACKed) since start.
    pub acks: u64,
    pub nacks: u64,
    /// The last NACK's reason, or the last connection error.
    pub last_error: Option<String>,
    /// The control-plane version of the snapshot running now.
    pub version: String,
}

/// What the proxy has, by type and name, with versions: the base each response changes and
/// the `initial_resource_versions` of a reconnect.
#[derive(Debug, Default, Clone)]
struct Cache {
    clusters: BTreeMap<String, (String, Cluster)>,
    listeners: BTreeMap<String, (String, Listener)>,
    received: [bool; 2],
    version: String,
}

impl Cache {
    fn versions(&self, t: ResourceType) -> std::collections::HashMap<String, String> {
        match t {
            ResourceType::Cluster => versions(&self.clusters),
            ResourceType::Listener => versions(&self.listeners),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: self.version.clone(),
            listeners: self.listeners.values().map(|(_, l)| l.clone()).collect(),
            clusters: self
                .clusters
                .iter()
                .map(|(n, (_, c))| (n.clone(), c.clone()))
                .collect(),
        }
    }
}

fn versions<R>(m: &BTreeMap<String, (String, R)>) -> std::collections::HashMap<String, String> {
    m.iter().map(|(n, (v, _))| (n.clone(), v.clone())).collect()
}

/// Applies a response's changes to one type's resources.
fn apply_changes<R: KeelResource>(
    map: &mut BTreeMap<String, (String, R)>,
    resp: &DeltaDiscoveryResponse,
) -> Result<(), String> {
    for r in &resp.resources {
        let any = r
            .resource
            .as_ref()
            .ok_or_else(|| format!("{} {}: the resource has no body", R::TYPE, r.name))?;
        let value: R = decode(&r.name, any).map_err(|e| e.to_string())?;
        if value.name() != r.name {
            return Err(format!(
                "{} {}: the resource is named {:?} inside",
                R::TYPE,
                r.name,
                value.name()
            ));
        }
        map.insert(r.name.clone(), (r.version.clone(), value));
    }
    for name in &resp.removed_resources {
        map.remove(name);
    }
    Ok(())
}

/// Connects, applies, reconnects; runs until the task is dropped.
pub struct XdsClient<S> {
    config: XdsConfig,
    sink: S,
    cache: Cache,
    state: watch::Sender<ClientState>,
}

impl<S: ConfigSink> XdsClient<S> {
    pub fn new(config: XdsConfig, sink: S) -> XdsClient<S> {
        XdsClient {
            config,
            sink,
            cache: Cache::default(),
            state: watch::channel(ClientState::default()).0,
        }
    }

    /// Follows the client's state (connected, synced, last error).
    pub fn state(&self) -> watch::Receiver<ClientState> {
        self.state.subscribe()
    }

    /// Runs forever: one stream at a time, reconnecting with backoff.
    pub async fn run(mut self) {
        let mut backoff = self.config.initial_backoff;
        loop {
            let received_before = self.state.borrow().acks + self.state.borrow().nacks;
            let end = self.session().await;
            self.state.send_modify(|s| {
                s.connected = false;
                if let Err(e) = &end {
                    s.last_error = Some(e.clone());
                }
            });
            match end {
                Ok(()) => tracing::warn!(
                    "the control plane at {} ended the stream; reconnecting (serving the last configuration meanwhile)",
                    self.config.address
                ),
                Err(e) => tracing::warn!(
                    "xDS: {e}; retrying in {backoff:?} (serving the last configuration meanwhile)"
                ),
            }
            // A stream that got somewhere starts the backoff over.
            if self.state.borrow().acks + self.state.borrow().nacks > received_before {
                backoff = self.config.initial_backoff;
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// One stream: subscribe with what we have, then apply and (N)ACK each response.
    async fn session(&mut self) -> Result<(), String> {
        let address = self.config.address.clone();
        let endpoint = tonic::transport::Endpoint::from_shared(address.clone())
            .map_err(|e| format!("invalid control-plane address {address:?}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = endpoint.connect().await.map_err(|e| {
            format!(
                "cannot connect to the control plane at {address}: {}",
                cause(&e)
            )
        })?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(8);
        for (i, t) in ResourceType::ALL.into_iter().enumerate() {
            let req = DeltaDiscoveryRequest {
                node: (i == 0).then(|| self.config.node.to_node()),
                type_url: t.type_url().to_string(),
                initial_resource_versions: self.cache.versions(t),
                ..Default::default()
            };
            let _ = tx.send(req).await;
        }
        let mut inbound = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .map_err(|e| {
                format!(
                    "the control plane at {address} refused the stream: {}",
                    e.message()
                )
            })?
            .into_inner();
        self.state.send_modify(|s| s.connected = true);
        tracing::info!(node = %self.config.node.id, "connected to the control plane at {address}");
        while let Some(resp) = inbound
            .message()
            .await
            .map_err(|e| format!("the stream to {address} broke: {}", e.message()))?
        {
            let ack = self.on_response(&resp).await;
            if tx.send(ack).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Applies one response; the request that answers it (ACK, or NACK with the reason).
    async fn on_response(&mut self, resp: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let result = self.apply(resp).await;
        let error_detail = match result {
            Ok(()) => {
                self.state.send_modify(|s| {
                    s.acks += 1;
                    s.synced = self.cache.received.iter().all(|r| *r);
                    s.version = self.cache.version.clone();
                });
                None
            }
            Err(reason) => {
                tracing::error!(
                    version = %resp.system_version_info,
                    "rejected configuration from the control plane: {reason}; still serving the last good configuration"
                );
                self.state.send_modify(|s| {
                    s.nacks += 1;
                    s.last_error = Some(reason.clone());
                });
                Some(keel_xds::Status {
                    code: INVALID_ARGUMENT,
                    message: reason,
                    details: Vec::new(),
                })
            }
        };
        DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            error_detail,
            ..Default::default()
        }
    }

    /// Builds the next snapshot from the cache and the response, hands it to the sink, and
    /// keeps it only if the sink took it.
    async fn apply(&mut self, resp: &DeltaDiscoveryResponse) -> Result<(), String> {
        let t = ResourceType::from_type_url(&resp.type_url)
            .ok_or_else(|| format!("unknown resource type {:?}", resp.type_url))?;
        let mut next = self.cache.clone();
        match t {
            ResourceType::Cluster => apply_changes(&mut next.clusters, resp)?,
            ResourceType::Listener => apply_changes(&mut next.listeners, resp)?,
        }
        next.version = resp.system_version_info.clone();
        next.received[t as usize] = true;
        let changed = !resp.resources.is_empty() || !resp.removed_resources.is_empty();
        if changed || !self.cache.received.iter().all(|r| *r) {
            self.sink.apply(next.snapshot()).await?;
            tracing::info!(
                version = %next.version, %t,
                updated = resp.resources.len(), removed = resp.removed_resources.len(),
                "configuration applied"
            );
        }
        self.cache = next;
        Ok(())
    }
}

/// The innermost cause: tonic's transport errors say "transport error" and hide the reason.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// ±20 %, so proxies that lost the same control plane don't all come back at once.
fn jitter(d: Duration) -> Duration {
    let f = 0.8 + rand::random::<f64>() * 0.4;
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]
    use keel_snapshot::{ListenerKind, ListenerProtocol};
    use keel_xds::codec::encode;

    use super::*;

    fn listener(name: &str) -> Listener {
        Listener {
            name: name.into(),
            address: "127.0.0.1:0".parse().expect("addr"),
            kind: ListenerKind::SidecarOutbound,
            protocol: ListenerProtocol::Http,
            http: None,
            tls: Vec::new(),
            tcp: Vec::new(),
            peer_authn: None,
            terminate_tls: Vec::new(),
            authz: None,
            jwt: None,
        }
    }

    #[test]
    fn responses_change_the_cache_or_say_why_not() {
        let mut map: BTreeMap<String, (String, Listener)> = BTreeMap::new();
        let a = encode(&listener("a")).expect("encode");
        let resp = DeltaDiscoveryResponse {
            resources: vec![a.to_resource()],
            type_url: ResourceType::Listener.type_url().into(),
            ..Default::default()
        };
        apply_changes(&mut map, &resp).expect("apply");
        assert_eq!(map["a"].0, a.version);

        let removal = DeltaDiscoveryResponse {
            removed_resources: vec!["a".into()],
            ..resp.clone()
        };
        apply_changes(&mut map, &removal).expect("apply");
        assert!(map.is_empty());

        let mut misnamed = a.to_resource();
        misnamed.name = "b".into();
        let bad = DeltaDiscoveryResponse {
            resources: vec![misnamed],
            ..resp.clone()
        };
        let e = apply_changes(&mut map, &bad).expect_err("misnamed");
        assert!(e.contains("named \"a\" inside"), "{e}");
        let mut empty = a.to_resource();
        empty.resource = None;
        let bad = DeltaDiscoveryResponse {
            resources: vec![empty],
            ..resp
        };
        assert!(apply_changes(&mut map, &bad).is_err());
    }
}

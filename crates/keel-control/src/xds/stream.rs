//! One proxy's stream: what it has ACKed per type, what is in flight, and the diff that the
//! next response carries.
//!
//! Per type there is at most one response in flight. A change that arrives meanwhile is sent
//! when the ACK (or NACK) comes back, diffed against what the proxy then has, so the proxy's
//! state is always known exactly: the ACKed versions by name. A NACKed response is not sent
//! again until the proxy's view changes, so a config the proxy can't take doesn't loop.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_xds::node::ProxyNode;
use keel_xds::{ControlPlane, DeltaDiscoveryRequest, DeltaDiscoveryResponse, ResourceType};
use tokio::sync::mpsc;

use super::metrics::XdsMetrics;
use super::status::{ProxyRegistry, ProxyStatus, SyncState, TypeStatus};
use super::view::View;

/// Identifies the control plane in responses (`control_plane.identifier`).
const IDENTIFIER: &str = concat!("keel-control/", env!("CARGO_PKG_VERSION"));

pub(super) type ResponseSender = mpsc::Sender<Result<DeltaDiscoveryResponse, tonic::Status>>;

/// The response channel closed: the proxy went away.
#[derive(Debug)]
pub(super) struct Closed;

#[derive(Debug, Default)]
struct TypeState {
    subscribed: bool,
    /// What the proxy has: name → version.
    acked: BTreeMap<String, String>,
    pending: Option<Pending>,
    /// A push waits for the pending response's ACK.
    dirty: bool,
    /// The last response was NACKed and the view hasn't changed since.
    held: bool,
    status: TypeStatus,
}

#[derive(Debug)]
struct Pending {
    nonce: String,
    version: String,
    /// The configuration change this response carries (none for a stream's first answers).
    changed_at: Option<std::time::Instant>,
    /// name → new version, or `None` for a removal.
    changes: Vec<(String, Option<String>)>,
}

/// One connected proxy.
pub(super) struct ProxyStream {
    pub id: u64,
    pub node: ProxyNode,
    pub view: View,
    peer: String,
    connected_since: String,
    types: BTreeMap<ResourceType, TypeState>,
    next_nonce: u64,
    tx: ResponseSender,
    registry: Arc<ProxyRegistry>,
    metrics: Arc<XdsMetrics>,
}

impl ProxyStream {
    pub fn new(
        id: u64,
        node: ProxyNode,
        peer: String,
        view: View,
        tx: ResponseSender,
        registry: Arc<ProxyRegistry>,
        metrics: Arc<XdsMetrics>,
    ) -> ProxyStream {
        let s = ProxyStream {
            id,
            node,
            view,
            peer,
            connected_since: crate::time::format_rfc3339(std::time::SystemTime::now()),
            types: ResourceType::ALL
                .into_iter()
                .map(|t| (t, TypeState::default()))
                .collect(),
            next_nonce: 0,
            tx,
            registry,
            metrics,
        };
        s.publish();
        s
    }

    /// A request from the proxy: a subscription (its first of a type, with the versions it
    /// already has), an ACK or a NACK.
    pub async fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Result<(), Closed> {
        let Some(t) = ResourceType::from_type_url(&req.type_url) else {
            tracing::debug!(proxy = %self.node.id, type_url = %req.type_url, "unknown type ignored");
            return Ok(());
        };
        let Some(state) = self.types.get_mut(&t) else {
            return Ok(());
        };
        if !req.response_nonce.is_empty() {
            let matches = state
                .pending
                .as_ref()
                .is_some_and(|p| p.nonce == req.response_nonce);
            // A stale nonce answers a response already superseded: nothing to learn from it.
            if matches && let Some(p) = state.pending.take() {
                match &req.error_detail {
                    Some(e) => {
                        let reason = if e.message.is_empty() {
                            format!("rejected (code {})", e.code)
                        } else {
                            e.message.clone()
                        };
                        tracing::warn!(proxy = %self.node.id, %t, version = %p.version, "NACK: {reason}");
                        self.metrics.rejected(t);
                        state.status.nacks += 1;
                        state.status.nack_reason = Some(reason);
                        // Not again until the view changes (unless it already has).
                        state.held = !state.dirty;
                    }
                    None => {
                        if let Some(at) = p.changed_at {
                            self.metrics.converged(at.elapsed());
                        }
                        for (name, version) in p.changes {
                            match version {
                                Some(v) => state.acked.insert(name, v),
                                None => state.acked.remove(&name),
                            };
                        }
                        state.status.acks += 1;
                        state.status.acked_version = Some(p.version);
                        state.status.nack_reason = None;
                        state.held = false;
                    }
                }
            }
        }
        let mut force = false;
        if !state.subscribed {
            // The first request of a type on this stream: the proxy says what it has (after a
            // reconnect) and always gets an answer, if only an empty one, so it knows it is
            // in sync.
            state.subscribed = true;
            state.acked = req.initial_resource_versions.into_iter().collect();
            force = true;
        }
        let push = force || std::mem::take(&mut state.dirty);
        if push {
            self.push(t, force).await?;
        }
        // Listeners just ACKed: cluster removals held back for them can go now.
        if t == ResourceType::Listener
            && let Some(clusters) = self.types.get_mut(&ResourceType::Cluster)
            && clusters.subscribed
            && clusters.pending.is_none()
            && std::mem::take(&mut clusters.dirty)
        {
            self.push(ResourceType::Cluster, false).await?;
        }
        self.publish();
        Ok(())
    }

    /// The proxy's view changed: sends every subscribed type what changed.
    pub async fn on_view(&mut self, view: View) -> Result<(), Closed> {
        self.view = view;
        for t in ResourceType::ALL {
            if let Some(state) = self.types.get_mut(&t) {
                state.held = false;
                if state.subscribed {
                    self.push(t, false).await?;
                }
            }
        }
        self.publish();
        Ok(())
    }

    /// Sends what differs between the view and what the proxy has, unless a response is in
    /// flight (then later) or nothing differs (then nothing, unless `force`).
    async fn push(&mut self, t: ResourceType, force: bool) -> Result<(), Closed> {
        let listeners_settled = self.settled(ResourceType::Listener);
        let Some(state) = self.types.get_mut(&t) else {
            return Ok(());
        };
        if state.pending.is_some() {
            state.dirty = true;
            return Ok(());
        }
        if state.held && !force {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let want = self.view.of(t);
        let mut resources = Vec::new();
        let mut changes = Vec::new();
        for (name, e) in want {
            if state.acked.get(name) != Some(&e.version) {
                resources.push(e.to_resource());
                changes.push((name.clone(), Some(e.version.clone())));
            }
        }
        let mut removed: Vec<String> = state
            .acked
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect();
        // Make before break: a cluster the proxy's current routes may still name is removed
        // only once the listeners that replace those routes are in (ACKed); until then a
        // request would find its cluster gone (503). Clusters added or changed go at once.
        if t == ResourceType::Cluster && !removed.is_empty() && !listeners_settled {
            removed.clear();
            state.dirty = true;
        }
        changes.extend(removed.iter().map(|n| (n.clone(), None)));
        if changes.is_empty() && !force {
            return Ok(());
        }
        self.next_nonce += 1;
        let nonce = format!("{}-{}", self.id, self.next_nonce);
        let version = self.view.version.to_string();
        tracing::debug!(
            proxy = %self.node.id, %t, version, nonce,
            updated = resources.len(), removed = removed.len(), "push"
        );
        let response = DeltaDiscoveryResponse {
            system_version_info: version.clone(),
            resources,
            type_url: t.type_url().to_string(),
            removed_resources: removed,
            nonce: nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: IDENTIFIER.to_string(),
            }),
        };
        let changes_len = changes.len();
        state.pending = Some(Pending {
            nonce,
            version,
            // A stream's first answer carries whatever was there before it connected.
            changed_at: self.view.changed_at.filter(|_| !force),
            changes,
        });
        state.status.sent += 1;
        state.status.resources_sent += changes_len as u64;
        let sent = self.tx.send(Ok(response)).await.map_err(|_| Closed);
        self.metrics.pushed(t, started.elapsed());
        sent
    }

    /// Whether the proxy has exactly this type's view (nothing in flight, nothing to send),
    /// or doesn't take the type at all.
    fn settled(&self, t: ResourceType) -> bool {
        self.types.get(&t).is_none_or(|s| {
            !s.subscribed || (s.pending.is_none() && in_sync(&s.acked, self.view.of(t)))
        })
    }

    /// Writes this stream's status to the registry.
    pub fn publish(&self) {
        let mut types = BTreeMap::new();
        for (t, state) in &self.types {
            let mut status = state.status.clone();
            status.resources = state.acked.len();
            status.pending_version = state.pending.as_ref().map(|p| p.version.clone());
            status.state = if !state.subscribed || status.sent == 0 {
                SyncState::NotSent
            } else if status.nack_reason.is_some() {
                SyncState::Nack
            } else if state.pending.is_some() || !in_sync(&state.acked, self.view.of(*t)) {
                SyncState::Stale
            } else {
                SyncState::Synced
            };
            types.insert(t.plural().to_string(), status);
        }
        self.registry.update(
            self.id,
            ProxyStatus {
                name: self.node.id.clone(),
                namespace: self.node.namespace.clone(),
                kind: self.node.kind.as_str().to_string(),
                workload: self.node.workload.clone(),
                labels: self.node.labels.clone(),
                proxy_version: self.node.proxy_version.clone(),
                peer: self.peer.clone(),
                connected_since: self.connected_since.clone(),
                admin: self.node.admin.map(|a| a.to_string()),
                control_plane_version: self.view.version.to_string(),
                types,
            },
        );
    }
}

fn in_sync(acked: &BTreeMap<String, String>, want: &super::view::TypeView) -> bool {
    acked.len() == want.len()
        && want
            .iter()
            .all(|(name, e)| acked.get(name) == Some(&e.version))
}

//! What the control plane knows about each connected proxy, for `GET /apis/proxies` and
//! `keel proxy-status`.
//!
//! Each stream keeps its own entry up to date (cheap: a small struct behind a mutex) and
//! removes it when it ends, so the list is the set of proxies connected now, as istioctl's
//! `proxy-status` shows.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Where one resource type of one proxy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncState {
    /// The proxy has ACKed exactly what the control plane would send it now.
    #[serde(rename = "SYNCED")]
    Synced,
    /// A response is waiting for its ACK, or the proxy's view changed and the new one is not
    /// sent yet.
    #[serde(rename = "STALE")]
    Stale,
    /// Nothing of this type was sent on this stream (the proxy hasn't subscribed to it).
    #[serde(rename = "NOT SENT")]
    NotSent,
    /// The proxy rejected the last response of this type; it keeps its last good config.
    #[serde(rename = "NACK")]
    Nack,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::NotSent => "NOT SENT",
            SyncState::Nack => "NACK",
        }
    }
}

/// One resource type of one proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeStatus {
    pub state: SyncState,
    /// The control-plane (store) version of the last response the proxy ACKed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_version: Option<String>,
    /// The control-plane version of the response waiting for its ACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    /// Why the proxy rejected the last response (the NACK's `error_detail.message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nack_reason: Option<String>,
    /// How many resources of this type the proxy has ACKed.
    pub resources: usize,
    /// Responses sent, ACKed and NACKed on this stream.
    pub sent: u64,
    /// Resources (updated or removed) those responses carried: after a reconnect with
    /// matching `initial_resource_versions`, none.
    #[serde(default)]
    pub resources_sent: u64,
    pub acks: u64,
    pub nacks: u64,
}

impl Default for TypeStatus {
    fn default() -> Self {
        TypeStatus {
            state: SyncState::NotSent,
            acked_version: None,
            pending_version: None,
            nack_reason: None,
            resources: 0,
            sent: 0,
            resources_sent: 0,
            acks: 0,
            nacks: 0,
        }
    }
}

/// One connected proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    /// The node id the proxy sent.
    pub name: String,
    pub namespace: String,
    /// `sidecar` or `gateway`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The proxy's own version (`Node.user_agent_version`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_version: String,
    /// The proxy's address, as the control plane sees the connection.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// RFC 3339: when this stream opened.
    pub connected_since: String,
    /// The proxy's admin API, as it reported it (`keel proxy-config` reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The control-plane (store) version the proxy's current view was computed from.
    pub control_plane_version: String,
    /// By type: `listeners`, `clusters`.
    pub types: BTreeMap<String, TypeStatus>,
}

/// The body of `GET /apis/proxies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxiesResponse {
    /// The store's version now.
    pub control_plane_version: String,
    /// Connected proxies, by name.
    pub proxies: Vec<ProxyStatus>,
}

/// Every connected stream's status, by stream id.
#[derive(Debug)]
pub struct ProxyRegistry {
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
    /// Bumped on every change, for those who follow the registry (`keel control-plane`
    /// prints connects, disconnects and NACKs).
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for ProxyRegistry {
    fn default() -> Self {
        ProxyRegistry {
            streams: Mutex::default(),
            changes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl ProxyRegistry {
    pub fn update(&self, stream: u64, status: ProxyStatus) {
        if let Ok(mut s) = self.streams.lock() {
            if s.get(&stream) == Some(&status) {
                return;
            }
            s.insert(stream, status);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn remove(&self, stream: u64) {
        if let Ok(mut s) = self.streams.lock() {
            s.remove(&stream);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// Wakes on every change of any proxy's status.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every connected proxy, by name (then by stream, oldest first).
    pub fn list(&self) -> Vec<ProxyStatus> {
        let mut out: Vec<ProxyStatus> = self
            .streams
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn get(&self, name: &str) -> Option<ProxyStatus> {
        self.list().into_iter().find(|p| p.name == name)
    }
}

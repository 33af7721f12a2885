//! Listeners: where the proxy accepts connections and what it does with them.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::route::{RouteTable, TcpRoute, TlsRoute};
use crate::tls::ServerTls;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    /// Unique within the snapshot (`0.0.0.0_8080`, `virtualOutbound`, `virtualInbound`).
    pub name: String,
    pub address: SocketAddr,
    pub kind: ListenerKind,
    pub protocol: ListenerProtocol,
    /// HTTP routing (for `Http` and `Auto` listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<RouteTable>,
    /// Routing of unterminated TLS by SNI, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// Routing of opaque TCP, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// Which peers the sidecar's inbound listener accepts, from PeerAuthentication. `None`
    /// on outbound and gateway listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_authn: Option<PeerAuthn>,
    /// TLS terminated on a gateway server port, by SNI, in order; after the handshake the
    /// connection is handled as `protocol` says (HTTP for HTTPS servers, TCP for TLS ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terminate_tls: Vec<ServerTls>,
    /// The AuthorizationPolicies that apply to the workload (sidecar inbound) or gateway this
    /// listener serves; `None` when none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz: Option<crate::authz::WorkloadPolicies>,
    /// The RequestAuthentication JWT rules for the same workload or gateway; `None` when none
    /// applies. Not yet enforced on the request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<crate::jwt::JwtPolicies>,
}

/// A workload's effective PeerAuthentication mode, resolved (never UNSET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Plaintext only: a TLS connection is passed to the app as bytes.
    Disable,
    /// mTLS and plaintext both accepted (Istio's default).
    #[default]
    Permissive,
    /// mTLS only: plaintext connections are closed.
    Strict,
}

/// The mode for the workload, and per-port overrides keyed by the workload's port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PeerAuthn {
    pub mode: MtlsMode,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub ports: std::collections::BTreeMap<u16, MtlsMode>,
}

impl PeerAuthn {
    pub fn mode_for(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }
}

/// What role a listener plays; it decides defaults such as which `gateways` names match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// A gateway server port; `gateways` are the `namespace/name`s of the Gateways whose
    /// servers it serves.
    Gateway { gateways: Vec<String> },
    /// The sidecar's outbound capture listener (15001) or a per-service outbound port: routes
    /// bound to the `mesh` gateway apply.
    SidecarOutbound,
    /// The sidecar's inbound listener (15006): traffic for the local workload.
    SidecarInbound,
}

/// How the first bytes of a connection are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// HTTP/1.1 or HTTP/2 (h2c prior knowledge or upgrade), declared.
    Http,
    /// Opaque TCP, declared: never sniffed, so server-first protocols don't stall.
    Tcp,
    /// TLS passed through unterminated, routed by SNI.
    TlsPassthrough,
    /// Unknown: sniff the first bytes (HTTP, TLS or else TCP) within the detection timeout.
    Auto,
}

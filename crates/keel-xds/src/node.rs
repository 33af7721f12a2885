//! What a proxy tells the control plane about itself, in `Node.id` and `Node.metadata`.
//!
//! The control plane compiles each proxy's view for the workload it runs beside, so it needs
//! what `keel_snapshot::compile::sidecar::SidecarOptions` needs: the namespace, the labels,
//! the ports. Istio's names are used where Istio has one (`NAMESPACE`, `LABELS`,
//! `WORKLOAD_NAME`, as istio-agent sends them); the rest are Keel's (`KEEL_*`).
//!
//! | key | type | what |
//! |---|---|---|
//! | `NAMESPACE` | string | the workload's namespace (default `default`) |
//! | `LABELS` | struct of strings | the workload's labels |
//! | `WORKLOAD_NAME` | string | the workload (Deployment) name, for status |
//! | `KEEL_PROXY_KIND` | `sidecar` \| `gateway` | which compiler builds the view (default `sidecar`) |
//! | `KEEL_BIND` | string | the address listeners bind (default `0.0.0.0`) |
//! | `KEEL_OUTBOUND_PORT`, `KEEL_INBOUND_PORT` | number | capture ports (15001, 15006) |
//! | `KEEL_OUTBOUND_LISTENERS` | list of numbers | service ports with an outbound listener of their own |
//! | `KEEL_APP_PORTS` | list of `PORT[/PROTOCOL]` | ports the application serves |
//! | `KEEL_GATEWAYS` | list of `namespace/name` | for gateways: the Gateways to serve (empty: those whose selector the labels satisfy) |
//! | `KEEL_GATEWAY_PORTS` | list of `SERVER=LOCAL` | for gateways: the local port a Gateway server port listens on |

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use keel_snapshot::compile::gateway::GatewayOptions;
use keel_snapshot::compile::sidecar::{InboundPort, SidecarOptions};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

use crate::Node;

/// Which compiler builds the proxy's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    Sidecar,
    Gateway,
}

impl ProxyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Gateway => "gateway",
        }
    }
}

/// A proxy as the control plane sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyNode {
    /// `Node.id`: unique per proxy (`keel proxy-status` shows it as NAME).
    pub id: String,
    pub kind: ProxyKind,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub workload: String,
    pub bind: IpAddr,
    pub outbound_port: u16,
    pub inbound_port: u16,
    /// Further inbound listeners, each for the app port in its position (see
    /// [`SidecarOptions::direct_inbound_ports`]).
    pub direct_inbound_ports: Vec<u16>,
    pub outbound_listeners: Vec<u16>,
    pub app_ports: Vec<InboundPort>,
    pub gateways: Vec<String>,
    /// For gateways: Gateway server port → the port listened on (others listen on their own).
    pub gateway_ports: Vec<(u16, u16)>,
    /// `Node.user_agent_version`: the proxy's own version.
    pub proxy_version: String,
    /// The proxy's admin API (`/config_dump`, `/clusters`), which `keel proxy-config` reads,
    /// as istioctl reads Envoy's admin port.
    pub admin: Option<std::net::SocketAddr>,
}

impl Default for ProxyNode {
    fn default() -> Self {
        ProxyNode {
            id: String::new(),
            kind: ProxyKind::Sidecar,
            namespace: "default".into(),
            labels: BTreeMap::new(),
            workload: String::new(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            outbound_port: 15001,
            inbound_port: 15006,
            direct_inbound_ports: Vec::new(),
            outbound_listeners: Vec::new(),
            app_ports: Vec::new(),
            gateways: Vec::new(),
            gateway_ports: Vec::new(),
            proxy_version: String::new(),
            admin: None,
        }
    }
}

/// Why a node can't be served; the control plane answers `INVALID_ARGUMENT` with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node {id:?}: {reason}")]
pub struct NodeError {
    pub id: String,
    pub reason: String,
}

impl ProxyNode {
    /// The `Node` a proxy sends in its first request.
    pub fn to_node(&self) -> Node {
        let mut fields = BTreeMap::new();
        let s = |v: &str| string_value(v.to_string());
        fields.insert("NAMESPACE".into(), s(&self.namespace));
        fields.insert(
            "LABELS".into(),
            Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: self
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), string_value(v.clone())))
                        .collect(),
                })),
            },
        );
        if !self.workload.is_empty() {
            fields.insert("WORKLOAD_NAME".into(), s(&self.workload));
        }
        fields.insert("KEEL_PROXY_KIND".into(), s(self.kind.as_str()));
        fields.insert("KEEL_BIND".into(), s(&self.bind.to_string()));
        fields.insert(
            "KEEL_OUTBOUND_PORT".into(),
            number_value(self.outbound_port),
        );
        fields.insert("KEEL_INBOUND_PORT".into(), number_value(self.inbound_port));
        if !self.direct_inbound_ports.is_empty() {
            fields.insert(
                "KEEL_DIRECT_INBOUND_PORTS".into(),
                list_value(self.direct_inbound_ports.iter().map(|p| number_value(*p))),
            );
        }
        fields.insert(
            "KEEL_OUTBOUND_LISTENERS".into(),
            list_value(self.outbound_listeners.iter().map(|p| number_value(*p))),
        );
        fields.insert(
            "KEEL_APP_PORTS".into(),
            list_value(self.app_ports.iter().map(|p| string_value(p.to_string()))),
        );
        fields.insert(
            "KEEL_GATEWAYS".into(),
            list_value(self.gateways.iter().map(|g| string_value(g.clone()))),
        );
        if let Some(admin) = self.admin {
            fields.insert("KEEL_ADMIN".into(), s(&admin.to_string()));
        }
        if !self.gateway_ports.is_empty() {
            fields.insert(
                "KEEL_GATEWAY_PORTS".into(),
                list_value(
                    self.gateway_ports
                        .iter()
                        .map(|(s, l)| string_value(format!("{s}={l}"))),
                ),
            );
        }
        Node {
            id: self.id.clone(),
            cluster: String::new(),
            metadata: Some(Struct { fields }),
            locality: None,
            user_agent_name: "keel-proxy".into(),
            user_agent_version_type: Some(
                crate::pb::envoy::config::core::v3::node::UserAgentVersionType::UserAgentVersion(
                    self.proxy_version.clone(),
                ),
            ),
            client_features: Vec::new(),
        }
    }

    /// Reads a `Node`; absent keys take their defaults, malformed ones are errors.
    pub fn from_node(node: &Node) -> Result<ProxyNode, NodeError> {
        let err = |reason: String| NodeError {
            id: node.id.clone(),
            reason,
        };
        if node.id.is_empty() {
            return Err(err("the node id is empty (keel-proxy --node-id)".into()));
        }
        let empty = BTreeMap::new();
        let fields = node.metadata.as_ref().map_or(&empty, |m| &m.fields);
        let mut p = ProxyNode {
            id: node.id.clone(),
            proxy_version: match &node.user_agent_version_type {
                Some(
                    crate::pb::envoy::config::core::v3::node::UserAgentVersionType::UserAgentVersion(
                        v,
                    ),
                ) => v.clone(),
                None => String::new(),
            },
            ..ProxyNode::default()
        };
        for (key, value) in fields {
            let bad = |what: &str| err(format!("metadata {key}: expected {what}"));
            match key.as_str() {
                "NAMESPACE" => p.namespace = as_str(value).ok_or_else(|| bad("a string"))?,
                "WORKLOAD_NAME" => p.workload = as_str(value).ok_or_else(|| bad("a string"))?,
                "LABELS" => {
                    let Some(Kind::StructValue(s)) = &value.kind else {
                        return Err(bad("a struct of strings"));
                    };
                    for (k, v) in &s.fields {
                        let v = as_str(v).ok_or_else(|| bad("a struct of strings"))?;
                        p.labels.insert(k.clone(), v);
                    }
                }
                "KEEL_PROXY_KIND" => {
                    p.kind = match as_str(value).as_deref() {
                        Some("sidecar") => ProxyKind::Sidecar,
                        Some("gateway") => ProxyKind::Gateway,
                        _ => return Err(bad("\"sidecar\" or \"gateway\"")),
                    }
                }
                "KEEL_BIND" => {
                    p.bind = as_str(value)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad("an IP address"))?
                }
                "KEEL_OUTBOUND_PORT" => {
                    p.outbound_port = as_port(value).ok_or_else(|| bad("a port number"))?
                }
                "KEEL_INBOUND_PORT" => {
                    p.inbound_port = as_port(value).ok_or_else(|| bad("a port number"))?
                }
                "KEEL_DIRECT_INBOUND_PORTS" => {
                    p.direct_inbound_ports = as_list(value)
                        .and_then(|l| l.iter().map(as_port).collect())
                        .ok_or_else(|| bad("a list of port numbers"))?
                }
                "KEEL_OUTBOUND_LISTENERS" => {
                    p.outbound_listeners = as_list(value)
                        .and_then(|l| l.iter().map(as_port).collect())
                        .ok_or_else(|| bad("a list of port numbers"))?
                }
                "KEEL_APP_PORTS" => {
                    p.app_ports = as_list(value)
                        .and_then(|l| {
                            l.iter()
                                .map(|v| as_str(v).and_then(|s| parse_app_port(&s).ok()))
                                .collect()
                        })
                        .ok_or_else(|| bad("a list of \"PORT[/PROTOCOL]\" strings"))?
                }
                "KEEL_GATEWAYS" => {
                    p.gateways = as_list(value)
                        .and_then(|l| l.iter().map(as_str).collect())
                        .ok_or_else(|| bad("a list of \"namespace/name\" strings"))?
                }
                "KEEL_ADMIN" => {
                    p.admin = Some(
                        as_str(value)
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| bad("an address such as 127.0.0.1:15000"))?,
                    )
                }
                "KEEL_GATEWAY_PORTS" => {
                    p.gateway_ports = as_list(value)
                        .and_then(|l| {
                            l.iter()
                                .map(|v| as_str(v).and_then(|s| parse_port_map(&s).ok()))
                                .collect()
                        })
                        .ok_or_else(|| bad("a list of \"SERVER=LOCAL\" port strings"))?
                }
                // Istio's other keys (CLUSTER_ID, ISTIO_VERSION, ...) and future ones.
                _ => {}
            }
        }
        Ok(p)
    }

    /// The options the sidecar compiler needs for this proxy.
    pub fn sidecar_options(&self, version: &str, root_namespace: &str) -> SidecarOptions {
        SidecarOptions {
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            direct_inbound_ports: self.direct_inbound_ports.clone(),
            outbound_ports: self.outbound_listeners.clone(),
            inbound_ports: self.app_ports.clone(),
            bind: self.bind,
            version: version.to_string(),
            root_namespace: root_namespace.to_string(),
            // The node doesn't carry key sets: the control plane adds the fetched ones.
            jwks: Default::default(),
        }
    }

    /// The options the gateway compiler needs for this proxy.
    pub fn gateway_options(&self, version: &str) -> GatewayOptions {
        GatewayOptions {
            bind: self.bind,
            gateways: self.gateways.clone(),
            version: version.to_string(),
            labels: self.labels.clone(),
            ports: self.gateway_ports.iter().copied().collect(),
            namespace: self.namespace.clone(),
            jwks: Default::default(),
        }
    }
}

/// `SERVER=LOCAL` (two port numbers), as `keel-proxy gateway --gateway-port` takes it.
pub fn parse_port_map(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("\"{s}\" is not SERVER=LOCAL, two port numbers such as 80=8080");
    let (server, local) = s.split_once('=').ok_or_else(bad)?;
    let server = server.trim().parse::<u16>().map_err(|_| bad())?;
    let local = local.trim().parse::<u16>().map_err(|_| bad())?;
    Ok((server, local))
}

/// `PORT` or `PORT/PROTOCOL` (the protocol upper-cased), as `keel-proxy --app-port` takes it;
/// `PORT=LOCAL[/PROTOCOL]` when the application serves the workload's `PORT` on `LOCAL`.
pub fn parse_app_port(s: &str) -> Result<InboundPort, String> {
    let bad = || format!("\"{s}\" is not PORT, PORT/PROTOCOL or PORT=LOCAL[/PROTOCOL]");
    let (ports, protocol) = s.split_once('/').unwrap_or((s, ""));
    let (port, local) = match ports.split_once('=') {
        Some((port, local)) => (port, Some(local.parse::<u16>().map_err(|_| bad())?)),
        None => (ports, None),
    };
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok(InboundPort {
        port,
        protocol: protocol.to_ascii_uppercase(),
        local,
    })
}

fn string_value(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

fn number_value(n: u16) -> Value {
    Value {
        kind: Some(Kind::NumberValue(f64::from(n))),
    }
}

fn list_value(items: impl Iterator<Item = Value>) -> Value {
    Value {
        kind: Some(Kind::ListValue(ListValue {
            values: items.collect(),
        })),
    }
}

fn as_str(v: &Value) -> Option<String> {
    match &v.kind {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A port as a number, or as a string of digits (Istio's metadata are often strings).
fn as_port(v: &Value) -> Option<u16> {
    match &v.kind {
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && (0.0..=65535.0).contains(n) => {
            Some(*n as u16)
        }
        Some(Kind::StringValue(s)) => s.parse().ok(),
        _ => None,
    }
}

fn as_list(v: &Value) -> Option<&Vec<Value>> {
    match &v.kind {
        Some(Kind::ListValue(l)) => Some(&l.values),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nodes_round_trip() {
        let p = ProxyNode {
            id: "reviews-v1.default".into(),
            kind: ProxyKind::Gateway,
            namespace: "bookinfo".into(),
            labels: BTreeMap::from([("app".into(), "reviews".into())]),
            workload: "reviews-v1".into(),
            bind: "127.0.0.1".parse().expect("ip"),
            outbound_port: 1,
            inbound_port: 2,
            direct_inbound_ports: vec![3, 4],
            outbound_listeners: vec![9080],
            app_ports: vec![
                parse_app_port("9080/http").expect("port"),
                parse_app_port("8080=41234/tcp").expect("port"),
            ],
            gateways: vec!["istio-system/ingress".into()],
            gateway_ports: vec![(80, 8080)],
            proxy_version: "0.1.0".into(),
            admin: Some("127.0.0.1:15000".parse().expect("addr")),
        };
        assert_eq!(ProxyNode::from_node(&p.to_node()).expect("node"), p);
        let opts = p.sidecar_options("7", "istio-system");
        assert_eq!(opts.inbound_ports[0].protocol, "HTTP");
        assert_eq!(opts.outbound_ports, vec![9080]);
        assert_eq!(opts.direct_inbound_ports, vec![3, 4]);
        let opts = p.gateway_options("7");
        assert_eq!(opts.listen_port(80), 8080);
        assert_eq!(opts.listen_port(443), 443);
        assert_eq!(opts.labels["app"], "reviews");
        assert!(parse_port_map("80").is_err());
        assert_eq!(parse_port_map("443=8443"), Ok((443, 8443)));
    }

    #[test]
    fn defaults_and_errors() {
        let node = Node {
            id: "x".into(),
            ..Default::default()
        };
        let p = ProxyNode::from_node(&node).expect("defaults");
        assert_eq!(p.namespace, "default");
        assert_eq!(p.kind, ProxyKind::Sidecar);
        let bad = ProxyNode {
            id: "y".into(),
            ..ProxyNode::default()
        };
        let mut node = bad.to_node();
        if let Some(m) = node.metadata.as_mut() {
            m.fields
                .insert("KEEL_BIND".into(), string_value("nope".into()));
        }
        let e = ProxyNode::from_node(&node).expect_err("bad bind");
        assert_eq!(
            e.to_string(),
            "invalid node \"y\": metadata KEEL_BIND: expected an IP address"
        );
        assert!(ProxyNode::from_node(&Node::default()).is_err());
    }
}

//! The sidecar's inbound listener (15006): connections iptables redirected to the workload
//! are forwarded to the application on 127.0.0.1, chosen by the port they were addressed to
//! (`inbound|<port>||`); ports no Service declares go to their original destination.
//!
//! Without iptables (the local mesh, `keel up`) connections arrive addressed to the sidecar's
//! own listener ports instead: each of `inbound_port` and `direct_inbound_ports` stands for the
//! application port in the same position, and every further one is a listener of its own with
//! the same routes (they match the port a connection was addressed to, so one table serves all).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use keel_config::types::IntOrString;
use keel_config::{Resource, Spec};

use super::authz::AuthzWorkload;
use super::peer_authn::PeerAuthnIndex;
use super::sidecar::{Class, INBOUND_PASSTHROUGH_CLUSTER, InboundPort, SidecarOptions, class};
use super::{DEFAULT_DOMAIN, Warning, fqdn};
use crate::cluster::{Cluster, Endpoint, EndpointAddress, LbPolicy, UpstreamProtocol};
use crate::cluster_name;
use crate::listener::{Listener, ListenerKind, ListenerProtocol};
use crate::route::{
    HttpRoute, L4Match, RequestMatch, RouteAction, RouteTable, TcpRoute, VirtualHost,
    WeightedCluster,
};

/// The inbound listeners (`virtualInbound`, then one per direct inbound port), the clusters
/// for the application's ports, and warnings about the workload's RequestAuthentications.
pub(super) fn inbound(
    resources: &[Resource],
    opts: &SidecarOptions,
) -> (Vec<Listener>, Vec<Cluster>, Vec<Warning>) {
    let ports: Vec<(InboundPort, String)> = if opts.inbound_ports.is_empty() {
        selecting_services(resources, opts)
    } else {
        opts.inbound_ports
            .iter()
            .map(|p| (p.clone(), String::new()))
            .collect()
    };
    let mut routes = Vec::new();
    let mut tcp = Vec::new();
    let mut clusters = Vec::new();
    // A connection addressed to an inbound listener itself was not redirected: the local mesh
    // (`keel up`) registers these ports as the workload's endpoints and has no iptables. It
    // goes to the application port in the same position (passthrough would dial the listener
    // again), unless the listener's port is itself an application port.
    let listening: Vec<u16> = std::iter::once(opts.inbound_port)
        .chain(opts.direct_inbound_ports.iter().copied())
        .collect();
    let declared: BTreeSet<u16> = ports
        .iter()
        .flat_map(|(p, _)| [p.port, p.app_port()])
        .collect();
    for (i, (port, service)) in ports.iter().enumerate() {
        let cluster = inbound_cluster(port, service);
        let (http, l4, opaque) = inbound_handling(&port.protocol);
        let mut numbers = vec![port.port];
        numbers.extend(listening.get(i).filter(|l| !declared.contains(l)));
        if http {
            routes.push(HttpRoute {
                name: cluster.name.clone(),
                matches: numbers
                    .iter()
                    .map(|n| RequestMatch {
                        port: Some(*n),
                        ..Default::default()
                    })
                    .collect(),
                action: forward(&cluster.name),
                ..Default::default()
            });
        }
        if l4 {
            tcp.push(TcpRoute {
                name: cluster.name.clone(),
                matches: numbers
                    .iter()
                    .map(|n| L4Match {
                        port: Some(*n),
                        ..Default::default()
                    })
                    .collect(),
                clusters: vec![weighted(&cluster.name)],
                opaque,
            });
        }
        clusters.push(cluster);
    }
    routes.push(HttpRoute {
        name: INBOUND_PASSTHROUGH_CLUSTER.into(),
        action: forward(INBOUND_PASSTHROUGH_CLUSTER),
        ..Default::default()
    });
    tcp.push(TcpRoute {
        name: INBOUND_PASSTHROUGH_CLUSTER.into(),
        matches: Vec::new(),
        clusters: vec![weighted(INBOUND_PASSTHROUGH_CLUSTER)],
        opaque: false,
    });
    let peer_authn = PeerAuthnIndex::new(resources, &opts.root_namespace)
        .effective(&opts.namespace, &opts.labels);
    let authz = {
        let mut w = AuthzWorkload::new(&opts.namespace, opts.labels.clone());
        w.root_namespace = opts.root_namespace.clone();
        let compiled = super::authz::for_workload(resources, &w);
        (!compiled.policies.is_empty()).then_some(compiled.policies)
    };
    let (jwt, warnings) = {
        let mut w = AuthzWorkload::new(&opts.namespace, opts.labels.clone());
        w.root_namespace = opts.root_namespace.clone();
        let compiled = super::jwt::for_workload_with(resources, &w, &*opts.jwks);
        let rules = (!compiled.rules.is_empty()).then_some(compiled.rules);
        (rules, compiled.warnings)
    };
    let listener = |name: String, port: u16| Listener {
        name,
        address: SocketAddr::new(opts.bind, port),
        kind: ListenerKind::SidecarInbound,
        protocol: ListenerProtocol::Auto,
        http: Some(RouteTable {
            virtual_hosts: vec![VirtualHost {
                name: "inbound".into(),
                domains: vec!["*".into()],
                routes: routes.clone(),
            }],
        }),
        tls: Vec::new(),
        tcp: tcp.clone(),
        peer_authn: Some(peer_authn.clone()),
        terminate_tls: Vec::new(),
        authz: authz.clone(),
        jwt: jwt.clone(),
    };
    let mut listeners = vec![listener("virtualInbound".into(), opts.inbound_port)];
    for port in &opts.direct_inbound_ports {
        listeners.push(listener(format!("virtualInbound_{port}"), *port));
    }
    (listeners, clusters, warnings)
}

/// The target ports of the Services in the workload's namespace whose selector its labels
/// satisfy, with the service host. A target port given by container-port name is resolved
/// through the workload's Pods or pod templates (Deployment, StatefulSet, ReplicaSet,
/// DaemonSet) in the files; when none names it, the service port number stands in. First
/// declaration wins.
fn selecting_services(resources: &[Resource], opts: &SidecarOptions) -> Vec<(InboundPort, String)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in resources {
        let Spec::Service(s) = &r.spec else { continue };
        let selector = &s.spec.selector;
        if r.namespace() != opts.namespace
            || selector.is_empty()
            || !selector.iter().all(|(k, v)| opts.labels.get(k) == Some(v))
        {
            continue;
        }
        for p in &s.spec.ports {
            let target = match &p.target_port {
                Some(IntOrString::Int(n)) if *n > 0 => *n,
                Some(IntOrString::String(name)) if !name.is_empty() => {
                    container_port(resources, opts, selector, name)
                        .map_or(i64::from(p.port), i64::from)
                }
                _ => i64::from(p.port),
            };
            let Ok(target) = u16::try_from(target) else {
                continue;
            };
            if seen.insert(target) {
                out.push((
                    InboundPort {
                        port: target,
                        protocol: p.mesh_protocol().to_string().to_ascii_uppercase(),
                        local: None,
                    },
                    fqdn(r.name(), r.namespace(), DEFAULT_DOMAIN),
                ));
            }
        }
    }
    out
}

/// The number of the container port called `name` in the workload's pods: Pods and pod
/// templates in its namespace whose labels the Service `selector` and the workload's own
/// labels both match.
fn container_port(
    resources: &[Resource],
    opts: &SidecarOptions,
    selector: &BTreeMap<String, String>,
    name: &str,
) -> Option<i32> {
    let matches = |labels: &BTreeMap<String, String>| {
        selector
            .iter()
            .chain(&opts.labels)
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    resources
        .iter()
        .filter(|r| r.namespace() == opts.namespace)
        .filter_map(|r| match &r.spec {
            Spec::Pod(p) => Some((&r.meta.labels, &p.spec)),
            Spec::Deployment(w) => {
                Some((&w.pod_template().metadata.labels, &w.pod_template().spec))
            }
            Spec::StatefulSet(w) => {
                Some((&w.pod_template().metadata.labels, &w.pod_template().spec))
            }
            Spec::ReplicaSet(w) => {
                Some((&w.pod_template().metadata.labels, &w.pod_template().spec))
            }
            Spec::DaemonSet(w) => Some((&w.pod_template().metadata.labels, &w.pod_template().spec)),
            _ => None,
        })
        .filter(|(labels, _)| matches(labels))
        .flat_map(|(_, spec)| &spec.containers)
        .flat_map(|c| &c.ports)
        .find(|p| p.name == name && p.container_port > 0)
        .map(|p| p.container_port)
}

fn weighted(cluster: &str) -> WeightedCluster {
    WeightedCluster {
        cluster: cluster.to_string(),
        weight: 100,
        ..Default::default()
    }
}

fn forward(cluster: &str) -> RouteAction {
    RouteAction::Forward {
        clusters: vec![weighted(cluster)],
        rewrite: None,
    }
}

/// A cluster for the local application: `inbound|<port>||` at 127.0.0.1.
pub fn inbound_cluster(port: &InboundPort, service: &str) -> Cluster {
    Cluster {
        name: cluster_name("inbound", port.port, "", ""),
        service: service.to_string(),
        port: port.port,
        subset: String::new(),
        namespace: String::new(),
        lb: LbPolicy::RoundRobin,
        locality_lb: None,
        protocol: match class(&port.protocol) {
            Class::Http if matches!(port.protocol.as_str(), "HTTP2" | "GRPC" | "GRPC-WEB") => {
                UpstreamProtocol::Http2
            }
            Class::Http => UpstreamProtocol::Http1,
            Class::Tcp | Class::Tls => UpstreamProtocol::Tcp,
            Class::Auto | Class::Udp => UpstreamProtocol::SameAsDownstream,
        },
        endpoints: vec![Endpoint {
            address: EndpointAddress::Socket(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port.app_port(),
            )),
            labels: BTreeMap::new(),
            locality: String::new(),
            weight: 1,
            workload: String::new(),
            namespace: String::new(),
            identity: String::new(),
            mtls: false,
        }],
        traffic_policy: None,
        client_credential: None,
    }
}

/// Whether a port is served as HTTP, TCP (declared), or both after sniffing:
/// `(http, tcp, opaque)`.
fn inbound_handling(protocol: &str) -> (bool, bool, bool) {
    match class(protocol) {
        Class::Http => (true, false, false),
        Class::Tcp => (false, true, true),
        Class::Tls => (false, true, false),
        Class::Auto => (true, true, false),
        Class::Udp => (false, false, false),
    }
}

//! A sidecar's snapshot: the outbound capture listener (15001) with a virtual host per mesh
//! service port and TCP routes by service address, optional per-port outbound listeners, and
//! the inbound listener (15006, and one per direct inbound port) forwarding to the local
//! application.
//!
//! Routing follows Istio's sidecar model: VirtualServices bound to `mesh` (no `gateways`, or
//! `mesh` listed) replace a service's default route; `sourceLabels`/`sourceNamespace` are
//! decided here against the workload's own labels and namespace, as Istio decides them when
//! it generates a proxy's configuration. Traffic for nothing known goes to the original
//! destination (`PassthroughCluster`, Istio's default `ALLOW_ANY`). Services, ServiceEntries,
//! VirtualServices and DestinationRules not exported to the workload's namespace
//! ([`super::visibility`]) are invisible to it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use keel_config::model::networking::VirtualService;
use keel_config::model::networking::virtual_service::{Destination, PortSelector};
use keel_config::{Resource, Spec};

use super::gateway::Compiled;
use super::policy::Client;
use super::registry::{Registry, Service, ServicePort};
use super::routes::{Binding, RouteBuilder};
use super::visibility::virtual_service_rank;
use super::{fqdn, host_within};
use crate::Snapshot;
use crate::cluster::{Cluster, LbPolicy, UpstreamProtocol};
use crate::jwt::RemoteJwks;
use crate::listener::{Listener, ListenerKind, ListenerProtocol};
use crate::route::{
    HttpRoute, L4Match, RouteAction, RouteTable, TcpRoute, TlsRoute, VirtualHost, WeightedCluster,
};

pub use super::sidecar_inbound::inbound_cluster;

/// Istio's cluster for traffic to destinations it knows nothing about.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Istio's cluster for inbound traffic to ports no Service declares.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";

/// The workload the sidecar runs beside and where the sidecar listens.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// The workload's namespace: short service names and `sourceNamespace` resolve in it.
    pub namespace: String,
    /// The workload's labels: `sourceLabels` are matched against them, and Services whose
    /// selector they satisfy are the workload's own (its inbound ports).
    pub labels: BTreeMap<String, String>,
    /// The outbound capture port (Istio: 15001).
    pub outbound_port: u16,
    /// The inbound capture port (Istio: 15006).
    pub inbound_port: u16,
    /// Further inbound listeners, for a sidecar no iptables redirects to (the local mesh
    /// registers one per port its Services target): a connection addressed to the n-th goes to
    /// the (n+1)-th of `inbound_ports`, as one addressed to `inbound_port` goes to the first.
    pub direct_inbound_ports: Vec<u16>,
    /// Service ports that also get an outbound listener of their own on `bind` (Istio's
    /// `0.0.0.0_<port>`), for applications that call the proxy directly instead of being
    /// redirected by iptables.
    pub outbound_ports: Vec<u16>,
    /// The ports the local application serves; empty: the target ports of the Services in
    /// `namespace` whose selector the labels satisfy.
    pub inbound_ports: Vec<InboundPort>,
    /// Where the listeners bind (Istio binds every address).
    pub bind: IpAddr,
    /// Shown in `/config_dump`.
    pub version: String,
    /// The mesh's root namespace (`meshConfig.rootNamespace`): DestinationRules there apply
    /// mesh-wide, after those of the proxy's and the service's namespaces.
    pub root_namespace: String,
    /// The key sets fetched for RequestAuthentications' `jwksUri` and OpenID discovery
    /// (shared by every proxy's compile of one push).
    pub jwks: Arc<RemoteJwks>,
}

impl Default for SidecarOptions {
    fn default() -> Self {
        SidecarOptions {
            namespace: "default".into(),
            labels: BTreeMap::new(),
            outbound_port: 15001,
            inbound_port: 15006,
            direct_inbound_ports: Vec::new(),
            outbound_ports: Vec::new(),
            inbound_ports: Vec::new(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            version: String::new(),
            root_namespace: "istio-system".into(),
            jwks: Arc::default(),
        }
    }
}

/// A port the local application listens on (at 127.0.0.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundPort {
    /// The port connections were addressed to (the Service's target port, the workload's port
    /// in PeerAuthentication's `portLevelMtls` and AuthorizationPolicy's `ports`).
    pub port: u16,
    /// Istio protocol name, upper case; empty or unknown is sniffed.
    pub protocol: String,
    /// Where the application really listens, when not on `port`: the local mesh runs every
    /// pod on one loopback, so a pod's port 8080 is served on a port of its own.
    pub local: Option<u16>,
}

impl InboundPort {
    /// The port the application listens on.
    pub fn app_port(&self) -> u16 {
        self.local.unwrap_or(self.port)
    }
}

impl std::fmt::Display for InboundPort {
    /// `[PORT=]LOCAL[/PROTOCOL]`, as `--app-port` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.local {
            Some(local) => write!(f, "{}={local}", self.port)?,
            None => write!(f, "{}", self.port)?,
        }
        if !self.protocol.is_empty() {
            write!(f, "/{}", self.protocol)?;
        }
        Ok(())
    }
}

/// How a service port is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Http,
    /// Declared opaque TCP: never sniffed.
    Tcp,
    /// TLS or HTTPS: routed by SNI, else by address as TCP.
    Tls,
    /// Unknown: sniffed, HTTP routes and a TCP fallback.
    Auto,
    Udp,
}

pub(super) fn class(protocol: &str) -> Class {
    match protocol.to_ascii_uppercase().as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY" => Class::Http,
        "TCP" | "MONGO" | "MYSQL" | "REDIS" => Class::Tcp,
        "TLS" | "HTTPS" => Class::Tls,
        "UDP" => Class::Udp,
        _ => Class::Auto,
    }
}

/// What one service port contributes to outbound listeners.
struct Piece {
    port: u16,
    class: Class,
    vhost: Option<VirtualHost>,
    /// Port-less names, which the 15001 table gives to one port per service only.
    portless: Vec<String>,
    /// Routes by service address (VIP); port-only routes for services without one.
    tcp: Vec<TcpRoute>,
    tcp_any_address: Vec<TcpRoute>,
    tls: Vec<TlsRoute>,
}

/// Compiles the sidecar's snapshot.
pub fn compile(resources: &[Resource], opts: &SidecarOptions) -> Compiled {
    // Resources not exported to the workload's namespace do not exist for it.
    let registry = Registry::build_for(resources, Some(&opts.namespace));
    let client = Client {
        namespace: opts.namespace.clone(),
        labels: opts.labels.clone(),
        root_namespace: opts.root_namespace.clone(),
    };
    let mut b = RouteBuilder::for_client(&registry, resources, Some(client));
    let vips = service_addresses(resources);
    let vses = visible_virtual_services(resources, &opts.namespace);
    let mut pieces = Vec::new();
    for service in registry.services.values() {
        let primary = primary_port(service);
        for port in &service.ports {
            let addrs = vips.get(&service.host).cloned().unwrap_or_default();
            let ctx = PieceCtx {
                service,
                port,
                primary: primary == Some(port.number),
                addrs: &addrs,
                vses: &vses,
                opts,
            };
            if let Some(p) = piece(&mut b, &ctx) {
                pieces.push(p);
            }
        }
    }
    let mut listeners = vec![outbound(&pieces, opts)];
    for port in &opts.outbound_ports {
        listeners.push(port_listener(&pieces, *port, opts));
    }
    let (inbound, inbound_clusters, inbound_warnings) =
        super::sidecar_inbound::inbound(resources, opts);
    listeners.extend(inbound);
    b.warnings.extend(inbound_warnings);
    let mut clusters = b.clusters;
    for c in inbound_clusters {
        clusters.insert(c.name.clone(), c);
    }
    for name in [PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER] {
        clusters.insert(name.to_string(), passthrough_cluster(name));
    }
    Compiled {
        snapshot: Snapshot {
            version: opts.version.clone(),
            listeners,
            clusters,
        },
        warnings: b.warnings,
    }
}

struct PieceCtx<'a> {
    service: &'a Service,
    port: &'a ServicePort,
    primary: bool,
    addrs: &'a [String],
    vses: &'a [(&'a Resource, &'a VirtualService)],
    opts: &'a SidecarOptions,
}

fn piece(b: &mut RouteBuilder<'_>, ctx: &PieceCtx<'_>) -> Option<Piece> {
    let (service, number) = (ctx.service, ctx.port.number);
    let class = class(&ctx.port.protocol);
    if class == Class::Udp {
        return None;
    }
    let binding = Binding {
        gateways: vec!["mesh".to_string()],
        port: number,
    };
    let vs = virtual_service_for(&service.host, ctx.vses);
    let origin = format!("Service {}", service.host);
    let default_dest = Destination {
        host: service.host.clone(),
        subset: String::new(),
        port: Some(PortSelector {
            number: u32::from(number),
        }),
    };
    let mut piece = Piece {
        port: number,
        class,
        vhost: None,
        portless: Vec::new(),
        tcp: Vec::new(),
        tcp_any_address: Vec::new(),
        tls: Vec::new(),
    };
    if matches!(class, Class::Http | Class::Auto) {
        let mut routes = match vs {
            Some((r, v)) => resolve_http_matches(b.http_routes(r, v, &binding), number, ctx.opts),
            None => Vec::new(),
        };
        if routes.is_empty() {
            let cluster = b.cluster(&default_dest, &service.namespace, number, &origin);
            routes.push(forward_route("default", cluster));
        }
        let names = host_names(&service.host, &ctx.opts.namespace);
        let mut domains: Vec<String> = names.iter().map(|n| format!("{n}:{number}")).collect();
        if ctx.primary {
            piece.portless = names.clone();
        }
        domains.extend(names);
        piece.vhost = Some(VirtualHost {
            name: format!("{}:{number}", service.host),
            domains,
            routes,
        });
    }
    if matches!(class, Class::Tcp | Class::Tls | Class::Auto) {
        let base = L4Match {
            destination_subnets: ctx.addrs.to_vec(),
            port: Some(number),
            ..Default::default()
        };
        let mut routes = match vs {
            Some((r, v)) => b.tcp_routes(r, v, &binding),
            None => Vec::new(),
        };
        // A route whose every match names other workloads is gone; one without matches
        // takes the whole service port.
        routes.retain_mut(|route| {
            if route.matches.is_empty() {
                route.matches.push(base.clone());
                return true;
            }
            route.matches = resolve_l4_sources(&route.matches, ctx.opts)
                .into_iter()
                .map(|m| within(m, &base))
                .collect();
            !route.matches.is_empty()
        });
        if routes.is_empty() {
            let cluster = b.cluster(&default_dest, &service.namespace, number, &origin);
            routes.push(TcpRoute {
                name: cluster.clone(),
                matches: vec![base.clone()],
                clusters: vec![weighted(cluster)],
                opaque: false,
            });
        }
        for route in &mut routes {
            route.opaque = class == Class::Tcp;
        }
        if !ctx.addrs.is_empty() {
            piece.tcp = routes;
        } else if class != Class::Tls {
            piece.tcp_any_address = routes;
        }
        // TLS without an address is told apart by SNI alone (below): a port-only route
        // would take every other host's TLS on that port too.
    }
    if class == Class::Tls {
        piece.tls = tls_routes(b, ctx, vs, &binding, &default_dest, &origin);
    }
    Some(piece)
}

/// SNI routes for a TLS service port: the mesh VirtualService's, else the service's names.
fn tls_routes(
    b: &mut RouteBuilder<'_>,
    ctx: &PieceCtx<'_>,
    vs: Option<(&Resource, &VirtualService)>,
    binding: &Binding,
    default_dest: &Destination,
    origin: &str,
) -> Vec<TlsRoute> {
    let number = ctx.port.number;
    let mut out = Vec::new();
    if let Some((r, v)) = vs {
        for mut route in b.tls_routes(r, v, binding) {
            route.matches = resolve_l4_sources(&route.matches, ctx.opts)
                .into_iter()
                .map(|mut m| {
                    m.port.get_or_insert(number);
                    m
                })
                .collect();
            if !route.matches.is_empty() {
                out.push(route);
            }
        }
    }
    if out.is_empty() {
        let cluster = b.cluster(default_dest, &ctx.service.namespace, number, origin);
        out.push(TlsRoute {
            name: cluster.clone(),
            matches: vec![L4Match {
                sni_hosts: host_names(&ctx.service.host, &ctx.opts.namespace),
                port: Some(number),
                ..Default::default()
            }],
            clusters: vec![weighted(cluster)],
        });
    }
    out
}

/// The 15001 listener: every service port's virtual host in one table, TCP routes by
/// address before port-only ones, then the passthrough fallbacks.
fn outbound(pieces: &[Piece], opts: &SidecarOptions) -> Listener {
    let mut vhosts: Vec<VirtualHost> = pieces
        .iter()
        .filter_map(|p| {
            let mut vh = p.vhost.clone()?;
            vh.domains
                .retain(|d| d.contains(':') || p.portless.contains(d));
            Some(vh)
        })
        .collect();
    vhosts.push(VirtualHost {
        name: "allow_any".into(),
        domains: vec!["*".into()],
        routes: vec![forward_route("allow_any", PASSTHROUGH_CLUSTER.into())],
    });
    let mut tcp: Vec<TcpRoute> = pieces.iter().flat_map(|p| p.tcp.clone()).collect();
    tcp.extend(pieces.iter().flat_map(|p| p.tcp_any_address.clone()));
    tcp.push(TcpRoute {
        name: PASSTHROUGH_CLUSTER.into(),
        matches: Vec::new(),
        clusters: vec![weighted(PASSTHROUGH_CLUSTER.into())],
        opaque: false,
    });
    Listener {
        name: "virtualOutbound".into(),
        address: SocketAddr::new(opts.bind, opts.outbound_port),
        kind: ListenerKind::SidecarOutbound,
        protocol: ListenerProtocol::Auto,
        http: Some(RouteTable {
            virtual_hosts: vhosts,
        }),
        tls: pieces.iter().flat_map(|p| p.tls.clone()).collect(),
        tcp,
        peer_authn: None,
        terminate_tls: Vec::new(),
        authz: None,
        jwt: None,
    }
}

/// An outbound listener for one service port (`<bind>_<port>`): the services on that port,
/// port-less names included; declared HTTP ports are not sniffed, nor declared TCP ones.
fn port_listener(pieces: &[Piece], port: u16, opts: &SidecarOptions) -> Listener {
    let on_port: Vec<&Piece> = pieces.iter().filter(|p| p.port == port).collect();
    let protocol = if !on_port.is_empty() && on_port.iter().all(|p| p.class == Class::Http) {
        ListenerProtocol::Http
    } else if !on_port.is_empty() && on_port.iter().all(|p| p.class == Class::Tcp) {
        ListenerProtocol::Tcp
    } else {
        ListenerProtocol::Auto
    };
    let vhosts: Vec<VirtualHost> = on_port.iter().filter_map(|p| p.vhost.clone()).collect();
    let mut tcp: Vec<TcpRoute> = on_port.iter().flat_map(|p| p.tcp.clone()).collect();
    tcp.extend(on_port.iter().flat_map(|p| p.tcp_any_address.clone()));
    Listener {
        name: format!("{}_{port}", opts.bind),
        address: SocketAddr::new(opts.bind, port),
        kind: ListenerKind::SidecarOutbound,
        protocol,
        http: (protocol != ListenerProtocol::Tcp).then_some(RouteTable {
            virtual_hosts: vhosts,
        }),
        tls: on_port.iter().flat_map(|p| p.tls.clone()).collect(),
        tcp,
        peer_authn: None,
        terminate_tls: Vec::new(),
        authz: None,
        jwt: None,
    }
}

/// The VirtualServices exported to `namespace`, in the order Istio considers them
/// ([`virtual_service_rank`]): private to the namespace, exported to it by name, public.
fn visible_virtual_services<'a>(
    resources: &'a [Resource],
    namespace: &str,
) -> Vec<(&'a Resource, &'a VirtualService)> {
    let mut ranked: Vec<(u8, &Resource, &VirtualService)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(v) => virtual_service_rank(&v.export_to, r.namespace(), namespace)
                .map(|rank| (rank, r, &**v)),
            _ => None,
        })
        .collect();
    ranked.sort_by_key(|(rank, _, _)| *rank);
    ranked.into_iter().map(|(_, r, v)| (r, v)).collect()
}

/// The mesh VirtualService for a host: one naming it exactly, else the first whose
/// wildcard covers it (Istio merges neither).
fn virtual_service_for<'a>(
    host: &str,
    vses: &[(&'a Resource, &'a VirtualService)],
) -> Option<(&'a Resource, &'a VirtualService)> {
    let mesh = Binding {
        gateways: vec!["mesh".to_string()],
        port: 0,
    };
    let bound = || {
        vses.iter()
            .filter(|(r, v)| mesh.selected_by(&v.gateways, r.namespace()))
    };
    let names = |r: &Resource, v: &VirtualService| -> Vec<String> {
        v.hosts
            .iter()
            .map(|h| fqdn(h, r.namespace(), super::DEFAULT_DOMAIN))
            .collect()
    };
    bound()
        .find(|(r, v)| names(r, v).iter().any(|h| h == host))
        .or_else(|| {
            bound().find(|(r, v)| {
                names(r, v)
                    .iter()
                    .any(|h| h.starts_with('*') && host_within(host, h))
            })
        })
        .copied()
}

/// The names a service is called by from `namespace`: the FQDN, `name.ns.svc`, `name.ns`,
/// and the short name from its own namespace (Kubernetes DNS search paths). ServiceEntry
/// hosts only as written.
fn host_names(host: &str, namespace: &str) -> Vec<String> {
    let Some(rest) = host.strip_suffix(&format!(".svc.{}", super::DEFAULT_DOMAIN)) else {
        return vec![host.to_string()];
    };
    let Some((name, ns)) = rest.split_once('.') else {
        return vec![host.to_string()];
    };
    let mut names = vec![
        host.to_string(),
        format!("{name}.{ns}.svc"),
        format!("{name}.{ns}"),
    ];
    if ns == namespace {
        names.push(name.to_string());
    }
    names
}

/// The port whose virtual host answers port-less names: 80 (what a URL without a port
/// means) if the service has it, else its first HTTP or sniffed port.
fn primary_port(service: &Service) -> Option<u16> {
    let http: Vec<u16> = service
        .ports
        .iter()
        .filter(|p| matches!(class(&p.protocol), Class::Http | Class::Auto))
        .map(|p| p.number)
        .collect();
    http.iter()
        .copied()
        .find(|p| *p == 80)
        .or(http.first().copied())
}

/// Service addresses (Kubernetes cluster IPs, ServiceEntry `addresses`) by host.
fn service_addresses(resources: &[Resource]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in resources {
        match &r.spec {
            Spec::Service(s) => {
                let host = fqdn(r.name(), r.namespace(), super::DEFAULT_DOMAIN);
                let ips = std::iter::once(&s.spec.cluster_ip)
                    .chain(&s.spec.cluster_ips)
                    .filter(|ip| ip.parse::<IpAddr>().is_ok())
                    .cloned();
                out.entry(host).or_default().extend(ips);
            }
            Spec::ServiceEntry(se) => {
                for h in &se.hosts {
                    out.entry(h.to_ascii_lowercase())
                        .or_default()
                        .extend(se.addresses.iter().cloned());
                }
            }
            _ => {}
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    out
}

/// A match narrowed to the service's address and port where it names neither.
fn within(mut m: L4Match, base: &L4Match) -> L4Match {
    if m.destination_subnets.is_empty() {
        m.destination_subnets = base.destination_subnets.clone();
    }
    m.port = m.port.or(base.port);
    m
}

/// Istio decides `sourceLabels`, `sourceNamespace` and `port` when it builds a proxy's
/// per-port routes: a match naming other workloads or another port is dropped, one naming
/// this workload and port holds unconditionally, and a route whose every match was dropped
/// is gone. (The 15001 table serves every port, so the port can't be left to the request.)
fn resolve_http_matches(
    routes: Vec<HttpRoute>,
    port: u16,
    opts: &SidecarOptions,
) -> Vec<HttpRoute> {
    routes
        .into_iter()
        .filter_map(|mut r| {
            if r.matches.is_empty() {
                return Some(r);
            }
            r.matches.retain(|m| {
                applies(&m.source_labels, m.source_namespace.as_deref(), opts)
                    && m.port.is_none_or(|p| p == port)
            });
            for m in &mut r.matches {
                m.source_labels.clear();
                m.source_namespace = None;
                m.port = None;
            }
            (!r.matches.is_empty()).then_some(r)
        })
        .collect()
}

fn resolve_l4_sources(matches: &[L4Match], opts: &SidecarOptions) -> Vec<L4Match> {
    matches
        .iter()
        .filter(|m| applies(&m.source_labels, m.source_namespace.as_deref(), opts))
        .map(|m| L4Match {
            source_labels: BTreeMap::new(),
            source_namespace: None,
            ..m.clone()
        })
        .collect()
}

fn applies(labels: &BTreeMap<String, String>, ns: Option<&str>, opts: &SidecarOptions) -> bool {
    labels.iter().all(|(k, v)| opts.labels.get(k) == Some(v))
        && ns.is_none_or(|n| n == opts.namespace)
}

fn weighted(cluster: String) -> WeightedCluster {
    WeightedCluster {
        cluster,
        weight: 100,
        ..Default::default()
    }
}

fn forward_route(name: &str, cluster: String) -> HttpRoute {
    HttpRoute {
        name: name.to_string(),
        action: RouteAction::Forward {
            clusters: vec![weighted(cluster)],
            rewrite: None,
        },
        ..Default::default()
    }
}

/// A cluster that forwards to each connection's original destination.
pub fn passthrough_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        service: name.to_string(),
        port: 0,
        subset: String::new(),
        namespace: String::new(),
        lb: LbPolicy::Passthrough,
        locality_lb: None,
        protocol: UpstreamProtocol::SameAsDownstream,
        endpoints: Vec::new(),
        traffic_policy: None,
        client_credential: None,
    }
}

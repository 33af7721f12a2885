//! A gateway's snapshot: one listener per Gateway server port, HTTP routes from the
//! VirtualServices bound to those Gateways, TCP and TLS-passthrough routes likewise.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use keel_config::model::networking::gateway::Gateway;
use keel_config::model::networking::gateway::Server;
use keel_config::{Resource, Spec};

use super::registry::Registry;
use super::routes::{Binding, RouteBuilder};
use super::{DEFAULT_DOMAIN, Warning, fqdn, host_within, hosts_overlap};
use crate::Snapshot;
use crate::jwt::RemoteJwks;
use crate::listener::{Listener, ListenerKind, ListenerProtocol};
use crate::route::{HttpRoute, Redirect, RouteAction, RouteTable, VirtualHost};
use crate::tls::ServerTls;

use super::authz::AuthzWorkload;
use super::gateway_tls;

/// Which gateway to build and where it listens.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Address the server ports are bound on (Istio's gateways bind all interfaces).
    pub bind: IpAddr,
    /// `namespace/name` of the Gateways to serve; empty serves every Gateway read.
    pub gateways: Vec<String>,
    /// Shown in `/config_dump`.
    pub version: String,
    /// The gateway workload's labels. When set (and `gateways` is empty), only the Gateways
    /// whose `selector` they satisfy are served, as Istio binds Gateways to gateway pods; an
    /// empty selector selects every gateway.
    pub labels: BTreeMap<String, String>,
    /// Server port → the port actually listened on. Istio's ingress gateway Service maps its
    /// port 80 to the pod's 8080 (unprivileged), and a Gateway may name either; a port not
    /// in the map is listened on as is.
    pub ports: BTreeMap<u16, u16>,
    /// The gateway workload's namespace: `credentialName` Secrets are read from it, as
    /// Istio's gateways read them from their own namespace.
    pub namespace: String,
    /// The key sets fetched for RequestAuthentications' `jwksUri` and OpenID discovery.
    pub jwks: Arc<RemoteJwks>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            gateways: Vec::new(),
            version: String::new(),
            labels: BTreeMap::new(),
            ports: BTreeMap::new(),
            namespace: "istio-system".into(),
            jwks: Arc::default(),
        }
    }
}

impl GatewayOptions {
    /// Whether this gateway serves the Gateway `namespace/name` with `selector`.
    pub fn serves(&self, full_name: &str, selector: &BTreeMap<String, String>) -> bool {
        if !self.gateways.is_empty() {
            return self.gateways.iter().any(|g| g == full_name);
        }
        self.labels.is_empty()
            || selector
                .iter()
                .all(|(k, v)| self.labels.get(k).is_some_and(|l| l == v))
    }

    /// The port a server port is listened on.
    pub fn listen_port(&self, server_port: u16) -> u16 {
        self.ports.get(&server_port).copied().unwrap_or(server_port)
    }
}

/// The result: the snapshot, and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub snapshot: Snapshot,
    pub warnings: Vec<Warning>,
}

struct ServerRef<'a> {
    gateway: String,
    namespace: &'a str,
    server: &'a Server,
}

/// Compiles the gateway's snapshot.
pub fn compile(resources: &[Resource], opts: &GatewayOptions) -> Compiled {
    let registry = Registry::build(resources);
    let mut b = RouteBuilder::new(&registry, resources);
    b.secrets_namespace = opts.namespace.clone();
    let mut by_port: BTreeMap<u16, Vec<ServerRef<'_>>> = BTreeMap::new();
    for r in resources {
        let Spec::Gateway(g) = &r.spec else { continue };
        let full = format!("{}/{}", r.namespace(), r.name());
        if !opts.serves(&full, &g.selector) {
            continue;
        }
        add_servers(&mut by_port, r, g, &full);
    }
    let vses: Vec<(&Resource, &keel_config::model::networking::VirtualService)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::VirtualService(v) => Some((r, &**v)),
            _ => None,
        })
        .collect();

    // AuthorizationPolicies select the gateway workload by its labels (or target its
    // Gateways), as in Istio; one set for every listener.
    let (authz, jwt) = {
        let mut w = AuthzWorkload::new(&opts.namespace, opts.labels.clone());
        w.gateways = by_port
            .values()
            .flatten()
            .filter_map(|s| s.gateway.split_once('/'))
            .map(|(ns, n)| (ns.to_string(), n.to_string()))
            .collect();
        let authz = super::authz::for_workload(resources, &w);
        b.warnings.extend(authz.warnings);
        // RequestAuthentications select the gateway the same way.
        let jwt = super::jwt::for_workload_with(resources, &w, &*opts.jwks);
        b.warnings.extend(jwt.warnings);
        (
            (!authz.policies.is_empty()).then_some(authz.policies),
            (!jwt.rules.is_empty()).then_some(jwt.rules),
        )
    };
    let mut listeners = Vec::new();
    let mut listening: BTreeMap<u16, u16> = BTreeMap::new();
    for (port, servers) in &by_port {
        let gateways: Vec<String> = dedup(servers.iter().map(|s| s.gateway.clone()).collect());
        let local = opts.listen_port(*port);
        if let Some(first) = listening.insert(local, *port) {
            // Two server ports mapped onto one local port: serving both on one listener would
            // need their routes merged per server port; the first keeps it.
            b.warnings.push(Warning {
                resource: format!("Gateway {}", gateways.join(", ")),
                message: format!(
                    "server port {port} would listen on {local}, where server port {first} already listens; port {port} is not served"
                ),
            });
            listening.insert(local, first);
            continue;
        }
        let binding = Binding {
            gateways: gateways.clone(),
            port: *port,
        };
        let (protocol, terminate_tls) =
            terminated(servers, *port, resources, opts, &mut b.warnings);
        let mut listener = Listener {
            name: format!("{}_{local}", opts.bind),
            address: SocketAddr::new(opts.bind, local),
            kind: ListenerKind::Gateway {
                gateways: gateways.clone(),
            },
            protocol,
            http: None,
            tls: Vec::new(),
            tcp: Vec::new(),
            peer_authn: None,
            terminate_tls,
            authz: authz.clone(),
            jwt: jwt.clone(),
        };
        for (r, v) in &vses {
            if !binding.selected_by(&v.gateways, r.namespace()) {
                continue;
            }
            let domains = bound_hosts(v, r.namespace(), servers);
            if domains.is_empty() {
                continue;
            }
            match protocol {
                ListenerProtocol::Http | ListenerProtocol::Auto => {
                    let mut routes = b.http_routes(r, v, &binding);
                    if routes.is_empty() {
                        continue;
                    }
                    if https_redirect(servers, &domains) {
                        // Envoy's `require_tls: ALL`, as Istio configures it: every request
                        // on these hosts is told to come back over HTTPS.
                        routes = vec![HttpRoute {
                            name: "https-redirect".into(),
                            action: RouteAction::Redirect(Redirect {
                                scheme: Some("https".into()),
                                code: 301,
                                ..Default::default()
                            }),
                            ..Default::default()
                        }];
                    }
                    let table = listener.http.get_or_insert_with(RouteTable::default);
                    table.virtual_hosts.push(VirtualHost {
                        name: format!("{}/{}", r.namespace(), r.name()),
                        domains,
                        routes,
                    });
                }
                ListenerProtocol::TlsPassthrough => {
                    listener.tls.extend(b.tls_routes(r, v, &binding))
                }
                ListenerProtocol::Tcp => listener.tcp.extend(b.tcp_routes(r, v, &binding)),
            }
        }
        if protocol == ListenerProtocol::Http && listener.http.is_none() {
            listener.http = Some(RouteTable::default());
        }
        if local != *port {
            listen_on(&mut listener, *port, local);
        }
        listeners.push(listener);
    }
    Compiled {
        snapshot: Snapshot {
            version: opts.version.clone(),
            listeners,
            clusters: b.clusters,
        },
        warnings: b.warnings,
    }
}

fn add_servers<'a>(
    by_port: &mut BTreeMap<u16, Vec<ServerRef<'a>>>,
    r: &'a Resource,
    g: &'a Gateway,
    full: &str,
) {
    for s in &g.servers {
        let Some(port) = &s.port else { continue };
        by_port
            .entry(port.number as u16)
            .or_default()
            .push(ServerRef {
                gateway: full.to_string(),
                namespace: r.namespace(),
                server: s,
            });
    }
}

/// Whether a plain-HTTP server with `tls.httpsRedirect` serves any of `domains`.
fn https_redirect(servers: &[ServerRef<'_>], domains: &[String]) -> bool {
    servers.iter().any(|s| {
        s.server.tls.as_ref().is_some_and(|t| t.https_redirect)
            && !gateway_tls::terminates(s.server)
            && s.server.hosts.iter().any(|h| {
                let host = h.split_once('/').map_or(h.as_str(), |(_, host)| host);
                domains.iter().any(|d| hosts_overlap(d, host))
            })
    })
}

/// A listener moved from its server port to `local`: HTTP matches on the server port (matched
/// at request time against the port the client addressed) now name the local port.
fn listen_on(listener: &mut Listener, server_port: u16, local: u16) {
    let Some(table) = listener.http.as_mut() else {
        return;
    };
    let matches = table
        .virtual_hosts
        .iter_mut()
        .flat_map(|vh| vh.routes.iter_mut())
        .flat_map(|r| r.matches.iter_mut());
    for m in matches {
        if m.port == Some(server_port) {
            m.port = Some(local);
        }
    }
}

/// The listener's protocol once any TLS is terminated, and the TLS it terminates. A port
/// whose servers all terminate TLS serves HTTP (HTTPS servers) or TCP (TLS servers) inside
/// it; one where only some do can't be served both ways here: the terminating servers win,
/// and a warning names the others.
fn terminated(
    servers: &[ServerRef<'_>],
    port: u16,
    resources: &[Resource],
    opts: &GatewayOptions,
    warnings: &mut Vec<Warning>,
) -> (ListenerProtocol, Vec<ServerTls>) {
    let (ending, passing): (Vec<&ServerRef<'_>>, Vec<&ServerRef<'_>>) = servers
        .iter()
        .partition(|s| gateway_tls::terminates(s.server));
    if ending.is_empty() {
        return (listener_protocol(servers), Vec::new());
    }
    for s in &passing {
        warnings.push(Warning {
            resource: format!("Gateway {}", s.gateway),
            message: format!(
                "server port {port} is also a TLS-terminating server of this gateway; a port either terminates TLS or passes it through, so this server is not served"
            ),
        });
    }
    let tls = ending
        .iter()
        .filter_map(|s| {
            gateway_tls::server_tls(
                s.server,
                &s.gateway,
                port,
                resources,
                &opts.namespace,
                warnings,
            )
        })
        .collect();
    let all_https = ending.iter().all(|s| {
        s.server
            .port
            .as_ref()
            .is_some_and(|p| p.protocol.eq_ignore_ascii_case("HTTPS"))
    });
    let inner = if all_https {
        ListenerProtocol::Http
    } else {
        ListenerProtocol::Tcp
    };
    (inner, tls)
}

fn listener_protocol(servers: &[ServerRef<'_>]) -> ListenerProtocol {
    let protos: Vec<String> = servers
        .iter()
        .filter_map(|s| s.server.port.as_ref())
        .map(|p| p.protocol.to_ascii_uppercase())
        .collect();
    if protos
        .iter()
        .all(|p| matches!(p.as_str(), "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"))
    {
        ListenerProtocol::Http
    } else if protos.iter().all(|p| matches!(p.as_str(), "HTTPS" | "TLS")) {
        ListenerProtocol::TlsPassthrough
    } else {
        ListenerProtocol::Tcp
    }
}

/// The VirtualService's hosts that the servers expose to its namespace: a VS host within a
/// server host is kept as is; a server host within a wider VS host (`*`) is used instead.
fn bound_hosts(
    v: &keel_config::model::networking::VirtualService,
    vs_ns: &str,
    servers: &[ServerRef<'_>],
) -> Vec<String> {
    let mut out = Vec::new();
    for s in servers {
        for h in &s.server.hosts {
            let (ns, host) = h.split_once('/').unwrap_or(("*", h.as_str()));
            let visible = ns == "*" || (ns == "." && vs_ns == s.namespace) || ns == vs_ns;
            if !visible {
                continue;
            }
            let host = host.to_ascii_lowercase();
            for vh in &v.hosts {
                // Istio resolves a VirtualService's short host names in its namespace before
                // binding it to gateways (`reviews` → `reviews.<ns>.svc.cluster.local`), and
                // gateways add no short-name aliases.
                let vh = fqdn(vh, vs_ns, DEFAULT_DOMAIN);
                if host_within(&vh, &host) {
                    out.push(vh);
                } else if hosts_overlap(&vh, &host) {
                    out.push(host.clone());
                }
            }
        }
    }
    dedup(out)
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

//! VirtualService routes → snapshot routes, creating the clusters they forward to.

use std::collections::BTreeMap;

use keel_config::model::networking::virtual_service::{
    self as vs, Destination, HttpMatchRequest, VirtualService,
};
use keel_config::{Resource, Spec};

use super::peer_authn::PeerAuthnIndex;
use super::policy::{Client, Policies, lb_policy, merged_policy, subset};
use super::registry::Registry;
use super::route_parts::{header_ops, redirect, request_match, rewrite};
use super::visibility::exported_to;
use super::{DEFAULT_DOMAIN, Warning, fqdn};
use crate::cluster::{Cluster, UpstreamProtocol};
use crate::route::{
    HttpRoute, L4Match, RequestMatch, RouteAction, RoutePolicy, TcpRoute, TlsRoute, WeightedCluster,
};

/// Where routes are being compiled for: decides which `gateways` names apply.
#[derive(Debug, Clone)]
pub struct Binding {
    /// `namespace/name` of the gateways served, or `mesh` for sidecars.
    pub gateways: Vec<String>,
    pub port: u16,
}

impl Binding {
    /// Whether a `gateways` list (of a VirtualService or a match) selects this binding; names
    /// without a namespace are in `namespace`. An empty list means `mesh`.
    pub fn selected_by(&self, list: &[String], namespace: &str) -> bool {
        let list: Vec<String> = if list.is_empty() {
            vec!["mesh".to_string()]
        } else {
            list.to_vec()
        };
        list.iter()
            .any(|g| self.gateways.contains(&gateway_name(g, namespace)))
    }
}

/// Istio's `resolveGatewayName`: `name` and `./name` are in `namespace`, `ns/name` as
/// written, and the legacy `name.ns.svc.cluster.local` form is `ns/name`.
fn gateway_name(g: &str, namespace: &str) -> String {
    if g == "mesh" {
        return g.to_string();
    }
    match g.split_once('/') {
        Some((".", name)) => format!("{namespace}/{name}"),
        Some(_) => g.to_string(),
        None => match g.split_once('.') {
            None => format!("{namespace}/{g}"),
            Some((name, rest)) => {
                let ns = rest.split('.').next().unwrap_or(rest);
                format!("{ns}/{name}")
            }
        },
    }
}

/// The label Istio's injector puts on pods with a sidecar: their endpoints take mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Builds routes and the clusters they need.
pub struct RouteBuilder<'a> {
    pub registry: &'a Registry,
    pub policies: Policies<'a>,
    /// For auto mTLS: whether each endpoint's workload accepts it.
    pub peer_authn: PeerAuthnIndex<'a>,
    pub resources: &'a [Resource],
    pub clusters: BTreeMap<String, Cluster>,
    pub warnings: Vec<Warning>,
    /// Where DestinationRule `credentialName` Secrets are read: the proxy's own namespace.
    pub secrets_namespace: String,
}

impl<'a> RouteBuilder<'a> {
    pub fn new(registry: &'a Registry, resources: &'a [Resource]) -> Self {
        RouteBuilder::for_client(registry, resources, None)
    }

    /// A builder whose DestinationRules are chosen for a sidecar (see [`Policies::for_host`]).
    pub fn for_client(
        registry: &'a Registry,
        resources: &'a [Resource],
        client: Option<Client>,
    ) -> Self {
        let root = client
            .as_ref()
            .map_or("istio-system", |c| c.root_namespace.as_str());
        let secrets_namespace = client
            .as_ref()
            .map_or("istio-system", |c| c.namespace.as_str())
            .to_string();
        let peer_authn = PeerAuthnIndex::new(resources, root);
        RouteBuilder {
            registry,
            peer_authn,
            policies: Policies::build_for(resources, client),
            resources,
            clusters: BTreeMap::new(),
            warnings: Vec::new(),
            secrets_namespace,
        }
    }

    /// The cluster for a destination, created on first use. `None` when the host is in no
    /// registry (the route still exists; the proxy answers 503 NC naming the host).
    pub fn cluster(
        &mut self,
        d: &Destination,
        namespace: &str,
        listener_port: u16,
        origin: &str,
    ) -> String {
        let host = fqdn(&d.host, namespace, DEFAULT_DOMAIN);
        let service = self.registry.get(&host);
        // Istio's `GetDestinationCluster`: the destination's port, else the service's only
        // port, else the port the route serves (the listener's, or the service port a
        // sidecar route is built for) — even when the service has no such port.
        let port = match (d.port, service) {
            (Some(p), _) => p.number as u16,
            (None, Some(s)) if s.ports.len() == 1 => s.ports[0].number,
            (None, _) => listener_port,
        };
        let name = crate::cluster_name("outbound", port, &d.subset, &host);
        if self.clusters.contains_key(&name) {
            return name;
        }
        let Some(service) = service else {
            self.warnings.push(Warning {
                resource: origin.to_string(),
                message: format!("destination host \"{host}\" is in no ServiceEntry or Service; requests to it get 503 NC"),
            });
            return name;
        };
        if service.port(port).is_none() {
            let ports: Vec<String> = service.ports.iter().map(|p| p.number.to_string()).collect();
            let hint = if d.port.is_none() {
                format!(
                    " (destination.port is not set, so the route's port {port} applies); set destination.port"
                )
            } else {
                String::new()
            };
            self.warnings.push(Warning {
                resource: origin.to_string(),
                message: format!(
                    "host \"{host}\" has no port {port} (its ports: {}){hint}; requests to it get 503 NC",
                    ports.join(", ")
                ),
            });
            return name;
        }
        let dr = self.policies.for_host(&host, &service.namespace);
        let sub = subset(dr, &d.subset);
        if !d.subset.is_empty() && sub.is_none() {
            self.warnings.push(Warning {
                resource: origin.to_string(),
                message: format!("subset \"{}\" of host \"{host}\" is in no DestinationRule; requests to it get 503 UH", d.subset),
            });
        }
        let policy = merged_policy(dr, sub, port);
        let (lb, locality_lb) = lb_policy(policy.as_ref());
        let sport = service.port(port).cloned();
        let mut endpoints = sport
            .as_ref()
            .map(|p| service.endpoints(p))
            .unwrap_or_default();
        for e in &mut endpoints {
            e.mtls = self.accepts_mtls(e);
        }
        if !d.subset.is_empty() {
            let labels = sub.map(|s| s.labels.clone()).unwrap_or_default();
            // An unknown subset selects nothing (Istio: no such cluster, so no endpoints).
            endpoints.retain(|e| {
                sub.is_some() && labels.iter().all(|(k, v)| e.labels.get(k) == Some(v))
            });
        }
        let protocol = match sport.as_ref().map(|p| p.protocol.as_str()) {
            Some("HTTP2" | "GRPC" | "GRPC-WEB") => UpstreamProtocol::Http2,
            Some("HTTP") => UpstreamProtocol::Http1,
            Some("TCP" | "TLS" | "MONGO" | "MYSQL" | "REDIS") => UpstreamProtocol::Tcp,
            _ => UpstreamProtocol::SameAsDownstream,
        };
        let client_credential = policy
            .as_ref()
            .and_then(|p| p.tls.as_ref())
            .filter(|t| !t.credential_name.is_empty())
            .map(|t| {
                let c = super::gateway_tls::client_credential(
                    self.resources,
                    &self.secrets_namespace,
                    &t.credential_name,
                );
                if !c.found {
                    self.warnings.push(Warning {
                        resource: origin.to_string(),
                        message: format!(
                            "DestinationRule tls.credentialName for host \"{host}\": no Secret {} (it must be in the proxy's namespace); TLS to the host fails until one is applied",
                            c.secret
                        ),
                    });
                }
                c
            });
        let cluster = Cluster {
            name: name.clone(),
            service: host.clone(),
            port,
            subset: d.subset.clone(),
            namespace: service.namespace.clone(),
            lb: if service.passthrough {
                crate::LbPolicy::Passthrough
            } else {
                lb
            },
            locality_lb,
            protocol,
            endpoints,
            traffic_policy: policy,
            client_credential,
        };
        self.clusters.insert(name.clone(), cluster);
        name
    }

    /// Whether auto mTLS may send mTLS to `e`, as Istio decides it: the workload has a
    /// sidecar (`security.istio.io/tlsMode: istio`, which Istio's injector puts on pods) and
    /// its PeerAuthentication for the endpoint's port is not DISABLE.
    fn accepts_mtls(&self, e: &crate::Endpoint) -> bool {
        if e.labels.get(TLS_MODE_LABEL).map(String::as_str) != Some("istio") {
            return false;
        }
        let port = match &e.address {
            crate::EndpointAddress::Socket(a) => a.port(),
            crate::EndpointAddress::Dns { port, .. } => *port,
        };
        self.peer_authn
            .effective(&e.namespace, &e.labels)
            .mode_for(port)
            != crate::MtlsMode::Disable
    }

    /// The HTTP routes of a VirtualService for a binding (delegates inlined).
    pub fn http_routes(
        &mut self,
        r: &Resource,
        v: &VirtualService,
        binding: &Binding,
    ) -> Vec<HttpRoute> {
        let origin = format!("VirtualService {}/{}", r.namespace(), r.name());
        let mut out = Vec::new();
        for (i, h) in v.http.iter().enumerate() {
            let Some(applicable) = applicable_matches(&h.r#match, r.namespace(), binding) else {
                continue;
            };
            if let Some(d) = &h.delegate {
                let ns = if d.namespace.is_empty() {
                    r.namespace()
                } else {
                    &d.namespace
                };
                let Some((dr, dv)) = self.find_vs(&d.name, ns, r.namespace()) else {
                    self.warnings.push(Warning {
                        resource: origin.clone(),
                        message: format!(
                            "delegate VirtualService {ns}/{} not found (or not exported to namespace {}); its routes are skipped",
                            d.name,
                            r.namespace()
                        ),
                    });
                    continue;
                };
                self.delegate_routes(r, h, &applicable, dr, dv, binding, &mut out);
                continue;
            }
            let name = if h.name.is_empty() {
                format!("{}.{}.{i}", r.namespace(), r.name())
            } else {
                h.name.clone()
            };
            let matches = applicable.iter().map(request_match).collect();
            out.push(self.http_route(r, h, name, matches, binding, &origin));
        }
        out
    }

    /// The routes of delegate VirtualService `dv` under the root route `root`, merged as
    /// Istio merges them ([`super::delegate`]).
    #[allow(clippy::too_many_arguments)]
    fn delegate_routes(
        &mut self,
        r: &Resource,
        root: &vs::HttpRoute,
        root_matches: &[HttpMatchRequest],
        dr: &Resource,
        dv: &VirtualService,
        binding: &Binding,
        out: &mut Vec<HttpRoute>,
    ) {
        let origin = format!("VirtualService {}/{}", dr.namespace(), dr.name());
        for (j, sub) in dv.http.iter().enumerate() {
            // Validation forbids delegating further; such a route has nothing to run.
            if sub.delegate.is_some() {
                continue;
            }
            let Some(sub_matches) = applicable_matches(&sub.r#match, dr.namespace(), binding)
            else {
                continue;
            };
            let Some(merged) =
                super::delegate::merge_route(root, root_matches, r.namespace(), sub, &sub_matches)
            else {
                self.warnings.push(Warning {
                    resource: origin.clone(),
                    message: format!(
                        "http[{j}] matches requests outside the match of the route delegating to it from VirtualService {}/{}; it is ignored",
                        r.namespace(),
                        r.name()
                    ),
                });
                continue;
            };
            let name = if merged.name.is_empty() {
                format!("{}.{}.{j}", dr.namespace(), dr.name())
            } else {
                merged.name.clone()
            };
            let matches = merged.r#match.iter().map(request_match).collect();
            out.push(self.http_route(dr, &merged, name, matches, binding, &origin));
        }
    }

    /// A delegate VirtualService, if it is exported to the delegating one's namespace
    /// (`root_namespace`), as Istio requires.
    fn find_vs(
        &self,
        name: &str,
        namespace: &str,
        root_namespace: &str,
    ) -> Option<(&'a Resource, &'a VirtualService)> {
        self.resources.iter().find_map(|r| match &r.spec {
            Spec::VirtualService(v)
                if r.name() == name
                    && r.namespace() == namespace
                    && exported_to(&v.export_to, namespace, root_namespace) =>
            {
                Some((r, &**v))
            }
            _ => None,
        })
    }

    fn http_route(
        &mut self,
        r: &Resource,
        h: &vs::HttpRoute,
        name: String,
        matches: Vec<RequestMatch>,
        binding: &Binding,
        origin: &str,
    ) -> HttpRoute {
        let action = if let Some(rd) = &h.redirect {
            RouteAction::Redirect(redirect(rd, binding.port))
        } else if let Some(dr) = &h.direct_response {
            RouteAction::DirectResponse {
                status: dr.status as u16,
                body: dr.body.as_ref().and_then(|b| {
                    b.string
                        .clone()
                        .or_else(|| b.bytes.as_deref().map(|b64| self.bytes_body(b64, origin)))
                }),
            }
        } else {
            let single = h.route.len() == 1;
            let clusters = h
                .route
                .iter()
                .filter_map(|d| {
                    let dest = d.destination.as_ref()?;
                    Some(WeightedCluster {
                        cluster: self.cluster(dest, r.namespace(), binding.port, origin),
                        weight: if single && d.weight == 0 {
                            100
                        } else {
                            d.weight.max(0) as u32
                        },
                        request_headers: header_ops(
                            d.headers.as_ref().and_then(|x| x.request.as_ref()),
                        ),
                        response_headers: header_ops(
                            d.headers.as_ref().and_then(|x| x.response.as_ref()),
                        ),
                    })
                })
                .collect();
            RouteAction::Forward {
                clusters,
                rewrite: h.rewrite.as_ref().map(rewrite),
            }
        };
        let mirrors = h
            .mirrors
            .iter()
            .filter_map(|m| {
                Some((
                    m.destination.as_ref()?,
                    m.percentage.map_or(100.0, |p| p.value),
                ))
            })
            .map(|(d, p)| (d.clone(), p))
            .chain(h.mirror.iter().map(|d| {
                let pct = h
                    .mirror_percentage
                    .map(|p| p.value)
                    .or(h.mirror_percent.map(f64::from))
                    .or(h.mirror_percent_snake.map(f64::from))
                    .unwrap_or(100.0);
                (d.clone(), pct)
            }))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(d, p)| (self.cluster(&d, r.namespace(), binding.port, origin), p))
            .collect::<Vec<_>>();
        let policy = if h.timeout.is_some()
            || h.retries.is_some()
            || h.fault.is_some()
            || !mirrors.is_empty()
        {
            Some(RoutePolicy {
                timeout: h.timeout,
                retries: h.retries.clone(),
                fault: h.fault.clone(),
                mirrors,
            })
        } else {
            None
        };
        HttpRoute {
            name,
            matches,
            action,
            request_headers: header_ops(h.headers.as_ref().and_then(|x| x.request.as_ref())),
            response_headers: header_ops(h.headers.as_ref().and_then(|x| x.response.as_ref())),
            cors: h.cors_policy.clone(),
            policy,
        }
    }

    /// A `directResponse.body.bytes` (base64) as the body text. The snapshot carries bodies
    /// as text, so bytes that are not UTF-8 are replaced, with a warning.
    fn bytes_body(&mut self, b64: &str, origin: &str) -> String {
        let bytes = super::decode_base64(b64).unwrap_or_default();
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                self.warnings.push(Warning {
                    resource: origin.to_string(),
                    message: "directResponse body bytes are not UTF-8; keel-proxy serves them with invalid sequences replaced".to_string(),
                });
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        }
    }

    /// TCP routes of a VirtualService for a binding.
    pub fn tcp_routes(
        &mut self,
        r: &Resource,
        v: &VirtualService,
        binding: &Binding,
    ) -> Vec<TcpRoute> {
        let origin = format!("VirtualService {}/{}", r.namespace(), r.name());
        let mut out = Vec::new();
        for (i, t) in v.tcp.iter().enumerate() {
            let matches: Vec<L4Match> = t
                .r#match
                .iter()
                .filter_map(|m| {
                    l4_match(
                        binding,
                        r.namespace(),
                        &m.gateways,
                        m.port,
                        &m.destination_subnets,
                        &m.source_labels,
                        &m.source_namespace,
                        &[],
                    )
                })
                .collect();
            if !t.r#match.is_empty() && matches.is_empty() {
                continue;
            }
            let clusters = self.weighted(&t.route, r.namespace(), binding.port, &origin);
            out.push(TcpRoute {
                name: format!("{}.{}.tcp.{i}", r.namespace(), r.name()),
                matches,
                clusters,
                opaque: false,
            });
        }
        out
    }

    /// TLS (SNI) routes of a VirtualService for a binding.
    pub fn tls_routes(
        &mut self,
        r: &Resource,
        v: &VirtualService,
        binding: &Binding,
    ) -> Vec<TlsRoute> {
        let origin = format!("VirtualService {}/{}", r.namespace(), r.name());
        let mut out = Vec::new();
        for (i, t) in v.tls.iter().enumerate() {
            let matches: Vec<L4Match> = t
                .r#match
                .iter()
                .filter_map(|m| {
                    l4_match(
                        binding,
                        r.namespace(),
                        &m.gateways,
                        m.port,
                        &m.destination_subnets,
                        &m.source_labels,
                        &m.source_namespace,
                        &m.sni_hosts,
                    )
                })
                .collect();
            if matches.is_empty() {
                continue;
            }
            let clusters = self.weighted(&t.route, r.namespace(), binding.port, &origin);
            out.push(TlsRoute {
                name: format!("{}.{}.tls.{i}", r.namespace(), r.name()),
                matches,
                clusters,
            });
        }
        out
    }

    fn weighted(
        &mut self,
        routes: &[vs::RouteDestination],
        namespace: &str,
        port: u16,
        origin: &str,
    ) -> Vec<WeightedCluster> {
        let single = routes.len() == 1;
        routes
            .iter()
            .filter_map(|d| {
                let dest = d.destination.as_ref()?;
                Some(WeightedCluster {
                    cluster: self.cluster(dest, namespace, port, origin),
                    weight: if single && d.weight == 0 {
                        100
                    } else {
                        d.weight.max(0) as u32
                    },
                    ..Default::default()
                })
            })
            .collect()
    }
}

/// The matches that apply to the binding. `None` when every match names other gateways
/// (the route does not exist here); `Some(vec![])` matches everything.
fn applicable_matches(
    ms: &[HttpMatchRequest],
    namespace: &str,
    binding: &Binding,
) -> Option<Vec<HttpMatchRequest>> {
    if ms.is_empty() {
        return Some(Vec::new());
    }
    let kept: Vec<HttpMatchRequest> = ms
        .iter()
        .filter(|m| m.gateways.is_empty() || binding.selected_by(&m.gateways, namespace))
        .cloned()
        .collect();
    if kept.is_empty() { None } else { Some(kept) }
}

/// One TCP or TLS match for a binding: `None` when it names other gateways or another port.
#[allow(clippy::too_many_arguments)]
fn l4_match(
    binding: &Binding,
    namespace: &str,
    gateways: &[String],
    port: u32,
    subnets: &[String],
    source_labels: &BTreeMap<String, String>,
    source_namespace: &str,
    sni_hosts: &[String],
) -> Option<L4Match> {
    if !gateways.is_empty() && !binding.selected_by(gateways, namespace) {
        return None;
    }
    if port != 0 && port != u32::from(binding.port) {
        return None;
    }
    Some(L4Match {
        sni_hosts: sni_hosts.iter().map(|s| s.to_ascii_lowercase()).collect(),
        destination_subnets: subnets.to_vec(),
        port: (port != 0).then_some(port as u16),
        source_labels: source_labels.clone(),
        source_namespace: (!source_namespace.is_empty()).then(|| source_namespace.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_names() {
        assert_eq!(gateway_name("gw", "default"), "default/gw");
        assert_eq!(gateway_name("edge/gw", "default"), "edge/gw");
        assert_eq!(gateway_name("./gw", "ns"), "ns/gw");
        assert_eq!(
            gateway_name("gw.edge.svc.cluster.local", "default"),
            "edge/gw"
        );
        assert_eq!(gateway_name("mesh", "default"), "mesh");
    }
}

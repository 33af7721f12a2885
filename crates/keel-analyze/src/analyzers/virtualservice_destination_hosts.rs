//! `virtualservice.DestinationHostAnalyzer`: every destination a VirtualService routes or
//! mirrors to must be a known host — a Kubernetes Service or a ServiceEntry host visible from
//! the VirtualService's namespace (honouring `exportTo` and the
//! `networking.istio.io/exportTo` annotation, and matching wildcard ServiceEntry hosts).
//!
//! - IST0101 `Referenced host not found` / `Referenced mirror host not found` for unknown
//!   hosts, and `Referenced host:port not found` for a port the host does not expose;
//! - IST0112 when no port is given and the host exposes several;
//! - IST0140 when a VirtualService bound to gateways routes to a host without a subset while
//!   another VirtualService for that host splits it into subsets.

use keel_config::model::networking::virtual_service::{Destination, VirtualService};

use super::Analyzer;
use super::util_an1::{ServiceEntryHosts, resource_full_name};
use crate::context::AnalysisContext;
use crate::messages::{
    INGRESS_ROUTE_RULES_NOT_AFFECTED, Message, REFERENCED_RESOURCE_NOT_FOUND,
    VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED, q,
};

pub struct DestinationHostAnalyzer;

/// A destination and where it sits (Istio's `AnnotatedDestination`).
pub(crate) struct AnnotatedDestination<'a> {
    /// `tcp`, `tls`, `http`, `http.mirror` or `http.mirrors`.
    pub rule: &'static str,
    pub service_index: usize,
    pub destination_index: usize,
    pub destination: Option<&'a Destination>,
}

impl AnnotatedDestination<'_> {
    pub fn host(&self) -> &str {
        self.destination.map_or("", |d| d.host.as_str())
    }

    pub fn subset(&self) -> &str {
        self.destination.map_or("", |d| d.subset.as_str())
    }

    /// `util.DestinationHost`: `spec.<rule>[i].route[j].destination.host`.
    pub fn host_path(&self) -> String {
        format!(
            "spec.{}[{}].route[{}].destination.host",
            self.rule, self.service_index, self.destination_index
        )
    }

    /// `util.MirrorHost`: `spec.http[i].mirror.host`.
    pub fn mirror_path(&self) -> String {
        format!("spec.http[{}].mirror.host", self.service_index)
    }
}

/// Route destinations: TCP, then TLS, then HTTP routes.
pub(crate) fn route_destinations(vs: &VirtualService) -> Vec<AnnotatedDestination<'_>> {
    let mut out = Vec::new();
    for (i, r) in vs.tcp.iter().enumerate() {
        for (j, rd) in r.route.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "tcp",
                service_index: i,
                destination_index: j,
                destination: rd.destination.as_ref(),
            });
        }
    }
    for (i, r) in vs.tls.iter().enumerate() {
        for (j, rd) in r.route.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "tls",
                service_index: i,
                destination_index: j,
                destination: rd.destination.as_ref(),
            });
        }
    }
    for (i, r) in vs.http.iter().enumerate() {
        for (j, rd) in r.route.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "http",
                service_index: i,
                destination_index: j,
                destination: rd.destination.as_ref(),
            });
        }
    }
    out
}

/// HTTP mirror destinations: each rule's `mirror`, then its `mirrors`.
pub(crate) fn mirror_destinations(vs: &VirtualService) -> Vec<AnnotatedDestination<'_>> {
    let mut out = Vec::new();
    for (i, r) in vs.http.iter().enumerate() {
        if let Some(m) = &r.mirror {
            out.push(AnnotatedDestination {
                rule: "http.mirror",
                service_index: i,
                destination_index: 0,
                destination: Some(m),
            });
        }
        for (j, m) in r.mirrors.iter().enumerate() {
            out.push(AnnotatedDestination {
                rule: "http.mirrors",
                service_index: i,
                destination_index: j,
                destination: m.destination.as_ref(),
            });
        }
    }
    out
}

impl Analyzer for DestinationHostAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.DestinationHostAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the destination hosts associated with each virtual service"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let hosts = ServiceEntryHosts::new(ctx);
        let subset_destinations = subset_destinations(ctx);
        for (r, vs) in ctx.virtual_services() {
            analyze_destinations(ctx, r, vs, &hosts, out);
            analyze_subsets(ctx, r, vs, &subset_destinations, out);
        }
    }
}

fn analyze_destinations(
    ctx: &AnalysisContext<'_>,
    r: &keel_config::Resource,
    vs: &VirtualService,
    hosts: &ServiceEntryHosts,
    out: &mut Vec<Message>,
) {
    let ns = r.meta.namespace.as_str();
    for d in route_destinations(vs) {
        match hosts.destination(ns, &vs.export_to, d.host()) {
            None => out.push(ctx.message(
                REFERENCED_RESOURCE_NOT_FOUND,
                r,
                Some(&d.host_path()),
                format!("Referenced host not found: {}", q(d.host())),
            )),
            Some(e) => check_ports(ctx, r, &d, &e.ports, out),
        }
    }
    for d in mirror_destinations(vs) {
        match hosts.destination(ns, &vs.export_to, d.host()) {
            None => out.push(ctx.message(
                REFERENCED_RESOURCE_NOT_FOUND,
                r,
                Some(&d.mirror_path()),
                format!("Referenced mirror host not found: {}", q(d.host())),
            )),
            Some(e) => check_ports(ctx, r, &d, &e.ports, out),
        }
    }
}

/// `checkServiceEntryPorts`.
fn check_ports(
    ctx: &AnalysisContext<'_>,
    r: &keel_config::Resource,
    d: &AnnotatedDestination<'_>,
    ports: &[u32],
    out: &mut Vec<Message>,
) {
    // Only `mirror` has its own path; `mirrors` entries get a path that does not exist (as in
    // Istio), so their messages point at the resource.
    let path = if d.rule == "http.mirror" {
        d.mirror_path()
    } else {
        d.host_path()
    };
    match d.destination.and_then(|x| x.port) {
        None => {
            if ports.len() > 1 {
                let list = ports
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push(ctx.message(
                    VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
                    r,
                    Some(&path),
                    format!(
                        "This VirtualService routes to a service {} that exposes multiple ports [{list}]. Specifying a port in the destination is required to disambiguate.",
                        q(d.host())
                    ),
                ));
            }
        }
        Some(p) => {
            if !ports.contains(&p.number) {
                out.push(ctx.message(
                    REFERENCED_RESOURCE_NOT_FOUND,
                    r,
                    Some(&path),
                    format!(
                        "Referenced host:port not found: {}",
                        q(&format!("{}:{}", d.host(), p.number))
                    ),
                ));
            }
        }
    }
}

/// `initVirtualServiceDestinations`: per VirtualService (full name), the HTTP route
/// destinations that name a subset and whose host is one of the VirtualService's own hosts.
fn subset_destinations<'a>(ctx: &AnalysisContext<'a>) -> Vec<(String, Vec<&'a Destination>)> {
    let mut out: Vec<(String, Vec<&'a Destination>)> = Vec::new();
    for (r, vs) in ctx.virtual_services() {
        let mut dests = Vec::new();
        for route in &vs.http {
            for rd in &route.route {
                let Some(d) = &rd.destination else { continue };
                if d.subset.is_empty() {
                    continue;
                }
                for h in &vs.hosts {
                    if d.host == *h {
                        dests.push(d);
                    }
                }
            }
        }
        if dests.is_empty() {
            continue;
        }
        let name = resource_full_name(r);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.extend(dests),
            None => out.push((name, dests)),
        }
    }
    out
}

/// `analyzeSubset`: IST0140 for gateway-bound routes without a subset to a host that another
/// VirtualService splits into subsets.
fn analyze_subsets(
    ctx: &AnalysisContext<'_>,
    r: &keel_config::Resource,
    vs: &VirtualService,
    subset_destinations: &[(String, Vec<&Destination>)],
    out: &mut Vec<Message>,
) {
    if vs.gateways.is_empty() {
        return;
    }
    let me = resource_full_name(r);
    for (i, http) in vs.http.iter().enumerate() {
        for (j, route) in http.route.iter().enumerate() {
            // Istio dereferences the destination unchecked; a route without one has no subset
            // and no host to compare.
            let Some(dest) = &route.destination else {
                continue;
            };
            if !dest.subset.is_empty() {
                continue;
            }
            for (other, dests) in subset_destinations {
                for d in dests {
                    if d.host == dest.host {
                        // Istio formats this path with the route's *name* where the rule kind
                        // belongs, so it practically never resolves: the resource line is used.
                        let path = format!("spec.{}[{i}].route[{j}].destination.host", http.name);
                        out.push(ctx.message(
                            INGRESS_ROUTE_RULES_NOT_AFFECTED,
                            r,
                            Some(&path),
                            format!(
                                "Subset in virtual service {other} has no effect on ingress gateway {me} requests"
                            ),
                        ));
                    }
                }
            }
        }
    }
}

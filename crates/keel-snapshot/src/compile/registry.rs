//! The service registry a proxy routes to: hosts, ports and endpoints, from ServiceEntries
//! (with their endpoints or selected WorkloadEntries) and Kubernetes Services (with
//! Endpoints / EndpointSlices, or Pods and WorkloadEntries their selector matches).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use keel_config::model::networking::service_entry::{Resolution, ServiceEntry};
use keel_config::model::networking::workload_entry::WorkloadEntry;
use keel_config::{Resource, Spec};

use super::{DEFAULT_DOMAIN, DEFAULT_TRUST_DOMAIN, fqdn};
use crate::cluster::{Endpoint, EndpointAddress};

/// A port of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub name: String,
    pub number: u16,
    /// Istio protocol name, upper case (`HTTP`, `GRPC`, `TCP`, ...); empty when unknown.
    pub protocol: String,
}

/// One service, under one host name.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub host: String,
    pub namespace: String,
    pub ports: Vec<ServicePort>,
    /// Endpoints with their port per service port name (or number as text).
    pub instances: Vec<Instance>,
    /// `resolution: NONE`: forward to the original destination.
    pub passthrough: bool,
}

/// An endpoint of a service, before a port is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// IP or DNS name.
    pub address: String,
    /// Target port per service port name; missing names use the service port number.
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
    pub locality: String,
    pub weight: u32,
    pub workload: String,
    pub namespace: String,
    /// Its Kubernetes service account (WorkloadEntry `serviceAccount`, the Pod's
    /// `serviceAccountName`): its identity is `spiffe://cluster.local/ns/NS/sa/SA`.
    pub service_account: String,
}

impl Service {
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// Endpoints for one service port.
    pub fn endpoints(&self, port: &ServicePort) -> Vec<Endpoint> {
        self.instances
            .iter()
            .filter_map(|i| {
                let p = i.ports.get(&port.name).copied().unwrap_or(port.number);
                let address = match i.address.parse::<IpAddr>() {
                    Ok(ip) => EndpointAddress::Socket(SocketAddr::new(ip, p)),
                    Err(_) if i.address.is_empty() => return None,
                    Err(_) => EndpointAddress::Dns {
                        host: i.address.clone(),
                        port: p,
                    },
                };
                Some(Endpoint {
                    address,
                    labels: i.labels.clone(),
                    locality: i.locality.clone(),
                    weight: i.weight.max(1),
                    workload: i.workload.clone(),
                    namespace: i.namespace.clone(),
                    identity: if i.service_account.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "spiffe://{DEFAULT_TRUST_DOMAIN}/ns/{}/sa/{}",
                            i.namespace, i.service_account
                        )
                    },
                    // Decided by the route builder, which knows PeerAuthentications.
                    mtls: false,
                })
            })
            .collect()
    }
}

/// Every service, by host.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub services: BTreeMap<String, Service>,
}

impl Registry {
    /// Builds the registry from resources.
    pub fn build(resources: &[Resource]) -> Registry {
        Registry::build_for(resources, None)
    }

    /// The registry as a proxy in namespace `client` sees it: Services and ServiceEntries
    /// not exported to it are left out (`None`: everything, as for gateways).
    pub fn build_for(resources: &[Resource], client: Option<&str>) -> Registry {
        let mut reg = Registry::default();
        let workload_entries: Vec<(&Resource, &WorkloadEntry)> = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::WorkloadEntry(w) => Some((r, &**w)),
                _ => None,
            })
            .collect();
        for r in resources
            .iter()
            .filter(|r| super::visibility::service_visible(r, client))
        {
            match &r.spec {
                Spec::ServiceEntry(se) => reg.add_service_entry(r, se, &workload_entries),
                Spec::Service(svc) => reg.add_kube_service(r, svc, resources, &workload_entries),
                _ => {}
            }
        }
        reg
    }

    /// The service for a host (exact, case-insensitive).
    pub fn get(&self, host: &str) -> Option<&Service> {
        self.services.get(&host.to_ascii_lowercase())
    }

    fn add_service_entry(
        &mut self,
        r: &Resource,
        se: &ServiceEntry,
        wes: &[(&Resource, &WorkloadEntry)],
    ) {
        let ports: Vec<ServicePort> = se
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                number: p.number as u16,
                protocol: p.protocol.to_ascii_uppercase(),
            })
            .collect();
        let target = |name: &str| -> Option<u16> {
            se.ports
                .iter()
                .find(|p| p.name == name && p.target_port != 0)
                .map(|p| p.target_port as u16)
        };
        let mut instances: Vec<Instance> = Vec::new();
        let from_entry = |w: &WorkloadEntry, name: &str, ns: &str| {
            let mut map = BTreeMap::new();
            for p in &se.ports {
                let port = w
                    .ports
                    .as_ref()
                    .and_then(|m| m.get(&p.name).copied())
                    .map(|n| n as u16)
                    .or_else(|| target(&p.name))
                    .unwrap_or(p.number as u16);
                map.insert(p.name.clone(), port);
            }
            Instance {
                address: w.address.clone(),
                ports: map,
                labels: w.labels.clone(),
                locality: w.locality.clone(),
                weight: w.weight.max(1),
                workload: name.to_string(),
                namespace: ns.to_string(),
                service_account: w.service_account.clone(),
            }
        };
        if let Some(eps) = &se.endpoints {
            for w in eps {
                instances.push(from_entry(w, "", r.namespace()));
            }
        } else if let Some(sel) = &se.workload_selector {
            for (wr, w) in wes {
                let mut labels = wr.meta.labels.clone();
                labels.extend(w.labels.clone());
                if wr.namespace() == r.namespace()
                    && sel.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                {
                    let mut inst = from_entry(w, workload_name(wr, w), wr.namespace());
                    inst.labels = labels;
                    instances.push(inst);
                }
            }
        }
        let passthrough = se.resolution == Resolution::None;
        for host in &se.hosts {
            let mut inst = instances.clone();
            // DNS without endpoints: the host name itself is the endpoint.
            if matches!(se.resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                && se.endpoints.is_none()
                && se.workload_selector.is_none()
            {
                let mut map = BTreeMap::new();
                for p in &se.ports {
                    map.insert(p.name.clone(), target(&p.name).unwrap_or(p.number as u16));
                }
                inst = vec![Instance {
                    address: host.clone(),
                    ports: map,
                    labels: BTreeMap::new(),
                    locality: String::new(),
                    weight: 1,
                    workload: String::new(),
                    namespace: r.namespace().to_string(),
                    service_account: String::new(),
                }];
            }
            self.services.insert(
                host.to_ascii_lowercase(),
                Service {
                    host: host.to_ascii_lowercase(),
                    namespace: r.namespace().to_string(),
                    ports: ports.clone(),
                    instances: inst,
                    passthrough,
                },
            );
        }
    }

    fn add_kube_service(
        &mut self,
        r: &Resource,
        svc: &keel_config::model::kube::Service,
        resources: &[Resource],
        wes: &[(&Resource, &WorkloadEntry)],
    ) {
        let host = fqdn(r.name(), r.namespace(), DEFAULT_DOMAIN);
        let ports: Vec<ServicePort> = svc
            .spec
            .ports
            .iter()
            .map(|p| ServicePort {
                name: if p.name.is_empty() {
                    p.port.to_string()
                } else {
                    p.name.clone()
                },
                number: p.port as u16,
                protocol: p.mesh_protocol().to_string().to_ascii_uppercase(),
            })
            .collect();
        let mut instances = Vec::new();
        // Endpoints objects of the same name, as Kubernetes' endpoints controller writes them.
        for er in resources
            .iter()
            .filter(|e| e.name() == r.name() && e.namespace() == r.namespace())
        {
            if let Spec::Endpoints(ep) = &er.spec {
                for subset in &ep.subsets {
                    let port_map: BTreeMap<String, u16> = subset
                        .ports
                        .iter()
                        .map(|p| {
                            (
                                if p.name.is_empty() {
                                    svc.spec
                                        .ports
                                        .first()
                                        .map(|sp| {
                                            if sp.name.is_empty() {
                                                sp.port.to_string()
                                            } else {
                                                sp.name.clone()
                                            }
                                        })
                                        .unwrap_or_default()
                                } else {
                                    p.name.clone()
                                },
                                p.port as u16,
                            )
                        })
                        .collect();
                    for a in &subset.addresses {
                        let (labels, service_account) = pod_facts(
                            resources,
                            a.target_ref.as_ref().map(|t| t.name.as_str()),
                            r.namespace(),
                        );
                        instances.push(Instance {
                            address: a.ip.clone(),
                            ports: port_map.clone(),
                            labels,
                            service_account,
                            locality: String::new(),
                            weight: 1,
                            workload: a
                                .target_ref
                                .as_ref()
                                .map(|t| t.name.clone())
                                .unwrap_or_default(),
                            namespace: r.namespace().to_string(),
                        });
                    }
                }
            }
        }
        // Without Endpoints, WorkloadEntries the selector matches (Istio selects them too).
        if instances.is_empty() && !svc.spec.selector.is_empty() {
            for (wr, w) in wes {
                let mut labels = wr.meta.labels.clone();
                labels.extend(w.labels.clone());
                if wr.namespace() == r.namespace()
                    && svc
                        .spec
                        .selector
                        .iter()
                        .all(|(k, v)| labels.get(k) == Some(v))
                {
                    let mut map = BTreeMap::new();
                    for p in &svc.spec.ports {
                        let name = if p.name.is_empty() {
                            p.port.to_string()
                        } else {
                            p.name.clone()
                        };
                        let port = w
                            .ports
                            .as_ref()
                            .and_then(|m| m.get(&name).copied())
                            .map(|n| n as u16)
                            .unwrap_or_else(|| target_port_number(p));
                        map.insert(name, port);
                    }
                    instances.push(Instance {
                        address: w.address.clone(),
                        ports: map,
                        labels,
                        locality: w.locality.clone(),
                        weight: w.weight.max(1),
                        workload: workload_name(wr, w).to_string(),
                        namespace: wr.namespace().to_string(),
                        service_account: w.service_account.clone(),
                    });
                }
            }
        }
        self.services.insert(
            host.clone(),
            Service {
                host,
                namespace: r.namespace().to_string(),
                ports,
                instances,
                passthrough: false,
            },
        );
    }
}

fn target_port_number(p: &keel_config::model::kube::ServicePort) -> u16 {
    match &p.target_port {
        Some(keel_config::types::IntOrString::Int(n)) if *n > 0 => *n as u16,
        _ => p.port as u16,
    }
}

fn pod_facts(
    resources: &[Resource],
    pod: Option<&str>,
    namespace: &str,
) -> (BTreeMap<String, String>, String) {
    let Some(name) = pod else {
        return (BTreeMap::new(), String::new());
    };
    resources
        .iter()
        .find_map(|r| match &r.spec {
            Spec::Pod(p) if r.name() == name && r.namespace() == namespace => {
                Some((r.meta.labels.clone(), p.spec.service_account().to_string()))
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// Istio's label naming the workload a WorkloadEntry belongs to (its Deployment, for the local
/// mesh's pods), which metrics report as `destination_workload`.
pub const WORKLOAD_NAME_LABEL: &str = "service.istio.io/workload-name";

/// The workload a WorkloadEntry stands for: [`WORKLOAD_NAME_LABEL`] when set, else its name.
fn workload_name<'a>(r: &'a Resource, w: &'a WorkloadEntry) -> &'a str {
    w.labels
        .get(WORKLOAD_NAME_LABEL)
        .or_else(|| r.meta.labels.get(WORKLOAD_NAME_LABEL))
        .map_or(r.name(), String::as_str)
}

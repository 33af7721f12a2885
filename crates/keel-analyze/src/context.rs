//! What analyzers see: every resource read, the mesh configuration, and helpers to report
//! messages pinned to a field's line.

use std::collections::BTreeMap;

use keel_config::model::{kube, networking, security, telemetry};
use keel_config::yaml::{FieldPath, NodeKind};
use keel_config::{Kind, Resource, Spec};

use crate::messages::{Message, MessageType, Origin};

/// The parts of Istio's MeshConfig analyzers consult, with Istio's defaults.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub root_namespace: String,
    pub ingress_service: String,
    pub cluster_domain: String,
    /// Access-log providers applied by default (`defaultProviders.accessLogging`).
    pub default_access_logging: Vec<String>,
    /// Names of extension providers whose type is lightstep (deprecated).
    pub lightstep_providers: Vec<String>,
    /// `defaultConfig.proxyMetadata`: environment given to every proxy (DNS capture and
    /// address auto-allocation are read from it).
    pub proxy_metadata: BTreeMap<String, String>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: crate::DEFAULT_ROOT_NAMESPACE.to_string(),
            ingress_service: "istio-ingressgateway".to_string(),
            cluster_domain: "cluster.local".to_string(),
            default_access_logging: Vec::new(),
            lightstep_providers: Vec::new(),
            proxy_metadata: BTreeMap::new(),
        }
    }
}

pub struct AnalysisContext<'a> {
    pub resources: &'a [Resource],
    pub mesh: MeshConfig,
}

macro_rules! accessor {
    ($fn:ident, $variant:ident, $ty:ty) => {
        /// Every resource of this kind, with its typed spec.
        pub fn $fn(&self) -> impl Iterator<Item = (&'a Resource, &'a $ty)> + 'a {
            self.resources.iter().filter_map(|r| match &r.spec {
                Spec::$variant(s) => Some((r, &**s)),
                _ => None,
            })
        }
    };
}

impl<'a> AnalysisContext<'a> {
    pub fn new(resources: &'a [Resource], mesh: MeshConfig) -> Self {
        AnalysisContext { resources, mesh }
    }

    accessor!(virtual_services, VirtualService, networking::VirtualService);
    accessor!(
        destination_rules,
        DestinationRule,
        networking::DestinationRule
    );
    accessor!(gateways, Gateway, networking::Gateway);
    accessor!(service_entries, ServiceEntry, networking::ServiceEntry);
    accessor!(sidecars, Sidecar, networking::Sidecar);
    accessor!(workload_entries, WorkloadEntry, networking::WorkloadEntry);
    accessor!(envoy_filters, EnvoyFilter, networking::EnvoyFilter);
    accessor!(
        authorization_policies,
        AuthorizationPolicy,
        security::AuthorizationPolicy
    );
    accessor!(
        request_authentications,
        RequestAuthentication,
        security::RequestAuthentication
    );
    accessor!(
        peer_authentications,
        PeerAuthentication,
        security::PeerAuthentication
    );
    accessor!(telemetries, Telemetry, telemetry::Telemetry);
    accessor!(services, Service, kube::Service);
    accessor!(pods, Pod, kube::Pod);
    accessor!(deployments, Deployment, kube::Deployment);
    accessor!(namespaces, Namespace, kube::Namespace);
    accessor!(secrets, Secret, kube::Secret);
    accessor!(config_maps, ConfigMap, kube::ConfigMap);

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.iter().filter(move |r| r.kind() == kind)
    }

    /// A message about `r`. `path` is Istio's field path for the line (e.g.
    /// `spec.http[0].route[0].destination.host`); as in Istio, only a path that ends at a
    /// scalar gives a line, anything else points at the resource's first line.
    pub fn message(
        &self,
        mtype: MessageType,
        r: &Resource,
        path: Option<&str>,
        text: String,
    ) -> Message {
        let mut line = r.origin.doc_line;
        if let Some(p) = path {
            let fp = FieldPath::parse(p);
            let node = r.origin.node.locate(&fp);
            let exact = resolves_exactly(&r.origin.node, &fp);
            if exact && matches!(node.kind, NodeKind::Scalar { .. }) {
                line = node.pos.line;
            }
        }
        Message {
            mtype,
            text,
            origin: Some(Origin {
                kind: r.kind().name().to_string(),
                namespace: r.meta.namespace.clone(),
                name: r.meta.name.clone(),
                file: r.origin.file.to_string(),
                line,
            }),
        }
    }
}

fn resolves_exactly(root: &keel_config::yaml::Node, path: &FieldPath) -> bool {
    use keel_config::yaml::Seg;
    let mut cur = root;
    for seg in &path.0 {
        let next = match seg {
            Seg::Key(k) => cur.get(k),
            Seg::Index(i) => cur.as_seq().and_then(|s| s.get(*i)),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    true
}

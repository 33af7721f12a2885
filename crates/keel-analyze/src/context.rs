//! What analyzers see: every resource read, the mesh configuration, and helpers to report
//! messages pinned to a field's line.

use std::collections::BTreeMap;

use keel_config::model::{extensions, gateway_api, kube, networking, security, telemetry};
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
    /// `defaultConfig.image.imageType` (`distroless`, `debug`, ...): the proxy image flavour
    /// injected by default; empty for the default image.
    pub default_image_type: String,
    /// `defaultConfig.gatewayTopology.numTrustedProxies`: how many proxies in front of a
    /// gateway its `X-Forwarded-For` trusts; `None` when not set (Istio's default, 0).
    pub num_trusted_proxies: Option<u8>,
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
            default_image_type: String::new(),
            num_trusted_proxies: None,
        }
    }
}

impl MeshConfig {
    /// Reads a mesh config file (the `mesh` key of Istio's `istio` ConfigMap, as given to
    /// `istioctl analyze --meshConfigFile`) over Istio's defaults. Unknown fields are ignored:
    /// MeshConfig has hundreds, and analysis needs a few.
    pub fn from_yaml(text: &str, name: &str) -> Result<MeshConfig, String> {
        use keel_config::yaml::{Limits, load_documents};
        let (docs, err) = load_documents(text, Limits::default());
        if let Some(e) = err {
            return Err(format!("{name}:{}: {}", e.pos, e.message));
        }
        let mut mesh = MeshConfig::default();
        let Some(doc) = docs.first() else {
            return Ok(mesh);
        };
        let v = doc.root.to_json();
        if !v.is_object() {
            return Err(format!(
                "{name}: expected a MeshConfig object (rootNamespace, defaultConfig, ...)"
            ));
        }
        let text_at = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).map(str::to_string);
        if let Some(ns) = text_at("/rootNamespace") {
            mesh.root_namespace = ns;
        }
        if let Some(svc) = text_at("/ingressService") {
            mesh.ingress_service = svc;
        }
        if let Some(d) = text_at("/clusterDomain") {
            mesh.cluster_domain = d;
        }
        if let Some(list) = v
            .pointer("/defaultProviders/accessLogging")
            .and_then(|x| x.as_array())
        {
            mesh.default_access_logging = list
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
        }
        if let Some(list) = v.pointer("/extensionProviders").and_then(|x| x.as_array()) {
            mesh.lightstep_providers = list
                .iter()
                .filter(|p| p.get("lightstep").is_some())
                .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect();
        }
        if let Some(md) = v
            .pointer("/defaultConfig/proxyMetadata")
            .and_then(|x| x.as_object())
        {
            mesh.proxy_metadata = md
                .iter()
                .map(|(k, x)| {
                    (
                        k.clone(),
                        x.as_str().map_or_else(|| x.to_string(), str::to_string),
                    )
                })
                .collect();
        }
        if let Some(t) = text_at("/defaultConfig/image/imageType") {
            mesh.default_image_type = t;
        }
        if let Some(n) = v.pointer("/defaultConfig/gatewayTopology/numTrustedProxies") {
            let n = n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| {
                    format!(
                        "{name}: defaultConfig.gatewayTopology.numTrustedProxies: expected a count \
of proxies from 0 to 255, found {n}"
                    )
                })?;
            mesh.num_trusted_proxies = Some(n);
        }
        Ok(mesh)
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
    accessor!(proxy_configs, ProxyConfig, networking::ProxyConfig);
    accessor!(
        mutating_webhook_configurations,
        MutatingWebhookConfiguration,
        kube::MutatingWebhookConfiguration
    );
    accessor!(
        validating_webhook_configurations,
        ValidatingWebhookConfiguration,
        kube::ValidatingWebhookConfiguration
    );
    accessor!(nodes, Node, kube::Node);
    accessor!(wasm_plugins, WasmPlugin, extensions::WasmPlugin);
    accessor!(kubernetes_gateways, KubernetesGateway, gateway_api::Gateway);
    accessor!(http_routes, HttpRoute, gateway_api::HttpRoute);
    accessor!(grpc_routes, GrpcRoute, gateway_api::GrpcRoute);

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
                group: r.kind().group().to_string(),
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

#[cfg(test)]
mod tests {
    use super::MeshConfig;

    #[test]
    fn mesh_config_file_over_defaults() {
        let text = "rootNamespace: mesh-root\nextensionProviders:\n- name: ls\n  lightstep: {address: x:1}\n- name: otel\n  opentelemetry: {service: o}\ndefaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n";
        let m = MeshConfig::from_yaml(text, "mesh.yaml").expect("parse");
        assert_eq!(m.root_namespace, "mesh-root");
        assert_eq!(m.ingress_service, "istio-ingressgateway");
        assert_eq!(m.lightstep_providers, vec!["ls".to_string()]);
        assert_eq!(
            m.proxy_metadata
                .get("ISTIO_META_DNS_CAPTURE")
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(m.default_image_type, "");
        let m = MeshConfig::from_yaml(
            "defaultConfig:\n  image:\n    imageType: distroless\n",
            "m.yaml",
        )
        .expect("parse");
        assert_eq!(m.default_image_type, "distroless");
        assert!(MeshConfig::from_yaml("[1, 2]", "m.yaml").is_err());
        assert!(MeshConfig::from_yaml("a: [", "m.yaml").is_err());
    }

    #[test]
    fn gateway_topology_trusted_proxies() {
        let m = MeshConfig::from_yaml("rootNamespace: istio-system\n", "m.yaml").expect("parse");
        assert_eq!(m.num_trusted_proxies, None);
        let m = MeshConfig::from_yaml(
            "defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: 2\n",
            "m.yaml",
        )
        .expect("parse");
        assert_eq!(m.num_trusted_proxies, Some(2));
        for bad in ["-1", "256", "two"] {
            let text =
                format!("defaultConfig:\n  gatewayTopology:\n    numTrustedProxies: {bad}\n");
            let e = MeshConfig::from_yaml(&text, "m.yaml").expect_err(bad);
            assert!(e.contains("numTrustedProxies"), "{e}");
        }
    }
}

//! A decoded resource: kind, metadata, typed spec, and where it came from.

use std::sync::Arc;

use crate::diagnostic::ResourceRef;
use crate::kinds::Kind;
use crate::meta::ObjectMeta;
use crate::model::{extensions, gateway_api, kube, networking, security, telemetry};
use crate::validate::{Context, Issue, Validate, Validator};
use crate::yaml::{DecodeError, Node, Pos, from_node};

macro_rules! specs {
    ( $( $kind:ident => $ty:ty ),+ $(,)? ) => {
        /// The typed body of a resource. For Istio kinds it is `spec`; for Kubernetes kinds,
        /// the object itself (fields the mesh doesn't need are ignored).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Spec {
            $( $kind(Box<$ty>), )+
        }

        impl Spec {
            pub fn kind(&self) -> Kind {
                match self { $( Spec::$kind(_) => Kind::$kind, )+ }
            }

            pub(crate) fn decode(kind: Kind, node: &Node) -> Result<Spec, DecodeError> {
                match kind { $( Kind::$kind => from_node::<$ty>(node).map(|s| Spec::$kind(Box::new(s))), )+ }
            }

            fn validate_into(&self, v: &mut Validator) {
                match self { $( Spec::$kind(s) => s.validate(v), )+ }
            }

            /// The spec as JSON (for `-o json` and the control plane's API).
            pub fn to_json(&self) -> serde_json::Value {
                match self { $( Spec::$kind(s) => serde_json::to_value(s).unwrap_or_default(), )+ }
            }
        }
    };
}

specs! {
    VirtualService => networking::VirtualService,
    DestinationRule => networking::DestinationRule,
    Gateway => networking::Gateway,
    ServiceEntry => networking::ServiceEntry,
    Sidecar => networking::Sidecar,
    WorkloadEntry => networking::WorkloadEntry,
    WorkloadGroup => networking::WorkloadGroup,
    ProxyConfig => networking::ProxyConfig,
    EnvoyFilter => networking::EnvoyFilter,
    PeerAuthentication => security::PeerAuthentication,
    AuthorizationPolicy => security::AuthorizationPolicy,
    RequestAuthentication => security::RequestAuthentication,
    Telemetry => telemetry::Telemetry,
    WasmPlugin => extensions::WasmPlugin,
    KubernetesGateway => gateway_api::Gateway,
    GatewayClass => gateway_api::GatewayClass,
    HttpRoute => gateway_api::HttpRoute,
    GrpcRoute => gateway_api::GrpcRoute,
    TcpRoute => gateway_api::TcpRoute,
    TlsRoute => gateway_api::TlsRoute,
    ReferenceGrant => gateway_api::ReferenceGrant,
    Namespace => kube::Namespace,
    Service => kube::Service,
    Endpoints => kube::Endpoints,
    EndpointSlice => kube::EndpointSlice,
    Pod => kube::Pod,
    Deployment => kube::Deployment,
    StatefulSet => kube::StatefulSet,
    ReplicaSet => kube::ReplicaSet,
    DaemonSet => kube::DaemonSet,
    ServiceAccount => kube::ServiceAccount,
    Secret => kube::Secret,
    ConfigMap => kube::ConfigMap,
    MutatingWebhookConfiguration => kube::MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration => kube::ValidatingWebhookConfiguration,
    Node => kube::Node,
}

/// Where a resource was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub file: Arc<str>,
    /// Start of the object in the file.
    pub pos: Pos,
    /// First line of the YAML document holding it, a leading comment included: where
    /// `istioctl analyze` reports a resource as a whole.
    pub doc_line: u32,
    /// The object as read, to turn field paths into positions.
    pub node: Arc<Node>,
}

impl Origin {
    /// The position of a field (or of its nearest existing parent).
    pub fn locate(&self, path: &crate::yaml::FieldPath) -> Pos {
        self.node.locate_pos(path)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub api_version: String,
    pub meta: ObjectMeta,
    pub spec: Spec,
    pub origin: Origin,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn namespace(&self) -> &str {
        &self.meta.namespace
    }

    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind().name().to_string(),
            group: self.kind().group().to_string(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// Istio's validation for this resource (metadata and spec).
    pub fn validate(&self, root_namespace: &str) -> Vec<Issue> {
        let ctx = Context {
            name: self.meta.name.clone(),
            namespace: self.meta.namespace.clone(),
            annotations: self.meta.annotations.clone(),
            labels: self.meta.labels.clone(),
            root_namespace: root_namespace.to_string(),
        };
        let mut v = Validator::new(ctx);
        crate::validate::meta::validate_meta(self, &mut v);
        self.spec.validate_into(&mut v);
        v.issues
    }
}

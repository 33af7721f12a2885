//! The Kubernetes Gateway API (`gateway.networking.k8s.io`): Gateway, GatewayClass, the
//! route kinds and ReferenceGrant, with the fields Istio reads.
//!
//! Decoding is lenient like the other Kubernetes kinds: fields Keel doesn't model are
//! ignored, and the parts of routes whose internals the mesh doesn't interpret yet (`rules`)
//! are kept as JSON. `status` is kept as written (analysis reads its conditions). Validation
//! keeps to a few rules the API server enforces (port ranges, unique listener names).

pub mod gateway;
pub mod policy;
pub mod route;

pub use gateway::{
    AllowedRoutes, Gateway, GatewayInfrastructure, GatewaySpec, GatewaySpecAddress, Listener,
    ListenerTls, RouteGroupKind, RouteNamespaces, SecretObjectReference,
};
pub use policy::{
    GatewayClass, GatewayClassSpec, ParametersReference, ReferenceGrant, ReferenceGrantFrom,
    ReferenceGrantSpec, ReferenceGrantTo,
};
pub use route::{GrpcRoute, HttpRoute, ParentReference, Route, RouteSpec, TcpRoute, TlsRoute};

/// The Gateway API's group, the default `group` of its references.
pub const GROUP: &str = crate::kinds::GATEWAY_API_GROUP;

/// The label Istio puts on the pods it deploys for a Gateway (`gateway-name`).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

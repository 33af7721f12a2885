//! Keel's config push protocol.
//!
//! Keel pushes configuration over the xDS *transport* protocol — Envoy's delta Aggregated
//! Discovery Service, `envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources`
//! — carrying Keel's own resource types rather than Envoy's. This crate holds what the control
//! plane (`keel-control`) and the proxy (`keel-proxy`) share:
//!
//! - [`pb`]: the protobuf messages and the gRPC client and server generated from minimal
//!   copies of Envoy's discovery protos (`proto/`, field numbers as upstream), with protox, so
//!   no `protoc` is needed.
//! - [`types`]: Keel's resource types and their type URLs (`type.keel.dev/keel.Listener`,
//!   `type.keel.dev/keel.Cluster`).
//! - [`codec`]: the encoding of Keel's resources into `google.protobuf.Any` and back, and
//!   their versions (a hash of the encoding, stable across restarts of either side). **For
//!   now the payload is the JSON of `keel-snapshot`'s types**; the codec is the one place that
//!   knows, so protobuf messages can replace JSON later without touching either side's logic.
//! - `pb::istio::v1::auth`: Istio's certificate service (`IstioCertificateService/CreateCertificate`),
//!   which the control plane's CA serves and the proxy calls for its workload certificate.
//! - [`node`]: what a proxy tells the control plane about itself (`Node.id` and
//!   `Node.metadata`: namespace, labels, workload, ports, sidecar or gateway).
//!
//! # The exchange
//!
//! ```text
//! proxy                                           control plane
//!   ── DeltaDiscoveryRequest{node, type_url: Cluster, initial_resource_versions} ──▶
//!   ── DeltaDiscoveryRequest{type_url: Listener, initial_resource_versions} ──▶
//!   ◀── DeltaDiscoveryResponse{type_url: Cluster, resources (changed only), removed, nonce: 1}
//!   ◀── DeltaDiscoveryResponse{type_url: Listener, ..., nonce: 2}
//!   ── DeltaDiscoveryRequest{type_url: Cluster, response_nonce: 1} ──▶               (ACK)
//!   ── DeltaDiscoveryRequest{type_url: Listener, response_nonce: 2, error_detail} ──▶ (NACK)
//! ```

pub mod codec;
pub mod node;
pub mod types;

/// The generated protobuf messages, gRPC client and server.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]
pub mod pb {
    pub mod envoy {
        pub mod config {
            pub mod core {
                pub mod v3 {
                    tonic::include_proto!("envoy.config.core.v3");
                }
            }
        }
        pub mod service {
            pub mod discovery {
                pub mod v3 {
                    tonic::include_proto!("envoy.service.discovery.v3");
                }
            }
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
    pub mod istio {
        pub mod v1 {
            pub mod auth {
                tonic::include_proto!("istio.v1.auth");
            }
        }
    }
}

pub use pb::envoy::config::core::v3::{ControlPlane, Locality, Node};
pub use pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
pub use pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
pub use pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
pub use pb::google::rpc::Status;
pub use types::ResourceType;

/// Where the control plane serves xDS unless told otherwise (Istio's plaintext xDS port).
pub const DEFAULT_XDS_ADDR: &str = "127.0.0.1:15010";

//! `keel analyze`: Istio's cross-resource analyzers, offline, over files.
//!
//! Messages carry Istio's codes, names, levels and wording (`pkg/config/analysis/msg`), so a
//! user who knows `istioctl analyze` reads Keel's output without a glossary.

pub mod analyzers;
pub mod context;
pub mod messages;
pub mod output;
pub mod workload_pods;

pub use context::{AnalysisContext, MeshConfig};
pub use messages::{Level, Message};

/// The mesh's root namespace unless configured otherwise.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The objects `istioctl analyze` assumes in offline mode: the default ingress gateway's Pod and
/// Service in the Istio namespace, so Gateways selecting `istio: ingressgateway` resolve.
pub fn default_resources(istio_namespace: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  labels:
    istio: ingressgateway
  name: istio-ingressgateway-dummypod
  namespace: {istio_namespace}
spec:
  containers:
    - args:
      name: istio-proxy
---
apiVersion: v1
kind: Service
metadata:
  name: istio-ingressgateway
  namespace: {istio_namespace}
spec:
  ports:
  - name: http2
    nodePort: 31380
    port: 80
    protocol: TCP
    targetPort: 80
  - name: https
    nodePort: 31390
    port: 443
    protocol: TCP
    targetPort: 443
  - name: tcp
    nodePort: 31400
    port: 31400
    protocol: TCP
    targetPort: 31400
  - name: tls
    nodePort: 31447
    port: 15443
    protocol: TCP
    targetPort: 15443
  selector:
    istio: ingressgateway
"#
    )
}

//! `service.PortNameAnalyzer`: Service ports whose protocol Istio cannot tell.
//!
//! - IST0118 PortNameIsNotUnderNamingConvention: neither `appProtocol` nor the port name's
//!   prefix (`http-…`, `grpc-…`, …) names a protocol, so Istio sniffs it.
//! - IST0150 ExternalNameServiceTypeInvalidPortName: the same on an ExternalName Service, or
//!   a port named exactly `tcp` there.
//!
//! Istio's own Services (label `istio`, or `release: istio`) and Services of gateways that
//! Istio manages (`gateway.istio.io/managed`) are skipped. Messages point at the port number.

use super::Analyzer;
use super::util_an2::is_istio_control_plane;
use crate::context::AnalysisContext;
use crate::messages::{
    EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME, Message, PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
};

pub struct PortNameAnalyzer;

/// Values of `gateway.istio.io/managed` on Services Istio generates for gateways.
const MANAGED_GATEWAYS: [&str; 3] = [
    "istio.io-gateway-controller",
    "istio.io-mesh-controller",
    "istio.io-eastwest-controller",
];

impl Analyzer for PortNameAnalyzer {
    fn name(&self) -> &'static str {
        "service.PortNameAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the port names associated with each service"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (r, svc) in ctx.services() {
            if is_istio_control_plane(r) {
                continue;
            }
            let managed = r.meta.labels.get("gateway.istio.io/managed");
            if managed.is_some_and(|m| MANAGED_GATEWAYS.contains(&m.as_str())) {
                continue;
            }
            let external = svc.is_external_name();
            for (i, port) in svc.spec.ports.iter().enumerate() {
                let unsupported = port.mesh_protocol().is_unsupported();
                if !(unsupported || port.name == "tcp" && external) {
                    continue;
                }
                let path = format!("spec.ports[{i}].port");
                let m = if external {
                    ctx.message(
                        EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME,
                        r,
                        Some(&path),
                        "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly".to_string(),
                    )
                } else {
                    // An absent targetPort prints as 0, as Go's IntOrString zero value does.
                    let target = port
                        .target_port
                        .as_ref()
                        .map_or_else(|| "0".to_string(), ToString::to_string);
                    ctx.message(
                        PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
                        r,
                        Some(&path),
                        format!(
                            "Port name {} (port: {}, targetPort: {target}) doesn't follow the naming convention of Istio port.",
                            port.name, port.port
                        ),
                    )
                };
                out.push(m);
            }
        }
    }
}

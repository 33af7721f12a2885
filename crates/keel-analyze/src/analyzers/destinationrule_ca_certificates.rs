//! `destinationrule.CaCertificateAnalyzer`: TLS origination without server verification.
//!
//! - IST0128 NoServerCertificateVerificationDestinationLevel: `spec.trafficPolicy.tls` has
//!   mode SIMPLE or MUTUAL but no `caCertificates`.
//! - IST0129 NoServerCertificateVerificationPortLevel: the same for a
//!   `trafficPolicy.portLevelSettings[i].tls`.
//!
//! Settings with `credentialName` on a DestinationRule with a `workloadSelector` are exempt:
//! the CA then comes from the secret. Subset traffic policies are not inspected (as in Istio).

use keel_config::model::networking::destination_rule::{ClientTlsSettings, TlsMode};

use super::Analyzer;
use super::util_an2::full_name;
use crate::context::AnalysisContext;
use crate::messages::{
    Message, NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
    NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
};

pub struct CaCertificateAnalyzer;

/// The mode's name when it originates TLS that should verify the server, and nothing
/// verifies it.
fn unverified(tls: Option<&ClientTlsSettings>, has_selector: bool) -> Option<&'static str> {
    let tls = tls?;
    let mode = match tls.mode {
        TlsMode::Simple => "SIMPLE",
        TlsMode::Mutual => "MUTUAL",
        _ => return None,
    };
    let from_secret = !tls.credential_name.is_empty() && has_selector;
    (tls.ca_certificates.is_empty() && !from_secret).then_some(mode)
}

impl Analyzer for CaCertificateAnalyzer {
    fn name(&self) -> &'static str {
        "destinationrule.CaCertificateAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (r, dr) in ctx.destination_rules() {
            let Some(policy) = &dr.traffic_policy else {
                continue;
            };
            let ns = r.namespace();
            let full_name = full_name(r);
            let selector = dr.workload_selector.is_some();
            if let Some(mode) = unverified(policy.tls.as_ref(), selector) {
                out.push(ctx.message(
                    NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
                    r,
                    Some("spec.trafficPolicy.tls.caCertificates"),
                    format!(
                        "DestinationRule {full_name} in namespace {ns} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {}",
                        dr.host
                    ),
                ));
            }
            for (i, p) in policy.port_level_settings.iter().enumerate() {
                let Some(mode) = unverified(p.tls.as_ref(), selector) else {
                    continue;
                };
                // The protobuf text form of the PortSelector (`number:443`).
                let port = match p.port {
                    Some(s) if s.number != 0 => format!("number:{}", s.number),
                    _ => String::new(),
                };
                out.push(ctx.message(
                    NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
                    r,
                    Some(&format!(
                        "spec.trafficPolicy.portLevelSettings[{i}].tls.caCertificates"
                    )),
                    format!(
                        "DestinationRule {full_name} in namespace {ns} has TLS mode set to {mode} but no caCertificates are set to validate server identity for host: {} at port {port}",
                        dr.host
                    ),
                ));
            }
        }
    }
}

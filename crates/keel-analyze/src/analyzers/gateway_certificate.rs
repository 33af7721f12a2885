//! `gateway.CertificateAnalyzer`: IST0138 when two Gateways serving the same workloads use the
//! same certificate — clients re-using an HTTP/2 connection across their hosts then get 404s.
//!
//! A Gateway C is compared with every other Gateway X whose selector includes all of C's
//! labels (any Gateway if C's selector is empty) — so a Gateway with a strictly wider selector
//! is not reported against a narrower one. Two TLS servers share a certificate when both name
//! the same `credentialName`, or neither names one and both have the same non-empty
//! `serverCertificate` and `privateKey`. One message per matching server pair.
//! (`PILOT_SCOPE_GATEWAY_TO_NAMESPACE` is off, Istio's default: namespaces are not compared.)

use std::collections::BTreeMap;

use keel_config::model::networking::gateway::ServerTlsSettings;

use super::Analyzer;
use super::util_an1::resource_full_name;
use crate::context::AnalysisContext;
use crate::messages::{GATEWAY_DUPLICATE_CERTIFICATE, Message};

pub struct CertificateAnalyzer;

/// Every key of `x` is in `y` with the same value.
fn selector_subset(x: &BTreeMap<String, String>, y: &BTreeMap<String, String>) -> bool {
    x.iter().all(|(k, v)| y.get(k) == Some(v))
}

fn same_certificate(a: &ServerTlsSettings, b: &ServerTlsSettings) -> bool {
    match (a.credential_name.is_empty(), b.credential_name.is_empty()) {
        (false, false) => a.credential_name == b.credential_name,
        (true, true) => {
            !a.server_certificate.is_empty()
                && a.server_certificate == b.server_certificate
                && !a.private_key.is_empty()
                && !b.private_key.is_empty()
                && a.private_key == b.private_key
        }
        _ => false,
    }
}

impl Analyzer for CertificateAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.CertificateAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway certificate"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (cr, current) in ctx.gateways() {
            let current_name = resource_full_name(cr);
            for (xr, other) in ctx.gateways() {
                let other_name = resource_full_name(xr);
                if other_name == current_name
                    || !(current.selector.is_empty()
                        || selector_subset(&current.selector, &other.selector))
                {
                    continue;
                }
                for cs in &current.servers {
                    for xs in &other.servers {
                        let (Some(ct), Some(xt)) = (&cs.tls, &xs.tls) else {
                            continue;
                        };
                        if same_certificate(ct, xt) {
                            out.push(ctx.message(
                                GATEWAY_DUPLICATE_CERTIFICATE,
                                cr,
                                Some("metadata.name"),
                                format!(
                                    "Duplicate certificate in multiple gateways [{current_name} {other_name}] may cause 404s if clients re-use HTTP2 connections."
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
}

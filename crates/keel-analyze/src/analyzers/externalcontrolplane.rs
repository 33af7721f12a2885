//! `externalcontrolplane.ExternalControlPlaneAnalyzer`: on a remote cluster whose control
//! plane runs elsewhere, Istio's webhooks reach istiod through `clientConfig.url`.
//!
//! Checked: ValidatingWebhookConfigurations named `istiod-default-validator` or starting with
//! `istio-validator`, and MutatingWebhookConfigurations starting with
//! `istio-sidecar-injector`. For each of their hooks:
//! - IST0163 InvalidExternalControlPlaneConfig "… is blank": neither `url` nor `service`.
//! - IST0163 "… was provided in an invalid format": `url` doesn't parse (Go's `url.Parse`).
//! - IST0164 ExternalControlPlaneAddressIsNotAHostname: the `url`'s host is an IP address.
//! - IST0163 "… cannot be resolved via a DNS lookup": the `url` has no host at all (an empty
//!   name never resolves).
//!
//! Not checked: Istio also looks a host name up in DNS and reports one that doesn't resolve
//! ("cannot be resolved via a DNS lookup", "resolves with zero IP addresses"). That depends on
//! the network of the machine running the analysis, not on the configuration, so Keel's
//! offline analysis doesn't do it; run `istioctl analyze` against the cluster for that check.
//!
//! Messages have no field line (as in istioctl).

use keel_config::Resource;
use keel_config::model::kube::Webhook;
use keel_config::model::kube::admission::url;

use super::Analyzer;
use crate::context::AnalysisContext;
use crate::messages::{
    EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME, INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
    Message,
};

pub struct ExternalControlPlaneAnalyzer;

/// What is wrong with a hook's address, if anything Keel can tell offline.
enum Finding {
    Invalid { url: String, reason: &'static str },
    IpAddress { url: String },
}

fn check(hook: &Webhook) -> Option<Finding> {
    let Some(raw) = &hook.client_config.url else {
        return hook
            .client_config
            .service
            .is_none()
            .then(|| Finding::Invalid {
                url: String::new(),
                reason: "is blank",
            });
    };
    let invalid = |reason| {
        Some(Finding::Invalid {
            url: raw.clone(),
            reason,
        })
    };
    let Ok(parsed) = url::parse(raw) else {
        return invalid("was provided in an invalid format");
    };
    let host = parsed.hostname();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Some(Finding::IpAddress { url: raw.clone() });
    }
    if host.is_empty() {
        return invalid("cannot be resolved via a DNS lookup");
    }
    None
}

fn report(ctx: &AnalysisContext<'_>, r: &Resource, hooks: &[Webhook], out: &mut Vec<Message>) {
    for h in hooks {
        let m = match check(h) {
            None => continue,
            Some(Finding::Invalid { url, reason }) => ctx.message(
                INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
                r,
                None,
                format!(
                    "The hostname ({url}) that was provided for the webhook ({}) to reach the ingress gateway on the external control plane cluster {reason}. Traffic may not flow properly.",
                    h.name
                ),
            ),
            Some(Finding::IpAddress { url }) => ctx.message(
                EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME,
                r,
                None,
                format!(
                    "The address ({url}) that was provided for the webhook ({}) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment.",
                    h.name
                ),
            ),
        };
        out.push(m);
    }
}

impl Analyzer for ExternalControlPlaneAnalyzer {
    fn name(&self) -> &'static str {
        "externalcontrolplane.ExternalControlPlaneAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks that the remote IstioOperator resources reference an external control plane"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (r, v) in ctx.validating_webhook_configurations() {
            let name = r.name();
            if !name.is_empty()
                && (name == "istiod-default-validator" || name.starts_with("istio-validator"))
            {
                report(ctx, r, &v.webhooks, out);
            }
        }
        for (r, m) in ctx.mutating_webhook_configurations() {
            if r.name().starts_with("istio-sidecar-injector") {
                report(ctx, r, &m.webhooks, out);
            }
        }
    }
}

//! The analyzers. Each file holds one of Istio's analyzers (named as in Istio) and documents
//! which messages it emits and when.

mod annotations;
pub mod annotations_table;
mod annotations_validate;
mod authz;
mod conditions;
mod deployment;
mod deprecation;
mod destinationrule_ca_certificates;
mod destinationrule_subset;
mod envoyfilter;
mod externalcontrolplane;
mod gateway_certificate;
mod gateway_conflicting;
mod gateway_ingress_port;
mod gateway_secret;
mod injection;
mod injection_image;
mod injection_image_auto;
mod k8sgateway_selector;
mod schema;
mod service_portname;
mod serviceentry;
mod sidecar_selector;
mod telemetry;
mod util;
mod util_an1;
mod util_an2;
mod util_sidecar;
mod virtualservice_conflicting_mesh_gateway_hosts;
mod virtualservice_destination_hosts;
mod virtualservice_destination_rules;
mod virtualservice_gateways;
mod virtualservice_jwt_claim_route;
mod webhook;

use crate::context::AnalysisContext;
use crate::messages::{Message, MessageType};

/// One analysis over the whole configuration.
pub trait Analyzer: Sync {
    /// Istio's name for it (`virtualservice.DestinationHostAnalyzer`), shown by `--list-analyzers`.
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>);
}

/// Every analyzer, in name order.
pub fn all() -> Vec<&'static dyn Analyzer> {
    let mut v: Vec<&'static dyn Analyzer> = vec![
        &schema::SchemaAnalyzer,
        &annotations::K8sAnalyzer,
        &deprecation::DeprecationAnalyzer,
        &sidecar_selector::SidecarSelectorAnalyzer,
        &gateway_certificate::CertificateAnalyzer,
        &gateway_conflicting::ConflictingGatewayAnalyzer,
        &gateway_ingress_port::IngressGatewayPortAnalyzer,
        &gateway_secret::SecretAnalyzer,
        &virtualservice_conflicting_mesh_gateway_hosts::ConflictingMeshGatewayHostsAnalyzer,
        &virtualservice_destination_hosts::DestinationHostAnalyzer,
        &virtualservice_destination_rules::DestinationRuleAnalyzer,
        &virtualservice_gateways::GatewayAnalyzer,
        &virtualservice_jwt_claim_route::JwtClaimRouteAnalyzer,
        &authz::AuthorizationPoliciesAnalyzer,
        &conditions::ConditionAnalyzer,
        &deployment::ApplicationUidAnalyzer,
        &deployment::MultiServiceAnalyzer,
        &destinationrule_ca_certificates::CaCertificateAnalyzer,
        &destinationrule_subset::SubsetSelectPodAnalyzer,
        &envoyfilter::EnvoyPatchAnalyzer,
        &injection::InjectionAnalyzer,
        &k8sgateway_selector::SelectorAnalyzer,
        &service_portname::PortNameAnalyzer,
        &serviceentry::ConflictingServiceEntryProtocolAnalyzer,
        &serviceentry::ProtocolAddressesAnalyzer,
        &telemetry::DefaultSelectorAnalyzer,
        &telemetry::LightstepAnalyzer,
        &telemetry::ProviderAnalyzer,
        &telemetry::SelectorAnalyzer,
        &webhook::WebhookAnalyzer,
        &injection_image::ImageAnalyzer,
        &injection_image_auto::ImageAutoAnalyzer,
        &externalcontrolplane::ExternalControlPlaneAnalyzer,
    ];
    v.sort_by_key(|a| a.name());
    v
}

/// Which messages to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep messages about this namespace only (plus cluster-scoped ones); `None` keeps all.
    pub namespace: Option<String>,
    /// `(code, glob over "Kind namespace/name")` pairs to drop.
    pub suppress: Vec<(String, String)>,
}

/// Runs every analyzer, then sorts, de-duplicates and filters like istioctl.
pub fn run(ctx: &AnalysisContext<'_>, filter: &Filter) -> Vec<Message> {
    let mut out = Vec::new();
    for a in all() {
        a.analyze(ctx, &mut out);
    }
    postprocess(ctx, out, filter)
}

/// Runs the given analyzers only (tests use this to check one analyzer at a time).
pub fn run_only(ctx: &AnalysisContext<'_>, names: &[&str]) -> Vec<Message> {
    let mut out = Vec::new();
    for a in all().into_iter().filter(|a| names.contains(&a.name())) {
        a.analyze(ctx, &mut out);
    }
    postprocess(ctx, out, &Filter::default())
}

fn postprocess(ctx: &AnalysisContext<'_>, mut out: Vec<Message>, filter: &Filter) -> Vec<Message> {
    out.retain(|m| keep(ctx, m, filter));
    out.sort_by(|a, b| {
        let key = |m: &Message| {
            (
                m.level(),
                m.code(),
                m.origin.is_some(),
                m.origin
                    .as_ref()
                    .map(|o| format!("{}/{}/{}", o.kind, o.name, o.namespace))
                    .unwrap_or_default(),
                m.to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    out.dedup_by(|a, b| a.to_string() == b.to_string());
    out
}

fn keep(ctx: &AnalysisContext<'_>, m: &Message, filter: &Filter) -> bool {
    let Some(o) = &m.origin else { return true };
    if let Some(ns) = &filter.namespace {
        // A Namespace object's own namespace is its name.
        let msg_ns = if o.kind == "Namespace" {
            &o.name
        } else {
            &o.namespace
        };
        if !msg_ns.is_empty() && msg_ns != ns {
            return false;
        }
    }
    // The `galley.istio.io/analyze-suppress` annotation: a comma-separated list of codes or `*`.
    let suppressed_by_annotation = ctx.resources.iter().any(|r| {
        r.kind().name() == o.kind
            && r.kind().group() == o.group
            && r.meta.name == o.name
            && r.meta.namespace == o.namespace
            && r.meta
                .annotations
                .get("galley.istio.io/analyze-suppress")
                .is_some_and(|v| {
                    v.split(',')
                        .any(|c| c.trim() == "*" || c.trim() == m.code())
                })
    });
    if suppressed_by_annotation {
        return false;
    }
    let name = o.friendly_name();
    !filter
        .suppress
        .iter()
        .any(|(code, pat)| code == m.code() && glob(pat, &name))
}

/// `*` matches any run of characters; nothing else is special (like go-glob).
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// A message without a resource (e.g. about the mesh as a whole).
pub fn global(mtype: MessageType, text: String) -> Message {
    Message {
        mtype,
        text,
        origin: None,
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globbing() {
        assert!(glob("*", "Pod a/b"));
        assert!(glob("Pod testing/*", "Pod testing/x"));
        assert!(!glob("Pod testing/*", "Pod other/x"));
        assert!(glob("*mypod*", "Pod testing/mypod-1"));
        assert!(glob("Pod a/b", "Pod a/b"));
        assert!(!glob("Pod a/b", "Pod a/bc"));
    }
}

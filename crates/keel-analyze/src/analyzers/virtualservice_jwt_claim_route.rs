//! `virtualservice.JWTClaimRouteAnalyzer`: IST0149 when a VirtualService routes on a JWT claim
//! (a header match or `withoutHeaders` key starting with `@request.auth.claims`) through a
//! Gateway whose pods no RequestAuthentication applies to — without one the claims are never
//! extracted. RequestAuthentications count when they are in `istio-system` or in the pod's
//! namespace and their selector (empty selects all) matches the pod. One message per
//! (gateway, pod).

use std::collections::BTreeMap;

use keel_config::model::networking::VirtualService;

use super::Analyzer;
use super::util_an1::{
    ISTIO_SYSTEM_NAMESPACE, MESH_GATEWAY, full_name, selector_matches, short_or_full_name,
};
use crate::context::AnalysisContext;
use crate::messages::{JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN, Message};

/// `constant.HeaderJWTClaim`.
const JWT_CLAIM_HEADER_PREFIX: &str = "@request.auth.claims";

pub struct JwtClaimRouteAnalyzer;

/// The first JWT-claim header key: per match, `headers` then `withoutHeaders`, keys in sorted
/// order (Istio iterates a map, so with several such keys it picks one at random).
fn claim_key(vs: &VirtualService) -> Option<&str> {
    vs.http.iter().flat_map(|h| h.r#match.iter()).find_map(|m| {
        m.headers
            .keys()
            .chain(m.without_headers.keys())
            .find(|k| k.starts_with(JWT_CLAIM_HEADER_PREFIX))
            .map(String::as_str)
    })
}

impl Analyzer for JwtClaimRouteAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.JWTClaimRouteAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the VirtualService using JWT claim based routing has corresponding RequestAuthentication"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let empty = BTreeMap::new();
        let mut ra_by_ns: BTreeMap<&str, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
        for (r, ra) in ctx.request_authentications() {
            let labels = ra.selector.as_ref().map_or(&empty, |s| &s.match_labels);
            ra_by_ns
                .entry(r.meta.namespace.as_str())
                .or_default()
                .push(labels);
        }
        for (r, vs) in ctx.virtual_services() {
            let Some(key) = claim_key(vs) else { continue };
            for gw in &vs.gateways {
                if gw == MESH_GATEWAY {
                    continue;
                }
                let (gw_ns, gw_name) = short_or_full_name(&r.meta.namespace, gw);
                let Some((_, gateway)) = ctx
                    .gateways()
                    .find(|(g, _)| g.meta.namespace == gw_ns && g.meta.name == gw_name)
                else {
                    // A missing gateway is virtualservice.GatewayAnalyzer's business.
                    continue;
                };
                for (pod, _) in ctx.pods() {
                    if !selector_matches(&gateway.selector, &pod.meta.labels) {
                        continue;
                    }
                    let covered = [ISTIO_SYSTEM_NAMESPACE, pod.meta.namespace.as_str()]
                        .iter()
                        .filter_map(|ns| ra_by_ns.get(ns))
                        .flatten()
                        .any(|sel| selector_matches(sel, &pod.meta.labels));
                    if !covered {
                        out.push(ctx.message(
                            JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN,
                            r,
                            None,
                            format!(
                                "The virtual service uses the JWT claim based routing (key: {key}) but found no request authentication for the gateway ({}) pod ({}). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing.",
                                full_name(&gw_ns, &gw_name),
                                pod.meta.name
                            ),
                        ));
                    }
                }
            }
        }
    }
}

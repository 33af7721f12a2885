//! RequestAuthentications → the [`JwtPolicies`] of one proxy.
//!
//! Selection is AuthorizationPolicy's (Istio uses the same `WorkloadPolicyMatcher` for both):
//! the root namespace and the workload's own namespace, by selector, or by `targetRefs` for
//! gateways and waypoints — see [`super::authz`]. The rules of every selected policy are
//! concatenated, policies ordered by namespace then name so the result is stable across
//! pushes; the verifier lets the first rule that accepts a token's issuer decide.
//!
//! Istio's defaults are resolved here: the token locations (`Authorization: Bearer` and
//! `?access_token=` when a rule names no header, parameter or cookie) and the claims that are
//! always space-delimited (`scope`, `permission`).
//!
//! `jwksUri` and OpenID discovery: istiod fetches the key set and pushes it inline (its
//! default, `PILOT_JWT_ENABLE_REMOTE_JWKS=false`), so proxies never reach out. Keel keeps that
//! split: [`remote_sources`] says which sets the configuration needs, the fetcher (crate
//! `keel-jwks`) keeps them fresh, and a [`JwksResolver`] — normally the fetched
//! [`RemoteJwks`] — turns a source into the set's JSON here. A rule whose keys were never
//! fetched gets none, with a warning: the proxy then refuses its tokens (401), as Envoy
//! refuses them against the stand-in key set istiod inlines in that case.

use std::collections::BTreeMap;

use keel_config::model::security::RequestAuthentication;
use keel_config::model::security::request_authentication::{self as ra, JwtPresence};
use keel_config::{Resource, Spec};

use super::Warning;
use super::authz::{AuthzWorkload, applies, effective_target_refs};
use crate::jwt::{
    ClaimToHeader, DEFAULT_SPACE_DELIMITED_CLAIMS, JwksSource, JwtPolicies, JwtRule, RemoteJwks,
    TokenLocation, WantedJwks,
};

/// Why a compile that fetches nothing has no remote keys.
pub const NOT_FETCHED_HERE: &str = "this compile fetches no key sets (the control plane, keel-proxy standalone and keel-proxy sidecar -f do)";

/// The result of [`for_workload`].
#[derive(Debug, Clone, Default)]
pub struct CompiledJwt {
    pub rules: JwtPolicies,
    pub warnings: Vec<Warning>,
}

/// Turns a rule's remote key source into the key set's JSON, as istiod does before pushing.
pub trait JwksResolver {
    /// The key set of `source`, or why there is none (reported as a warning; tokens for
    /// the rule are then refused, as Envoy's are while istiod has no keys).
    fn resolve(&self, source: &JwksSource) -> Result<String, String>;

    /// The `jwks_uri` OpenID discovery found for `issuer`, when known.
    fn discovered_uri(&self, _issuer: &str) -> Option<String> {
        None
    }
}

/// The resolver of compiles that fetch nothing (`keel analyze`, tests): every source is
/// reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJwksFetch;

impl JwksResolver for NoJwksFetch {
    fn resolve(&self, _source: &JwksSource) -> Result<String, String> {
        Err(NOT_FETCHED_HERE.to_string())
    }
}

/// Fixed key sets by `jwksUri` (tests; key sets read from files). No OpenID discovery.
impl JwksResolver for BTreeMap<String, String> {
    fn resolve(&self, source: &JwksSource) -> Result<String, String> {
        match source {
            JwksSource::Uri(uri) => self
                .get(uri)
                .cloned()
                .ok_or_else(|| "no key set known for this jwksUri".to_string()),
            JwksSource::Issuer(_) => Err("no OpenID discovery here: give jwksUri or jwks".into()),
        }
    }
}

/// The fetched key sets: the last good set of each source; a source never fetched answers
/// why (its last error, or that the first fetch hasn't answered yet).
impl JwksResolver for RemoteJwks {
    fn resolve(&self, source: &JwksSource) -> Result<String, String> {
        match self.get(source) {
            Some(keys) => keys.jwks.clone().ok_or_else(|| {
                keys.error
                    .clone()
                    .unwrap_or_else(|| "not fetched yet".into())
            }),
            None => Err("not fetched yet".into()),
        }
    }

    fn discovered_uri(&self, issuer: &str) -> Option<String> {
        self.issuers.get(issuer).and_then(|k| k.jwks_uri.clone())
    }
}

/// Where a rule's keys must be fetched from: its `jwksUri`, or, with neither `jwks` nor
/// `jwksUri`, OpenID discovery from its `issuer` (Istio's rule); `None` for inline keys.
pub fn remote_source(rule: &ra::JwtRule) -> Option<JwksSource> {
    if rule.jwks.as_deref().is_some_and(|j| !j.trim().is_empty()) {
        return None;
    }
    match (
        rule.jwks_uri().filter(|u| !u.is_empty()),
        rule.issuer.as_deref(),
    ) {
        (Some(uri), _) => Some(JwksSource::Uri(uri.to_string())),
        (None, Some(issuer)) if !issuer.is_empty() => Some(JwksSource::Issuer(issuer.to_string())),
        _ => None,
    }
}

/// Every remote key set the RequestAuthentications in `resources` need, with the longest
/// `timeout` their rules give, in a stable order: what the fetcher keeps fresh.
pub fn remote_sources(resources: &[Resource]) -> Vec<WantedJwks> {
    let mut wanted: BTreeMap<JwksSource, Option<u64>> = BTreeMap::new();
    for r in resources {
        let Spec::RequestAuthentication(p) = &r.spec else {
            continue;
        };
        for rule in &p.jwt_rules {
            let Some(source) = remote_source(rule) else {
                continue;
            };
            let timeout = rule
                .timeout
                .as_ref()
                .map(|t| u64::try_from(t.to_std().as_millis()).unwrap_or(u64::MAX));
            let slot = wanted.entry(source).or_insert(timeout);
            *slot = match (*slot, timeout) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    wanted
        .into_iter()
        .map(|(source, timeout_ms)| WantedJwks { source, timeout_ms })
        .collect()
}

/// Selects the RequestAuthentications that apply to `workload` and compiles their rules;
/// `jwksUri` is not resolved ([`NoJwksFetch`]).
pub fn for_workload(resources: &[Resource], workload: &AuthzWorkload) -> CompiledJwt {
    for_workload_with(resources, workload, &NoJwksFetch)
}

/// As [`for_workload`], resolving `jwksUri` with `resolver`.
pub fn for_workload_with(
    resources: &[Resource],
    workload: &AuthzWorkload,
    resolver: &dyn JwksResolver,
) -> CompiledJwt {
    let mut out = CompiledJwt::default();
    let mut selected: Vec<(&Resource, &RequestAuthentication)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::RequestAuthentication(p) => Some((r, &**p)),
            _ => None,
        })
        .filter(|(r, p)| {
            let refs = effective_target_refs(p.target_ref.as_ref(), &p.target_refs);
            applies(r, p.selector.as_ref(), refs, workload)
        })
        .collect();
    selected.sort_by(|a, b| (a.0.namespace(), a.0.name()).cmp(&(b.0.namespace(), b.0.name())));
    for (r, p) in selected {
        let policy = format!("{}/{}", r.namespace(), r.name());
        for rule in &p.jwt_rules {
            let compiled = compile_rule(&policy, rule, resolver, &mut out.warnings);
            out.rules.rules.push(compiled);
        }
    }
    out
}

fn compile_rule(
    policy: &str,
    rule: &ra::JwtRule,
    resolver: &dyn JwksResolver,
    warnings: &mut Vec<Warning>,
) -> JwtRule {
    let warn = |warnings: &mut Vec<Warning>, message: String| {
        warnings.push(Warning {
            resource: format!("RequestAuthentication {policy}"),
            message,
        })
    };
    let mut jwks_uri = rule.jwks_uri().map(str::to_string);
    let mut jwks = rule.jwks.clone().filter(|j| !j.trim().is_empty());
    if let Some(source) = remote_source(rule) {
        let issuer = rule.issuer.as_deref().unwrap_or("(any)");
        match resolver.resolve(&source) {
            Ok(text) => jwks = Some(text),
            Err(why) => warn(
                warnings,
                format!(
                    "issuer {issuer}: no keys from {source} yet ({why}); tokens from this issuer are refused with 401 until they are fetched"
                ),
            ),
        }
        if let JwksSource::Issuer(i) = &source {
            jwks_uri = resolver.discovered_uri(i);
        }
    }
    let mut space_delimited: Vec<String> = DEFAULT_SPACE_DELIMITED_CLAIMS
        .iter()
        .map(|c| c.to_string())
        .collect();
    for c in &rule.space_delimited_claims {
        if !space_delimited.contains(c) {
            space_delimited.push(c.clone());
        }
    }
    JwtRule {
        policy: policy.to_string(),
        issuer: rule.issuer.clone().filter(|i| !i.is_empty()),
        audiences: rule.audiences.clone(),
        jwks,
        jwks_uri,
        locations: locations(rule),
        output_payload_to_header: Some(rule.output_payload_to_header.to_ascii_lowercase())
            .filter(|h| !h.is_empty()),
        output_claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| ClaimToHeader {
                header: c.header.to_ascii_lowercase(),
                claim: c.claim.clone(),
            })
            .collect(),
        forward_original_token: rule.forward_original_token,
        space_delimited_claims: space_delimited,
        required: rule.presence == Some(JwtPresence::Required),
    }
}

/// The rule's token locations, or Envoy's defaults when it gives none of headers, parameters
/// and cookies (a rule with only cookies gets no defaults, as in Envoy).
fn locations(rule: &ra::JwtRule) -> Vec<TokenLocation> {
    let mut out: Vec<TokenLocation> = rule
        .from_headers
        .iter()
        .map(|h| TokenLocation::Header {
            name: h.name.to_ascii_lowercase(),
            prefix: h.prefix.clone(),
        })
        .collect();
    out.extend(
        rule.from_params
            .iter()
            .map(|p| TokenLocation::QueryParam { name: p.clone() }),
    );
    out.extend(
        rule.from_cookies
            .iter()
            .map(|c| TokenLocation::Cookie { name: c.clone() }),
    );
    if out.is_empty() {
        out = TokenLocation::defaults();
    }
    out
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;

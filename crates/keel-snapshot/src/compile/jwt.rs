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
//! `jwksUri`: istiod fetches the key set and pushes it inline (its default,
//! `PILOT_JWT_ENABLE_REMOTE_JWKS=false`), so proxies never reach out. Keel keeps that split:
//! a [`JwksResolver`] given to [`for_workload_with`] turns a URI into the set's JSON. No
//! fetching resolver exists yet ([`NoJwksFetch`] reports it); a map of URIs to key sets
//! serves tests and files.

use keel_config::model::security::RequestAuthentication;
use keel_config::model::security::request_authentication::{self as ra, JwtPresence};
use keel_config::{Resource, Spec};

use super::Warning;
use super::authz::{AuthzWorkload, applies, effective_target_refs};
use crate::jwt::{
    ClaimToHeader, DEFAULT_SPACE_DELIMITED_CLAIMS, JwtPolicies, JwtRule, TokenLocation,
};

/// The message for a rule whose keys would have to be fetched.
pub const JWKS_URI_NOT_YET: &str = "jwksUri is fetched by the control plane — not yet: tokens for this rule fail verification until the keys are given inline (jwks)";

/// The result of [`for_workload`].
#[derive(Debug, Clone, Default)]
pub struct CompiledJwt {
    pub rules: JwtPolicies,
    pub warnings: Vec<Warning>,
}

/// Turns a rule's `jwksUri` into the key set's JSON, as istiod does before pushing.
pub trait JwksResolver {
    /// The key set at `uri`, or why it can't be had (reported as a warning; tokens for the
    /// rule then fail verification, as Envoy's do when istiod couldn't fetch).
    fn resolve(&self, uri: &str) -> Result<String, String>;
}

/// The resolver used until the control plane fetches: every URI is reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJwksFetch;

impl JwksResolver for NoJwksFetch {
    fn resolve(&self, _uri: &str) -> Result<String, String> {
        Err(JWKS_URI_NOT_YET.to_string())
    }
}

/// Fixed key sets by URI (tests; key sets read from files).
impl JwksResolver for std::collections::BTreeMap<String, String> {
    fn resolve(&self, uri: &str) -> Result<String, String> {
        self.get(uri)
            .cloned()
            .ok_or_else(|| "no key set known for this jwksUri".to_string())
    }
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
    let jwks_uri = rule.jwks_uri().map(str::to_string);
    let mut jwks = rule.jwks.clone().filter(|j| !j.trim().is_empty());
    if jwks.is_none() {
        let issuer = rule.issuer.as_deref().unwrap_or("(any)");
        match &jwks_uri {
            Some(uri) => match resolver.resolve(uri) {
                Ok(text) => jwks = Some(text),
                Err(why) => warn(warnings, format!("issuer {issuer}: {why} (jwksUri {uri})")),
            },
            // Istio would discover the keys through the issuer's OpenID configuration.
            None => warn(
                warnings,
                format!(
                    "issuer {issuer}: neither jwks nor jwksUri; OpenID discovery of the keys is not supported yet, tokens for this rule fail verification"
                ),
            ),
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

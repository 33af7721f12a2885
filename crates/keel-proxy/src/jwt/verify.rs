//! [`JwtVerifier`]: one proxy's JWT rules, with their keys parsed, deciding a request.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use keel_snapshot::jwt::{JwtPolicies, JwtRule};
use serde_json::Value;

use super::extract::{Found, extract};
use super::jwks::{Jwks, JwksCache, KeyMatch};
use super::token::{JwtError, Token};

/// Envoy's default `clock_skew_seconds`, which Istio keeps: `exp` and `nbf` are given this
/// much slack for clocks that disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The rules of one configuration, ready to verify requests. Built once per configuration
/// (off the request path); `verify` only reads.
#[derive(Debug)]
pub struct JwtVerifier {
    rules: Vec<CompiledRule>,
    warnings: Vec<String>,
}

#[derive(Debug)]
struct CompiledRule {
    rule: JwtRule,
    /// `None`: the rule has no keys (its remote key set was never fetched).
    keys: Option<Arc<Result<Jwks, String>>>,
}

/// What the request path does with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum JwtOutcome {
    /// No token in any of the rules' locations: the request goes on without a request
    /// principal (AuthorizationPolicy's `requestPrincipals` decides what that means).
    NoToken,
    Valid(VerifiedJwt),
    /// Reply 401 with the error's message as the body, as Envoy does.
    Invalid(JwtError),
}

/// A verified token and what it changes on the request.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJwt {
    /// The claims, for AuthorizationPolicy (`HttpAttributes::jwt`); space-delimited claims
    /// are split into lists.
    pub payload: Value,
    /// `iss/sub`: `request.auth.principal`.
    pub principal: String,
    /// Index into [`JwtPolicies::rules`] of the rule that accepted the token.
    pub rule: usize,
    /// Headers to set (replacing any the client sent): `outputPayloadToHeader`,
    /// `outputClaimToHeaders`.
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers to remove because they carried the token and `forwardOriginalToken` is false.
    pub remove_headers: Vec<HeaderName>,
}

impl VerifiedJwt {
    /// Applies [`set_headers`](Self::set_headers) and [`remove_headers`](Self::remove_headers)
    /// to the request's headers, removals first.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove_headers {
            headers.remove(name);
        }
        for (name, value) in &self.set_headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

impl JwtVerifier {
    /// Parses every rule's keys (with a private cache).
    pub fn new(policies: &JwtPolicies) -> JwtVerifier {
        JwtVerifier::with_cache(policies, &mut JwksCache::new())
    }

    /// As [`new`](Self::new), reusing key sets parsed for an earlier configuration; the cache
    /// keeps only the sets this configuration uses.
    pub fn with_cache(policies: &JwtPolicies, cache: &mut JwksCache) -> JwtVerifier {
        let mut warnings = Vec::new();
        let rules = policies
            .rules
            .iter()
            .map(|rule| {
                let keys = rule.jwks.as_deref().map(|text| cache.get(text));
                let issuer = rule.issuer.as_deref().unwrap_or("(any)");
                match keys.as_deref() {
                    Some(Ok(set)) => warnings.extend(
                        set.warnings
                            .iter()
                            .map(|w| format!("{}: issuer {issuer}: jwks {w}", rule.policy)),
                    ),
                    Some(Err(e)) => {
                        warnings.push(format!("{}: issuer {issuer}: jwks {e}", rule.policy))
                    }
                    None => {}
                }
                CompiledRule {
                    rule: rule.clone(),
                    keys,
                }
            })
            .collect();
        let used: Vec<&str> = policies
            .rules
            .iter()
            .filter_map(|r| r.jwks.as_deref())
            .collect();
        cache.retain_only(&used);
        JwtVerifier { rules, warnings }
    }

    /// Keys left out or key sets that didn't parse, for the log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Decides one request from its headers and query string (without the `?`).
    ///
    /// Every token found in any rule's locations must verify (Envoy's `requires_any` with
    /// `allow_missing`, as Istio configures it): the rules that could have seen a token are
    /// tried in order and the first whose issuer is the token's decides. The first valid
    /// token gives the principal.
    pub fn verify(&self, headers: &HeaderMap, query: Option<&str>, now: SystemTime) -> JwtOutcome {
        let mut found: Vec<(Found, Vec<usize>)> = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            for location in &r.rule.locations {
                let Some(f) = extract(location, headers, query) else {
                    continue;
                };
                match found.iter_mut().find(|(g, _)| g.token == f.token) {
                    Some((g, rules)) => {
                        if !rules.contains(&i) {
                            rules.push(i);
                        }
                        if g.header.is_none() {
                            g.header = f.header;
                        }
                    }
                    None => found.push((f, vec![i])),
                }
            }
        }
        if found.is_empty() {
            return if self.rules.iter().any(|r| r.rule.required) {
                JwtOutcome::Invalid(JwtError::Missing)
            } else {
                JwtOutcome::NoToken
            };
        }
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut first: Option<VerifiedJwt> = None;
        let mut remove: Vec<HeaderName> = Vec::new();
        for (f, rules) in &found {
            match self.verify_token(&f.token, rules, now) {
                Err(e) => return JwtOutcome::Invalid(e),
                Ok(v) => {
                    if !self.rules[v.rule].rule.forward_original_token
                        && let Some(name) = f.header.as_deref()
                        && let Ok(name) = HeaderName::from_bytes(name.as_bytes())
                        && !remove.contains(&name)
                    {
                        remove.push(name);
                    }
                    first.get_or_insert(v);
                }
            }
        }
        match first {
            Some(mut v) => {
                v.remove_headers = remove;
                JwtOutcome::Valid(v)
            }
            None => JwtOutcome::NoToken,
        }
    }

    fn verify_token(&self, raw: &str, rules: &[usize], now: u64) -> Result<VerifiedJwt, JwtError> {
        let token = Token::decode(raw)?;
        let iss = token.string_claim("iss")?;
        let sub = token.string_claim("sub")?;
        // Envoy refuses a token whose `iat` isn't a NumericDate, though it doesn't check it.
        token.time_claim("iat")?;
        // An exact issuer first; a rule without one (jwksUri only) takes any issuer.
        let index = rules
            .iter()
            .copied()
            .find(|&i| {
                self.rules[i].rule.issuer.is_some() && self.rules[i].rule.issuer.as_deref() == iss
            })
            .or_else(|| {
                rules
                    .iter()
                    .copied()
                    .find(|&i| self.rules[i].rule.issuer.is_none())
            })
            .ok_or(JwtError::UnknownIssuer)?;
        let compiled = &self.rules[index];
        let rule = &compiled.rule;
        // Envoy's order: time, audiences, then keys and signature.
        let skew = CLOCK_SKEW.as_secs();
        if token
            .time_claim("exp")?
            .is_some_and(|exp| now > exp.saturating_add(skew))
        {
            return Err(JwtError::Expired);
        }
        if token
            .time_claim("nbf")?
            .is_some_and(|nbf| nbf > now.saturating_add(skew))
        {
            return Err(JwtError::NotYetValid);
        }
        let audiences = token.audiences()?;
        if !rule.audiences.is_empty()
            && !audiences.iter().any(|a| {
                rule.audiences
                    .iter()
                    .any(|want| normalize_audience(want) == normalize_audience(a))
            })
        {
            return Err(JwtError::AudienceNotAllowed);
        }
        let Some(Ok(keys)) = compiled.keys.as_deref() else {
            return Err(JwtError::JwksUnavailable);
        };
        match keys.verify(
            token.alg,
            token.kid.as_deref(),
            token.signing_input.as_bytes(),
            &token.signature,
        ) {
            KeyMatch::Verified => {}
            KeyMatch::NoKey => return Err(JwtError::NoMatchingKey),
            KeyMatch::BadSignature => return Err(JwtError::VerificationFails),
        }
        let mut set_headers = Vec::new();
        if let Some(name) = &rule.output_payload_to_header
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(token.payload_b64),
            )
        {
            set_headers.push((name, value));
        }
        for c in &rule.output_claim_to_headers {
            if let (Ok(name), Some(value)) = (
                HeaderName::from_bytes(c.header.as_bytes()),
                claim_header_value(&token.payload, &c.claim),
            ) {
                set_headers.push((name, value));
            }
        }
        let principal = format!("{}/{}", iss.unwrap_or_default(), sub.unwrap_or_default());
        let mut payload = token.payload;
        split_space_delimited(&mut payload, &rule.space_delimited_claims);
        Ok(VerifiedJwt {
            payload,
            principal,
            rule: index,
            set_headers,
            remove_headers: Vec::new(),
        })
    }
}

/// Envoy compares audiences without scheme and trailing slash (`https://a/` is `a`).
fn normalize_audience(a: &str) -> &str {
    let a = a
        .strip_prefix("http://")
        .or_else(|| a.strip_prefix("https://"))
        .unwrap_or(a);
    a.strip_suffix('/').unwrap_or(a)
}

/// A claim (dots for nested objects) as a header value: strings as they are, numbers and
/// booleans printed, lists of those joined with commas (as Envoy does); objects are skipped.
fn claim_header_value(payload: &Value, claim: &str) -> Option<HeaderValue> {
    let value = payload
        .get(claim)
        .or_else(|| claim.split('.').try_fold(payload, |v, k| v.get(k)))?;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let text = match value {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        v => scalar(v)?,
    };
    HeaderValue::from_str(&text).ok()
}

/// `scope: "a b"` → `scope: ["a", "b"]`, so AuthorizationPolicy matches each element.
fn split_space_delimited(payload: &mut Value, claims: &[String]) {
    for name in claims {
        if let Some(v) = payload.get_mut(name)
            && let Value::String(s) = v
        {
            let parts = s.split_whitespace().map(|p| Value::String(p.to_string()));
            *v = Value::Array(parts.collect());
        }
    }
}

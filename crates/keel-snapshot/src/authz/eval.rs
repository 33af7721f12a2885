//! Deciding one connection or request against a workload's [`WorkloadPolicies`].
//!
//! Istio's order, exactly: CUSTOM first (Keel can't call an external authorizer, so a
//! matching CUSTOM policy is only reported), then DENY — any match denies — then ALLOW: with
//! no ALLOW policy everything is allowed, otherwise a request must match one. AUDIT policies
//! never change the decision; the first match is reported for the access log. Dry-run
//! policies are evaluated as Istio's shadow engines are, one for DENY and one for ALLOW, and
//! reported beside the decision.
//!
//! Plain TCP has no method, path, host, header or JWT. Istio's rule, kept here: an ALLOW rule
//! that names any HTTP-only attribute doesn't match TCP at all (allow less), while in DENY and
//! AUDIT rules those fields are dropped and the rest decides (deny more) — so
//! `DENY to: [{methods: [GET]}]` denies every TCP connection. The same holds for checks Keel
//! can't evaluate ([`Check::Unsupported`]), as it does for generation errors in Istio.
//!
//! The evaluator borrows everything and allocates nothing (headers aside, when a proxy's
//! header map has to join repeated values).

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use super::attributes::{Attributes, HttpAttributes};
use super::matcher::StringMatch;
use super::{Action, Check, Policy, Rule, WorkloadPolicies};

/// The body Envoy's RBAC filter answers a denied HTTP request with (status 403).
pub const DENIED_BODY: &str = "RBAC: access denied";

/// Everything one evaluation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation<'p> {
    /// What to enforce.
    pub decision: Decision<'p>,
    /// The first AUDIT policy rule that matched: the request should be audit-logged.
    pub audit: Option<PolicyMatch<'p>>,
    /// What dry-run policies would have done.
    pub dry_run: DryRunResult<'p>,
    /// The first CUSTOM policy rule that matched. External authorization isn't supported, so
    /// it was ignored; the proxy should say so in its log and metrics.
    pub custom_unsupported: Option<PolicyMatch<'p>>,
}

/// Allow or deny, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub allowed: bool,
    /// The policy rule that decided, if one did.
    pub policy: Option<PolicyMatch<'p>>,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No DENY policy matched and no (enforced) ALLOW policy applies.
    NoAllowPolicies,
    AllowPolicyMatched,
    DenyPolicyMatched,
    /// ALLOW policies apply and none matched (`spec: {}` lands here for everything).
    NoAllowPolicyMatched,
}

/// A policy rule that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyMatch<'p> {
    pub namespace: &'p str,
    pub name: &'p str,
    /// Index into the policy's rules.
    pub rule: usize,
}

/// Istio's shadow engines: present when dry-run policies of that action apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DryRunResult<'p> {
    /// Dry-run DENY policies: `allowed` is false when one matched.
    pub deny: Option<ShadowResult<'p>>,
    /// Dry-run ALLOW policies: `allowed` is true when one matched.
    pub allow: Option<ShadowResult<'p>>,
}

/// One shadow engine's result (Envoy's `shadow_engine_result` and
/// `shadow_effective_policy_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowResult<'p> {
    pub allowed: bool,
    pub policy: Option<PolicyMatch<'p>>,
}

impl WorkloadPolicies {
    /// Decides one connection (`attrs.http` is `None`) or request.
    pub fn evaluate<'p>(&'p self, attrs: &Attributes<'_>) -> Evaluation<'p> {
        let req = Request::new(attrs);
        let enforced = |p: &Policy| !p.dry_run;
        let custom_unsupported = req.first_match(&self.policies, |p| {
            matches!(p.action, Action::Custom { .. })
        });
        let audit = req.first_match(&self.policies, |p| p.action == Action::Audit);
        let decision = if let Some(m) =
            req.first_match(&self.policies, |p| p.action == Action::Deny && enforced(p))
        {
            Decision {
                allowed: false,
                policy: Some(m),
                reason: Reason::DenyPolicyMatched,
            }
        } else if !self.has(|p| p.action == Action::Allow && enforced(p)) {
            Decision {
                allowed: true,
                policy: None,
                reason: Reason::NoAllowPolicies,
            }
        } else if let Some(m) =
            req.first_match(&self.policies, |p| p.action == Action::Allow && enforced(p))
        {
            Decision {
                allowed: true,
                policy: Some(m),
                reason: Reason::AllowPolicyMatched,
            }
        } else {
            Decision {
                allowed: false,
                policy: None,
                reason: Reason::NoAllowPolicyMatched,
            }
        };
        Evaluation {
            decision,
            audit,
            dry_run: self.dry_run(&req),
            custom_unsupported,
        }
    }

    fn has(&self, pick: impl Fn(&Policy) -> bool) -> bool {
        self.policies.iter().any(pick)
    }

    fn dry_run<'p>(&'p self, req: &Request<'_, '_>) -> DryRunResult<'p> {
        let shadow = |action: Action| {
            let pick = |p: &Policy| p.dry_run && p.action == action;
            if !self.has(pick) {
                return None;
            }
            let policy = req.first_match(&self.policies, pick);
            let allowed = policy.is_some() == (action == Action::Allow);
            Some(ShadowResult { allowed, policy })
        };
        DryRunResult {
            deny: shadow(Action::Deny),
            allow: shadow(Action::Allow),
        }
    }
}

/// The attributes plus what is derived from them once per evaluation.
struct Request<'r, 'a> {
    attrs: &'r Attributes<'a>,
    /// The path without query string or fragment (Envoy's `url_path`).
    path: &'a str,
}

impl<'r, 'a> Request<'r, 'a> {
    fn new(attrs: &'r Attributes<'a>) -> Self {
        let path = attrs.http.map_or("", |h| {
            let end = h.path.find(['?', '#']).unwrap_or(h.path.len());
            &h.path[..end]
        });
        Request { attrs, path }
    }

    fn first_match<'p>(
        &self,
        policies: &'p [Policy],
        pick: impl Fn(&Policy) -> bool,
    ) -> Option<PolicyMatch<'p>> {
        policies.iter().filter(|p| pick(p)).find_map(|p| {
            let strict = p.action == Action::Allow;
            let rule = p.rules.iter().position(|r| self.rule_matches(r, strict))?;
            Some(PolicyMatch {
                namespace: &p.namespace,
                name: &p.name,
                rule,
            })
        })
    }

    /// `strict` (ALLOW): a check that can't be evaluated fails the whole rule; otherwise it
    /// is ignored.
    fn rule_matches(&self, rule: &Rule, strict: bool) -> bool {
        if strict && rule.checks().any(|c| !self.can_evaluate(c)) {
            return false;
        }
        let all = |checks: &[Check]| checks.iter().all(|c| self.check(c).unwrap_or(true));
        (rule.from.is_empty() || rule.from.iter().any(|s| all(s)))
            && (rule.to.is_empty() || rule.to.iter().any(|o| all(o)))
            && all(&rule.when)
    }

    fn can_evaluate(&self, check: &Check) -> bool {
        !matches!(check, Check::Unsupported { .. })
            && (self.attrs.http.is_some() || !check.http_only())
    }

    /// `None`: the attribute doesn't exist for this traffic (HTTP-only on TCP) or Keel can't
    /// evaluate the check.
    fn check(&self, check: &Check) -> Option<bool> {
        let a = self.attrs;
        let peer = a.peer.as_ref();
        Some(match check {
            Check::SourceIp(v) => v.holds(|n| n.contains(&a.source_ip)),
            Check::RemoteIp(v) => {
                let ip = a.remote_ip.unwrap_or(a.source_ip);
                v.holds(|n| n.contains(&ip))
            }
            Check::DestinationIp(v) => v.holds(|n| n.contains(&a.destination_ip)),
            Check::DestinationPort(v) => v.holds(|p| *p == a.destination_port),
            Check::Principal(v) => v.holds(|m| peer.is_some_and(|p| m.matches(p.principal))),
            Check::Namespace(v) => v.holds(|g| {
                peer.and_then(|p| p.namespace)
                    .is_some_and(|ns| g.matches(ns))
            }),
            Check::ServiceAccount(v) => v.holds(|sa| {
                peer.is_some_and(|p| {
                    p.namespace == Some(sa.namespace.as_str())
                        && p.service_account == Some(sa.name.as_str())
                })
            }),
            Check::TrustDomain(v) => v.holds(|m| peer.is_some_and(|p| m.matches(p.trust_domain))),
            Check::Sni(v) => v.holds(|m| a.sni.is_some_and(|s| m.matches(s))),
            Check::Unsupported { .. } => return None,
            _ => http_check(check, a.http.as_ref()?, self.path),
        })
    }
}

/// The HTTP-only checks.
fn http_check(check: &Check, h: &HttpAttributes<'_>, path: &str) -> bool {
    let jwt = h.jwt;
    match check {
        Check::Host(v) => v.holds(|m| m.matches_ignore_case(h.host)),
        Check::Method(v) => v.holds(|m| m.matches(h.method)),
        Check::Path(v) => v.holds(|m| m.matches(path)),
        Check::Header {
            name,
            inline,
            values,
        } => {
            let value = header(h, name);
            values.holds(|m| match (&value, m) {
                (None, _) => false,
                // Envoy's present_match: the header exists, even if empty.
                (Some(_), StringMatch::Present) => true,
                (Some(v), m) if *inline => v.split(',').any(|e| m.matches(e)),
                (Some(v), m) => m.matches(v),
            })
        }
        Check::RequestPrincipal(v) => {
            let claim = |name: &str| jwt.and_then(|j| j.get(name)).and_then(Value::as_str);
            match (claim("iss"), claim("sub")) {
                (Some(iss), Some(sub)) => v.holds(|m| m.matches(iss, sub)),
                _ => v.holds(|_| false),
            }
        }
        Check::Audiences(v) => claim_holds(jwt.and_then(|j| j.get("aud")), v),
        Check::Presenter(v) => claim_holds(jwt.and_then(|j| j.get("azp")), v),
        Check::Claim { path, values } => {
            let claim = jwt.and_then(|j| path.iter().try_fold(j, |v, key| v.get(key.as_str())));
            claim_holds(claim, values)
        }
        // Connection-level checks are handled by the caller.
        _ => false,
    }
}

/// A request header. Envoy keeps the request line in pseudo-headers, and HTTP/1's `Host` is
/// its `:authority`, so those names are answered from the request itself.
fn header<'h>(h: &'h HttpAttributes<'_>, name: &str) -> Option<Cow<'h, str>> {
    match name {
        ":authority" | "host" => Some(Cow::Borrowed(h.host)),
        ":method" => Some(Cow::Borrowed(h.method)),
        ":path" => Some(Cow::Borrowed(h.path)),
        _ => h.headers.get(name),
    }
}

/// A claim matches a value when it is a string that matches, or a list with a string element
/// that does (Envoy's metadata matcher with `list_match.one_of`, as Istio generates it).
fn claim_holds(claim: Option<&Value>, values: &super::Values<StringMatch>) -> bool {
    values.holds(|m| match claim {
        Some(Value::String(s)) => m.matches(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(|s| m.matches(s)),
        _ => false,
    })
}

impl fmt::Display for PolicyMatch<'_> {
    /// Istio's policy id, as Envoy's RBAC filter logs it (`ns[foo]-policy[bar]-rule[0]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ns[{}]-policy[{}]-rule[{}]",
            self.namespace, self.name, self.rule
        )
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.reason, self.policy) {
            (Reason::NoAllowPolicies, _) => f.write_str("allowed: no ALLOW policy applies"),
            (Reason::AllowPolicyMatched, Some(p)) => write!(f, "allowed by {p}"),
            (Reason::DenyPolicyMatched, Some(p)) => write!(f, "denied by {p}"),
            (Reason::NoAllowPolicyMatched, _) => f.write_str("denied: no ALLOW policy matched"),
            (reason, None) => write!(f, "{reason:?}"),
        }
    }
}

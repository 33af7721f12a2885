//! Authorization: the AuthorizationPolicies that apply to one proxy, compiled, and the
//! evaluator that decides a connection or request against them.
//!
//! Why a model of its own rather than the Istio resource: the proxy must decide every request
//! without parsing anything, and the control plane must be able to push the result. So
//! [`compile::authz`](crate::compile::authz) selects the policies for a workload and turns each
//! value into a typed matcher ([`matcher`]) once; what reaches the proxy is
//! [`WorkloadPolicies`], plain serialisable data like the rest of the snapshot.
//!
//! The shape follows Istio's own translation to Envoy RBAC (pilot/pkg/security/authz): a rule
//! is `from` (any of its sources) AND `to` (any of its operations) AND every `when`; within a
//! source or operation every field must hold; a field holds when one of its values matches and
//! none of its `not` values does. Attributes that only exist for HTTP are marked so the
//! evaluator can apply Istio's rule for plain TCP (see [`eval`]).
//!
//! The proxy calls it per TCP connection and per HTTP request (`keel-proxy/src/authz.rs`).
//! Not here yet: trust domain aliases; CUSTOM (external authorization) is recognised and
//! reported, never run.

pub mod attributes;
pub mod eval;
pub mod matcher;

#[cfg(test)]
mod eval_modes_tests;
#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod test_support;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use attributes::{Attributes, HeaderList, HttpAttributes, PeerIdentity, RequestHeaders};
pub use eval::{DENIED_BODY, Decision, DryRunResult, Evaluation, PolicyMatch, Reason};
use matcher::{Glob, JwtPrincipal, PathMatch, ServiceAccount, StringMatch};

/// The policies that apply to one proxy, in evaluation order (by namespace, then name, like
/// the policy ids in Envoy's RBAC map), all actions together.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkloadPolicies {
    pub policies: Vec<Policy>,
}

impl WorkloadPolicies {
    /// No policy applies: the proxy can skip evaluation (everything is allowed).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// One AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub action: Action,
    /// `istio.io/dry-run: "true"`: evaluated and reported, never enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Empty: nothing matches (an ALLOW policy then denies everything).
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Deny,
    /// Matching requests are marked for audit logging; no effect on the decision.
    Audit,
    /// External authorization through a MeshConfig extension provider: not supported by Keel
    /// yet, so evaluated only to report that it would have applied.
    Custom {
        provider: String,
    },
}

/// One rule: `from` AND `to` AND `when`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rule {
    /// Any one source must hold; empty: any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Vec<Check>>,
    /// Any one operation must hold; empty: any operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Vec<Check>>,
    /// Every condition must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Check>,
}

impl Rule {
    /// Every check of the rule, wherever it sits.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.from
            .iter()
            .flatten()
            .chain(self.to.iter().flatten())
            .chain(&self.when)
    }
}

/// Values of one field or condition: it holds when `any_of` is empty or one of them matches,
/// and none of `none_of` matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Values<T> {
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub any_of: Vec<T>,
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub none_of: Vec<T>,
}

impl<T> Values<T> {
    /// Whether the field holds, given how one value matches the attribute.
    pub fn holds(&self, mut matches: impl FnMut(&T) -> bool) -> bool {
        (self.any_of.is_empty() || self.any_of.iter().any(&mut matches))
            && !self.none_of.iter().any(matches)
    }
}

/// One field of a source or operation, or one `when` condition, on one attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// `ipBlocks`, `source.ip`: the connection's peer address.
    SourceIp(Values<IpNet>),
    /// `remoteIpBlocks`, `remote.ip`: the client address from X-Forwarded-For or PROXY.
    RemoteIp(Values<IpNet>),
    /// `destination.ip`.
    DestinationIp(Values<IpNet>),
    /// `ports`, `destination.port`.
    DestinationPort(Values<u16>),
    /// `principals`, `source.principal`: the peer's SPIFFE id without `spiffe://`.
    Principal(Values<StringMatch>),
    /// `namespaces`, `source.namespace`.
    Namespace(Values<Glob>),
    /// `serviceAccounts`, `source.serviceAccount`.
    ServiceAccount(Values<ServiceAccount>),
    /// `trustDomains`, `source.trustDomain`.
    TrustDomain(Values<StringMatch>),
    /// `requestPrincipals`, `request.auth.principal`. HTTP only.
    RequestPrincipal(Values<JwtPrincipal>),
    /// `request.auth.audiences` (the `aud` claim). HTTP only.
    Audiences(Values<StringMatch>),
    /// `request.auth.presenter` (the `azp` claim). HTTP only.
    Presenter(Values<StringMatch>),
    /// `request.auth.claims[a][b]`: a string claim, or any element of a list claim. HTTP only.
    Claim {
        path: Vec<String>,
        values: Values<StringMatch>,
    },
    /// `request.headers[name]` (`name` lower case); `inline`:
    /// `request.experimental.inline.headers[name]`, where each comma-separated element of the
    /// value is matched on its own. HTTP only.
    Header {
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        inline: bool,
        values: Values<StringMatch>,
    },
    /// `hosts`: the request's authority, case-insensitive. HTTP only.
    Host(Values<StringMatch>),
    /// `methods`. HTTP only.
    Method(Values<StringMatch>),
    /// `paths`: the path without its query string. HTTP only.
    Path(Values<PathMatch>),
    /// `connection.sni`.
    Sni(Values<StringMatch>),
    /// Something Keel can't evaluate (an `experimental.envoy.filters.*` condition, a value
    /// that doesn't parse). Istio's rule for a generation error applies: an ALLOW rule holding
    /// it never matches; in DENY and AUDIT rules it is ignored.
    Unsupported { key: String, reason: String },
}

impl Check {
    /// Attributes a plain TCP connection doesn't have.
    pub fn http_only(&self) -> bool {
        matches!(
            self,
            Check::RequestPrincipal(_)
                | Check::Audiences(_)
                | Check::Presenter(_)
                | Check::Claim { .. }
                | Check::Header { .. }
                | Check::Host(_)
                | Check::Method(_)
                | Check::Path(_)
        )
    }
}

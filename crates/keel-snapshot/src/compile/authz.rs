//! AuthorizationPolicies → the [`WorkloadPolicies`] of one proxy.
//!
//! Selection is Istio's (`ListAuthorizationPolicies` and `WorkloadPolicyMatcher`): only
//! policies in the mesh's root namespace and in the workload's own namespace are considered;
//! without a selector a policy covers its namespace (the whole mesh from the root namespace),
//! with one it covers the workloads whose labels include `matchLabels` — in any namespace when
//! the policy sits in the root namespace. `targetRefs` replace the selector and attach a policy
//! to what they name, in the policy's own namespace:
//!
//! - `gateway.networking.k8s.io/Gateway`: the proxies of that Gateway API gateway (workloads
//!   labelled `gateway.networking.k8s.io/gateway-name`). Such a proxy also takes policies
//!   without targetRefs by selector, as Istio does by default; a waypoint does not.
//! - `networking.istio.io/Gateway`: the proxies serving that classic Gateway
//!   ([`AuthzWorkload::gateways`]).
//! - `Service` / `networking.istio.io/ServiceEntry`: only a waypoint serving that service
//!   ([`AuthzWorkload::waypoint_for`]), as in Istio. A sidecar behind a Service is *not* matched
//!   by a Service targetRef: Istio applies those at the waypoint, and Keel follows it.
//! - `gateway.networking.k8s.io/GatewayClass` `istio-waypoint`, from the root namespace: every
//!   waypoint.
//!
//! A sidecar never takes a targetRef'd policy. Translation turns every value into a typed
//! matcher; a value that doesn't parse (validation would have rejected it) becomes a
//! [`Check::Unsupported`] with a warning, which Istio's error rule then governs.

use std::collections::BTreeMap;

use keel_config::model::common::{PolicyTargetReference, WorkloadSelector};
use keel_config::model::security::AuthorizationPolicy;
use keel_config::model::security::authorization_policy::{
    self as ap, Condition, Operation, Source,
};
use keel_config::{Resource, Spec};

use super::Warning;
use crate::authz::matcher::{
    Glob, JwtPrincipal, PathMatch, ServiceAccount, StringMatch, parse_cidr, parse_port,
};
use crate::authz::{Action, Check, Policy, Rule, Values, WorkloadPolicies};

/// The annotation that makes an ALLOW or DENY policy dry-run.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";
/// The label naming the Gateway API gateway a proxy belongs to.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
const WAYPOINT_CLASS: &str = "istio-waypoint";

/// The proxy policies are selected for.
#[derive(Debug, Clone)]
pub struct AuthzWorkload {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// `meshConfig.rootNamespace`: policies there apply mesh-wide.
    pub root_namespace: String,
    /// Classic `networking.istio.io` Gateways this proxy serves, as `(namespace, name)`.
    pub gateways: Vec<(String, String)>,
    /// For a waypoint proxy: the services it serves. `None` for sidecars and gateways.
    pub waypoint_for: Option<Vec<ServiceRef>>,
}

impl AuthzWorkload {
    /// A sidecar (or selector-selected gateway) in `namespace` with `labels`.
    pub fn new(namespace: &str, labels: BTreeMap<String, String>) -> AuthzWorkload {
        AuthzWorkload {
            namespace: namespace.to_string(),
            labels,
            root_namespace: "istio-system".to_string(),
            gateways: Vec::new(),
            waypoint_for: None,
        }
    }
}

/// A service a waypoint serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    /// `Service` (Kubernetes) or `ServiceEntry`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// The result of [`for_workload`].
#[derive(Debug, Clone, Default)]
pub struct CompiledAuthz {
    pub policies: WorkloadPolicies,
    pub warnings: Vec<Warning>,
}

/// Selects and compiles the AuthorizationPolicies that apply to `workload`.
pub fn for_workload(resources: &[Resource], workload: &AuthzWorkload) -> CompiledAuthz {
    let mut out = CompiledAuthz::default();
    let mut selected: Vec<(&Resource, &AuthorizationPolicy)> = resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::AuthorizationPolicy(p)
                if applies(r, p.selector.as_ref(), target_refs(p), workload) =>
            {
                Some((r, &**p))
            }
            _ => None,
        })
        .collect();
    // Envoy's RBAC keeps policies in a map ordered by id, and reports the first match.
    selected.sort_by(|a, b| (a.0.namespace(), a.0.name()).cmp(&(b.0.namespace(), b.0.name())));
    for (r, p) in selected {
        let policy = compile_policy(r, p, &mut out.warnings);
        out.policies.policies.push(policy);
    }
    out
}

fn target_refs(p: &AuthorizationPolicy) -> Vec<&PolicyTargetReference> {
    effective_target_refs(p.target_ref.as_ref(), &p.target_refs)
}

/// `targetRefs`, or the deprecated single `targetRef` when the list is empty.
pub(crate) fn effective_target_refs<'a>(
    one: Option<&'a PolicyTargetReference>,
    list: &'a [PolicyTargetReference],
) -> Vec<&'a PolicyTargetReference> {
    if list.is_empty() {
        one.into_iter().collect()
    } else {
        list.iter().collect()
    }
}

/// `group` as Istio canonicalises it: empty is the core group.
fn is_group_kind(t: &PolicyTargetReference, group: &str, kind: &str) -> bool {
    let g = if t.group.is_empty() { "core" } else { &t.group };
    g == group && t.kind == kind
}

/// Istio's `ShouldAttachPolicy`, over the root and the workload's namespace. Shared by every
/// policy kind that selects workloads the same way (RequestAuthentication too).
pub(crate) fn applies(
    r: &Resource,
    selector: Option<&WorkloadSelector>,
    refs: Vec<&PolicyTargetReference>,
    w: &AuthzWorkload,
) -> bool {
    let ns = r.namespace();
    if ns != w.root_namespace && ns != w.namespace {
        return false;
    }
    let selected = || {
        selector.is_none_or(|s| {
            s.match_labels
                .iter()
                .all(|(k, v)| w.labels.get(k) == Some(v))
        })
    };
    let classic_gateway = refs.iter().any(|t| {
        is_group_kind(t, "networking.istio.io", "Gateway")
            && w.gateways.iter().any(|(gw_ns, gw)| {
                t.name == *gw && ns == gw_ns && (t.namespace.is_empty() || t.namespace == *gw_ns)
            })
    });
    if classic_gateway {
        return true;
    }
    let Some(gateway_name) = w.labels.get(GATEWAY_NAME_LABEL) else {
        return refs.is_empty() && selected();
    };
    if refs.is_empty() {
        return w.waypoint_for.is_none() && selected();
    }
    refs.iter().any(|t| target_attaches(t, ns, gateway_name, w))
}

fn target_attaches(t: &PolicyTargetReference, ns: &str, gateway: &str, w: &AuthzWorkload) -> bool {
    if let Some(services) = &w.waypoint_for {
        let kind = if is_group_kind(t, "core", "Service") {
            Some("Service")
        } else if is_group_kind(t, "networking.istio.io", "ServiceEntry") {
            Some("ServiceEntry")
        } else {
            None
        };
        if kind.is_some_and(|k| {
            services
                .iter()
                .any(|s| s.kind == k && s.name == t.name && s.namespace == ns)
        }) {
            return true;
        }
        if ns == w.root_namespace
            && is_group_kind(t, "gateway.networking.k8s.io", "GatewayClass")
            && t.name == WAYPOINT_CLASS
        {
            return true;
        }
    }
    ns == w.namespace
        && (t.namespace.is_empty() || t.namespace == w.namespace)
        && is_group_kind(t, "gateway.networking.k8s.io", "Gateway")
        && t.name == gateway
}

/// Go's `strconv.ParseBool`, which Istio reads the dry-run annotation with.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn compile_policy(r: &Resource, p: &AuthorizationPolicy, warnings: &mut Vec<Warning>) -> Policy {
    let mut t = Translator {
        namespace: r.namespace(),
        resource: format!("AuthorizationPolicy {}/{}", r.namespace(), r.name()),
        warnings,
    };
    let action = match p.action {
        ap::Action::Allow => Action::Allow,
        ap::Action::Deny => Action::Deny,
        ap::Action::Audit => Action::Audit,
        ap::Action::Custom => Action::Custom {
            provider: p
                .provider
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
        },
    };
    let mut dry_run = r
        .meta
        .annotations
        .get(DRY_RUN_ANNOTATION)
        .and_then(|v| parse_go_bool(v))
        .unwrap_or(false);
    if dry_run && !matches!(action, Action::Allow | Action::Deny) {
        t.warn(format!(
            "{DRY_RUN_ANNOTATION} only applies to ALLOW and DENY policies; the policy is enforced"
        ));
        dry_run = false;
    }
    if let Action::Custom { provider } = &action {
        t.warn(format!(
            "CUSTOM action (provider {provider:?}) is not supported yet: the policy is reported when it matches, never enforced"
        ));
    }
    let rules = p.rules.iter().flatten().map(|rule| t.rule(rule)).collect();
    Policy {
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        action,
        dry_run,
        rules,
    }
}

struct Translator<'a> {
    namespace: &'a str,
    resource: String,
    warnings: &'a mut Vec<Warning>,
}

impl Translator<'_> {
    fn warn(&mut self, message: String) {
        self.warnings.push(Warning {
            resource: self.resource.clone(),
            message,
        });
    }

    fn rule(&mut self, rule: &ap::Rule) -> Rule {
        let from = rule.from.iter().flatten();
        let to = rule.to.iter().flatten();
        Rule {
            from: from
                .map(|f| f.source.as_ref().map_or_else(Vec::new, |s| self.source(s)))
                .collect(),
            to: to
                .map(|t| {
                    t.operation
                        .as_ref()
                        .map_or_else(Vec::new, |o| self.operation(o))
                })
                .collect(),
            when: rule.when.iter().filter_map(|c| self.condition(c)).collect(),
        }
    }

    fn source(&mut self, s: &Source) -> Vec<Check> {
        let ns = self.namespace.to_string();
        let sa = move |v: &str| Ok(ServiceAccount::parse(v, &ns));
        [
            self.field(
                "principals",
                &s.principals,
                &s.not_principals,
                string,
                Check::Principal,
            ),
            self.field(
                "requestPrincipals",
                &s.request_principals,
                &s.not_request_principals,
                |v| Ok(JwtPrincipal::parse(v)),
                Check::RequestPrincipal,
            ),
            self.field(
                "namespaces",
                &s.namespaces,
                &s.not_namespaces,
                glob,
                Check::Namespace,
            ),
            self.field(
                "serviceAccounts",
                &s.service_accounts,
                &s.not_service_accounts,
                sa,
                Check::ServiceAccount,
            ),
            self.field(
                "ipBlocks",
                &s.ip_blocks,
                &s.not_ip_blocks,
                parse_cidr,
                Check::SourceIp,
            ),
            self.field(
                "remoteIpBlocks",
                &s.remote_ip_blocks,
                &s.not_remote_ip_blocks,
                parse_cidr,
                Check::RemoteIp,
            ),
            self.field(
                "trustDomains",
                &s.trust_domains,
                &s.not_trust_domains,
                string,
                Check::TrustDomain,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn operation(&mut self, o: &Operation) -> Vec<Check> {
        let host = |v: &str| Ok(StringMatch::parse(&v.to_ascii_lowercase()));
        [
            self.field("hosts", &o.hosts, &o.not_hosts, host, Check::Host),
            self.field(
                "ports",
                &o.ports,
                &o.not_ports,
                parse_port,
                Check::DestinationPort,
            ),
            self.field("methods", &o.methods, &o.not_methods, string, Check::Method),
            self.field(
                "paths",
                &o.paths,
                &o.not_paths,
                PathMatch::parse,
                Check::Path,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn condition(&mut self, c: &Condition) -> Option<Check> {
        let (key, values, not) = (c.key.as_str(), &c.values, &c.not_values);
        let ns = self.namespace.to_string();
        let sa = move |v: &str| Ok(ServiceAccount::parse(v, &ns));
        let jwt = |v: &str| Ok(JwtPrincipal::parse(v));
        match key {
            "source.ip" => self.field(key, values, not, parse_cidr, Check::SourceIp),
            "remote.ip" => self.field(key, values, not, parse_cidr, Check::RemoteIp),
            "destination.ip" => self.field(key, values, not, parse_cidr, Check::DestinationIp),
            "destination.port" => self.field(key, values, not, parse_port, Check::DestinationPort),
            "source.principal" => self.field(key, values, not, string, Check::Principal),
            "source.namespace" => self.field(key, values, not, glob, Check::Namespace),
            "source.serviceAccount" => self.field(key, values, not, sa, Check::ServiceAccount),
            "source.trustDomain" => self.field(key, values, not, string, Check::TrustDomain),
            "request.auth.principal" => self.field(key, values, not, jwt, Check::RequestPrincipal),
            "request.auth.audiences" => self.field(key, values, not, string, Check::Audiences),
            "request.auth.presenter" => self.field(key, values, not, string, Check::Presenter),
            "connection.sni" => self.field(key, values, not, string, Check::Sni),
            _ => self.map_condition(key, values, not),
        }
    }

    /// Keys with a name in brackets: headers and claims.
    fn map_condition(&mut self, key: &str, values: &[String], not: &[String]) -> Option<Check> {
        let header = |prefix: &str| {
            let name = key
                .strip_prefix(prefix)?
                .strip_prefix('[')?
                .strip_suffix(']')?;
            (!name.is_empty() && !name.contains(['[', ']'])).then(|| name.to_ascii_lowercase())
        };
        if let Some(name) = header("request.headers") {
            let wrap = |values| Check::Header {
                name,
                inline: false,
                values,
            };
            return self.field(key, values, not, string, wrap);
        }
        if let Some(name) = header("request.experimental.inline.headers") {
            let wrap = |values| Check::Header {
                name,
                inline: true,
                values,
            };
            return self.field(key, values, not, string, wrap);
        }
        if let Some(path) = key.strip_prefix("request.auth.claims").and_then(claim_path) {
            let wrap = |values| Check::Claim { path, values };
            return self.field(key, values, not, string, wrap);
        }
        let reason = if key.starts_with("experimental.envoy.filters.") {
            "Envoy filter metadata is not available in Keel"
        } else {
            "unknown attribute"
        };
        self.warn(format!("condition {key}: {reason}; Istio's rule for attributes it can't generate applies (an ALLOW rule never matches, a DENY rule ignores it)"));
        Some(Check::Unsupported {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    }

    /// One field: `None` when it has no values; `Unsupported` when one doesn't parse.
    fn field<T>(
        &mut self,
        key: &str,
        values: &[String],
        not_values: &[String],
        parse: impl Fn(&str) -> Result<T, String>,
        wrap: impl FnOnce(Values<T>) -> Check,
    ) -> Option<Check> {
        if values.is_empty() && not_values.is_empty() {
            return None;
        }
        let all = |list: &[String]| list.iter().map(|v| parse(v)).collect::<Result<Vec<_>, _>>();
        match (all(values), all(not_values)) {
            (Ok(any_of), Ok(none_of)) => Some(wrap(Values { any_of, none_of })),
            (Err(reason), _) | (_, Err(reason)) => {
                self.warn(format!("{key}: {reason}"));
                Some(Check::Unsupported {
                    key: key.to_string(),
                    reason,
                })
            }
        }
    }
}

fn string(v: &str) -> Result<StringMatch, String> {
    Ok(StringMatch::parse(v))
}

fn glob(v: &str) -> Result<Glob, String> {
    Ok(Glob(v.to_string()))
}

/// `[a][b]` → `["a", "b"]` (Istio's `extractNameInNestedBrackets`).
fn claim_path(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let names: Vec<String> = inner.split("][").map(str::to_string).collect();
    names
        .iter()
        .all(|n| !n.is_empty() && !n.contains(['[', ']']))
        .then_some(names)
}

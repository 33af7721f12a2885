//! Workload analyzers over Deployments and Pods.
//!
//! `deployment.MultiServiceAnalyzer` (Istio's `ServiceAssociationAnalyzer`), for each
//! Deployment in the mesh (sidecar container, injection label/annotation, or an injected
//! namespace) that is not a waypoint:
//! - IST0116 DeploymentAssociatedToMultipleServices: Services of its namespace that select
//!   its pods use the same port number with different protocols.
//! - IST0137 DeploymentConflictingPorts: those Services send the same targetPort from
//!   different port numbers.
//!
//! Both point at `metadata.name`; service names and ports in the text are sorted.
//!
//! `applicationUID.Analyzer` (Istio's `ApplicationUIDAnalyzer`):
//! - IST0144 InvalidApplicationUID: a Pod (or Deployment pod template) runs as UID 1337, the
//!   sidecar's, at pod level or in a container other than `istio-proxy`/`istio-operator`.
//!   Istio's own workloads (label `istio`, or `release: istio`) are skipped.

use std::collections::BTreeMap;

use keel_config::Resource;
use keel_config::model::kube::{Deployment, PodSpec, Service};

use super::Analyzer;
use super::util_an2::{ISTIO_PROXY, full_name, in_mesh, is_istio_control_plane};
use crate::context::AnalysisContext;
use crate::messages::{
    DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES, DEPLOYMENT_CONFLICTING_PORTS,
    INVALID_APPLICATION_UID, Message, list, q,
};

pub struct MultiServiceAnalyzer;

/// Services in the Deployment's namespace whose (non-empty) selector matches its pods, as
/// `ns/name` with the Service.
fn matching_services<'a>(
    ctx: &AnalysisContext<'a>,
    r: &Resource,
    d: &Deployment,
) -> Vec<(String, &'a Service)> {
    let labels = &d.spec.template.metadata.labels;
    ctx.services()
        .filter(|(s, svc)| s.namespace() == r.namespace() && svc.selects(labels))
        .map(|(s, svc)| (full_name(s), svc))
        .collect()
}

impl Analyzer for MultiServiceAnalyzer {
    fn name(&self) -> &'static str {
        "deployment.MultiServiceAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks association between services and pods"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        for (r, d) in ctx.deployments() {
            let waypoint = r
                .meta
                .labels
                .get("gateway.istio.io/managed")
                .is_some_and(|v| v == "istio.io-mesh-controller");
            let t = &d.spec.template;
            let meshed = in_mesh(
                ctx,
                r.namespace(),
                &t.metadata.labels,
                &t.metadata.annotations,
                &t.spec.containers,
            );
            if waypoint || !meshed {
                continue;
            }
            let services = matching_services(ctx, r, d);

            // port → protocol → services
            let mut by_port: BTreeMap<i32, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
            // targetPort → port → service (a later service replaces an earlier one)
            let mut by_target: BTreeMap<String, BTreeMap<i32, &str>> = BTreeMap::new();
            for (name, svc) in &services {
                for p in &svc.spec.ports {
                    by_port
                        .entry(p.port)
                        .or_default()
                        .entry(p.protocol().as_str())
                        .or_default()
                        .push(name);
                    let target = match &p.target_port {
                        None => p.port.to_string(),
                        Some(t) => match t.to_string() {
                            s if s.is_empty() || s == "0" => p.port.to_string(),
                            s => s,
                        },
                    };
                    by_target.entry(target).or_default().insert(p.port, name);
                }
            }

            for (port, protocols) in &by_port {
                if protocols.len() < 2 {
                    continue;
                }
                let mut names: Vec<&str> = protocols.values().flatten().copied().collect();
                names.sort_unstable();
                out.push(ctx.message(
                    DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
                    r,
                    Some("metadata.name"),
                    format!(
                        "This deployment {} is associated with multiple services using port {port} but different protocols: {}",
                        r.name(),
                        list(&names)
                    ),
                ));
            }
            for (target, ports) in &by_target {
                if ports.len() < 2 {
                    continue;
                }
                let mut names: Vec<&str> = ports.values().copied().collect();
                names.sort_unstable();
                let numbers: Vec<String> = ports.keys().map(ToString::to_string).collect();
                out.push(ctx.message(
                    DEPLOYMENT_CONFLICTING_PORTS,
                    r,
                    Some("metadata.name"),
                    format!(
                        "This deployment {} is associated with multiple services {} using targetPort {} but different ports: {}.",
                        r.name(),
                        list(&names),
                        q(target),
                        list(&numbers)
                    ),
                ));
            }
        }
    }
}

pub struct ApplicationUidAnalyzer;

/// The UID Istio's sidecar runs as.
const PROXY_UID: i64 = 1337;

/// One entry per place in `spec` that runs an application as the proxy's UID.
fn uid_violations(spec: &PodSpec) -> usize {
    let pod = spec
        .security_context
        .as_ref()
        .is_some_and(|s| s.run_as_user == Some(PROXY_UID));
    let containers = spec
        .containers
        .iter()
        .filter(|c| c.name != ISTIO_PROXY && c.name != "istio-operator")
        .filter(|c| {
            c.security_context
                .as_ref()
                .is_some_and(|s| s.run_as_user == Some(PROXY_UID))
        })
        .count();
    usize::from(pod) + containers
}

impl Analyzer for ApplicationUidAnalyzer {
    fn name(&self) -> &'static str {
        "applicationUID.Analyzer"
    }

    fn description(&self) -> &'static str {
        "Checks invalid application UID"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // Pods derived from a workload's template are reported through the workload itself.
        let pods = ctx
            .pods()
            .filter(|(r, _)| !crate::workload_pods::is_template_pod(r))
            .map(|(r, p)| (r, &p.spec));
        let deployments = ctx.deployments().map(|(r, d)| (r, &d.spec.template.spec));
        for (r, spec) in pods.chain(deployments) {
            if is_istio_control_plane(r) {
                continue;
            }
            // Identical messages (no line) collapse into one after de-duplication.
            for _ in 0..uid_violations(spec) {
                out.push(ctx.message(
                    INVALID_APPLICATION_UID,
                    r,
                    None,
                    "User ID (UID) 1337 is reserved for the sidecar proxy.".to_string(),
                ));
            }
        }
    }
}

//! How a Deployment's pods move to a new pod template, as Kubernetes' Deployment controller
//! moves them: `RollingUpdate` (the default) starts new pods beside the old ones, at most
//! `maxSurge` above the wanted count, and stops an old pod only while at least
//! `replicas - maxUnavailable` pods stay ready, so a new pod that never becomes ready leaves
//! the old ones serving (a stuck rollout); `Recreate` stops every old pod, then starts the new
//! ones. [`desired`] plans what each Deployment wants (pod template, count, strategy);
//! [`step`] decides one step from what runs; the reconciler takes it, and decides again as pods
//! become ready.

use std::collections::{BTreeMap, BTreeSet};

use keel_config::{Kind, Resource, Spec};

use super::plan::{self, Replica};

/// (namespace, Deployment name).
pub(super) type DeploymentKey = (String, String);

/// A Deployment's `spec.strategy`, resolved against its replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    RollingUpdate {
        max_surge: usize,
        max_unavailable: usize,
    },
}

/// The strategy of Deployment `d` wanting `replicas` pods: Kubernetes' defaults (25 % surge
/// rounded up, 25 % unavailable rounded down) unless `spec.strategy` says otherwise.
pub fn strategy(d: &Resource, replicas: usize) -> Result<Strategy, String> {
    let Spec::Deployment(dep) = &d.spec else {
        return Err(format!("{} is not a Deployment", d.name()));
    };
    let Some(s) = &dep.spec.strategy else {
        return rolling(None, None, replicas);
    };
    match s.get("type").and_then(|t| t.as_str()) {
        Some("Recreate") => Ok(Strategy::Recreate),
        None | Some("RollingUpdate") => {
            let ru = s.get("rollingUpdate");
            rolling(
                ru.and_then(|r| r.get("maxSurge")),
                ru.and_then(|r| r.get("maxUnavailable")),
                replicas,
            )
        }
        Some(other) => Err(format!(
            "spec.strategy.type \"{other}\" is neither RollingUpdate nor Recreate"
        )),
    }
}

fn rolling(
    surge: Option<&serde_json::Value>,
    unavailable: Option<&serde_json::Value>,
    replicas: usize,
) -> Result<Strategy, String> {
    let max_surge = amount(surge, replicas, true, "maxSurge")?;
    let mut max_unavailable = amount(unavailable, replicas, false, "maxUnavailable")?;
    // As the Deployment controller does: both rounding to 0 would never move.
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    Ok(Strategy::RollingUpdate {
        max_surge,
        max_unavailable,
    })
}

/// A count or a percentage of `replicas` (25 % when absent), rounded up or down.
fn amount(
    v: Option<&serde_json::Value>,
    replicas: usize,
    round_up: bool,
    field: &str,
) -> Result<usize, String> {
    let bad = || {
        format!("spec.strategy.rollingUpdate.{field} must be a count or a percentage such as 25%")
    };
    let percent = match v {
        None => 25,
        Some(serde_json::Value::Number(n)) => {
            return n.as_u64().map(|n| n as usize).ok_or_else(bad);
        }
        Some(serde_json::Value::String(s)) => match s.strip_suffix('%') {
            Some(p) => p.trim().parse::<usize>().map_err(|_| bad())?,
            None => return s.trim().parse::<usize>().map_err(|_| bad()),
        },
        Some(_) => return Err(bad()),
    };
    let scaled = replicas * percent;
    Ok(if round_up {
        scaled.div_ceil(100)
    } else {
        scaled / 100
    })
}

/// A running pod of the Deployment, as [`step`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    /// `<deployment>-<index>`: its index.
    pub index: usize,
    /// Runs the wanted pod template.
    pub current: bool,
    pub ready: bool,
}

/// One step: how many new pods to start, and which pods to stop (before starting).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub start: usize,
    pub stop: Vec<String>,
}

/// The next step towards `replicas` pods of the current template.
pub fn step(replicas: usize, strategy: Strategy, pods: &[PodState]) -> Step {
    let (new, old): (Vec<&PodState>, Vec<&PodState>) = pods.iter().partition(|p| p.current);
    if old.is_empty() {
        return scale(replicas, &new);
    }
    match strategy {
        Strategy::Recreate => Step {
            stop: old.iter().map(|p| p.name.clone()).collect(),
            start: replicas.saturating_sub(new.len()),
        },
        Strategy::RollingUpdate {
            max_surge,
            max_unavailable,
        } => {
            let total = pods.len();
            let start = replicas
                .saturating_sub(new.len())
                .min((replicas + max_surge).saturating_sub(total));
            // Kubernetes' scale-down bound: what may go without falling below the minimum
            // available, counting the new pods that aren't ready yet as unavailable.
            let min_available = replicas.saturating_sub(max_unavailable);
            let new_unready = new.iter().filter(|p| !p.ready).count();
            let mut budget = total.saturating_sub(min_available + new_unready);
            let mut stop = Vec::new();
            // Unready old pods go first: they serve nothing.
            for p in old.iter().filter(|p| !p.ready) {
                if budget == 0 {
                    break;
                }
                stop.push(p.name.clone());
                budget -= 1;
            }
            let ready = pods.iter().filter(|p| p.ready).count();
            let mut spare = ready.saturating_sub(min_available).min(budget);
            let mut ready_old: Vec<&&PodState> = old.iter().filter(|p| p.ready).collect();
            ready_old.sort_by_key(|p| std::cmp::Reverse(p.index));
            for p in ready_old {
                if spare == 0 {
                    break;
                }
                stop.push(p.name.clone());
                spare -= 1;
            }
            Step { start, stop }
        }
    }
}

/// Up or down to `replicas` pods of one template: the highest indexes go first, unready ones
/// before ready ones.
fn scale(replicas: usize, pods: &[&PodState]) -> Step {
    if pods.len() <= replicas {
        return Step {
            start: replicas - pods.len(),
            stop: Vec::new(),
        };
    }
    let mut by_priority: Vec<&&PodState> = pods.iter().collect();
    by_priority.sort_by_key(|p| (p.ready, std::cmp::Reverse(p.index)));
    Step {
        start: 0,
        stop: by_priority
            .iter()
            .take(pods.len() - replicas)
            .map(|p| p.name.clone())
            .collect(),
    }
}

/// The lowest index not in `used`.
pub fn free_index(used: &[usize]) -> usize {
    (0..).find(|i| !used.contains(i)).unwrap_or(used.len())
}

/// What one Deployment asks for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Want {
    /// Its pod, named `""`: each new pod gets a name of its own. `None` for no replicas.
    pub template: Option<Replica>,
    pub replicas: usize,
    pub strategy: Strategy,
}

/// What the store's Deployments ask for.
pub(super) struct Desired {
    /// By (namespace, Deployment).
    pub deployments: BTreeMap<DeploymentKey, Want>,
    /// Deployments that can't be planned: they keep the replicas they have.
    pub failed: BTreeSet<DeploymentKey>,
    /// Why, one line each.
    pub errors: BTreeSet<String>,
}

/// What `resources` plan for each Deployment, skipping those in the `gone` namespaces; the
/// Deployments that can't be planned; and why. Each Deployment is planned on its own, so one
/// unknown image stops only its own.
pub(super) fn desired(
    resources: &[Resource],
    runs: &[(String, String)],
    gone: &BTreeSet<String>,
) -> Desired {
    let mut others: Vec<Resource> = resources
        .iter()
        .filter(|r| r.kind() != Kind::Deployment)
        .cloned()
        .collect();
    let mut out = BTreeMap::new();
    let mut failed = BTreeSet::new();
    let mut errors = BTreeSet::new();
    for d in resources.iter().filter(|r| r.kind() == Kind::Deployment) {
        if gone.contains(d.namespace()) {
            continue;
        }
        let key = (d.namespace().to_string(), d.name().to_string());
        others.push(d.clone());
        let planned = plan::plan(&others, runs).and_then(|replicas| {
            let strategy = strategy(d, replicas.len())
                .map_err(|e| vec![format!("deployment {}/{}: {e}", d.namespace(), d.name())])?;
            Ok(Want {
                replicas: replicas.len(),
                template: replicas.into_iter().next().map(|mut r| {
                    r.pod.clear();
                    r
                }),
                strategy,
            })
        });
        match planned {
            Ok(want) => {
                out.insert(key, want);
            }
            Err(e) => {
                errors.extend(e);
                failed.insert(key);
            }
        }
        others.pop();
    }
    Desired {
        deployments: out,
        failed,
        errors,
    }
}

/// Whether a running pod runs `template` (a [`Want`]'s, whose pod name is empty).
pub(super) fn runs_template(pod: &Replica, template: &Replica) -> bool {
    pod.deployment == template.deployment
        && pod.namespace == template.namespace
        && pod.labels == template.labels
        && pod.service_account == template.service_account
        && pod.containers == template.containers
        && pod.ports == template.ports
        && pod.service_ports == template.service_ports
        && pod.inject == template.inject
}

/// The index of pod `<deployment>-<index>`.
pub(super) fn pod_index(pod: &str, deployment: &str) -> usize {
    pod.strip_prefix(deployment)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keel_config::{LoadOptions, load_str};

    fn pod(index: usize, current: bool, ready: bool) -> PodState {
        PodState {
            name: format!("web-{index}"),
            index,
            current,
            ready,
        }
    }

    fn deployment(spec: &str, replicas: usize) -> Result<Strategy, String> {
        let text = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  {spec}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: httpbin}}]}}\n"
        );
        let l = keel_config::load_str(&text, "d.yaml", &Default::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        super::strategy(&l.resources[0], replicas)
    }

    #[test]
    fn strategies_resolve_as_kubernetes_does() {
        let rolling = |s, u| Strategy::RollingUpdate {
            max_surge: s,
            max_unavailable: u,
        };
        // 25 % of 1: surge rounds up to 1, unavailable down to 0.
        assert_eq!(deployment("replicas: 1", 1), Ok(rolling(1, 0)));
        assert_eq!(deployment("replicas: 10", 10), Ok(rolling(3, 2)));
        assert_eq!(
            deployment(
                "strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 50%}}",
                4
            ),
            Ok(rolling(0, 2))
        );
        // Both 0 after rounding: one may be unavailable, or nothing would move.
        assert_eq!(
            deployment("strategy: {rollingUpdate: {maxSurge: 0%}}", 2),
            Ok(rolling(0, 1))
        );
        assert_eq!(
            deployment("strategy: {type: Recreate}", 3),
            Ok(Strategy::Recreate)
        );
        assert!(
            deployment("strategy: {rollingUpdate: {maxSurge: lots}}", 1)
                .unwrap_err()
                .contains("maxSurge")
        );
    }

    #[test]
    fn one_replica_rolls_with_a_surge_and_stops_the_old_pod_once_the_new_is_ready() {
        let s = Strategy::RollingUpdate {
            max_surge: 1,
            max_unavailable: 0,
        };
        let old = pod(0, false, true);
        assert_eq!(step(1, s, std::slice::from_ref(&old)).start, 1);
        assert_eq!(
            step(1, s, std::slice::from_ref(&old)).stop,
            Vec::<String>::new()
        );
        // The new pod starting: nothing more.
        assert_eq!(
            step(1, s, &[old.clone(), pod(1, true, false)]),
            Step::default()
        );
        // Ready: the old one goes.
        assert_eq!(
            step(1, s, &[old.clone(), pod(1, true, true)]),
            Step {
                start: 0,
                stop: vec!["web-0".into()]
            }
        );
        assert_eq!(step(1, s, &[pod(1, true, true)]), Step::default());
    }

    #[test]
    fn rolling_respects_surge_and_unavailability_and_removes_unready_old_pods_first() {
        let s = Strategy::RollingUpdate {
            max_surge: 1,
            max_unavailable: 1,
        };
        let pods = [
            pod(0, false, true),
            pod(1, false, false),
            pod(2, false, true),
        ];
        let st = step(3, s, &pods);
        assert_eq!(st.start, 1);
        // One may be unavailable: the unready one goes, no ready one.
        assert_eq!(st.stop, ["web-1"]);
        let pods = [
            pod(0, false, true),
            pod(1, false, true),
            pod(2, false, true),
        ];
        // Three ready, two needed: the highest index goes.
        assert_eq!(step(3, s, &pods).stop, ["web-2"]);
    }

    #[test]
    fn recreate_stops_every_old_pod_then_starts_the_new_ones() {
        let pods = [pod(0, false, true), pod(1, false, true)];
        assert_eq!(
            step(2, Strategy::Recreate, &pods),
            Step {
                start: 2,
                stop: vec!["web-0".into(), "web-1".into()]
            }
        );
    }

    #[test]
    fn scaling_adds_and_removes_the_highest_indexes() {
        let s = Strategy::Recreate;
        assert_eq!(step(3, s, &[pod(0, true, true)]).start, 2);
        let pods = [pod(0, true, true), pod(1, true, true), pod(2, true, false)];
        assert_eq!(step(1, s, &pods).stop, ["web-2", "web-1"]);
        assert_eq!(free_index(&[0, 2]), 1);
        assert_eq!(free_index(&[1]), 0);
        assert_eq!(free_index(&[]), 0);
    }

    const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: web}
spec:
  ports: [{name: http, port: 8000, targetPort: 8080}]
  selector: {app: httpbin}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec:
      containers:
      - {name: httpbin, image: docker.io/mccutchen/go-httpbin:v2.15.0, ports: [{containerPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.25}]
"#;

    #[test]
    fn one_unplannable_deployment_leaves_the_others_planned() {
        let loaded = load_str(MANIFESTS, "t.yaml", &LoadOptions::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let Desired {
            deployments: want,
            failed,
            errors,
        } = desired(&loaded.resources, &[], &BTreeSet::new());
        assert!(
            errors
                .iter()
                .next()
                .unwrap()
                .starts_with("deployment web/web: no local command")
        );
        let httpbin = &want[&("web".to_string(), "httpbin".to_string())];
        assert_eq!(httpbin.replicas, 2);
        let template = httpbin.template.as_ref().unwrap();
        assert_eq!(template.pod, "");
        assert_eq!(template.service_ports[0].key, "http");
        assert!(failed.contains(&("web".to_string(), "web".to_string())));
        let gone = BTreeSet::from(["web".to_string()]);
        let Desired {
            deployments: want,
            failed,
            errors,
        } = desired(&loaded.resources, &[], &gone);
        assert!(want.is_empty() && failed.is_empty() && errors.is_empty());
    }

    #[test]
    fn a_changed_service_port_changes_the_replicas_it_selects() {
        let plan = |text: &str| {
            let loaded = load_str(text, "t.yaml", &LoadOptions::default());
            desired(&loaded.resources, &[], &BTreeSet::new()).deployments
                [&("web".to_string(), "httpbin".to_string())]
                .template
                .clone()
                .unwrap()
        };
        let before = plan(MANIFESTS);
        assert!(runs_template(&before, &plan(MANIFESTS)));
        let mut running = before.clone();
        running.pod = "httpbin-3".into();
        assert!(runs_template(&running, &before));
        assert_eq!(pod_index(&running.pod, "httpbin"), 3);
        let after = plan(&MANIFESTS.replace("name: http, port", "name: grpc, port"));
        assert_eq!(after.service_ports[0].key, "grpc");
        assert!(!runs_template(&running, &after));
    }
}

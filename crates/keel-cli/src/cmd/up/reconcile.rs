//! Keeps the running replicas in step with the store, as Kubernetes' controllers do: once the
//! mesh is up, every change of a Deployment, Service or Namespace (`keel apply -f`,
//! `keel delete -f`) is planned again with [`plan::plan`] and compared with what runs, by
//! namespace and pod name. New replicas start (ports reserved, sidecar and containers started,
//! readiness awaited in the background, registered once ready), removed ones stop (registration
//! deleted first so no new traffic reaches them, then SIGTERM to their process groups), and a
//! replica whose plan changed (its pod template, or the ports and protocol its Services give
//! it) is replaced. Between changes it keeps the pods running: each [`Pod`] restarts processes
//! that exit, deregistered until ready again ([`super::supervise`]).
//!
//! Replacing is stop-then-start, not Kubernetes' surge: a replica keeps its pod name
//! (`httpbin-0`), which names its log files, its sidecar's node id and its WorkloadEntry, so the
//! old and the new can't run side by side. A replaced single replica is briefly unavailable.
//!
//! Writes of its own (the WorkloadEntries) change the store too; snapshots whose Deployments,
//! Services and Namespaces are unchanged (same keys and generations) are ignored, so they don't
//! feed back.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_config::{Kind, LoadOptions, Resource, load_str};
use keel_control::store::{ConfigStore, DirStore, ResourceKey, Snapshot, WriteOptions};
use keel_control::xds::ProxyRegistry;

use super::find_bin;
use super::plan::{self, Ports, Replica};
use super::pods::{self, PodInfo};
use super::ports::{PortReservation, SHAREABLE};
use super::process::{Binaries, Proc, start_replica, starting, stop_all, unshare_app_ports};
use super::supervise::Pod;

/// How often pods are checked for readiness and exits.
const TICK: Duration = Duration::from_millis(100);

/// (namespace, pod name).
type PodKey = (String, String);

/// Where and how replicas start.
pub(super) struct Launch {
    pub store: Arc<DirStore>,
    pub registry: Arc<ProxyRegistry>,
    /// The state directory (`pods.json`).
    pub dir: PathBuf,
    pub logs: PathBuf,
    pub xds: SocketAddr,
    pub bins: Option<PathBuf>,
    pub proxy_bin: PathBuf,
    pub runs: Vec<(String, String)>,
}

pub(super) struct Reconciler {
    launch: Launch,
    reserved: PortReservation,
    running: BTreeMap<PodKey, Pod>,
    /// `keel-sample`, when found.
    sample_bin: Option<PathBuf>,
    /// The Deployments, Services and Namespaces (key and generation) last reconciled.
    last: Vec<(ResourceKey, i64)>,
    /// Namespaces that existed as resources: a Deployment in one deleted since stops.
    namespaces_seen: BTreeSet<String>,
    /// The planning errors last printed: each is printed once, not on every change.
    reported: BTreeSet<String>,
}

impl Reconciler {
    pub fn new(launch: Launch) -> Self {
        Reconciler {
            sample_bin: find_bin(&launch.bins, "keel-sample").ok(),
            launch,
            reserved: PortReservation::default(),
            running: BTreeMap::new(),
            last: Vec::new(),
            namespaces_seen: BTreeSet::new(),
            reported: BTreeSet::new(),
        }
    }

    /// Takes over a replica `keel up` started (and saw ready). Its ports stay reserved by
    /// `keel up`'s own reservation until the mesh stops.
    pub fn adopt(&mut self, replica: Replica, ports: Ports, procs: Vec<Proc>) {
        let key = (replica.namespace.clone(), replica.pod.clone());
        self.running
            .insert(key, Pod::new(replica, ports, procs, true));
    }

    /// Every process still held, for the mesh to stop.
    pub fn into_procs(self) -> Vec<Proc> {
        self.running
            .into_values()
            .flat_map(|mut p| p.take_procs())
            .collect()
    }

    /// Follows the store, and restarts processes that exit, until the mesh stops (the future
    /// is dropped).
    pub async fn run(&mut self) -> Infallible {
        let mut rx = self.launch.store.subscribe();
        let mut open = true;
        loop {
            let snapshot = rx.borrow_and_update().clone();
            self.reconcile(&snapshot).await;
            loop {
                let changed = if open {
                    match tokio::time::timeout(TICK, rx.changed()).await {
                        Ok(Ok(())) => true,
                        Ok(Err(_)) => {
                            open = false;
                            false
                        }
                        Err(_) => false,
                    }
                } else {
                    tokio::time::sleep(TICK).await;
                    false
                };
                self.check().await;
                if changed {
                    break;
                }
            }
        }
    }

    /// Starts, stops and replaces replicas so that what runs is what `snapshot` plans.
    async fn reconcile(&mut self, snapshot: &Snapshot) {
        let gate = workload_kinds(snapshot);
        if gate == self.last {
            return;
        }
        self.last = gate;
        let present: BTreeSet<String> = snapshot
            .resources
            .keys()
            .filter(|k| k.kind == Kind::Namespace)
            .map(|k| k.name.clone())
            .collect();
        self.namespaces_seen.extend(present.iter().cloned());
        let gone: BTreeSet<String> = self.namespaces_seen.difference(&present).cloned().collect();
        let resources: Vec<Resource> = snapshot
            .resources
            .values()
            .map(|s| s.resource.clone())
            .collect();
        let Desired {
            replicas: desired,
            failed,
            errors,
        } = desired(&resources, &self.launch.runs, &gone);
        for e in errors.difference(&self.reported) {
            shout!("error: {e}");
        }
        self.reported = errors;
        // A Deployment that can't be planned keeps the replicas it has.
        let stop: Vec<PodKey> = self
            .running
            .iter()
            .filter(|(key, r)| match desired.get(*key) {
                Some(want) => *want != r.replica,
                None => !failed.contains(&(key.0.clone(), r.replica.deployment.clone())),
            })
            .map(|(key, _)| key.clone())
            .collect();
        let start: Vec<Replica> = desired
            .iter()
            .filter(|(key, want)| {
                self.running
                    .get(*key)
                    .is_none_or(|r| stop.contains(key) || r.replica != **want)
            })
            .map(|(_, want)| want.clone())
            .collect();
        if stop.is_empty() && start.is_empty() {
            return;
        }
        self.stop(&stop).await;
        for r in start {
            self.start(r).await;
        }
        self.write_pods();
    }

    /// Deregisters, then stops, the replicas `keys` name.
    async fn stop(&mut self, keys: &[PodKey]) {
        let mut stopping: Vec<Pod> = keys.iter().filter_map(|k| self.running.remove(k)).collect();
        if stopping.is_empty() {
            return;
        }
        let replicas: Vec<&Replica> = stopping.iter().map(|p| &p.replica).collect();
        if let Err(e) = deregister(&self.launch.store, &replicas).await {
            shout!("warning: cannot deregister stopped replicas: {e}");
        }
        for r in &stopping {
            say!("… stopping {}.{}", r.replica.pod, r.replica.namespace);
        }
        let mut procs: Vec<Proc> = stopping.iter_mut().flat_map(Pod::take_procs).collect();
        stop_all(&mut procs).await;
        for r in &stopping {
            for port in r.ports.all() {
                self.reserved.release(port);
            }
            say!("✔ {}.{} stopped", r.replica.pod, r.replica.namespace);
        }
    }

    /// Reserves ports for `r` and starts its processes; errors are printed. It is registered
    /// (takes traffic) once ready, as Kubernetes lists only ready pods among a Service's
    /// endpoints; see [`Reconciler::check`].
    async fn start(&mut self, r: Replica) {
        let ports = match Ports::reserve(&r, &mut self.reserved) {
            Ok(p) => p,
            Err(e) => {
                shout!(
                    "error: deployment {}/{}: no free loopback port: {e}",
                    r.namespace,
                    r.deployment
                );
                return;
            }
        };
        say!("{}", starting(&r, &ports));
        unshare_app_ports(&r, &ports, &mut self.reserved);
        if r.needs_sample() && self.sample_bin.is_none() {
            shout!(
                "error: deployment {}/{}: cannot start {}: keel-sample not found beside keel (pass --bin-dir)",
                r.namespace,
                r.deployment,
                r.pod
            );
            self.release(&ports);
            return;
        }
        let started = start_replica(&r, &ports, &self.binaries());
        if !SHAREABLE {
            self.reserved.release_all();
        }
        match started {
            Ok(procs) => {
                let key = (r.namespace.clone(), r.pod.clone());
                self.running.insert(key, Pod::new(r, ports, procs, false));
            }
            Err(e) => {
                shout!(
                    "error: deployment {}/{}: cannot start {}: {e}",
                    r.namespace,
                    r.deployment,
                    r.pod
                );
                self.release(&ports);
            }
        }
    }

    fn release(&mut self, p: &Ports) {
        for port in p.all() {
            self.reserved.release(port);
        }
    }

    fn binaries(&self) -> Binaries<'_> {
        let l = &self.launch;
        Binaries {
            xds: l.xds,
            logs: &l.logs,
            proxy: &l.proxy_bin,
            sample: self.sample_bin.as_deref(),
        }
    }

    /// Restarts processes that exited (their pod is deregistered meanwhile, as Kubernetes
    /// drops an unready pod from its Services' endpoints) and registers pods that became ready.
    async fn check(&mut self) {
        let l = &self.launch;
        let bins = Binaries {
            xds: l.xds,
            logs: &l.logs,
            proxy: &l.proxy_bin,
            sample: self.sample_bin.as_deref(),
        };
        let mut lost = Vec::new();
        let mut changed = false;
        let mut ready = Vec::new();
        for pod in self.running.values_mut() {
            let seen = pod.supervise(&bins);
            changed |= seen.changed;
            if seen.lost_ready {
                lost.push(pod.replica.clone());
            }
            if pod.became_ready(&self.launch.registry).await {
                ready.push((pod.replica.clone(), pod.ports.clone()));
            }
        }
        if !lost.is_empty() {
            let replicas: Vec<&Replica> = lost.iter().collect();
            if let Err(e) = deregister(&self.launch.store, &replicas).await {
                shout!("warning: cannot deregister pods whose process exited: {e}");
            }
        }
        for (r, ports) in ready {
            match register(&self.launch.store, &r, &ports).await {
                Ok(()) => say!("✔ {}.{} ready", r.pod, r.namespace),
                Err(e) => shout!(
                    "error: deployment {}/{}: cannot register {}: {e}",
                    r.namespace,
                    r.deployment,
                    r.pod
                ),
            }
        }
        if changed {
            self.write_pods();
        }
    }

    fn write_pods(&self) {
        let infos: Vec<PodInfo> = self
            .running
            .values()
            .map(|p| {
                let (sidecar, containers) = p.restarts();
                pods::info(&p.replica, &p.ports, sidecar, &containers)
            })
            .collect();
        if let Err(e) = pods::write_infos(&self.launch.dir, &infos) {
            shout!("warning: cannot write pods.json: {e}");
        }
    }
}

/// Applies the replica's WorkloadEntry: from now on it takes traffic.
async fn register(store: &Arc<DirStore>, r: &Replica, ports: &Ports) -> Result<(), String> {
    let text = plan::workload_entry(r, ports).to_string();
    let loaded = load_str(&text, &r.pod, &LoadOptions::default());
    if loaded.has_errors() {
        let why: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        return Err(why.join("; "));
    }
    let store = store.clone();
    match tokio::task::spawn_blocking(move || {
        store.apply(loaded.resources, WriteOptions::default())
    })
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Deletes the WorkloadEntries of `replicas`: they take no more traffic.
async fn deregister(store: &Arc<DirStore>, replicas: &[&Replica]) -> Result<(), String> {
    let entries: Vec<ResourceKey> = replicas
        .iter()
        .map(|r| ResourceKey::new(Kind::WorkloadEntry, &r.namespace, &r.pod))
        .collect();
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.delete(&entries, WriteOptions::default())).await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The Deployments, Services and Namespaces of `snapshot`, by key and generation: what a
/// change of the running replicas can follow from.
fn workload_kinds(snapshot: &Snapshot) -> Vec<(ResourceKey, i64)> {
    snapshot
        .resources
        .iter()
        .filter(|(k, _)| matches!(k.kind, Kind::Deployment | Kind::Service | Kind::Namespace))
        .map(|(k, s)| (k.clone(), s.generation))
        .collect()
}

/// What the store's Deployments ask for.
struct Desired {
    replicas: BTreeMap<PodKey, Replica>,
    /// Deployments (namespace, name) that can't be planned: they keep the replicas they have.
    failed: BTreeSet<(String, String)>,
    /// Why, one line each.
    errors: BTreeSet<String>,
}

/// The replicas `resources` plan, by namespace and pod, skipping Deployments in the `gone`
/// namespaces; the Deployments (namespace, name) that can't be planned; and why. Each Deployment is planned on its own, so one unknown image stops only its own.
fn desired(resources: &[Resource], runs: &[(String, String)], gone: &BTreeSet<String>) -> Desired {
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
        others.push(d.clone());
        match plan::plan(&others, runs) {
            Ok(replicas) => {
                for r in replicas {
                    out.insert((r.namespace.clone(), r.pod.clone()), r);
                }
            }
            Err(e) => {
                errors.extend(e);
                failed.insert((d.namespace().to_string(), d.name().to_string()));
            }
        }
        others.pop();
    }
    Desired {
        replicas: out,
        failed,
        errors,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
            replicas: want,
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
        let pods: Vec<&str> = want.keys().map(|(_, p)| p.as_str()).collect();
        assert_eq!(pods, ["httpbin-0", "httpbin-1"]);
        assert_eq!(want.values().next().unwrap().service_ports[0].key, "http");
        assert!(failed.contains(&("web".to_string(), "web".to_string())));
        let gone = BTreeSet::from(["web".to_string()]);
        let Desired {
            replicas: want,
            failed,
            errors,
        } = desired(&loaded.resources, &[], &gone);
        assert!(want.is_empty() && failed.is_empty() && errors.is_empty());
    }

    #[test]
    fn a_changed_service_port_changes_the_replicas_it_selects() {
        let plan = |text: &str| {
            let loaded = load_str(text, "t.yaml", &LoadOptions::default());
            desired(&loaded.resources, &[], &BTreeSet::new()).replicas
        };
        let key = ("web".to_string(), "httpbin-0".to_string());
        let before = plan(MANIFESTS);
        assert_eq!(plan(MANIFESTS)[&key], before[&key]);
        let after = plan(&MANIFESTS.replace("name: http, port", "name: grpc, port"));
        assert_eq!(after[&key].service_ports[0].key, "grpc");
        assert_ne!(after[&key], before[&key]);
    }
}

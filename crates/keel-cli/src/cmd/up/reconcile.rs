//! Keeps the running replicas in step with the store, as Kubernetes' controllers do: once the
//! mesh is up, every change of a Deployment, Service or Namespace (`keel apply -f`,
//! `keel delete -f`) is planned again with [`plan::plan`] into what each Deployment wants (a pod
//! template, a replica count, a strategy), and each Deployment is moved towards it one
//! [`rollout::step`] at a time, again on every tick as pods become ready. New pods start (ports
//! reserved, sidecar and containers started, registered once ready); pods no Deployment wants
//! stop (registration deleted first, then, once every proxy has that change or 5 s have passed,
//! SIGTERM to their process groups, as Kubernetes waits out endpoint propagation).
//!
//! A Deployment whose pod template changed (image, env, labels, args, annotations; or the ports
//! and protocols its Services give it) rolls as Kubernetes' `RollingUpdate` does by default:
//! new pods start beside the old ones under new names (`<deployment>-<n>`, the lowest `n` not
//! in use), within `maxSurge`, and an old pod stops only once enough new ones are ready
//! (`maxUnavailable`), so a one-replica Deployment keeps serving throughout. A new pod that
//! never becomes ready leaves the old ones serving; that is reported once. `strategy.type:
//! Recreate` stops every old pod first. Between changes each [`Pod`] restarts processes that
//! exit, deregistered until ready again ([`super::supervise`]).
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

use super::super::servers::MeshCa;
use super::find_bin;
use super::plan::{self, Ports, Replica};
use super::pods::{self, PodInfo};
use super::ports::{PortReservation, SHAREABLE};
use super::process::{Binaries, Proc, start_replica, starting, stop_all, unshare_app_ports};
use super::ready::wait_for_proxies;
use super::rollout::{
    self, DeploymentKey, Desired, PodState, Want, desired, pod_index, runs_template,
};
use super::supervise::Pod;
use super::ticker::{StoreTicker, Wake};

/// How long a ready pod being stopped waits for the proxies to stop sending it traffic.
const DRAIN_WITHIN: Duration = Duration::from_secs(5);

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
    pub ca: Option<MeshCa>,
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
    /// What each Deployment wants, as last planned.
    wants: BTreeMap<DeploymentKey, Want>,
    /// Deployments that can't be planned: their pods are left as they are.
    failed: BTreeSet<DeploymentKey>,
    /// Deployments whose stuck rollout was reported.
    stuck: BTreeSet<DeploymentKey>,
    /// Deployments whose new pod could not start: tried again when they change.
    unstartable: BTreeSet<DeploymentKey>,
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
            wants: BTreeMap::new(),
            failed: BTreeSet::new(),
            stuck: BTreeSet::new(),
            unstartable: BTreeSet::new(),
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
        let mut ticker = StoreTicker::new(self.launch.store.subscribe());
        loop {
            if let Wake::Changed(snapshot) = ticker.next().await {
                self.reconcile(&snapshot).await;
            }
            self.check().await;
            // Rollouts move on as new pods become ready.
            self.converge().await;
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
            deployments,
            failed,
            errors,
        } = desired(&resources, &self.launch.runs, &gone);
        for e in errors.difference(&self.reported) {
            shout!("error: {e}");
        }
        self.reported = errors;
        if deployments != self.wants {
            // A changed Deployment may get further than last time.
            self.stuck.clear();
            self.unstartable.clear();
        }
        self.wants = deployments;
        self.failed = failed;
        self.converge().await;
    }

    /// Takes one step of each Deployment towards what it wants (see [`rollout::step`]):
    /// scaling, rolling to a new template, stopping what no Deployment wants any more.
    async fn converge(&mut self) {
        let mut stop: Vec<PodKey> = Vec::new();
        let mut start: Vec<Replica> = Vec::new();
        let mut by_deployment: BTreeMap<DeploymentKey, Vec<&Pod>> = BTreeMap::new();
        for pod in self.running.values() {
            let r = &pod.replica;
            by_deployment
                .entry((r.namespace.clone(), r.deployment.clone()))
                .or_default()
                .push(pod);
        }
        for key in self.wants.keys() {
            by_deployment.entry(key.clone()).or_default();
        }
        for (key, pods) in &by_deployment {
            if self.failed.contains(key) {
                continue;
            }
            let Some(want) = self.wants.get(key) else {
                // Deleted (or its Namespace was): every pod stops.
                stop.extend(pods.iter().map(|p| (key.0.clone(), p.replica.pod.clone())));
                continue;
            };
            let states: Vec<PodState> = pods
                .iter()
                .map(|p| PodState {
                    name: p.replica.pod.clone(),
                    index: pod_index(&p.replica.pod, &key.1),
                    current: want
                        .template
                        .as_ref()
                        .is_some_and(|t| runs_template(&p.replica, t)),
                    ready: p.ready,
                })
                .collect();
            let step = rollout::step(want.replicas, want.strategy, &states);
            report_stuck(&mut self.stuck, key, pods, &states);
            stop.extend(step.stop.into_iter().map(|pod| (key.0.clone(), pod)));
            let (Some(template), false) = (&want.template, self.unstartable.contains(key)) else {
                continue;
            };
            let mut used: Vec<usize> = states.iter().map(|s| s.index).collect();
            for _ in 0..step.start {
                let index = rollout::free_index(&used);
                used.push(index);
                let mut r = template.clone();
                r.pod = format!("{}-{index}", key.1);
                start.push(r);
            }
        }
        if stop.is_empty() && start.is_empty() {
            return;
        }
        self.stop(&stop).await;
        for r in start {
            let key = (r.namespace.clone(), r.deployment.clone());
            if !self.start(r).await {
                // Tried again once the Deployment changes, not on every tick.
                self.unstartable.insert(key);
            }
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
        match deregister(&self.launch.store, &replicas).await {
            Ok(version) if stopping.iter().any(|p| p.ready) => {
                wait_for_proxies(&self.launch.registry, version, DRAIN_WITHIN).await
            }
            Ok(_) => {}
            Err(e) => shout!("warning: cannot deregister stopped replicas: {e}"),
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

    /// Reserves ports for `r` and starts its processes; errors are printed (false). It is
    /// registered (takes traffic) once ready, as Kubernetes lists only ready pods among a
    /// Service's endpoints; see [`Reconciler::check`].
    async fn start(&mut self, r: Replica) -> bool {
        let ports = match Ports::reserve(&r, &mut self.reserved) {
            Ok(p) => p,
            Err(e) => {
                shout!(
                    "error: deployment {}/{}: no free loopback port: {e}",
                    r.namespace,
                    r.deployment
                );
                return false;
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
            return false;
        }
        let started = start_replica(&r, &ports, &self.binaries());
        if !SHAREABLE {
            self.reserved.release_all();
        }
        match started {
            Ok(procs) => {
                let key = (r.namespace.clone(), r.pod.clone());
                self.running.insert(key, Pod::new(r, ports, procs, false));
                true
            }
            Err(e) => {
                shout!(
                    "error: deployment {}/{}: cannot start {}: {e}",
                    r.namespace,
                    r.deployment,
                    r.pod
                );
                self.release(&ports);
                false
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
            ca: l.ca.as_ref(),
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
            ca: l.ca.as_ref(),
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

/// Says once per rollout that a Deployment's new pods don't become ready while old ones
/// still serve (Kubernetes' stuck rollout).
fn report_stuck(
    reported: &mut BTreeSet<DeploymentKey>,
    key: &DeploymentKey,
    pods: &[&Pod],
    states: &[PodState],
) {
    if !states.iter().any(|s| !s.current) || reported.contains(key) {
        return;
    }
    let Some((pod, why)) = pods
        .iter()
        .zip(states)
        .filter(|(p, s)| s.current && !p.ready)
        .find_map(|(p, _)| Some((p, p.trouble.clone()?)))
    else {
        return;
    };
    reported.insert(key.clone());
    shout!(
        "error: deployment {}/{}: rollout stuck: new pod {} is not ready ({why}); the old pods keep serving",
        key.0,
        key.1,
        pod.replica.pod
    );
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

/// Deletes the WorkloadEntries of `replicas`, so they take no more traffic; the store's
/// version after it.
async fn deregister(store: &Arc<DirStore>, replicas: &[&Replica]) -> Result<u64, String> {
    let entries: Vec<ResourceKey> = replicas
        .iter()
        .map(|r| ResourceKey::new(Kind::WorkloadEntry, &r.namespace, &r.pod))
        .collect();
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.delete(&entries, WriteOptions::default())).await
    {
        Ok(Ok(report)) => Ok(report.version),
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

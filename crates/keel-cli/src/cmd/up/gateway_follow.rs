//! The ingress gateway over the mesh's life. Istio installs `istio-ingressgateway` whether or
//! not a Gateway exists yet; here it costs a process and a port, so it starts with the first
//! Gateway that selects it — in the manifests `keel up` was given, or applied later
//! (`keel apply -f httpbin-gateway.yaml`, as Istio's ingress tasks do). Once running it stays,
//! as Istio's does when the last Gateway goes, and Gateways added later only add listeners,
//! which it binds from its next xDS push. It is restarted when it exits, with Kubernetes'
//! back-off, like any other pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use keel_config::Resource;
use keel_control::store::{ConfigStore, DirStore};
use keel_control::xds::ProxyRegistry;

use super::super::servers::MeshCa;
use super::gateway::{self, Ingress, NAME, NAMESPACE, Probe, Served};
use super::ports::{PortReservation, SHAREABLE};
use super::process::{Proc, exited, stop_all};
use super::restart::{Backoff, seconds};
use super::ticker::{StoreTicker, Wake};

enum State {
    /// No Gateway selects it yet.
    Absent,
    Starting {
        proc: Proc,
        since: Instant,
        waiting: Option<u16>,
    },
    Running {
        proc: Proc,
        since: Instant,
    },
    /// Exited; starts again at `at`.
    Waiting {
        at: Instant,
    },
}

/// Where the gateway runs from and what it serves.
pub(super) struct GatewayFollower {
    store: Arc<DirStore>,
    registry: Arc<ProxyRegistry>,
    overrides: Vec<(u16, u16)>,
    xds: std::net::SocketAddr,
    logs: PathBuf,
    proxy_bin: PathBuf,
    /// The flag that moves the gateway's port, when not `--gateway-port` (`keel demo --port`).
    port_flag: Option<&'static str>,
    ca: Option<MeshCa>,
    root_namespace: String,
    /// `gatewayTopology.numTrustedProxies` from the mesh config (see
    /// [`gateway::trusted_proxies`]), as of the last snapshot: used at the next (re)start.
    trusted_proxies: Option<u8>,
    /// The last mesh-config error printed, so it's printed once.
    mesh_reported: Option<String>,
    ingress: Option<Ingress>,
    admin: Option<u16>,
    state: State,
    restarts: u32,
    backoff: Backoff,
    reserved: PortReservation,
    /// The last planning error printed, so it's printed once.
    reported: Option<String>,
}

impl GatewayFollower {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<DirStore>,
        registry: Arc<ProxyRegistry>,
        overrides: Vec<(u16, u16)>,
        xds: std::net::SocketAddr,
        logs: PathBuf,
        proxy_bin: PathBuf,
        port_flag: Option<&'static str>,
        ca: Option<MeshCa>,
        root_namespace: String,
        trusted_proxies: Option<u8>,
    ) -> Self {
        GatewayFollower {
            store,
            registry,
            overrides,
            xds,
            logs,
            proxy_bin,
            port_flag,
            ca,
            root_namespace,
            trusted_proxies,
            mesh_reported: None,
            ingress: None,
            admin: None,
            state: State::Absent,
            restarts: 0,
            backoff: Backoff::from_env(),
            reserved: PortReservation::default(),
            reported: None,
        }
    }

    /// Takes over the gateway `keel up` started and saw ready, with its admin port.
    pub fn adopt(&mut self, ingress: Ingress, admin: u16, proc: Proc) {
        self.ingress = Some(ingress);
        self.admin = Some(admin);
        self.state = State::Running {
            proc,
            since: Instant::now(),
        };
    }

    /// The gateway's process, if one runs, for the mesh to stop.
    pub fn into_procs(self) -> Vec<Proc> {
        match self.state {
            State::Starting { proc, .. } | State::Running { proc, .. } => vec![proc],
            State::Absent | State::Waiting { .. } => Vec::new(),
        }
    }

    /// Follows the store's Gateways; never returns (the mesh's shutdown ends it).
    pub async fn run(&mut self) {
        let mut ticker = StoreTicker::new(self.store.subscribe());
        loop {
            if let Wake::Changed(snapshot) = ticker.next().await {
                let resources: Vec<Resource> = snapshot
                    .resources
                    .values()
                    .map(|s| s.resource.clone())
                    .collect();
                self.follow(&resources);
            }
            self.check().await;
        }
    }

    /// Starts the gateway when a Gateway first selects it, and says which ports Gateways
    /// added while it runs.
    fn follow(&mut self, resources: &[Resource]) {
        match gateway::trusted_proxies(resources, &self.root_namespace) {
            Ok(n) => {
                self.trusted_proxies = n;
                self.mesh_reported = None;
            }
            // The last good value stays.
            Err(e) if self.mesh_reported.as_ref() != Some(&e) => {
                shout!("error: {e}; the ingress gateway keeps its trusted proxy count");
                self.mesh_reported = Some(e);
            }
            Err(_) => {}
        }
        let Some(planned) = gateway::plan(resources, &self.overrides) else {
            return;
        };
        let Some(running) = &self.ingress else {
            if let Err(e) = gateway::check_ports(&planned, self.port_flag) {
                if self.reported.as_deref() != Some(e.as_str()) {
                    shout!("error: {e}");
                    self.reported = Some(e);
                }
                return;
            }
            self.reported = None;
            self.ingress = Some(planned);
            self.start();
            return;
        };
        let added: Vec<Served> = planned
            .served
            .iter()
            .filter(|s| !running.served.iter().any(|r| r.local_port == s.local_port))
            .cloned()
            .collect();
        if added.is_empty() && planned.served.len() == running.served.len() {
            return;
        }
        let lines = gateway::summary(
            &Ingress {
                ports: planned.ports.clone(),
                served: added,
            },
            &self.logs,
        );
        for line in lines {
            say!("{}", line.trim_start());
        }
        self.ingress = Some(planned);
    }

    fn start(&mut self) {
        let Some(ingress) = &self.ingress else { return };
        let admin = match self.admin {
            Some(a) => a,
            None => match self.reserved.reserve() {
                Ok(a) => {
                    if !SHAREABLE {
                        // The gateway can't bind a port held this way: hand it over.
                        self.reserved.release(a);
                    }
                    self.admin = Some(a);
                    a
                }
                Err(e) => {
                    shout!("error: {NAME}: no free loopback port: {e}");
                    return;
                }
            },
        };
        say!("{}", gateway::starting(ingress));
        match gateway::start(
            ingress,
            self.xds,
            admin,
            &self.logs,
            &self.proxy_bin,
            self.ca.as_ref(),
            self.trusted_proxies,
        ) {
            Ok(proc) => {
                self.state = State::Starting {
                    proc,
                    since: Instant::now(),
                    waiting: None,
                };
            }
            Err(e) => {
                shout!("error: {NAME}.{NAMESPACE}: cannot start: {e}");
                self.crashed(None, Instant::now());
            }
        }
    }

    /// Moves a starting gateway to running once ready; restarts an exited one after its
    /// back-off.
    async fn check(&mut self) {
        let (Some(ingress), Some(admin)) = (&self.ingress, self.admin) else {
            return;
        };
        match &mut self.state {
            State::Absent => {}
            State::Waiting { at } => {
                if Instant::now() >= *at {
                    self.start();
                }
            }
            State::Running { proc, since } => {
                if let Some(what) = exited(std::slice::from_mut(proc)) {
                    let since = *since;
                    self.crashed(Some(what), since);
                }
            }
            State::Starting {
                proc,
                since,
                waiting,
            } => {
                let probe =
                    gateway::probe(ingress, admin, std::slice::from_mut(proc), &self.registry)
                        .await;
                match probe {
                    Probe::Ready => {
                        say!("✔ {NAME}.{NAMESPACE} ready");
                        for line in gateway::summary(ingress, &self.logs) {
                            say!("{}", line.trim_start());
                        }
                        let since = *since;
                        if let State::Starting { proc, .. } =
                            std::mem::replace(&mut self.state, State::Absent)
                        {
                            self.state = State::Running { proc, since };
                        }
                    }
                    Probe::Failed(why) => {
                        let since = *since;
                        self.crashed(Some(why), since);
                    }
                    Probe::Waiting(port) if since.elapsed() > gateway::READY_WITHIN => {
                        let since = *since;
                        self.crashed(Some(gateway::not_ready(port)), since);
                    }
                    Probe::Waiting(port) => *waiting = port,
                }
            }
        }
    }

    /// Stops what is left of the gateway (started at `started`) and schedules its restart.
    fn crashed(&mut self, why: Option<String>, started: Instant) {
        let delay = self.backoff.next(started, Instant::now());
        self.restarts = self.restarts.saturating_add(1);
        if let State::Starting { proc, .. } | State::Running { proc, .. } =
            std::mem::replace(&mut self.state, State::Absent)
        {
            let mut procs = vec![proc];
            // Its process group may still hold the ports; stop it before the next start.
            tokio::spawn(async move { stop_all(&mut procs).await });
        }
        shout!(
            "↻ {NAME}.{NAMESPACE}: {}; restart {} in {} (see {}/{NAME}.log)",
            why.unwrap_or_else(|| "exited".into()),
            self.restarts,
            seconds(delay),
            self.logs.display()
        );
        self.state = State::Waiting {
            at: Instant::now() + delay,
        };
    }
}

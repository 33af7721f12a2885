//! One running pod as the kubelet keeps it: its processes (the sidecar, then each container),
//! each restarted on its own when it exits ([`super::restart`]), and its readiness: ready when
//! every process runs, the sidecar has its configuration and every container that declares
//! ports listens. The reconciler registers a pod when it becomes ready and deregisters it when
//! a process exits, as Kubernetes lists only ready pods among a Service's endpoints.

use std::time::{Duration, Instant};

use keel_control::xds::ProxyRegistry;

use super::plan::{Ports, Replica};
use super::process::{Binaries, Proc, start_container, start_sidecar};
use super::ready::{apps_listen, http_status, rejected};
use super::restart::{Backoff, describe, seconds};

/// How long a pod may take to become ready before it is reported (it keeps trying, as a pod
/// whose readiness probe fails stays in place).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Which process of its pod a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Sidecar,
    /// The container at this index of the pod template.
    Container(usize),
}

/// One process of a pod, and its restarts.
pub(super) struct Slot {
    role: Role,
    /// `None` while it waits for its restart.
    proc: Option<Proc>,
    started: Instant,
    /// How many times it was restarted (Kubernetes' `restartCount`).
    restarts: u32,
    backoff: Backoff,
    restart_at: Option<Instant>,
}

/// A pod the reconciler runs.
pub(super) struct Pod {
    pub replica: Replica,
    pub ports: Ports,
    slots: Vec<Slot>,
    /// Ready and registered.
    pub ready: bool,
    /// When it last started or lost a process: it has been unready since.
    unready_since: Instant,
    /// Why it isn't ready, if known: the last exit, or a readiness that never came.
    pub trouble: Option<String>,
    /// The readiness problem of this attempt was reported.
    reported: bool,
}

/// What a [`Pod::supervise`] pass found.
#[derive(Debug, Default)]
pub(super) struct Supervised {
    /// A process of a ready pod exited: it must be deregistered.
    pub lost_ready: bool,
    /// A process exited or was restarted: `pods.json` changed.
    pub changed: bool,
}

impl Pod {
    /// A pod whose processes were just started (by [`super::process::start_replica`], in its
    /// order: the sidecar if injected, then each container); `ready` if already seen ready.
    pub fn new(replica: Replica, ports: Ports, procs: Vec<Proc>, ready: bool) -> Pod {
        let roles = replica
            .inject
            .then_some(Role::Sidecar)
            .into_iter()
            .chain((0..replica.containers.len()).map(Role::Container));
        let now = Instant::now();
        let slots = roles
            .zip(procs)
            .map(|(role, proc)| Slot {
                role,
                proc: Some(proc),
                started: now,
                restarts: 0,
                backoff: Backoff::from_env(),
                restart_at: None,
            })
            .collect();
        Pod {
            replica,
            ports,
            slots,
            ready,
            unready_since: now,
            trouble: None,
            reported: false,
        }
    }

    /// `<pod>.<namespace>`: its sidecar's node id, and how the lines name it.
    pub fn name(&self) -> String {
        format!("{}.{}", self.replica.pod, self.replica.namespace)
    }

    /// Every process still running, for stopping them.
    pub fn take_procs(&mut self) -> Vec<Proc> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.proc.take())
            .collect()
    }

    /// Restarts of the sidecar, and of each container in order.
    pub fn restarts(&self) -> (u32, Vec<u32>) {
        let of = |role: Role| {
            self.slots
                .iter()
                .find(|s| s.role == role)
                .map_or(0, |s| s.restarts)
        };
        let containers = (0..self.replica.containers.len())
            .map(|i| of(Role::Container(i)))
            .collect();
        (of(Role::Sidecar), containers)
    }

    /// Notices processes that exited (each gets its back-off and one line saying so) and
    /// restarts those whose back-off is over.
    pub fn supervise(&mut self, bins: &Binaries) -> Supervised {
        let mut out = Supervised::default();
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let exited = self.slots[i]
                .proc
                .as_mut()
                .and_then(|p| p.child.try_wait().ok().flatten());
            if let Some(status) = exited {
                out.changed = true;
                out.lost_ready |= self.ready;
                self.ready = false;
                self.unready_since = now;
                self.reported = false;
                let (what, logs) = self.describe(self.slots[i].role);
                let name = self.name();
                let slot = &mut self.slots[i];
                slot.proc = None;
                let delay = slot.backoff.next(slot.started, now);
                slot.restart_at = Some(now + delay);
                say!(
                    "↻ {name}: {what} exited ({}), restart {} in {} — see keel logs {logs}",
                    describe(status),
                    slot.restarts + 1,
                    seconds(delay)
                );
                self.trouble = Some(format!("{what} exited ({})", describe(status)));
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].restart_at.is_none_or(|at| at > now) {
                continue;
            }
            let role = self.slots[i].role;
            let started = match role {
                Role::Sidecar => start_sidecar(&self.replica, &self.ports, bins),
                Role::Container(c) => start_container(&self.replica, c, &self.ports, bins),
            };
            let slot = &mut self.slots[i];
            slot.restart_at = None;
            slot.restarts += 1;
            slot.started = now;
            out.changed = true;
            match started {
                Ok(p) => slot.proc = Some(p),
                Err(e) => {
                    // Counted as an exit: the next attempt backs off further.
                    let delay = slot.backoff.next(now, now);
                    slot.restart_at = Some(now + delay);
                    let (what, _) = self.describe(role);
                    shout!(
                        "error: {}: cannot restart {what}: {e}; trying again in {}",
                        self.name(),
                        seconds(delay)
                    );
                }
            }
        }
        out
    }

    /// Whether the pod became ready: every process runs, the sidecar has its configuration
    /// and the containers listen. A sidecar that rejects its configuration, or a pod not ready
    /// within [`READY_WITHIN`], is reported once (and it keeps trying, as a pod whose readiness
    /// probe fails stays in place).
    pub async fn became_ready(&mut self, registry: &ProxyRegistry) -> bool {
        if self.ready || self.slots.iter().any(|s| s.proc.is_none()) {
            return false;
        }
        let r = &self.replica;
        let why = if let Some(reason) = r.inject.then(|| rejected(registry, &self.name())).flatten()
        {
            format!("its sidecar rejected its configuration: {reason}")
        } else {
            let proxy_ready =
                !r.inject || http_status(self.ports.admin, "/healthz/ready").await == Some(200);
            if proxy_ready && apps_listen(&self.ports.listening(r)).await {
                self.ready = true;
                self.trouble = None;
                self.reported = false;
                return true;
            }
            if self.unready_since.elapsed() <= READY_WITHIN {
                return false;
            }
            format!(
                "not ready within {} s ({})",
                READY_WITHIN.as_secs(),
                if proxy_ready {
                    "a container doesn't listen on its first port"
                } else {
                    "its sidecar has no configuration yet"
                }
            )
        };
        if !self.reported {
            self.reported = true;
            shout!(
                "error: deployment {}/{}: {}: {why}",
                r.namespace,
                r.deployment,
                r.pod
            );
        }
        self.trouble = Some(why);
        false
    }

    /// How the restart line names a process, and the `keel logs` arguments for its log.
    fn describe(&self, role: Role) -> (String, String) {
        let r = &self.replica;
        match role {
            Role::Sidecar => ("sidecar".into(), format!("{} -c proxy", r.pod)),
            Role::Container(_) if r.containers.len() == 1 => ("app".into(), r.pod.clone()),
            Role::Container(i) => {
                let name = r.containers.get(i).map_or("?", |c| c.name.as_str());
                (format!("container {name}"), format!("{} -c {name}", r.pod))
            }
        }
    }
}

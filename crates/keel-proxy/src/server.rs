//! Listeners and connections: binds what the snapshot lists, hands each connection to the
//! protocol it speaks, and keeps serving existing connections across snapshot swaps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use keel_snapshot::{Listener, ListenerKind, ListenerProtocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::l4::L4Config;
use crate::runtime::Runtime;
use crate::telemetry::{ProxyIdentity, Reporter, Telemetry};
use crate::tls::terminate::Terminator;
use crate::upstream::Pools;

/// State shared by every listener and connection.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub pools: Arc<Pools>,
    /// Flips to `true` when the proxy drains: connections finish and close.
    pub drain: watch::Sender<bool>,
    /// Istio's metrics and access logs.
    pub telemetry: Arc<Telemetry>,
    /// The proxy's own locality, for locality-aware balancing.
    pub locality: String,
    /// Protocol detection, TLS passthrough and TCP settings, and the original-destination
    /// lookup.
    pub l4: L4Config,
    /// Mirrored copies get `-shadow` appended to their Host (Istio before 1.28) instead of
    /// the original Host (Istio 1.28 and later, Keel's default).
    pub shadow_host_suffix: std::sync::atomic::AtomicBool,
    /// The workload certificate (`--ca-address`), once the proxy has asked for it: gateways'
    /// ISTIO_MUTUAL servers present it.
    pub identity: std::sync::OnceLock<Arc<crate::identity::WorkloadIdentity>>,
}

impl Shared {
    pub fn new(locality: &str) -> Arc<Shared> {
        Shared::with_parts(
            locality,
            Arc::new(Telemetry::new(ProxyIdentity::default())),
            L4Config::default(),
        )
    }

    /// Like [`Shared::new`], with L4 settings (tests pass a fake original destination).
    pub fn with_l4(locality: &str, l4: L4Config) -> Arc<Shared> {
        Shared::with_parts(
            locality,
            Arc::new(Telemetry::new(ProxyIdentity::default())),
            l4,
        )
    }

    pub fn with_parts(locality: &str, telemetry: Arc<Telemetry>, l4: L4Config) -> Arc<Shared> {
        let (drain, _) = watch::channel(false);
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(Runtime::empty()),
            pools: Arc::new(Pools::default()),
            drain,
            telemetry,
            locality: locality.to_string(),
            l4,
            shadow_host_suffix: std::sync::atomic::AtomicBool::new(false),
            identity: std::sync::OnceLock::new(),
        })
    }

    /// How mirrored copies write their Host.
    pub fn shadow_host(&self) -> crate::resilience::ShadowHost {
        if self
            .shadow_host_suffix
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            crate::resilience::ShadowHost::AppendSuffix
        } else {
            crate::resilience::ShadowHost::Unchanged
        }
    }

    /// Installs a new snapshot; requests in flight finish on the old one.
    pub fn install(&self, snapshot: keel_snapshot::Snapshot) {
        let previous = self.runtime.load_full();
        let rt = Runtime::new(snapshot, Some(&previous), &self.locality);
        let live = rt
            .clusters
            .values()
            .map(|c| c.policies.breakers.id())
            .collect();
        self.pools
            .set_tls(crate::tls::upstream::UpstreamTlsTable::from_runtime(&rt));
        self.runtime.store(Arc::new(rt));
        self.pools.retain_clusters(&live);
    }
}

/// What a connection handler knows about its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// For connections redirected by iptables: where the client was going.
    pub original_dst: Option<SocketAddr>,
    pub tls: bool,
    /// `destination` on inbound listeners, `source` on outbound and gateway ones.
    pub reporter: Reporter,
    /// The peer's SPIFFE ID, when it authenticated with mesh mTLS.
    pub peer_identity: Option<Arc<str>>,
    /// The peer's workload, when it said who it is in a TCP metadata exchange
    /// ([`crate::l4::exchange`]). HTTP peers say it per request, in headers.
    pub peer_workload: Option<Arc<crate::telemetry::ProxyIdentity>>,
    /// The client certificate's `x-forwarded-client-cert` element, when the client presented
    /// one (mesh mTLS, or a MUTUAL gateway server): see [`crate::tls::xfcc`].
    pub client_cert: Option<Arc<str>>,
    /// Gateways: `Some(n)`, Istio's `gatewayTopology.numTrustedProxies` — the client's address
    /// is appended to `X-Forwarded-For`, and the original client (`remote.ip`) is the n-th
    /// address from its right (the peer itself when n is 0). Sidecars: `None`, and `remote.ip`
    /// is the last `X-Forwarded-For` address, as Envoy without `use_remote_address`.
    pub gateway_trusted_hops: Option<u8>,
    /// Gateways: the peer's address as the `X-Forwarded-For` entry they append, formatted
    /// once per connection rather than per request.
    pub forwarded_for: Option<http::HeaderValue>,
}

impl ConnInfo {
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The port the client addressed: the original destination's when iptables redirected
    /// the connection, else the listener's.
    pub fn destination_port(&self) -> u16 {
        self.original_dst.map_or(self.local.port(), |a| a.port())
    }
}

/// A bound listener: where, speaking what, whether it terminates TLS, and its accept loop.
type Running = (SocketAddr, ListenerProtocol, bool, JoinHandle<()>);

/// Sockets bound for a snapshot not installed yet ([`Listeners::prepare`]); dropping it
/// closes them.
pub struct Prepared {
    bound: Vec<(Listener, TcpListener)>,
}

/// The running listeners, reconciled against each new snapshot.
#[derive(Default)]
pub struct Listeners {
    running: Mutex<HashMap<String, Running>>,
}

impl Listeners {
    /// Binds listeners that are new, stops accepting on removed ones (their connections
    /// continue), and keeps the rest untouched. Returns one error per listener that could not
    /// be bound (e.g. port in use); the others still run.
    pub async fn reconcile(&self, shared: &Arc<Shared>) -> Vec<String> {
        let rt = shared.runtime.load_full();
        let wanted: HashMap<String, Listener> = rt
            .snapshot
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.clone()))
            .collect();
        let mut errors = Vec::new();
        let mut to_bind = Vec::new();
        if let Ok(mut running) = self.running.lock() {
            running.retain(|name, (addr, proto, tls, handle)| {
                let keep = wanted.get(name).is_some_and(|l| {
                    l.address == *addr && l.protocol == *proto && l.terminate_tls.is_empty() != *tls
                });
                if !keep {
                    handle.abort();
                }
                keep
            });
            for (name, l) in &wanted {
                if !running.contains_key(name) {
                    to_bind.push(l.clone());
                }
            }
        }
        for l in to_bind {
            match TcpListener::bind(l.address).await {
                Ok(sock) => {
                    let handle = tokio::spawn(accept_loop(shared.clone(), l.clone(), sock));
                    if let Ok(mut running) = self.running.lock() {
                        running.insert(
                            l.name.clone(),
                            (l.address, l.protocol, !l.terminate_tls.is_empty(), handle),
                        );
                    }
                }
                Err(e) => errors.push(format!(
                    "listener {} cannot bind {}: {e}",
                    l.name, l.address
                )),
            }
        }
        errors
    }

    /// Binds the sockets of `snapshot`'s listeners on new addresses before anything changes,
    /// so a snapshot with a listener that cannot bind can be refused whole while the running
    /// configuration stays. Addresses a running listener already holds are left to
    /// [`Listeners::commit`], which rebinds them if the listener changed.
    pub async fn prepare(
        &self,
        snapshot: &keel_snapshot::Snapshot,
    ) -> Result<Prepared, Vec<String>> {
        let running: HashMap<String, SocketAddr> = self
            .running
            .lock()
            .map(|r| r.iter().map(|(n, (a, _, _, _))| (n.clone(), *a)).collect())
            .unwrap_or_default();
        let mut bound = Vec::new();
        let mut errors = Vec::new();
        let held: std::collections::HashSet<SocketAddr> = running.values().copied().collect();
        for l in &snapshot.listeners {
            // Kept, or its address is held by a listener this snapshot changes or removes:
            // that one is freed and rebound by `commit`.
            let kept = running.get(&l.name) == Some(&l.address);
            if kept || (held.contains(&l.address) && l.address.port() != 0) {
                continue;
            }
            match TcpListener::bind(l.address).await {
                Ok(sock) => bound.push((l.clone(), sock)),
                Err(e) => errors.push(format!(
                    "listener {} cannot bind {}: {e}",
                    l.name, l.address
                )),
            }
        }
        if errors.is_empty() {
            Ok(Prepared { bound })
        } else {
            Err(errors)
        }
    }

    /// After [`Shared::install`] of the snapshot given to [`Listeners::prepare`]: starts the
    /// prepared listeners, stops removed ones (their connections continue) and rebinds the
    /// rest as [`Listeners::reconcile`] does. Returns bind errors of those rebinds.
    pub async fn commit(&self, shared: &Arc<Shared>, prepared: Prepared) -> Vec<String> {
        for (l, sock) in prepared.bound {
            let handle = tokio::spawn(accept_loop(shared.clone(), l.clone(), sock));
            if let Ok(mut running) = self.running.lock()
                && let Some((_, _, _, old)) = running.insert(
                    l.name.clone(),
                    (l.address, l.protocol, !l.terminate_tls.is_empty(), handle),
                )
            {
                old.abort();
            }
        }
        self.reconcile(shared).await
    }

    /// The addresses actually bound (ports assigned for `:0`), by listener name.
    pub fn names(&self) -> Vec<String> {
        self.running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops accepting on every listener.
    pub fn stop_all(&self) {
        if let Ok(mut running) = self.running.lock() {
            for (_, (_, _, _, h)) in running.drain() {
                h.abort();
            }
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: Listener, sock: TcpListener) {
    let local = sock.local_addr().unwrap_or(listener.address);
    let terminates = !listener.terminate_tls.is_empty();
    let mut tls = TlsCache::default();
    loop {
        let (stream, remote) = match sock.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = %listener.name, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Inbound listeners report as `destination`; outbound and gateways as `source`.
        let reporter = if listener.kind == ListenerKind::SidecarInbound {
            Reporter::Destination
        } else {
            Reporter::Source
        };
        // Only sidecar listeners sit behind iptables; a gateway's connections go where they
        // were addressed.
        let original_dst = match listener.kind {
            ListenerKind::SidecarOutbound | ListenerKind::SidecarInbound => {
                shared.l4.original_dst.original_dst(&stream)
            }
            ListenerKind::Gateway { .. } => None,
        };
        let conn = Arc::new(ConnInfo {
            listener: listener.name.clone(),
            local,
            remote,
            original_dst,
            tls: false,
            reporter,
            peer_identity: None,
            peer_workload: None,
            client_cert: None,
            gateway_trusted_hops: matches!(listener.kind, ListenerKind::Gateway { .. })
                .then_some(shared.l4.num_trusted_proxies),
            forwarded_for: matches!(listener.kind, ListenerKind::Gateway { .. })
                .then(|| http::HeaderValue::from_str(&remote.ip().to_string()).ok())
                .flatten(),
        });
        let shared = shared.clone();
        let protocol = listener.protocol;
        if terminates {
            let Some(terminator) = tls.current(&shared, &listener.name) else {
                continue;
            };
            // Boxed before it is spawned, as below.
            tokio::spawn(Box::pin(async move {
                match terminator.accept(stream, shared.l4.hello_timeout).await {
                    Ok(t) => {
                        // A gateway's own certificate rarely has a URI SAN: no `By`.
                        let client_cert = t
                            .stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|leaf| Arc::from(crate::tls::xfcc::element(None, leaf)));
                        let conn = Arc::new(ConnInfo {
                            tls: true,
                            client_cert,
                            ..(*conn).clone()
                        });
                        crate::l4::serve_terminated(shared, conn, protocol, t).await
                    }
                    Err(e) => tracing::info!(
                        listener = %conn.listener, downstream = %conn.remote,
                        "TLS not established: {e}"
                    ),
                }
            }));
            continue;
        }
        // Boxed before it is spawned: a connection's future is about 12 KB (its largest
        // state, whatever state it starts in), and `tokio::spawn` moves what it is given
        // through several calls before it lands in the task. Whether those moves copy it
        // is up to the inliner: one profile-guided build copied it nine times per accepted
        // connection (110k instructions; `IR_NEW_CONN=5 bench/proxy-instructions.sh` with
        // bench/proxy/callsites.py), another once. Boxed, it is copied once, into the box.
        tokio::spawn(Box::pin(serve_connection(shared, conn, protocol, stream)));
    }
}

/// A TLS listener's [`Terminator`], rebuilt when the listener's TLS changes (or its
/// certificate files do).
#[derive(Default)]
struct TlsCache {
    built: Option<Arc<Terminator>>,
    files_checked: Option<std::time::Instant>,
}

impl TlsCache {
    fn current(&mut self, shared: &Shared, name: &str) -> Option<Arc<Terminator>> {
        let rt = shared.runtime.load();
        let source = &rt.snapshot.listener(name)?.terminate_tls;
        let identity = shared.identity.get();
        let check_files = self
            .files_checked
            .is_none_or(|t| t.elapsed() >= crate::tls::terminate::FILE_CHECK);
        let stale = self.built.as_ref().is_none_or(|t| {
            let files = check_files && t.reads_files();
            t.stale(source, identity.is_some(), files)
        });
        if check_files {
            self.files_checked = Some(std::time::Instant::now());
        }
        if stale {
            let http = rt
                .snapshot
                .listener(name)
                .is_some_and(|l| l.protocol == ListenerProtocol::Http);
            self.built = Some(Arc::new(Terminator::new(source, http, identity)));
        }
        self.built.clone()
    }
}

/// Hands the connection to its listener's protocol: [`crate::l4::serve`] dispatches HTTP,
/// TCP, TLS passthrough and detection.
async fn serve_connection(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    protocol: ListenerProtocol,
    stream: TcpStream,
) {
    crate::l4::serve(shared, conn, protocol, stream).await
}

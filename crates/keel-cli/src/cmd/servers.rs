//! The control plane's servers over a config store — the HTTP API, the xDS push, the CA and
//! the monitoring port — started and stopped together, as `keel control-plane` and `keel up`
//! run them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keel_control::api::server::{ApiState, serve};
use keel_control::ca::token::{Authenticator, LocalTokens};
use keel_control::ca::{Ca, CaOptions};
use keel_control::store::ConfigStore;
use keel_control::xds::{Debounce, ProxyRegistry, XdsServer};
use keel_jwks::{ClientOptions, JwksHandle, Report, Reporter, Settings, Timing};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::ServerListen;

/// The running API and xDS servers.
pub(crate) struct Servers {
    /// The connected proxies and their sync state.
    pub registry: Arc<ProxyRegistry>,
    /// The CA, when it serves: what a proxy needs to ask it for a certificate.
    pub ca: Option<MeshCa>,
    stop: watch::Sender<bool>,
    /// `Some` until its result has been taken.
    api: Option<JoinHandle<Result<(), String>>>,
    xds: JoinHandle<Result<(), String>>,
}

/// The control plane's listeners, bound.
pub(crate) struct Bound {
    pub api: TcpListener,
    pub xds: TcpListener,
    pub monitoring: Option<TcpListener>,
    pub api_addr: SocketAddr,
    pub xds_addr: SocketAddr,
    pub monitoring_addr: Option<SocketAddr>,
    /// The CA's listener and material, unless turned off or its port was taken.
    pub ca: Option<BoundCa>,
    /// The JWT key cache: `jwksUri` and OpenID discovery fetched and refreshed for the push.
    pub jwks: JwksHandle,
}

/// Where proxies reach the CA and how they prove who they are.
#[derive(Clone)]
pub(crate) struct MeshCa {
    pub addr: SocketAddr,
    /// `root-cert.pem`: what proxies trust.
    pub root: std::path::PathBuf,
    pub tokens: Arc<LocalTokens>,
}

/// The CA, ready to serve.
pub(crate) struct BoundCa {
    pub listener: TcpListener,
    pub addr: SocketAddr,
    pub ca: Arc<Ca>,
    /// The local mesh's bootstrap tokens (`keel up` gives one to each workload).
    pub tokens: Arc<LocalTokens>,
}

/// Binds the API, xDS and monitoring listeners of `keel control-plane`, `keel up` and
/// `keel demo`. The API and xDS ports must bind (the error says which flag moves them); the
/// monitoring port need not: the API serves the same `/metrics`, and a second local mesh on
/// the machine finds 15014 taken. Nor need the CA's: it is reported and left out. Its
/// material is in `--ca-dir`, else `ca_home`; unreadable material is an error.
pub(crate) async fn bind(at: &ServerListen, ca_home: &Path) -> Result<Bound, String> {
    let api = TcpListener::bind(at.listen).await.map_err(|e| {
        format!(
            "cannot listen on {}: {e} (is another control plane running? choose another address with --listen)",
            at.listen
        )
    })?;
    let xds = TcpListener::bind(at.xds_listen).await.map_err(|e| {
        format!(
            "cannot listen on {} for xDS: {e} (is another control plane running? choose another address with --xds-listen)",
            at.xds_listen
        )
    })?;
    let monitoring = match at.monitoring_listen.0 {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "warning: cannot listen on {addr} for metrics: {e}; they are still at the API's /metrics (or choose another address with --monitoring-listen)"
                );
                None
            }
        },
    };
    let ca = match at.ca_listen.0 {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(listener) => Some(load_ca(at, ca_home, listener).await?),
            Err(e) => {
                eprintln!(
                    "warning: cannot listen on {addr} for the CA: {e}; workloads can't get certificates from this control plane (choose another address with --ca-listen)"
                );
                None
            }
        },
    };
    let jwks = jwks_cache(at)?;
    Ok(Bound {
        ca,
        jwks,
        api_addr: api.local_addr().unwrap_or(at.listen),
        xds_addr: xds.local_addr().unwrap_or(at.xds_listen),
        monitoring_addr: monitoring.as_ref().and_then(|l| l.local_addr().ok()),
        api,
        xds,
        monitoring,
    })
}

/// The key cache for RequestAuthentications' remote key sets. Its reports go to stderr: the
/// control plane has no log of its own, and a key set that can't be fetched means tokens
/// are refused, which whoever runs the mesh must see.
fn jwks_cache(at: &ServerListen) -> Result<JwksHandle, String> {
    let reporter: Reporter = Arc::new(|r: &Report| {
        use std::io::Write as _;
        let level = if r.warning { "warning: " } else { "" };
        let _ = writeln!(std::io::stderr(), "{level}jwks: {}", r.message);
    });
    JwksHandle::http(
        &ClientOptions {
            extra_ca: at.jwks_ca.clone(),
        },
        Settings {
            timing: Timing {
                refresh: at.jwks_refresh_interval,
                ..Timing::default()
            },
            reporter: Some(reporter),
        },
    )
}

/// The CA's line in a start-up summary: where it listens and where its root is.
pub(crate) fn ca_summary(ca: &BoundCa) -> String {
    let source = match ca.ca.source() {
        keel_control::ca::CaSource::SelfSigned(dir) => {
            format!("root {}", dir.join("root-cert.pem").display())
        }
        keel_control::ca::CaSource::PlugIn(dir) => {
            format!("intermediate from {}", dir.display())
        }
    };
    format!(
        "CA on https://{} (trust domain {}; {source})",
        ca.addr,
        ca.ca.trust_domain()
    )
}

/// Loads (or, on first start, creates) the CA's material.
async fn load_ca(
    at: &ServerListen,
    ca_home: &Path,
    listener: TcpListener,
) -> Result<BoundCa, String> {
    let dir = at.ca_dir.clone().unwrap_or_else(|| ca_home.to_path_buf());
    let plugin = at.ca_plugin_dir.clone();
    let opts = CaOptions {
        trust_domain: at.trust_domain.clone(),
        ..CaOptions::default()
    };
    let trust_domain = at.trust_domain.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let ca = Ca::load_or_create(&dir, plugin.as_deref(), opts)
            .map_err(|e| format!("cannot load the CA: {e}"))?;
        let key = dir.join("token-key");
        let tokens = LocalTokens::load_or_create(&key, &trust_domain)
            .map_err(|e| format!("cannot load the CA's token key {}: {e}", key.display()))?;
        Ok::<_, String>((ca, tokens))
    })
    .await
    .map_err(|e| format!("cannot load the CA: {e}"))??;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok(BoundCa {
        listener,
        addr,
        ca: Arc::new(loaded.0),
        tokens: Arc::new(loaded.1),
    })
}

/// Starts the servers on their listeners: API, xDS and, when bound, the monitoring port.
pub(crate) fn start(store: Arc<dyn ConfigStore>, bound: Bound, root_namespace: &str) -> Servers {
    let Bound {
        api,
        xds,
        monitoring,
        ca,
        jwks,
        ..
    } = bound;
    let server = XdsServer::with_jwks(&*store, root_namespace, Debounce::default(), Some(jwks));
    let registry = server.registry();
    let state = ApiState {
        store,
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("KEEL_GIT_COMMIT").to_string(),
        root_namespace: root_namespace.to_string(),
        proxies: Some(registry.clone()),
        metrics: Some(server.metrics()),
        monitoring_only: false,
        jwks: server.jwks(),
    };
    let monitoring_state = ApiState {
        monitoring_only: true,
        ..state.clone()
    };
    let (stop, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let xds_stopped = stopped(stop_rx.clone());
    let xds = tokio::spawn(async move {
        keel_control::xds::serve(xds, server, xds_stopped)
            .await
            .map_err(|e| format!("the xDS server stopped: {e}"))
    });
    let mut mesh_ca = None;
    if let Some(BoundCa {
        listener,
        addr,
        ca,
        tokens,
    }) = ca
    {
        let root = match ca.source() {
            keel_control::ca::CaSource::SelfSigned(dir)
            | keel_control::ca::CaSource::PlugIn(dir) => dir.join("root-cert.pem"),
        };
        mesh_ca = Some(MeshCa {
            addr,
            root,
            tokens: tokens.clone(),
        });
        let ip = addr.ip().to_string();
        match keel_control::ca::service::tls_config(&ca, &[ip.as_str()]) {
            Ok(config) => {
                let service = keel_control::ca::service::CertificateService::new(
                    ca,
                    tokens as Arc<dyn Authenticator>,
                );
                let ca_stopped = stopped(stop_rx.clone());
                tokio::spawn(async move {
                    let served =
                        keel_control::ca::service::serve(listener, config, service, ca_stopped)
                            .await;
                    if let Err(e) = served {
                        eprintln!("warning: the CA stopped: {e}");
                    }
                });
            }
            Err(e) => eprintln!("warning: the CA can't serve TLS: {e}"),
        }
    }
    if let Some(listener) = monitoring {
        let monitoring_stopped = stopped(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(listener, monitoring_state, monitoring_stopped).await {
                eprintln!("warning: the monitoring port stopped: {e}");
            }
        });
    }
    let api_stopped = stopped(stop_rx);
    let api = tokio::spawn(async move {
        serve(api, state, api_stopped)
            .await
            .map_err(|e| format!("the API stopped: {e}"))
    });
    Servers {
        registry,
        ca: mesh_ca,
        stop,
        api: Some(api),
        xds,
    }
}

impl Servers {
    /// Resolves if the API server ends on its own (an error); pending otherwise.
    pub async fn api_failed(&mut self) -> String {
        let Some(api) = self.api.as_mut() else {
            return std::future::pending().await;
        };
        let result = api.await;
        self.api = None;
        match result {
            Ok(Err(e)) => e,
            Ok(Ok(())) => "the API stopped".to_string(),
            Err(e) => format!("the API stopped: {e}"),
        }
    }

    /// Stops both and waits for them (5 s each); returns what went wrong.
    pub async fn stop(self) -> Vec<String> {
        let _ = self.stop.send(true);
        let mut errors = Vec::new();
        let wait = |h: JoinHandle<Result<(), String>>, what: &'static str| async move {
            match tokio::time::timeout(Duration::from_secs(5), h).await {
                Ok(Ok(Err(e))) => Some(e),
                Ok(_) => None,
                Err(_) => Some(format!("the {what} did not stop within 5 s")),
            }
        };
        errors.extend(wait(self.xds, "xDS server").await);
        if let Some(api) = self.api {
            errors.extend(wait(api, "API").await);
        }
        errors
    }
}

/// Ctrl-C or SIGTERM, named for the log line.
pub(crate) async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "interrupted"
}

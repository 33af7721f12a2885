//! The `keel-proxy` binary: `standalone` runs a gateway from Istio YAML files.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use keel_proxy::admin::{self, AdminHooks};
use keel_proxy::server::{Listeners, Shared};
use keel_proxy::standalone::{self, StandaloneConfig};
use keel_snapshot::compile::gateway::GatewayOptions;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::reload;

#[derive(Parser)]
#[command(
    name = "keel-proxy",
    version,
    about = "Keel's data plane: a lean proxy that applies Istio's routing",
    after_help = "Start here:\n  keel-proxy standalone -f gateway.yaml     run a gateway from Istio YAML\n  keel-proxy standalone --help              details and examples"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as a gateway configured by Istio YAML files (Gateway, VirtualService, DestinationRule, ServiceEntry, WorkloadEntry)
    #[command(
        long_about = "Run as a gateway configured by Istio YAML files alone: each Gateway server port becomes a listener, \
VirtualServices bound to the Gateways route requests, ServiceEntries (STATIC or DNS endpoints) and WorkloadEntries say where \
services are, DestinationRules pick subsets and load balancing.\n\n\
The files are watched: a valid change is applied without dropping connections; an invalid one is reported with file, line \
and reason, and the last good configuration keeps serving.",
        after_help = "Examples:\n  keel-proxy standalone -f gateway.yaml\n  keel-proxy standalone -f config/ --bind 127.0.0.1 --admin 127.0.0.1:15000\n  curl -s localhost:15000/config_dump     # the live configuration\n  curl -s localhost:15000/clusters        # endpoints and their load"
    )]
    Standalone(StandaloneArgs),
}

#[derive(clap::Args)]
struct StandaloneArgs {
    /// Istio YAML: files, directories (recursive) or `-`; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required = true)]
    files: Vec<PathBuf>,
    /// Address the Gateway server ports listen on
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Admin API address (readiness, config_dump, clusters, stats); keep it on localhost
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Serve only these Gateways (`namespace/name`); default: every Gateway in the files
    #[arg(long = "gateway", value_name = "NAMESPACE/NAME")]
    gateways: Vec<String>,
    /// Namespace of resources that name none
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// How long SIGTERM waits for in-flight requests before exiting
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Log level (trace, debug, info, warn, error); changeable at runtime via /logging?level=
    #[arg(long, default_value = "info", env = "KEEL_LOG")]
    log_level: String,
    /// Worker threads of the async runtime; default: one per core. A sidecar usually wants 1 or 2
    #[arg(long, value_name = "N", env = "KEEL_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    keel_config::types::Duration::parse(s).map(|d| d.to_std())
}

struct Hooks {
    reload: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    ready: Arc<AtomicBool>,
    quit: tokio::sync::mpsc::UnboundedSender<()>,
}

impl AdminHooks for Hooks {
    fn set_log_level(&self, level: &str) -> Result<String, String> {
        let filter =
            EnvFilter::try_new(level).map_err(|e| format!("invalid level \"{level}\": {e}"))?;
        self.reload.reload(filter).map_err(|e| e.to_string())?;
        Ok(level.to_string())
    }
    fn quit(&self) {
        let _ = self.quit.send(());
    }
    fn prometheus(&self) -> String {
        String::new()
    }
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Standalone(args) = cli.command;
    // One worker per core unless told otherwise; sidecars and benchmarks pin it to 1 or 2
    // so the proxy's footprint matches what it is given (Envoy's --concurrency).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.workers {
        builder.worker_threads(usize::from(n));
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run_standalone(args))
}

async fn run_standalone(args: StandaloneArgs) -> ExitCode {
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, reload) = reload::Layer::new(filter);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();

    let cfg = StandaloneConfig {
        paths: args.files.clone(),
        namespace: args.namespace.clone(),
        gateway: GatewayOptions {
            bind: args.bind,
            gateways: args.gateways.clone(),
            version: String::new(),
        },
    };
    let (snapshot, warnings) = match standalone::load(&cfg) {
        Ok(x) => x,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "error: the configuration has {} errors; fix them and start again (keel validate -f ... shows the same)",
                errors.len()
            );
            return ExitCode::from(1);
        }
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let shared = Shared::new("");
    let listeners = Arc::new(Listeners::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::unbounded_channel();
    let hooks = Arc::new(Hooks {
        reload,
        ready: ready.clone(),
        quit: quit_tx,
    });
    match admin::serve(args.admin, shared.clone(), hooks).await {
        Ok(a) => tracing::info!("admin API on http://{a}"),
        Err(e) => {
            eprintln!(
                "error: cannot bind the admin API on {}: {e}; pick another with --admin",
                args.admin
            );
            return ExitCode::from(1);
        }
    }
    let listener_count = snapshot.listeners.len();
    let bind_errors = standalone::apply(&shared, &listeners, snapshot).await;
    for e in &bind_errors {
        tracing::error!("{e}");
    }
    if listener_count == 0 {
        tracing::warn!(
            "no Gateway server ports to listen on: add a Gateway with servers (and TLS passthrough or plain HTTP/TCP ports)"
        );
    }
    ready.store(true, Ordering::Relaxed);
    for l in &shared.runtime.load().snapshot.listeners {
        tracing::info!(listener = %l.name, protocol = ?l.protocol, "listening on {}", l.address);
    }
    tokio::spawn(standalone::watch(shared.clone(), listeners.clone(), cfg));

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install the SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = quit_rx.recv() => return ExitCode::SUCCESS,
    }
    // Drain: stop accepting, let connections finish in-flight requests, exit within the deadline.
    tracing::info!("draining for up to {:?}", args.drain_timeout);
    listeners.stop_all();
    let _ = shared.drain.send(true);
    tokio::time::sleep(args.drain_timeout.min(Duration::from_millis(200))).await;
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    while tokio::time::Instant::now() < deadline && shared.drain.receiver_count() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ExitCode::SUCCESS
}

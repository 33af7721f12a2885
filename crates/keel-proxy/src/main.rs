//! The `keel-proxy` binary: `standalone` runs a gateway from Istio YAML files; `sidecar`
//! runs beside one workload from a snapshot file (or Istio YAML compiled for it).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use keel_jwks::JwksHandle;
use keel_proxy::admin::{self, AdminHooks};
use keel_proxy::identity::{self, IdentityArgs, WorkloadIdentity};
use keel_proxy::l4::L4Config;
use keel_proxy::l4::orig_dst::{PortAliases, SoOriginalDst};
use keel_proxy::server::{Listeners, Shared};
use keel_proxy::sidecar;
use keel_proxy::standalone::{self, Compiler, StandaloneConfig};
use keel_proxy::xds::{ProxySink, XdsClient, XdsConfig};
use keel_snapshot::Snapshot;
use keel_snapshot::compile::gateway::GatewayOptions;
use keel_snapshot::compile::sidecar::{InboundPort, SidecarOptions};
use keel_xds::node::{ProxyKind, ProxyNode};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::reload;

#[derive(Parser)]
#[command(
    name = "keel-proxy",
    version,
    about = "Keel's data plane: a lean proxy that applies Istio's routing",
    after_help = "Start here:\n  keel-proxy standalone -f gateway.yaml     run a gateway from Istio YAML\n  keel-proxy sidecar --snapshot snap.json   run a sidecar from a snapshot\n  keel-proxy sidecar --xds http://127.0.0.1:15010 --node-id ID -n NS --label app=X\n                                            run a sidecar configured by the control plane\n  keel-proxy standalone --help              details and examples"
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
    /// Run as a sidecar beside one workload, from a snapshot file or Istio YAML compiled for it
    #[command(
        long_about = "Run as a sidecar: the outbound listener (15001) takes the workload's outgoing connections \
(redirected by iptables, or sent to it as an HTTP proxy: HTTP_PROXY=http://127.0.0.1:15001), routes HTTP by host \
with the VirtualServices bound to `mesh` and TCP by destination address; the inbound listener (15006) forwards to the \
application on 127.0.0.1. Unknown protocols are detected from the first bytes; traffic for unknown destinations \
goes where it was addressed.\n\n\
The configuration comes from the control plane (--xds: pushed over delta xDS, computed for the workload named by \
--namespace, --label and the port flags, and followed live), or is static: a snapshot in JSON (--snapshot; \
/config_dump of a running proxy is one), or Istio YAML compiled for the workload (-f).\n\n\
With --xds the proxy is ready (/healthz/ready) once it has received its listeners and clusters; an update it \
can't take (a listener that can't bind) is refused (NACK, shown by `keel proxy-status`) and the last good \
configuration keeps serving; when the control plane is away the proxy keeps serving and reconnects.",
        after_help = "Examples:\n  keel-proxy sidecar --xds http://127.0.0.1:15010 --node-id reviews-v1.default -n default --label app=reviews --label version=v1\n  keel-proxy sidecar --snapshot sidecar.json --admin 127.0.0.1:15000\n  keel-proxy sidecar -f mesh.yaml -n default --label app=productpage\n  keel-proxy sidecar -f mesh.yaml --label app=productpage --print-snapshot > sidecar.json"
    )]
    Sidecar(SidecarArgs),
    /// Run as a gateway configured by the control plane (delta xDS)
    #[command(
        long_about = "Run as a gateway (ingress or egress) configured by the control plane over delta xDS: the \
control plane compiles the Gateways (those whose selector the --label labels satisfy, as Istio binds Gateways to \
gateway pods; every Gateway without labels; or those named with --gateway) and the VirtualServices bound to them \
into this proxy's listeners and clusters and pushes every change. Each server port is listened on as it is, or on \
the port --gateway-port maps it to (80=8080 lets an unprivileged gateway serve a Gateway's port 80 on 8080, as \
Istio's ingress gateway does behind its Service).\n\n\
The proxy is ready once it has its first configuration; an update it can't take (a server port that can't bind) \
is refused (NACK, shown by `keel proxy-status`) and the last good configuration keeps serving.",
        after_help = "Examples:\n  keel-proxy gateway --xds http://127.0.0.1:15010 --node-id ingressgateway.istio-system -n istio-system --label istio=ingressgateway --bind 127.0.0.1 --gateway-port 80=8080"
    )]
    Gateway(GatewayArgs),
    /// Compile Istio YAML into the gateway snapshot `standalone` would run, as JSON, and exit
    #[command(
        long_about = "Read, validate and compile Istio YAML exactly as `standalone` does, print the result as JSON ({\"snapshot\": ..., \"warnings\": [...]} or {\"errors\": [...]}) and exit 0 (valid) or 1 (errors).\n\n\
`standalone` runs this command in a short-lived child process for every (re)load, so the code that reads YAML \
never becomes resident in the long-running gateway; it is also a way to see what a configuration compiles to.",
        after_help = "Examples:\n  keel-proxy compile -f gateway.yaml | jq .snapshot.listeners"
    )]
    Compile(CompileArgs),
}

#[derive(clap::Args)]
struct CompileArgs {
    /// Istio YAML: files, directories (recursive) or `-`; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required = true)]
    files: Vec<PathBuf>,
    /// Address the Gateway server ports listen on
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Only these Gateways (`namespace/name`); default: every Gateway in the files
    #[arg(long = "gateway", value_name = "NAMESPACE/NAME")]
    gateways: Vec<String>,
    /// Namespace of resources that name none
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Read the fetched JWT key sets (JSON, as `standalone` hands them over) from stdin and
    /// compile them in for the RequestAuthentications' jwksUri and OpenID discovery
    #[arg(long)]
    jwks_stdin: bool,
}

/// How the modes that compile their own configuration fetch RequestAuthentication key sets
/// (`jwksUri`, OpenID discovery), as the control plane does.
#[derive(clap::Args)]
struct JwksArgs {
    /// A PEM bundle of further CAs to trust when fetching jwksUri and OpenID configurations
    /// over HTTPS (Mozilla's roots and the system's bundle are always trusted)
    #[arg(long, value_name = "FILE", env = "KEEL_JWKS_CA")]
    jwks_ca: Option<PathBuf>,
    /// How often fetched key sets are fetched again (a failed fetch is retried sooner, and
    /// its last good keys stay in use)
    #[arg(long, value_name = "DURATION", default_value = "20m", env = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", value_parser = parse_duration)]
    jwks_refresh_interval: Duration,
}

impl JwksArgs {
    /// The key cache; the error (an unreadable `--jwks-ca`) says what to fix.
    fn start(&self) -> Result<JwksHandle, ExitCode> {
        JwksHandle::http(
            &keel_jwks::ClientOptions {
                extra_ca: self.jwks_ca.clone(),
            },
            keel_jwks::Settings {
                timing: keel_jwks::Timing {
                    refresh: self.jwks_refresh_interval.max(Duration::from_secs(1)),
                    ..Default::default()
                },
                reporter: None,
            },
        )
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(1)
        })
    }
}

/// What every serving mode takes: the admin and metrics ports, logging, draining and threads.
#[derive(clap::Args)]
struct ProcessArgs {
    /// Admin API address (readiness, config_dump, clusters, stats); keep it on localhost
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// Prometheus scrape addresses serving /stats/prometheus and /healthz/ready (Istio's
    /// 15090 and 15020); repeatable; `none` disables
    #[arg(long = "stats", default_values = ["0.0.0.0:15090", "0.0.0.0:15020"], value_parser = parse_stats_addr)]
    stats: Vec<Option<SocketAddr>>,
    /// How long SIGTERM waits for in-flight requests before exiting; TCP connections still
    /// open then are closed
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Access log to stdout: off, text (Istio's default format) or json; changeable at runtime via /access_log?format=
    #[arg(long, default_value = "off", value_parser = ["off", "text", "json"])]
    access_log: String,
    /// Log level (trace, debug, info, warn, error); changeable at runtime via /logging?level=
    #[arg(long, default_value = "info", env = "KEEL_LOG")]
    log_level: String,
    /// Worker threads of the async runtime; default: one per core. A sidecar usually wants 1 or 2
    #[arg(long, value_name = "N", env = "KEEL_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Gateways: how many proxies in front of this one append to X-Forwarded-For and are
    /// trusted (Istio's gatewayTopology.numTrustedProxies): the client address that
    /// AuthorizationPolicy's remoteIpBlocks and remote.ip see is the N-th from the right
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        env = "KEEL_NUM_TRUSTED_PROXIES"
    )]
    num_trusted_proxies: u8,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["snapshot", "files", "xds"])))]
struct SidecarArgs {
    /// The control plane's xDS address: configuration is pushed from there and followed live
    #[arg(long, value_name = "URL")]
    xds: Option<String>,
    /// This proxy's name at the control plane (with --xds) [default: keel-proxy-<pid>.<namespace>]
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// The workload's name, shown by `keel proxy-status` (with --xds)
    #[arg(long, value_name = "NAME", default_value = "")]
    workload: String,
    /// The snapshot to run, as JSON
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Istio YAML to compile for the workload instead: files, directories or `-`; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1..)]
    files: Vec<PathBuf>,
    /// The workload's namespace (with -f or --xds)
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// A label of the workload, key=value; repeatable (with -f or --xds)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = sidecar::parse_label)]
    labels: Vec<(String, String)>,
    /// Outbound capture port (with -f)
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Inbound capture port (with -f). Repeated, each further one is a listener of its own for
    /// a proxy no iptables redirects to: a connection addressed to it goes to the --app-port
    /// in the same position (one addressed to the first, to the first --app-port)
    #[arg(long = "inbound-port", value_name = "PORT", default_values_t = [15006u16])]
    inbound_ports: Vec<u16>,
    /// A service port that also gets its own outbound listener; repeatable (with -f)
    #[arg(long = "outbound-listener", value_name = "PORT")]
    outbound_listeners: Vec<u16>,
    /// A port the application serves, PORT or PORT/PROTOCOL; repeatable (default: the target
    /// ports of the Services selecting the workload). PORT=LOCAL[/PROTOCOL]: the workload's
    /// PORT (what policies name) is served by the application on LOCAL, and a connection to
    /// the --inbound-port in the same position counts as addressed to PORT (the local mesh,
    /// where pods share one loopback)
    #[arg(long = "app-port", value_name = "[PORT=]LOCAL[/PROTOCOL]", value_parser = parse_app_port)]
    app_ports: Vec<InboundPort>,
    /// Address the listeners bind (with -f)
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Print the compiled snapshot as JSON and exit (with -f)
    #[arg(long)]
    print_snapshot: bool,
    /// How long a connection on an undeclared port may stay silent before it is treated as
    /// TCP (server-first protocols wait this long); 0s waits for the client indefinitely
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    protocol_detection_timeout: Duration,
    /// Mirrored copies get `-shadow` appended to their Host, as Istio did before 1.28 (Envoy's
    /// default); without it they keep the original Host, as Istio 1.28 and later do
    #[arg(long, env = "KEEL_MIRROR_SHADOW_SUFFIX")]
    mirror_shadow_suffix: bool,
    #[command(flatten)]
    jwks: JwksArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    process: ProcessArgs,
}

impl SidecarArgs {
    /// The first `--inbound-port`: the capture port.
    fn inbound_port(&self) -> u16 {
        self.inbound_ports.first().copied().unwrap_or(15006)
    }

    /// The further `--inbound-port`s.
    fn direct_inbound_ports(&self) -> Vec<u16> {
        self.inbound_ports.iter().skip(1).copied().collect()
    }
}

fn parse_app_port(s: &str) -> Result<InboundPort, String> {
    keel_xds::node::parse_app_port(s)
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// The control plane's xDS address
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:15010")]
    xds: String,
    /// This proxy's name at the control plane [default: keel-gateway-<pid>.<namespace>]
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// The gateway's namespace
    #[arg(short = 'n', long, default_value = "istio-system")]
    namespace: String,
    /// A label of the gateway workload, key=value; repeatable
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = sidecar::parse_label)]
    labels: Vec<(String, String)>,
    /// The gateway workload's name, shown by `keel proxy-status`
    #[arg(long, value_name = "NAME", default_value = "")]
    workload: String,
    /// Serve only these Gateways (`namespace/name`); default: every Gateway whose selector
    /// the --label labels satisfy (every Gateway without labels)
    #[arg(long = "gateway", value_name = "NAMESPACE/NAME")]
    gateways: Vec<String>,
    /// Listen for a Gateway server port on another port, SERVER=LOCAL (as Istio's ingress
    /// Service maps 80 to the pod's 8080); repeatable; other ports listen as they are
    #[arg(long = "gateway-port", value_name = "SERVER=LOCAL", value_parser = keel_xds::node::parse_port_map)]
    gateway_ports: Vec<(u16, u16)>,
    /// Address the Gateway server ports listen on
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// This proxy's locality (`region/zone/subzone`), for locality-aware load balancing
    #[arg(long, default_value = "", env = "KEEL_LOCALITY")]
    locality: String,
    #[command(flatten)]
    identity: IdentityArgs,
    #[command(flatten)]
    process: ProcessArgs,
}

#[derive(clap::Args)]
struct StandaloneArgs {
    /// Istio YAML: files, directories (recursive) or `-`; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required = true)]
    files: Vec<PathBuf>,
    /// Address the Gateway server ports listen on
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Serve only these Gateways (`namespace/name`); default: every Gateway in the files
    #[arg(long = "gateway", value_name = "NAMESPACE/NAME")]
    gateways: Vec<String>,
    /// This proxy's locality (`region/zone/subzone`), for locality-aware load balancing
    #[arg(long, default_value = "", env = "KEEL_LOCALITY")]
    locality: String,
    /// Namespace of resources that name none
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Mirrored copies get `-shadow` appended to their Host, as Istio did before 1.28 (Envoy's
    /// default); without it they keep the original Host, as Istio 1.28 and later do
    #[arg(long, env = "KEEL_MIRROR_SHADOW_SUFFIX")]
    mirror_shadow_suffix: bool,
    /// Read and compile the YAML in this process instead of a short-lived child process
    /// (`keel-proxy compile`); the child keeps the gateway's memory smaller
    #[arg(long)]
    compile_in_process: bool,
    #[command(flatten)]
    jwks: JwksArgs,
    #[command(flatten)]
    process: ProcessArgs,
}

fn parse_stats_addr(s: &str) -> Result<Option<SocketAddr>, String> {
    if s == "none" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| format!("\"{s}\" is not an address like 0.0.0.0:15090 ({e})"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    keel_config::types::Duration::parse(s).map(|d| d.to_std())
}

struct Hooks {
    reload: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    /// Configuration in and, with a CA, a certificate held.
    ready: Arc<AtomicBool>,
    /// Configuration in (what readiness meant before identities).
    config_ready: Arc<AtomicBool>,
    identity: Option<Arc<WorkloadIdentity>>,
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
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    fn not_ready_reason(&self) -> String {
        match &self.identity {
            Some(id) if self.config_ready.load(Ordering::Relaxed) && !id.has_certificate() => {
                format!(
                    "no workload certificate yet for {} (curl /certs for the last error)",
                    id.id()
                )
            }
            _ => "no configuration applied yet".into(),
        }
    }
    fn certs(&self) -> Option<serde_json::Value> {
        self.identity
            .as_ref()
            .map(|id| id.certs_json(std::time::SystemTime::now()))
    }
}

/// Starts requesting and renewing the workload certificate when --ca-address is given, or
/// reads it from --cert-chain/--key/--root-cert and follows the files.
/// Exits (the `Err`) on what a retry can't fix: missing settings, an unreadable root, mounted
/// files that can't be used.
fn start_identity(
    args: &IdentityArgs,
    namespace: &str,
) -> Result<Option<Arc<WorkloadIdentity>>, ExitCode> {
    let fail = |e: String| {
        eprintln!("error: identity: {e}");
        ExitCode::from(1)
    };
    if let Some(files) = args.files() {
        return identity::files::spawn(files)
            .map(Some)
            .map_err(|e| fail(e.to_string()));
    }
    let env_token = std::env::var("KEEL_CA_TOKEN").ok();
    let Some(config) = args.config(namespace, env_token).map_err(fail)? else {
        return Ok(None);
    };
    tracing::info!(
        "identity: requesting a certificate for {} from the CA at {} (root {})",
        config.id,
        config.ca_address,
        config.root_cert.display()
    );
    identity::spawn(config)
        .map(Some)
        .map_err(|e| fail(e.to_string()))
}

/// This proxy as its metrics name it (`source_*` on outbound hops, `destination_*` on
/// inbound ones): workload, namespace, the `app`/`version` and canonical-service labels, and,
/// with a workload certificate, its SPIFFE ID — reported only on hops that used mTLS.
fn telemetry_for(
    workload: &str,
    namespace: &str,
    labels: &[(String, String)],
    identity: Option<&Arc<WorkloadIdentity>>,
) -> Arc<keel_proxy::telemetry::Telemetry> {
    let label = |k: &str| {
        labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // The identity asked of the CA, or the one mounted files name.
    let principal = identity.map(|i| i.id().to_string()).unwrap_or_default();
    Arc::new(keel_proxy::telemetry::Telemetry::new(
        keel_proxy::telemetry::ProxyIdentity {
            workload: workload.to_string(),
            namespace: namespace.to_string(),
            app: label("app"),
            version: label("version"),
            canonical_service: label("service.istio.io/canonical-name"),
            canonical_revision: label("service.istio.io/canonical-revision"),
            principal,
            ..Default::default()
        },
    ))
}

/// Reports ready once `identity` (if any) holds a certificate; the configuration is in.
async fn become_ready(ready: Arc<AtomicBool>, identity: Option<Arc<WorkloadIdentity>>) {
    if let Some(id) = identity {
        if !id.has_certificate() {
            tracing::info!(
                "waiting for the workload certificate for {} before reporting ready",
                id.id()
            );
        }
        id.wait_for_certificate().await;
    }
    ready.store(true, Ordering::Relaxed);
    tracing::info!("ready");
}

// mimalloc, when built with `--features mimalloc` (see Cargo.toml for why it is not the
// default any more).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // ring is the only provider compiled in; installing it as the process default keeps any
    // crate that asks for the default from guessing (an error means one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let cli = match cli.command {
        // Compiling needs no runtime (and runs as a child of `standalone`: keep it light).
        Command::Compile(args) => return run_compile(args),
        command => Cli { command },
    };
    // One worker per core unless told otherwise; sidecars and benchmarks pin it to 1 or 2
    // so the proxy's footprint matches what it is given (Envoy's --concurrency).
    let workers = match &cli.command {
        Command::Standalone(a) => a.process.workers,
        Command::Sidecar(a) => a.process.workers,
        Command::Gateway(a) => a.process.workers,
        Command::Compile(_) => None,
    };
    // One worker is a current-thread runtime: no work-stealing queues or cross-thread wake-ups
    // on the request path (measured: fewer instructions per request than a one-thread
    // multi-thread runtime, bench/proxy.sh).
    let mut builder = if workers == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all();
    if let Some(n) = workers.filter(|n| *n > 1) {
        builder.worker_threads(usize::from(n));
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Standalone(args) => rt.block_on(run_standalone(args)),
        Command::Sidecar(args) => rt.block_on(run_sidecar(args)),
        Command::Gateway(args) => rt.block_on(run_gateway(args)),
        Command::Compile(args) => run_compile(args),
    }
}

fn init_logging(level: &str) -> reload::Handle<EnvFilter, tracing_subscriber::Registry> {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, reload) = reload::Layer::new(filter);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .try_init();
    reload
}

async fn run_sidecar(args: SidecarArgs) -> ExitCode {
    let reload = init_logging(&args.process.log_level);
    let xds = args.xds.as_ref().map(|address| {
        let node = ProxyNode {
            id: args
                .node_id
                .clone()
                .unwrap_or_else(|| format!("keel-proxy-{}.{}", std::process::id(), args.namespace)),
            kind: ProxyKind::Sidecar,
            namespace: args.namespace.clone(),
            labels: args.labels.iter().cloned().collect(),
            workload: args.workload.clone(),
            bind: args.bind,
            outbound_port: args.outbound_port,
            inbound_port: args.inbound_port(),
            direct_inbound_ports: args.direct_inbound_ports(),
            outbound_listeners: args.outbound_listeners.clone(),
            app_ports: args.app_ports.clone(),
            gateways: Vec::new(),
            gateway_ports: Vec::new(),
            proxy_version: env!("CARGO_PKG_VERSION").to_string(),
            admin: None,
        };
        XdsConfig::new(address, node)
    });
    let mut follow: Option<Follow> = None;
    let snapshot = match &args.snapshot {
        _ if xds.is_some() => Snapshot::default(),
        Some(path) => match sidecar::load_snapshot(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        None => {
            let mut opts = SidecarOptions {
                namespace: args.namespace.clone(),
                labels: args.labels.iter().cloned().collect(),
                outbound_port: args.outbound_port,
                inbound_port: args.inbound_port(),
                direct_inbound_ports: args.direct_inbound_ports(),
                outbound_ports: args.outbound_listeners.clone(),
                inbound_ports: args.app_ports.clone(),
                bind: args.bind,
                version: "1".into(),
                ..Default::default()
            };
            let resources = match sidecar::load_yaml(&args.files, &opts.namespace) {
                Ok(r) => r,
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
            // Remote key sets are fetched as the control plane would (only when a
            // RequestAuthentication needs one), and kept fresh while the sidecar runs.
            let sources = keel_snapshot::compile::jwt::remote_sources(&resources);
            if !sources.is_empty() {
                let jwks = match args.jwks.start() {
                    Ok(j) => j,
                    Err(code) => return code,
                };
                jwks.want(&sources, keel_jwks::FIRST_FETCH_WAIT).await;
                opts.jwks = jwks.current();
                let (resources, opts) = (resources.clone(), opts.clone());
                follow = Some(Box::new(move |shared, listeners| {
                    tokio::spawn(sidecar::follow_keys(
                        shared, listeners, resources, opts, jwks,
                    ));
                }));
            }
            let (snapshot, warnings) = sidecar::compile_resources(&resources, &opts);
            for w in &warnings {
                tracing::warn!("{w}");
            }
            snapshot
        }
    };
    if args.print_snapshot {
        return match serde_json::to_string_pretty(&snapshot) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write the snapshot as JSON: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // The identity first: with mounted files, the metrics' principal is the certificate's.
    let identity = match start_identity(&args.identity, &args.namespace) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let shared = Shared::with_parts(
        "",
        telemetry_for(
            &args.workload,
            &args.namespace,
            &args.labels,
            identity.as_ref(),
        ),
        L4Config {
            detect_timeout: args.protocol_detection_timeout,
            drain_timeout: args.process.drain_timeout,
            num_trusted_proxies: args.process.num_trusted_proxies,
            original_dst: Arc::new(PortAliases::new(
                Arc::new(SoOriginalDst),
                // Each inbound listener stands for the app port in the same position.
                args.inbound_ports
                    .iter()
                    .zip(&args.app_ports)
                    .filter(|(_, app)| app.local.is_some())
                    .map(|(listener, app)| (*listener, app.port)),
            )),
            ..Default::default()
        },
    );
    shared
        .shadow_host_suffix
        .store(args.mirror_shadow_suffix, Ordering::Relaxed);
    serve(
        shared,
        snapshot,
        &args.process,
        reload,
        follow,
        xds,
        identity,
    )
    .await
}

async fn run_gateway(args: GatewayArgs) -> ExitCode {
    let reload = init_logging(&args.process.log_level);
    let node = ProxyNode {
        id: args
            .node_id
            .clone()
            .unwrap_or_else(|| format!("keel-gateway-{}.{}", std::process::id(), args.namespace)),
        kind: ProxyKind::Gateway,
        namespace: args.namespace.clone(),
        labels: args.labels.iter().cloned().collect(),
        workload: args.workload.clone(),
        bind: args.bind,
        gateways: args.gateways.clone(),
        gateway_ports: args.gateway_ports.clone(),
        proxy_version: env!("CARGO_PKG_VERSION").to_string(),
        ..ProxyNode::default()
    };
    let identity = match start_identity(&args.identity, &args.namespace) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let shared = Shared::with_parts(
        &args.locality,
        telemetry_for(
            &args.workload,
            &args.namespace,
            &args.labels,
            identity.as_ref(),
        ),
        L4Config {
            drain_timeout: args.process.drain_timeout,
            num_trusted_proxies: args.process.num_trusted_proxies,
            ..Default::default()
        },
    );
    serve(
        shared,
        Snapshot::default(),
        &args.process,
        reload,
        None,
        Some(XdsConfig::new(&args.xds, node)),
        identity,
    )
    .await
}

fn run_compile(args: CompileArgs) -> ExitCode {
    let jwks = if args.jwks_stdin {
        match standalone::read_jwks(std::io::stdin().lock()) {
            Ok(keys) => Arc::new(keys),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        Arc::default()
    };
    let cfg = StandaloneConfig {
        paths: args.files,
        namespace: args.namespace.clone(),
        gateway: GatewayOptions {
            bind: args.bind,
            gateways: args.gateways,
            namespace: args.namespace.clone(),
            jwks,
            ..Default::default()
        },
        compiler: Compiler::InProcess,
    };
    let out = standalone::compile_output(&cfg);
    let ok = out.errors.is_empty();
    match serde_json::to_string(&out) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: cannot write the result as JSON: {e}");
            return ExitCode::FAILURE;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run_standalone(args: StandaloneArgs) -> ExitCode {
    let reload = init_logging(&args.process.log_level);
    let jwks = match args.jwks.start() {
        Ok(j) => j,
        Err(code) => return code,
    };
    let mut cfg = StandaloneConfig {
        paths: args.files.clone(),
        namespace: args.namespace.clone(),
        gateway: GatewayOptions {
            bind: args.bind,
            gateways: args.gateways.clone(),
            namespace: args.namespace.clone(),
            ..Default::default()
        },
        // Compiling in a child keeps the YAML reader's code out of this process's memory.
        compiler: match std::env::current_exe() {
            Ok(exe) if !args.compile_in_process => Compiler::Child(exe),
            _ => Compiler::InProcess,
        },
    };
    let (snapshot, warnings) = match standalone::load_resolving(&mut cfg, &jwks).await {
        Ok(loaded) => (loaded.snapshot, loaded.warnings),
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
    let shared = Shared::with_l4(
        &args.locality,
        L4Config {
            drain_timeout: args.process.drain_timeout,
            num_trusted_proxies: args.process.num_trusted_proxies,
            ..Default::default()
        },
    );
    shared
        .shadow_host_suffix
        .store(args.mirror_shadow_suffix, Ordering::Relaxed);
    let follow: Follow = Box::new(move |shared, listeners| {
        tokio::spawn(standalone::watch(shared, listeners, cfg, jwks));
    });
    serve(
        shared,
        snapshot,
        &args.process,
        reload,
        Some(follow),
        None,
        None,
    )
    .await
}

fn set_access_log(shared: &Shared, format: &str) {
    shared.telemetry.set_access_log(match format {
        "text" => keel_proxy::telemetry::AccessLogFormat::Text,
        "json" => keel_proxy::telemetry::AccessLogFormat::Json,
        _ => keel_proxy::telemetry::AccessLogFormat::Off,
    });
}

/// What keeps a self-configured proxy's configuration current once it serves (watching
/// the standalone files, following fetched key sets): started with the live state.
type Follow = Box<dyn FnOnce(Arc<Shared>, Arc<Listeners>) + Send>;

/// Serves `snapshot` (kept current by `follow`, or following the control plane, when given)
/// until SIGTERM, Ctrl-C or `/quitquitquit`, then drains.
#[allow(clippy::too_many_arguments)]
async fn serve(
    shared: Arc<Shared>,
    snapshot: Snapshot,
    process: &ProcessArgs,
    reload: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    follow: Option<Follow>,
    xds: Option<XdsConfig>,
    identity: Option<Arc<WorkloadIdentity>>,
) -> ExitCode {
    set_access_log(&shared, &process.access_log);
    if let Some(id) = &identity {
        let _ = shared.identity.set(id.clone());
        match keel_proxy::tls::mesh::MeshTls::new(id.clone()) {
            Ok(mesh) => shared.pools.set_mesh(Arc::new(mesh)),
            Err(e) => tracing::error!("mesh mTLS is off: {e}"),
        }
    }
    let (admin_addr, drain_timeout) = (process.admin, process.drain_timeout);
    let stats_addrs: Vec<SocketAddr> = process.stats.iter().flatten().copied().collect();
    // Series of destinations idle for 10 minutes are dropped, so cardinality stays bounded.
    {
        let telemetry = shared.telemetry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                telemetry.expire_idle(Duration::from_secs(600));
            }
        });
    }
    let listeners = Arc::new(Listeners::default());
    let ready = Arc::new(AtomicBool::new(false));
    let config_ready = Arc::new(AtomicBool::new(false));
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::unbounded_channel();
    let hooks = Arc::new(Hooks {
        reload,
        ready: ready.clone(),
        config_ready: config_ready.clone(),
        identity: identity.clone(),
        quit: quit_tx,
    });
    let mut xds = xds;
    match admin::serve(admin_addr, shared.clone(), hooks).await {
        Ok(a) => {
            tracing::info!("admin API on http://{a}");
            // Told to the control plane, so `keel proxy-config` can find it.
            if let Some(config) = xds.as_mut() {
                config.node.admin = Some(a);
            }
        }
        Err(e) => {
            eprintln!(
                "error: cannot bind the admin API on {admin_addr}: {e}; pick another with --admin"
            );
            return ExitCode::from(1);
        }
    }
    for addr in stats_addrs {
        match admin::serve_stats(addr, shared.clone(), ready.clone()).await {
            Ok(a) => tracing::info!("Prometheus metrics on http://{a}/stats/prometheus"),
            Err(e) => tracing::warn!(
                "cannot serve metrics on {addr}: {e}; choose another with --stats or --stats none"
            ),
        }
    }
    let listener_count = snapshot.listeners.len();
    let bind_errors = standalone::apply(&shared, &listeners, snapshot).await;
    for e in &bind_errors {
        tracing::error!("{e}");
    }
    if listener_count == 0 && xds.is_none() {
        tracing::warn!(
            "no listeners in the configuration: for a gateway, add a Gateway with servers (plain HTTP, TCP or TLS passthrough ports)"
        );
    }
    match xds {
        // Ready once the control plane's listeners and clusters are in (ztunnel's rule) and,
        // with a CA, the workload certificate is held.
        Some(config) => {
            let sink = ProxySink {
                shared: shared.clone(),
                listeners: listeners.clone(),
            };
            let client = XdsClient::new(config, sink);
            let mut state = client.state();
            tokio::spawn(client.run());
            let (ready, config_ready) = (ready.clone(), config_ready.clone());
            let identity = identity.clone();
            tokio::spawn(async move {
                if state.wait_for(|s| s.synced).await.is_ok() {
                    config_ready.store(true, Ordering::Relaxed);
                    tracing::info!("configuration received from the control plane");
                    become_ready(ready, identity).await;
                }
            });
        }
        None => {
            config_ready.store(true, Ordering::Relaxed);
            tokio::spawn(become_ready(ready.clone(), identity.clone()));
            for l in &shared.runtime.load().snapshot.listeners {
                tracing::info!(listener = %l.name, protocol = ?l.protocol, "listening on {}", l.address);
            }
        }
    }
    if let Some(follow) = follow {
        follow(shared.clone(), listeners.clone());
    }

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
    tracing::info!("draining for up to {drain_timeout:?}");
    listeners.stop_all();
    let _ = shared.drain.send(true);
    tokio::time::sleep(drain_timeout.min(Duration::from_millis(200))).await;
    let deadline = tokio::time::Instant::now() + drain_timeout;
    while tokio::time::Instant::now() < deadline && shared.drain.receiver_count() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ExitCode::SUCCESS
}

//! Command-line grammar. Help texts teach: each command says what it does, shows examples,
//! and names the exit codes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "Keel: an Istio-compatible service mesh with a lean Rust data plane",
    long_about = "Keel: an Istio-compatible service mesh with a lean Rust data plane.\n\n\
Keel reads the Istio YAML you already have (VirtualService, DestinationRule, Gateway, \
ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, \
Telemetry, ...) together with ordinary Kubernetes manifests.",
    after_help = "Start here:\n  \
keel demo                              Bookinfo on a local mesh: http://127.0.0.1:8080/productpage\n  \
keel validate -f my-config/            check every resource against Istio's rules\n  \
keel analyze -f my-config/ -A          find cross-resource mistakes, like istioctl analyze\n  \
keel control-plane                     run the config store and the push, then: keel apply / get / delete\n  \
keel proxy-status                      which proxies are connected and in sync\n  \
keel <command> --help                  details and examples for one command"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check Istio and Kubernetes YAML against Istio's validation rules (like `istioctl validate`)
    #[command(
        long_about = "Check Istio and Kubernetes YAML against Istio's validation rules, like `istioctl validate`.\n\n\
Every problem is printed on one line: file, line and column, the resource (Kind namespace/name), \
the field path and the reason. A resource that fails is skipped; the others in the same file are \
still checked. Unknown fields are errors, with a suggestion when the name looks like a typo.\n\n\
Exit status: 0 when everything is valid, 1 when any resource is invalid or a file can't be read, \
64 for wrong usage.",
        after_help = "Examples:\n  \
keel validate -f samples/bookinfo/networking/virtual-service-all-v1.yaml\n  \
keel validate -f config/ -f extra.yaml      # directories are read recursively\n  \
kubectl get vs -A -o yaml | keel validate -f -\n  \
keel validate -f config/ -o json            # machine-readable"
    )]
    Validate(ValidateArgs),

    /// Find cross-resource mistakes in configuration files (like `istioctl analyze`)
    #[command(
        long_about = "Find mistakes that span resources, like `istioctl analyze` run on files: a VirtualService \
routing to a host or subset that doesn't exist, a Gateway whose selector matches no workload, \
conflicting Sidecars, and the rest of Istio's analyzers. Messages carry Istio's codes (IST0101, ...), \
levels and wording.\n\n\
As in istioctl's offline mode, a default ingress gateway (Pod labelled istio=ingressgateway and Service \
istio-ingressgateway with ports 80, 443, 31400, 15443 in istio-system) is assumed to exist.\n\n\
Exit status: 0 when no message reaches --failure-threshold, 79 when one does, 65 when input can't be \
parsed, 64 for wrong usage.",
        after_help = "Examples:\n  \
keel analyze -f samples/bookinfo/ -A\n  \
keel analyze -f config/ -n prod --failure-threshold Warning\n  \
keel analyze -f config/ -o json\n  \
keel analyze --list-analyzers"
    )]
    Analyze(AnalyzeArgs),

    /// Run the control plane: the config store, the API behind apply, get and delete, and the xDS push
    #[command(
        name = "control-plane",
        long_about = "Run the control plane: the config store (a directory of YAML, one file per resource, \
watched for edits by hand), the HTTP API that `keel apply`, `keel delete`, `keel get` and \
`keel proxy-status` use, and the xDS server that pushes each connected proxy its configuration.\n\n\
Every write is validated with Istio's rules first (an invalid apply is rejected with the reasons and \
changes nothing) and written atomically. A file edited by hand into an invalid state is reported with \
file and line, and its last good content stays in force. Changes reach the proxies within about 100 ms \
(debounced, at most 1 s), each proxy getting only what changed in its own view.\n\n\
The API listens on 127.0.0.1:15080 and xDS on 127.0.0.1:15010, both without authentication: keep \
them on loopback.\n\n\
Stops cleanly on Ctrl-C or SIGTERM. Exit status: 0 after a clean stop, 1 when it can't start.",
        after_help = "Examples:\n  \
keel control-plane                                   # ~/.keel/config, API on 127.0.0.1:15080\n  \
keel control-plane --config-dir ./mesh-config\n  \
keel control-plane --listen 127.0.0.1:0 --xds-listen 127.0.0.1:0   # any free ports (printed at start)"
    )]
    ControlPlane(ControlPlaneArgs),

    /// Show the proxies connected to the control plane and whether each is in sync (like `istioctl proxy-status`)
    #[command(
        name = "proxy-status",
        alias = "ps",
        long_about = "Show every proxy connected to the control plane, like `istioctl proxy-status`: per \
resource type (listeners, clusters) whether the proxy has acknowledged exactly what the control plane \
would send it now (SYNCED), is still waiting for or missing an update (STALE), has not been sent that \
type (NOT SENT), or rejected the last update (NACK; the reason is printed under the table and the proxy \
keeps serving its last good configuration).\n\n\
Exit status: 0 on success, 1 when the control plane can't be reached or the named proxy isn't connected.",
        after_help = "Examples:\n  \
keel proxy-status\n  \
keel proxy-status reviews-v1.default\n  \
keel proxy-status -o json"
    )]
    ProxyStatus(ProxyStatusArgs),

    /// Print a workload's log on the local mesh, or its sidecar's (-c proxy)
    #[command(
        long_about = "Print the log of a workload running on the local mesh (`keel up`, `keel demo`): its first \
container's, another's with -c CONTAINER, or its sidecar's with -c proxy (Istio's default access-log lines are there), like `kubectl logs`. WORKLOAD is a pod \
(reviews-v2-0), a Deployment (reviews-v2: its first replica) or a unique prefix; NAME.NAMESPACE or -n \
picks the namespace.",
        after_help = "Examples:\n  \
keel logs productpage\n  \
keel logs reviews-v2 -c proxy\n  \
keel logs -f istio-ingressgateway -c proxy"
    )]
    Logs(LogsArgs),

    /// Run a command as a workload of the local mesh, through its sidecar
    #[command(
        long_about = "Run a command as a workload of the local mesh would call out: with its sidecar's outbound \
listener as HTTP_PROXY, so mesh names (httpbin, httpbin.default.svc.cluster.local:8000) resolve and the \
workload's routing, policies and metrics apply — like `kubectl exec` into the pod. The command runs on this \
machine, not inside the app's process. A workload without a sidecar gets no proxy.",
        after_help = "Examples:\n  \
keel exec sleep -- curl -s http://httpbin:8000/headers\n  \
keel exec -n legacy sleep -- curl -s http://httpbin.foo:8000/ip"
    )]
    Exec(ExecArgs),

    /// Show what one proxy is running: its listeners, routes, clusters and endpoints (like `istioctl proxy-config`)
    #[command(
        name = "proxy-config",
        alias = "pc",
        long_about = "Show the configuration one proxy is actually running, read from its admin port (as istioctl reads Envoy's), in tables shaped like `istioctl proxy-config`: listeners (address, port, kind, protocol, what they route to), routes (virtual hosts, domains, the first match of each route and its destination), clusters (service, port, subset, direction, load balancing, endpoint count) and endpoints (address, health including outlier ejection, cluster). The control plane says where each proxy's admin port is; PROXY is a name from `keel proxy-status`, or a unique prefix of one.\n\n\
Exit status: 0 on success, 1 when the control plane or the proxy can't be reached or PROXY matches none or \
several proxies.",
        after_help = "Examples:\n  \
keel proxy-config routes productpage-v1\n  \
keel proxy-config clusters reviews-v1-0.default --fqdn reviews.default.svc.cluster.local\n  \
keel proxy-config endpoints productpage -o json\n  \
keel proxy-config all istio-ingressgateway"
    )]
    ProxyConfig(ProxyConfigArgs),

    /// Run Bookinfo on a local mesh, with an ingress gateway on 127.0.0.1:8080, to try Istio's tasks
    #[command(
        long_about = "Run Istio's Bookinfo sample on a local mesh in one command: the control plane, the four \
services (reviews in three versions), each with its keel-proxy sidecar, and an ingress gateway configured by \
Bookinfo's Gateway and VirtualService, serving http://127.0.0.1:8080/productpage. Refreshing the page shows the \
three reviews versions in turn (no stars, black stars, red stars).\n\n\
The manifests are built into keel (the repository's examples/bookinfo/app.yaml and gateway.yaml, which match \
Istio's bookinfo.yaml and bookinfo-gateway.yaml), so it runs from any directory. Change the routing while it runs \
with `keel apply -f` and Istio's task files (examples/bookinfo-networking/ holds Keel's copies); the summary \
lists them.\n\n\
It is `keel up` with those manifests: the same state directory, logs and ports, stopped by Ctrl-C, SIGTERM or \
`keel down`. Exit status: 0 after a clean stop, 1 when it can't start.",
        after_help = "Examples:\n  \
keel demo\n  \
keel demo --ingress-port 9090                 # if 8080 is taken\n  \
keel apply -f examples/bookinfo-networking/virtual-service-all-v1.yaml\n  \
keel down"
    )]
    Demo(DemoArgs),

    /// Run a local mesh: the control plane and every Deployment of the manifests as local processes, each with its sidecar
    #[command(
        long_about = "Run a local mesh from ordinary Kubernetes manifests and Istio config: the control plane runs \
in-process (API and xDS as `keel control-plane`), and each Deployment's replicas run as local processes, each \
with its own keel-proxy sidecar. Images map to local commands: Istio's sample images (examples-bookinfo-*, \
httpbin, sleep/curl, tcp-echo) run as keel-sample; anything else needs the pod-template annotation \
keel.dev/run: \"COMMAND\" (keel.dev/run.CONTAINER for a later container) or --run IMAGE=COMMAND (the app \
must listen on $PORT, its first containerPort; PORT_<containerPort> names the local port of each). Every \
container of a pod runs, each port a Service targets gets its own sidecar inbound listener, exited processes \
restart with Kubernetes' back-off, and a changed Deployment rolls to new pods with a surge.\n\n\
Each app gets HTTP_PROXY pointing at its sidecar's outbound listener, and is registered (a WorkloadEntry) at \
its sidecar's inbound listener, so calls such as http://httpbin:8000/get go through both sidecars.\n\n\
A Gateway selecting Istio's ingress gateway (istio: ingressgateway, as Bookinfo's does) gets one: a \
keel-proxy gateway in istio-system, listening on 127.0.0.1. Unprivileged users can't bind port 80, so as Istio's \
ingress Service does, Gateway port 80 listens on 8080 and 443 on 8443; every other port on its own number; \
--gateway-port SERVER=LOCAL changes that.\n\n\
Logs of each workload and sidecar are in STATE_DIR/logs. Stops every process on Ctrl-C, SIGTERM or `keel down`.",
        after_help = "Examples:\n  \
keel up -f samples/bookinfo/platform/kube/bookinfo.yaml -f samples/bookinfo/networking/bookinfo-gateway.yaml\n  \
keel up -f app.yaml -f gateway.yaml --gateway-port 80=9090\n  \
keel up -f app.yaml --run example/app=./target/debug/app\n  \
keel down"
    )]
    Up(UpArgs),

    /// Stop the local mesh started by `keel up`
    Down(DownArgs),

    /// Create or update resources from files, like `kubectl apply -f`
    #[command(
        long_about = "Create or update resources from files, like `kubectl apply -f`: Istio's kinds and the \
Kubernetes objects the mesh reads (Service, Deployment, ServiceAccount, Namespace, ...).\n\n\
Everything given in one command is validated first and applied all or nothing: if any resource is \
invalid, every problem is printed as `keel validate` prints it and nothing changes. Each resource \
is then reported as created, configured or unchanged.\n\n\
Exit status: 0 when applied, 1 when rejected or the control plane can't be reached, 64 for wrong usage.",
        after_help = "Examples:\n  \
keel apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml\n  \
keel apply -f config/                           # directories are read recursively\n  \
cat vs.yaml | keel apply -f -\n  \
keel apply -f vs.yaml --dry-run                 # validate and show what would change"
    )]
    Apply(ApplyArgs),

    /// Delete the resources named in files, like `kubectl delete -f`
    #[command(
        long_about = "Delete the resources that files name, like `kubectl delete -f`. Only each object's kind, \
namespace and name are read, so a file whose spec no longer validates can still be deleted.\n\n\
Exit status: 0 when everything named was deleted (or absent, with --ignore-not-found), 1 otherwise.",
        after_help = "Examples:\n  \
keel delete -f samples/bookinfo/networking/virtual-service-all-v1.yaml\n  \
keel delete -f config/ --ignore-not-found"
    )]
    Delete(DeleteArgs),

    /// List resources of a kind, like `kubectl get`
    #[command(
        long_about = "List resources of a kind, like `kubectl get`. Kinds take kubectl's names: short (vs, dr, \
gw, se, pa, ap, ra, svc, deploy, ns, sa), singular or plural, any case, or qualified with the group \
(gateways.gateway.networking.k8s.io).\n\n\
Exit status: 0 on success (also when nothing is found), 1 when a named resource doesn't exist or the \
control plane can't be reached.",
        after_help = "Examples:\n  \
keel get vs                         # VirtualServices in the default namespace\n  \
keel get dr reviews -o yaml\n  \
keel get svc -A -o wide\n  \
keel get virtualservices -n bookinfo -o json"
    )]
    Get(GetArgs),

    /// Print Keel's version
    Version(VersionArgs),
}

/// Where the control plane's API is.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The control plane's API address
    #[arg(
        long,
        env = "KEEL_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:15080"
    )]
    pub server: String,
}

/// Where the control plane listens: `keel control-plane`, `keel up` and `keel demo` share it.
#[derive(Debug, Clone, Args)]
pub struct ServerListen {
    /// Address of the HTTP API (keel apply, get, delete)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15080")]
    pub listen: std::net::SocketAddr,

    /// Address of the xDS server the proxies connect to (delta xDS over gRPC)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:15010")]
    pub xds_listen: std::net::SocketAddr,

    /// Address of the monitoring port: the control plane's metrics at /metrics, under
    /// istiod's names (pilot_xds_pushes, pilot_proxy_convergence_time, ...); `none` to turn it
    /// off. If it is taken, the control plane starts without it: the API's /metrics serves the
    /// same
    #[arg(long, value_name = "ADDR|none", default_value = "127.0.0.1:15014", value_parser = parse_optional_addr)]
    pub monitoring_listen: OptionalAddr,

    /// Address of the CA: Istio's certificate API (CreateCertificate) over TLS, as istiod's
    /// 15012; `none` to turn it off. If it is taken, the control plane starts without it
    #[arg(long, value_name = "ADDR|none", default_value = "127.0.0.1:15012", value_parser = parse_optional_addr)]
    pub ca_listen: OptionalAddr,

    /// Where the CA keeps its self-signed root (root-cert.pem, root-key.pem), created on first
    /// start [default: keel up/demo: STATE/ca; control-plane: $KEEL_HOME/ca, else ~/.keel/ca]
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<std::path::PathBuf>,

    /// Istio's plug-in CA layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem, as in
    /// the cacerts secret): sign as that intermediate instead of a self-signed root
    #[arg(long, value_name = "DIR")]
    pub ca_plugin_dir: Option<std::path::PathBuf>,

    /// The trust domain of workload identities (spiffe://TRUST-DOMAIN/ns/NS/sa/SA)
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,

    /// A PEM bundle of further CAs to trust when fetching RequestAuthentication jwksUri and
    /// OpenID configurations over HTTPS (Mozilla's roots and the system's bundle are always
    /// trusted), for issuers under a private CA
    #[arg(long, value_name = "FILE", env = "KEEL_JWKS_CA")]
    pub jwks_ca: Option<std::path::PathBuf>,

    /// How often fetched JWT key sets are fetched again (a failed fetch is retried sooner,
    /// and its last good keys stay in use)
    #[arg(long, value_name = "DURATION", default_value = "20m", env = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL", value_parser = parse_refresh)]
    pub jwks_refresh_interval: std::time::Duration,
}

fn parse_refresh(s: &str) -> Result<std::time::Duration, String> {
    let d = keel_config::types::Duration::parse(s)?.to_std();
    if d < std::time::Duration::from_secs(1) {
        return Err(format!(
            "{s} is too short for a refresh interval: give at least 1s"
        ));
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// The config store's directory [default: $KEEL_HOME/config, else ~/.keel/config]
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    #[command(flatten)]
    pub servers: ServerListen,

    /// The mesh's root namespace (where mesh-wide policy lives), for validation
    #[arg(long, value_name = "NAMESPACE", default_value = "istio-system")]
    pub root_namespace: String,
}

#[derive(Debug, Args)]
pub struct ProxyStatusArgs {
    /// Show only this proxy (its name, as `keel proxy-status` lists it)
    #[arg(value_name = "PROXY")]
    pub proxy: Option<String>,

    /// Only proxies in this namespace
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Output format: a table (default) or json
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    pub output: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The workload: a pod, a Deployment or a unique prefix (NAME.NAMESPACE works too)
    #[arg(value_name = "WORKLOAD")]
    pub workload: String,

    /// A container of the pod (default: the first, as kubectl's default container), or
    /// `proxy` (the sidecar)
    #[arg(short = 'c', long = "container", value_name = "CONTAINER")]
    pub container: Option<String>,

    /// Keep printing what is written
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// The workload's namespace
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// The local mesh's state directory (default: $KEEL_HOME/up, else ~/.keel/up)
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The workload: a pod, a Deployment or a unique prefix (NAME.NAMESPACE works too)
    #[arg(value_name = "WORKLOAD")]
    pub workload: String,

    /// The workload's namespace
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// The local mesh's state directory (default: $KEEL_HOME/up, else ~/.keel/up)
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What `keel proxy-config` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyConfigSection {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    /// The workload certificate and root, from the proxy's /certs (istioctl's `secret`)
    Secret,
    All,
}

#[derive(Debug, Args)]
pub struct ProxyConfigArgs {
    /// Which part of the configuration
    #[arg(value_enum, value_name = "TYPE")]
    pub section: ProxyConfigSection,

    /// The proxy: a name from `keel proxy-status`, or a unique prefix of one
    #[arg(value_name = "PROXY")]
    pub proxy: String,

    /// Only proxies in this namespace are matched
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Only clusters, routes' destinations and endpoints of this service host
    #[arg(long, value_name = "FQDN")]
    pub fqdn: Option<String>,

    /// Output format: tables (default) or json (the proxy's own configuration, unabridged)
    #[arg(short = 'o', long = "output", value_parser = ["json"])]
    pub output: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// File, directory (read recursively: .yaml, .yml, .json) or `-` for standard input; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,

    /// Namespace for resources that don't name one; resources naming another are rejected
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Validate and show what would change, change nothing (`server`, the only strategy)
    #[arg(long, value_name = "STRATEGY", num_args = 0..=1, default_missing_value = "server", value_parser = ["server", "none"])]
    pub dry_run: Option<String>,

    /// Wait (up to 30 s) until every connected proxy has acknowledged the change; exit 1 naming those that didn't
    #[arg(long)]
    pub wait: bool,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// File, directory (read recursively) or `-` for standard input; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,

    /// Namespace for resources that don't name one
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Don't fail when a resource doesn't exist
    #[arg(long)]
    pub ignore_not_found: bool,

    /// Show what would be deleted, delete nothing (`server`, the only strategy)
    #[arg(long, value_name = "STRATEGY", num_args = 0..=1, default_missing_value = "server", value_parser = ["server", "none"])]
    pub dry_run: Option<String>,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind: vs, dr, gw, se, pa, ap, ra, svc, deploy, ns, sa, ... (or KIND/NAME)
    #[arg(value_name = "KIND")]
    pub kind: String,

    /// Names to show (default: all)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// Namespace to list
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,

    /// List every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Output format: a table (default), wide (more columns), yaml, json or name
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<GetFormat>,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GetFormat {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Args)]
pub struct InputArgs {
    /// File, directory (read recursively: .yaml, .yml, .json) or `-` for standard input; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,

    /// Namespace for resources that don't name one (like kubectl's -n)
    #[arg(short = 'n', long, value_name = "NAMESPACE", default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ValidateFormat::Text)]
    pub output: ValidateFormat,

    /// Don't print notes about skipped non-mesh kinds
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ValidateFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// File, directory (read recursively: .yaml, .yml, .json) or `-` for standard input; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required_unless_present = "list_analyzers")]
    pub files: Vec<PathBuf>,

    /// Show messages for this namespace only; also the namespace of resources that name none
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,

    /// Show messages for all namespaces
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Output format: log (one line per message), json or yaml
    #[arg(short = 'o', long = "output", value_enum, default_value_t = AnalyzeFormat::Log)]
    pub output: AnalyzeFormat,

    /// Exit with 79 when a message of this level or worse is found
    #[arg(long, value_enum, ignore_case = true, default_value_t = Threshold::Error)]
    pub failure_threshold: Threshold,

    /// Print only messages of this level or worse
    #[arg(long, value_enum, ignore_case = true, default_value_t = Threshold::Info)]
    pub output_threshold: Threshold,

    /// Suppress messages: CODE=RESOURCE, e.g. 'IST0102=Namespace frod' or 'IST0107=Pod *.testing' (glob * allowed)
    #[arg(short = 'S', long = "suppress", value_name = "CODE=RESOURCE")]
    pub suppress: Vec<String>,

    /// The mesh's root namespace (where the default ingress gateway lives)
    #[arg(
        short = 'i',
        long = "istioNamespace",
        value_name = "NAMESPACE",
        default_value = "istio-system"
    )]
    pub istio_namespace: String,

    /// Mesh configuration to analyze against (the `mesh` key of the istio ConfigMap), over Istio's defaults
    #[arg(long = "meshConfigFile", value_name = "PATH")]
    pub mesh_config_file: Option<std::path::PathBuf>,

    /// List the analyzers and exit
    #[arg(short = 'L', long)]
    pub list_analyzers: bool,

    /// Don't fail with 65 when a file can't be parsed
    #[arg(long)]
    pub ignore_unknown: bool,

    /// Colour the level (default: when standard output is a terminal)
    #[arg(long, value_name = "BOOL")]
    pub color: Option<bool>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AnalyzeFormat {
    #[value(alias = "text")]
    Log,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Threshold {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print as JSON
    #[arg(short = 'o', long = "output", value_parser = ["json", "short"])]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Manifests and Istio config: files, directories or `-`; repeatable
    #[arg(short = 'f', long = "filename", value_name = "PATH", num_args = 1.., required = true)]
    pub files: Vec<PathBuf>,

    /// Where the store, logs and pid file live [default: $KEEL_HOME/up, else ~/.keel/up]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Where keel-proxy and keel-sample are [default: the directory of this executable]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// The local command for an image (with or without tag), run with sh -c; repeatable
    #[arg(long = "run", value_name = "IMAGE=COMMAND", value_parser = crate::cmd::up::image::parse_run)]
    pub run: Vec<(String, String)>,

    #[command(flatten)]
    pub servers: ServerListen,

    /// The mesh's root namespace
    #[arg(long, value_name = "NAMESPACE", default_value = "istio-system")]
    pub root_namespace: String,

    /// The local port the ingress gateway listens on for a Gateway server port, SERVER=LOCAL;
    /// repeatable [default: 80=8080 and 443=8443, as Istio's ingress Service; others as they are]
    #[arg(long = "gateway-port", value_name = "SERVER=LOCAL", value_parser = crate::cmd::up::gateway::parse_port_map)]
    pub gateway_ports: Vec<(u16, u16)>,

    /// Set by `keel demo`, not a flag: its built-in manifests and summary
    #[arg(skip)]
    pub preset: Option<crate::cmd::up::Preset>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The local port of Bookinfo's ingress gateway (its Gateway's port 80); 0 picks a free one
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub ingress_port: u16,

    /// Where the store, logs and pid file live [default: $KEEL_HOME/up, else ~/.keel/up]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Where keel-proxy and keel-sample are [default: the directory of this executable]
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    #[command(flatten)]
    pub servers: ServerListen,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The state directory of the running `keel up` [default: $KEEL_HOME/up, else ~/.keel/up]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// An address, or none (`none`/`off`) for no listener. A type of its own: clap takes a
/// plain `Option` field as "may be absent", not as a value that can say "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<std::net::SocketAddr>);

fn parse_optional_addr(v: &str) -> Result<OptionalAddr, String> {
    match v {
        "none" | "off" | "" => Ok(OptionalAddr(None)),
        _ => v
            .parse()
            .map(|a| OptionalAddr(Some(a)))
            .map_err(|e| format!("{e}: expected an address such as 127.0.0.1:15014, or none")),
    }
}

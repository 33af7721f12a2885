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
keel validate -f my-config/            check every resource against Istio's rules\n  \
keel analyze -f my-config/ -A          find cross-resource mistakes, like istioctl analyze\n  \
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

    /// Print Keel's version
    Version(VersionArgs),
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

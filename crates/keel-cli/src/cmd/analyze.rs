//! `keel analyze`: Istio's analyzers over files, with istioctl's flags, output and exit codes.

use std::io::IsTerminal;

use keel_analyze::analyzers::{self, Filter};
use keel_analyze::messages::{self, Level};
use keel_analyze::{AnalysisContext, MeshConfig, output};
use keel_config::{LoadOptions, load_paths, load_str};

use crate::cli::{AnalyzeArgs, AnalyzeFormat, Threshold};
use crate::exit;

fn level(t: Threshold) -> Level {
    match t {
        Threshold::Info => Level::Info,
        Threshold::Warning => Level::Warning,
        Threshold::Error => Level::Error,
    }
}

pub fn run(args: &AnalyzeArgs) -> u8 {
    if args.list_analyzers {
        println!("Available analyzers:");
        for a in analyzers::all() {
            println!("* {}:\n    {}", a.name(), a.description());
        }
        return exit::OK;
    }

    let mut suppress = Vec::new();
    for s in &args.suppress {
        let Some((code, pattern)) = s.split_once('=') else {
            eprintln!(
                "Error: {s} is not a valid suppression value: use CODE=RESOURCE, e.g. 'IST0102=Namespace frod'. See keel analyze --help"
            );
            return exit::USAGE;
        };
        if messages::by_code(code).is_none() {
            eprintln!(
                "Warning: Supplied message code '{code}' is an unknown message code and will not have any effect."
            );
        }
        suppress.push((code.to_string(), pattern.to_string()));
    }

    // Resources without a namespace get -n's (or `default`); with -A they are analyzed as given
    // but still need one to resolve short names, so `default` it is.
    let default_ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let opts = LoadOptions {
        default_namespace: default_ns.clone(),
        ..Default::default()
    };
    let mut loaded = load_paths(&args.files, &opts);
    let defaults = load_str(
        &keel_analyze::default_resources(&args.istio_namespace),
        "internal-ingress",
        &opts,
    );
    loaded.resources.extend(defaults.resources);
    let implied = keel_analyze::workload_pods::template_pods(&loaded.resources);
    loaded.resources.extend(implied);

    let parse_errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.level == keel_config::Level::Error)
        .collect();
    for d in &parse_errors {
        eprintln!("{d}");
    }

    let mut mesh = MeshConfig {
        root_namespace: args.istio_namespace.clone(),
        ..Default::default()
    };
    if let Some(path) = &args.mesh_config_file {
        let name = path.display().to_string();
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| format!("{name}: cannot read: {e}"))
            .and_then(|text| MeshConfig::from_yaml(&text, &name));
        match parsed {
            Ok(m) => mesh = m,
            Err(e) => {
                eprintln!("Error: {e}");
                return exit::FAILURE;
            }
        }
    }
    let ctx = AnalysisContext::new(&loaded.resources, mesh);
    let filter = Filter {
        namespace: if args.all_namespaces {
            None
        } else {
            Some(default_ns.clone())
        },
        suppress,
    };
    let all = analyzers::run(&ctx, &filter);
    let shown: Vec<_> = all
        .iter()
        .filter(|m| m.level().reaches(level(args.output_threshold)))
        .cloned()
        .collect();

    let color = args.color.unwrap_or_else(|| {
        std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
    });
    match args.output {
        AnalyzeFormat::Log => {
            if !shown.is_empty() {
                println!("{}", output::log(&shown, color));
            }
        }
        AnalyzeFormat::Json => println!("{}", output::json(&shown)),
        AnalyzeFormat::Yaml => print!("{}", output::yaml(&shown)),
    }

    let target = if args.all_namespaces {
        "all namespaces".to_string()
    } else {
        format!("namespace: {default_ns}")
    };
    if shown.is_empty() {
        if parse_errors.is_empty() {
            let files: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
            eprintln!(
                "✔ No validation issues found when analyzing {}.",
                files.join("\n")
            );
        } else {
            let n = parse_errors.len();
            eprintln!(
                "No validation issues found when analyzing {target} (but {n} {} could not be parsed).",
                if n == 1 { "resource" } else { "resources" }
            );
        }
    }

    if all
        .iter()
        .any(|m| m.level().reaches(level(args.failure_threshold)))
    {
        eprintln!(
            "Error: Analyzers found issues when analyzing {target}.\nSee https://istio.io/latest/docs/reference/config/analysis for more information about causes and resolutions."
        );
        return exit::ISSUES_FOUND;
    }
    if !parse_errors.is_empty() && !args.ignore_unknown {
        eprintln!(
            "Error: Some files couldn't be parsed: fix the errors above, or pass --ignore-unknown to analyze the rest."
        );
        return exit::PARSE;
    }
    exit::OK
}

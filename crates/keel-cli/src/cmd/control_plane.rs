//! `keel control-plane`: the config store, its API and the xDS push, until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_config::Level;
use keel_control::store::{ChangeKind, ConfigStore, DirStore, DirStoreOptions, ReloadReport};

use super::servers::{shutdown_signal, start};
use crate::cli::ControlPlaneArgs;
use crate::exit;

pub fn run(args: &ControlPlaneArgs) -> u8 {
    let Some(dir) = args.config_dir.clone().or_else(default_config_dir) else {
        eprintln!("error: neither KEEL_HOME nor HOME is set; choose a directory with --config-dir");
        return exit::USAGE;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return exit::FAILURE;
        }
    };
    runtime.block_on(run_async(args, dir))
}

/// `$KEEL_HOME`, else `~/.keel`.
fn keel_home() -> Option<PathBuf> {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    nonempty("KEEL_HOME").or_else(|| nonempty("HOME").map(|h| h.join(".keel")))
}

/// `$KEEL_HOME/config`, else `~/.keel/config`.
fn default_config_dir() -> Option<PathBuf> {
    keel_home().map(|h| h.join("config"))
}

async fn run_async(args: &ControlPlaneArgs, dir: PathBuf) -> u8 {
    println!("keel control-plane {}", env!("CARGO_PKG_VERSION"));
    let opts = DirStoreOptions {
        root_namespace: args.root_namespace.clone(),
    };
    let opened = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || DirStore::open(dir, opts)
    })
    .await;
    let (store, report) = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            eprintln!(
                "error: cannot open the config store at {}: {e}",
                dir.display()
            );
            return exit::FAILURE;
        }
        Err(e) => {
            eprintln!("error: cannot open the config store: {e}");
            return exit::FAILURE;
        }
    };
    print_problems(&dir, &report);
    println!(
        "✔ config store {}: {} (store version {})",
        dir.display(),
        plural(report.resources, "resource"),
        report.version
    );
    let store = Arc::new(store);
    let watched = dir.clone();
    let watch = match store.watch(move |report| print_problems(&watched, report)) {
        Ok(w) => {
            println!("✔ watching {} for edits", dir.display());
            Some(w)
        }
        Err(e) => {
            eprintln!("warning: {e}; edits by hand will be read at the next restart only");
            None
        }
    };
    // The CA's material lives beside the config store's default place, not in it (the store
    // reads every file of its directory as config).
    let ca_home = keel_home().map_or_else(|| dir.with_file_name("ca"), |h| h.join("ca"));
    let bound = match super::servers::bind(&args.servers, &ca_home).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
    };
    let (addr, xds_addr, monitoring_addr) = (bound.api_addr, bound.xds_addr, bound.monitoring_addr);
    let ca_line = bound.ca.as_ref().map(super::servers::ca_summary);
    println!("✔ API on http://{addr} (keel apply, keel get, keel delete)");
    if addr.to_string() != keel_control::api::DEFAULT_ADDR {
        println!("  point the CLI at it with: export KEEL_SERVER=http://{addr}");
    }
    let mut servers = start(
        store.clone() as Arc<dyn ConfigStore>,
        bound,
        &args.root_namespace,
    );
    println!("✔ xDS on http://{xds_addr} (keel-proxy sidecar --xds http://{xds_addr} ...)");
    if let Some(a) = monitoring_addr {
        println!("✔ metrics on http://{a}/metrics");
    }
    if let Some(line) = ca_line {
        println!("✔ {line}");
    }
    let changes = tokio::spawn(print_changes(store.subscribe()));
    let proxy_events = tokio::spawn(print_proxy_events(servers.registry.clone()));
    println!("ready — Ctrl-C to stop");
    tokio::select! {
        signal = shutdown_signal() => println!("{signal}: shutting down"),
        e = servers.api_failed() => eprintln!("error: {e}"),
    }
    for e in servers.stop().await {
        eprintln!("error: {e}");
    }
    changes.abort();
    proxy_events.abort();
    drop(watch);
    println!("stopped");
    exit::OK
}

/// One line per stored change, whoever made it (an apply, an edit by hand).
async fn print_changes(mut rx: tokio::sync::watch::Receiver<Arc<keel_control::store::Snapshot>>) {
    let mut seen = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let now = rx.borrow_and_update().clone();
        for c in now.changes_since(&seen) {
            let what = match c.kind {
                ChangeKind::Added => "created",
                ChangeKind::Updated => "configured",
                ChangeKind::Removed => "deleted",
            };
            println!("  store version {}: {} {what}", now.version, c.key);
        }
        seen = now;
    }
}

/// One line when a proxy connects, disconnects, or rejects an update (with the reason).
async fn print_proxy_events(registry: Arc<keel_control::xds::ProxyRegistry>) {
    use std::collections::BTreeMap;
    let mut rx = registry.subscribe();
    // name → the NACK reasons already printed, by type.
    let mut known: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    while rx.changed().await.is_ok() {
        let now: BTreeMap<String, _> = registry
            .list()
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        for (name, p) in &now {
            let seen = known.entry(name.clone()).or_insert_with(|| {
                println!("  proxy {name} connected ({} in {})", p.kind, p.namespace);
                BTreeMap::new()
            });
            for (t, s) in &p.types {
                let reason = s.nack_reason.clone();
                if seen.get(t) != Some(&reason) {
                    if let Some(r) = &reason {
                        println!(
                            "  proxy {name} rejected {t} (version {}): {r}",
                            p.control_plane_version
                        );
                    }
                    seen.insert(t.clone(), reason);
                }
            }
        }
        known.retain(|name, _| {
            let here = now.contains_key(name);
            if !here {
                println!("  proxy {name} disconnected");
            }
            here
        });
    }
}

/// Problems found reading the directory (at start, or after an edit by hand), and what
/// happens to the invalid files.
fn print_problems(dir: &Path, report: &ReloadReport) {
    for p in &report.problems {
        eprintln!("{p}");
    }
    for f in &report.rejected_files {
        let what = if f.kept_last_good {
            "its last good content stays in force until it is fixed"
        } else {
            "it is left out until it is fixed"
        };
        eprintln!("  {} is invalid: {what}", dir.join(&f.path).display());
    }
    let warnings = report
        .problems
        .iter()
        .filter(|d| d.level == Level::Warning)
        .count();
    if warnings > 0 && report.rejected_files.is_empty() {
        eprintln!("  ({})", plural(warnings, "warning"));
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

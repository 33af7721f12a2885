//! `keel up`: a local mesh. The control plane runs in-process (store, API, xDS); every
//! Deployment replica runs as a local process with its own `keel-proxy` sidecar, registered
//! as a WorkloadEntry at its sidecar's inbound port (see [`plan`]). `keel down` signals it
//! through the pid file in the state directory. A Gateway selecting Istio's ingress gateway gets
//! one (see [`gateway`]); `keel demo` is this with Bookinfo built in ([`Preset`]). Once ready,
//! [`reconcile`] starts, replaces and stops replicas as Deployments are applied and deleted.

pub mod gateway;
pub mod image;
pub mod plan;
pub mod pods;
mod preset;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_config::{LoadOptions, Resource, load_str};
use keel_control::store::{ConfigStore, DirStore, DirStoreOptions, WriteOptions};

use self::gateway_follow::GatewayFollower;
use self::plan::{Ports, Replica};
use self::ports::PortReservation;
pub use self::preset::Preset;
use self::process::{Proc, exited, start_replica, stop_all};
use super::servers::shutdown_signal;
use crate::cli::{DownArgs, UpArgs};
use crate::exit;

/// `println!` that ignores a closed stdout (`keel up | head`): shutting down must not panic.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! shout {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

// After the macros, which they use.
mod gateway_follow;
mod ports;
mod process;
mod ready;
mod reconcile;
mod restart;
mod rollout;
mod supervise;
mod ticker;

const PID_FILE: &str = "keel-up.pid";

/// `$KEEL_HOME/up`, else `~/.keel/up`.
pub(crate) fn default_state_dir() -> Option<PathBuf> {
    let nonempty = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    nonempty("KEEL_HOME")
        .map(|h| h.join("up"))
        .or_else(|| nonempty("HOME").map(|h| h.join(".keel").join("up")))
}

fn state_dir(given: &Option<PathBuf>) -> Result<PathBuf, u8> {
    given.clone().or_else(default_state_dir).ok_or_else(|| {
        shout!("error: neither KEEL_HOME nor HOME is set; choose a directory with --state-dir");
        exit::USAGE
    })
}

pub fn run(args: &UpArgs) -> u8 {
    let dir = match state_dir(&args.state_dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            shout!("error: cannot start: {e}");
            return exit::FAILURE;
        }
    };
    runtime.block_on(run_async(args, dir))
}

fn bin_dir(args: &UpArgs) -> Option<PathBuf> {
    args.bin_dir.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
    })
}

fn find_bin(dir: &Option<PathBuf>, name: &str) -> Result<PathBuf, String> {
    let Some(dir) = dir else {
        return Err(format!("cannot find {name}: pass --bin-dir"));
    };
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "cannot find {name} in {} (build it with `cargo build -p {}` or pass --bin-dir)",
            dir.display(),
            if name == "keel-sample" {
                "keel-samples"
            } else {
                name
            }
        ))
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `kill -SIG -- TARGET`: a process id, or `-PGID` for a process group.
fn signal(target: &str, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

async fn run_async(args: &UpArgs, dir: PathBuf) -> u8 {
    let pid_path = dir.join(PID_FILE);
    if let Ok(text) = std::fs::read_to_string(&pid_path)
        && let Ok(pid) = text.trim().parse::<u32>()
        && pid_alive(pid)
    {
        shout!(
            "error: a local mesh is already running from {} (pid {pid}); stop it with `keel down --state-dir {}`",
            dir.display(),
            dir.display()
        );
        return exit::FAILURE;
    }
    // Read and plan everything before starting anything.
    let loaded = preset::load_all(args);
    for d in &loaded.diagnostics {
        shout!("{d}");
    }
    if loaded.has_errors() {
        return exit::FAILURE;
    }
    let runs: Vec<(String, String)> = args.run.clone();
    let replicas = match plan::plan(&loaded.resources, &runs) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                shout!("error: {e}");
            }
            return exit::FAILURE;
        }
    };
    let bins = bin_dir(args);
    let proxy_bin = match find_bin(&bins, "keel-proxy") {
        Ok(b) => b,
        Err(e) => {
            shout!("error: {e}");
            return exit::FAILURE;
        }
    };
    let needs_sample = replicas.iter().any(Replica::needs_sample);
    let sample_bin = if needs_sample {
        match find_bin(&bins, "keel-sample") {
            Ok(b) => Some(b),
            Err(e) => {
                shout!("error: {e}");
                return exit::FAILURE;
            }
        }
    } else {
        None
    };
    let logs = dir.join("logs");
    let config = dir.join("config");
    // A fresh store each time: the registrations of a previous run are stale.
    let _ = std::fs::remove_dir_all(&config);
    if let Err(e) = std::fs::create_dir_all(&logs) {
        shout!("error: cannot create {}: {e}", logs.display());
        return exit::FAILURE;
    }
    if let Err(e) = std::fs::write(&pid_path, format!("{}\n", std::process::id())) {
        shout!("error: cannot write {}: {e}", pid_path.display());
        return exit::FAILURE;
    }
    let code = mesh(
        args,
        &dir,
        &config,
        &logs,
        &loaded.resources,
        &replicas,
        &proxy_bin,
        sample_bin.as_deref(),
    )
    .await;
    let _ = std::fs::remove_file(&pid_path);
    code
}

#[allow(clippy::too_many_arguments)]
async fn mesh(
    args: &UpArgs,
    dir: &Path,
    config: &Path,
    logs: &Path,
    resources: &[Resource],
    replicas: &[Replica],
    proxy_bin: &Path,
    sample_bin: Option<&Path>,
) -> u8 {
    say!(
        "{} {}: state in {}",
        args.preset.as_ref().map_or("keel up", |p| p.name),
        env!("CARGO_PKG_VERSION"),
        dir.display()
    );
    let ingress = gateway::plan(resources, &args.gateway_ports);
    if let Some(i) = &ingress
        && let Err(e) = gateway::check_ports(i, args.preset.as_ref().map(|p| p.port_flag))
    {
        shout!("error: {e}");
        return exit::FAILURE;
    }
    let trusted_proxies = match gateway::trusted_proxies(resources, &args.root_namespace) {
        Ok(n) => n,
        Err(e) => {
            shout!("error: {e}");
            return exit::FAILURE;
        }
    };
    let opened = tokio::task::spawn_blocking({
        let config = config.to_path_buf();
        let opts = DirStoreOptions {
            root_namespace: args.root_namespace.clone(),
        };
        move || DirStore::open(config, opts)
    })
    .await;
    let store = match opened {
        Ok(Ok((s, _))) => Arc::new(s),
        Ok(Err(e)) => {
            shout!(
                "error: cannot open the config store at {}: {e}",
                config.display()
            );
            return exit::FAILURE;
        }
        Err(e) => {
            shout!("error: cannot open the config store: {e}");
            return exit::FAILURE;
        }
    };
    // Plan the ports and registrations, then apply manifests and registrations together.
    // The ports stay reserved until the mesh stops (see `ports`).
    let mut assigned = Vec::new();
    let mut reserved = PortReservation::default();
    let mut all = resources.to_vec();
    for r in replicas {
        let ports = match Ports::reserve(r, &mut reserved) {
            Ok(p) => p,
            Err(e) => {
                shout!("error: no free loopback port: {e}");
                return exit::FAILURE;
            }
        };
        let text = plan::workload_entry(r, &ports).to_string();
        let l = load_str(&text, &r.pod, &LoadOptions::default());
        if l.has_errors() {
            for d in &l.diagnostics {
                shout!("{d}");
            }
            return exit::FAILURE;
        }
        all.extend(l.resources);
        assigned.push(ports);
    }
    let gateway_admin = match ingress.as_ref().map(|_| reserved.reserve()).transpose() {
        Ok(p) => p,
        Err(e) => {
            shout!("error: no free loopback port: {e}");
            return exit::FAILURE;
        }
    };
    let applied = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.apply(all, WriteOptions::default())
    })
    .await;
    match applied {
        Ok(Ok(report)) => say!(
            "✔ applied {} resources ({} workload registrations)",
            report.results.len(),
            replicas.len()
        ),
        Ok(Err(e)) => {
            shout!("error: the manifests were not accepted: {e}");
            return exit::FAILURE;
        }
        Err(e) => {
            shout!("error: {e}");
            return exit::FAILURE;
        }
    }
    let bound = match super::servers::bind(&args.servers, &dir.join("ca")).await {
        Ok(b) => b,
        Err(e) => {
            shout!("error: {e}");
            return exit::FAILURE;
        }
    };
    let (api_addr, xds_addr) = (bound.api_addr, bound.xds_addr);
    let _ = std::fs::write(dir.join("api"), format!("http://{api_addr}\n"));
    say!("✔ control plane: API http://{api_addr}, xDS http://{xds_addr}");
    let servers = super::servers::start(
        store.clone() as Arc<dyn ConfigStore>,
        bound,
        &args.root_namespace,
    );

    if !ports::SHAREABLE {
        reserved.release_all();
    }
    let mut procs: Vec<Proc> = Vec::new();
    let mut failed = false;
    let mut counts: Vec<usize> = Vec::new();
    for (r, ports) in replicas.iter().zip(&assigned) {
        say!("{}", process::starting(r, ports));
        process::unshare_app_ports(r, ports, &mut reserved);
        let bins = process::Binaries {
            xds: xds_addr,
            logs,
            proxy: proxy_bin,
            sample: sample_bin,
            ca: servers.ca.as_ref(),
        };
        match start_replica(r, ports, &bins) {
            Ok(mut ps) => {
                counts.push(ps.len());
                procs.append(&mut ps);
            }
            Err(e) => {
                shout!("error: {}: {e}", r.pod);
                failed = true;
                break;
            }
        }
    }
    if !failed && let Err(e) = pods::write(dir, replicas, &assigned) {
        shout!(
            "warning: cannot write {}: {e}; keel logs and keel exec won't find the pods",
            dir.join("pods.json").display()
        );
    }
    if !failed && let (Some(i), Some(admin)) = (&ingress, gateway_admin) {
        say!("{}", gateway::starting(i));
        match gateway::start(
            i,
            xds_addr,
            admin,
            logs,
            proxy_bin,
            servers.ca.as_ref(),
            trusted_proxies,
        ) {
            Ok(p) => procs.push(p),
            Err(e) => {
                shout!("error: {}: {e}", gateway::NAME);
                failed = true;
            }
        }
    }
    let mut interrupted = false;
    if !failed {
        let ready = ready::wait_ready(replicas, &assigned, &mut procs, &servers.registry);
        tokio::select! {
            result = ready => if let Err(e) = result {
                shout!("error: {e}");
                failed = true;
            },
            s = shutdown_signal() => {
                say!("{s}: shutting down");
                interrupted = true;
            }
        }
    }
    if !failed
        && !interrupted
        && let (Some(i), Some(admin)) = (&ingress, gateway_admin)
    {
        let ready = gateway::wait_ready(i, admin, &mut procs, &servers.registry);
        tokio::select! {
            result = ready => match result {
                Ok(()) => say!("✔ {}.{} ready", gateway::NAME, gateway::NAMESPACE),
                Err(e) => {
                    shout!("error: {e}");
                    failed = true;
                }
            },
            s = shutdown_signal() => {
                say!("{s}: shutting down");
                interrupted = true;
            }
        }
    }
    if !failed && !interrupted {
        say!(
            "ready — {} workloads; Ctrl-C or `keel down --state-dir {}` to stop",
            replicas.len(),
            dir.display()
        );
        say!("  API: export KEEL_SERVER=http://{api_addr}");
        for (r, p) in replicas.iter().zip(&assigned) {
            say!("{}", process::summary(r, p, logs));
        }
        for line in ingress.iter().flat_map(|i| gateway::summary(i, logs)) {
            say!("{line}");
        }
        for line in args.preset.iter().flat_map(Preset::closing) {
            say!("{line}");
        }
        // From now on the reconciler owns the replicas (`procs` starts with theirs, in order)
        // and follows the store's Deployments.
        let mut reconciler = reconcile::Reconciler::new(reconcile::Launch {
            store: store.clone(),
            registry: servers.registry.clone(),
            dir: dir.to_path_buf(),
            logs: logs.to_path_buf(),
            xds: xds_addr,
            bins: bin_dir(args),
            proxy_bin: proxy_bin.to_path_buf(),
            runs: args.run.clone(),
            ca: servers.ca.clone(),
        });
        let mut theirs = procs.drain(..counts.iter().sum::<usize>());
        for ((r, p), n) in replicas.iter().zip(&assigned).zip(&counts) {
            reconciler.adopt(r.clone(), p.clone(), theirs.by_ref().take(*n).collect());
        }
        drop(theirs);
        // The gateway (the one process left in `procs`, if it started) and any Gateway
        // applied later are the follower's.
        let mut follower = GatewayFollower::new(
            store.clone(),
            servers.registry.clone(),
            args.gateway_ports.clone(),
            xds_addr,
            logs.to_path_buf(),
            proxy_bin.to_path_buf(),
            args.preset.as_ref().map(|p| p.port_flag),
            servers.ca.clone(),
            args.root_namespace.clone(),
            trusted_proxies,
        );
        if let (Some(i), Some(admin), Some(p)) = (ingress, gateway_admin, procs.pop()) {
            follower.adopt(i, admin, p);
        }
        // Neither follower returns: the mesh runs until it is told to stop.
        tokio::select! {
            s = shutdown_signal() => say!("{s}: shutting down"),
            () = follower.run() => {}
            never = reconciler.run() => match never {},
        }
        procs.extend(reconciler.into_procs());
        procs.extend(follower.into_procs());
    }
    stop_all(&mut procs).await;
    drop(reserved);
    let _ = servers.stop().await;
    say!("stopped");
    if failed { exit::FAILURE } else { exit::OK }
}

/// `keel down`: SIGTERM to the `keel up` of the state directory, then wait for it to stop.
pub fn run_down(args: &DownArgs) -> u8 {
    let dir = match state_dir(&args.state_dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let pid_path = dir.join(PID_FILE);
    let pid = match std::fs::read_to_string(&pid_path) {
        Ok(t) => match t.trim().parse::<u32>() {
            Ok(p) => p,
            Err(_) => {
                shout!("error: {} does not hold a process id", pid_path.display());
                return exit::FAILURE;
            }
        },
        Err(_) => {
            shout!("no local mesh is running from {}", dir.display());
            return exit::OK;
        }
    };
    if !pid_alive(pid) {
        let _ = std::fs::remove_file(&pid_path);
        say!(
            "no local mesh is running from {} (removed a stale pid file)",
            dir.display()
        );
        return exit::OK;
    }
    say!("stopping the local mesh (pid {pid})…");
    signal(&pid.to_string(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid_alive(pid) && pid_path.exists() {
        if Instant::now() > deadline {
            shout!("error: pid {pid} did not stop within 20 s");
            return exit::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    say!("stopped");
    exit::OK
}

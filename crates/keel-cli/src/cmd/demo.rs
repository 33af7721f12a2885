//! `keel demo`: Istio's Bookinfo on the local mesh in one command. It is `keel up` (see
//! [`super::up`]) given the repository's Bookinfo manifests and Gateway, built into the binary
//! so it runs from any directory, with the ingress gateway on 127.0.0.1:8080, and a summary
//! that ends with the page's URL and the `keel apply` commands of Istio's routing tasks.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cli::{DemoArgs, UpArgs};
use crate::cmd::up::{self, Preset};
use crate::exit;

/// `eprintln!` that ignores a closed stderr.
macro_rules! eprintln_safe {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Bookinfo's Deployments, Services and ServiceAccounts (as Istio's `bookinfo.yaml`).
const APP: &str = include_str!("../../../../examples/bookinfo/app.yaml");
/// Its Gateway and VirtualService (as Istio's `bookinfo-gateway.yaml`).
const GATEWAY: &str = include_str!("../../../../examples/bookinfo/gateway.yaml");

/// Keel's copies of the files Istio's traffic-management tasks apply, in the order the
/// summary lists them, with what each shows.
const TASKS: [(&str, &str, &str); 6] = [
    (
        "destination-rule-all.yaml",
        include_str!("../../../../examples/bookinfo-networking/destination-rule-all.yaml"),
        "the subsets v1, v2, v3 (first)",
    ),
    (
        "virtual-service-all-v1.yaml",
        include_str!("../../../../examples/bookinfo-networking/virtual-service-all-v1.yaml"),
        "everything on v1: no stars",
    ),
    (
        "virtual-service-reviews-test-v2.yaml",
        include_str!(
            "../../../../examples/bookinfo-networking/virtual-service-reviews-test-v2.yaml"
        ),
        "sign in as jason: black stars",
    ),
    (
        "virtual-service-reviews-50-v3.yaml",
        include_str!("../../../../examples/bookinfo-networking/virtual-service-reviews-50-v3.yaml"),
        "half no stars, half red",
    ),
    (
        "virtual-service-ratings-test-delay.yaml",
        include_str!(
            "../../../../examples/bookinfo-networking/virtual-service-ratings-test-delay.yaml"
        ),
        "jason: a 7 s delay, reviews time out",
    ),
    (
        "virtual-service-ratings-test-abort.yaml",
        include_str!(
            "../../../../examples/bookinfo-networking/virtual-service-ratings-test-abort.yaml"
        ),
        "jason: ratings unavailable",
    ),
];

/// The repository keel was built from (its examples, its Cargo workspace), if still there.
fn source_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("Cargo.toml")
        .is_file()
        .then(|| root.canonicalize().unwrap_or(root))
}

pub fn run(args: &DemoArgs) -> u8 {
    let started = Instant::now();
    let port = match args.ingress_port {
        0 => match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => a.port(),
            Err(e) => {
                eprintln_safe!("error: no free loopback port: {e}");
                return exit::FAILURE;
            }
        },
        p => p,
    };
    let bins = args.bin_dir.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
    });
    if args.bin_dir.is_none()
        && let Some(dir) = &bins
        && let Err(code) = build_missing(dir)
    {
        return code;
    }
    let state = args.state_dir.clone().or_else(up::default_state_dir);
    let mut epilogue = vec![
        format!(
            "Open http://127.0.0.1:{port}/productpage and refresh: reviews v1 (no stars), v2 (black stars), v3 (red stars) in turn."
        ),
        String::new(),
        "Change the routing live, as Istio's traffic-management tasks do (in another terminal):"
            .to_string(),
    ];
    let dir = task_dir(state.as_deref());
    let mut commands: Vec<(String, &str)> = TASKS
        .iter()
        .map(|(file, _, what)| (format!("keel apply -f {}", dir.join(file).display()), *what))
        .collect();
    commands.push((
        format!("keel delete -f {}", dir.join(TASKS[1].0).display()),
        "back to the start",
    ));
    let width = commands.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, what) in commands {
        epilogue.push(format!("  {command:width$}  # {what}"));
    }
    if let Some(istio) = istio_samples() {
        epilogue.push(format!(
            "Istio's own files work the same: keel apply -f {}/virtual-service-all-v1.yaml, ...",
            istio.display()
        ));
    }
    epilogue.push(match &args.state_dir {
        Some(d) => format!(
            "Stop: Ctrl-C, or `keel down --state-dir {}` in another terminal.",
            d.display()
        ),
        None => "Stop: Ctrl-C, or `keel down` in another terminal.".to_string(),
    });
    if args.servers.listen.to_string() != "127.0.0.1:15080" {
        epilogue.push(
            "(The API is not on 127.0.0.1:15080: export KEEL_SERVER as shown above first.)"
                .to_string(),
        );
    }
    let up_args = UpArgs {
        files: Vec::new(),
        state_dir: args.state_dir.clone(),
        bin_dir: bins,
        run: Vec::new(),
        servers: args.servers.clone(),
        root_namespace: "istio-system".to_string(),
        // Bookinfo's Gateway says 80, Istio's current copy 8080: either lands on the port.
        gateway_ports: vec![(80, port), (8080, port)],
        preset: Some(Preset {
            name: "keel demo",
            manifests: vec![
                ("bookinfo/app.yaml (built in)", APP),
                ("bookinfo/gateway.yaml (built in)", GATEWAY),
            ],
            epilogue,
            started,
            port_flag: "--ingress-port PORT",
        }),
    };
    up::run(&up_args)
}

/// Where the task files are: the repository's examples (relative when run from its root),
/// else copies written into the state directory.
fn task_dir(state: Option<&Path>) -> PathBuf {
    let rel = Path::new("examples/bookinfo-networking");
    if rel.join(TASKS[0].0).is_file() {
        return rel.to_path_buf();
    }
    if let Some(root) = source_root() {
        let abs = root.join(rel);
        if abs.join(TASKS[0].0).is_file() {
            return abs;
        }
    }
    let Some(state) = state else {
        return rel.to_path_buf();
    };
    let copies = state.join("bookinfo-networking");
    let written = std::fs::create_dir_all(&copies).and_then(|()| {
        TASKS
            .iter()
            .try_for_each(|(file, text, _)| std::fs::write(copies.join(file), text))
    });
    match written {
        Ok(()) => copies,
        Err(_) => rel.to_path_buf(),
    }
}

/// Istio's own sample directory, when there is one: in an unpacked Istio release (the
/// current directory), or beside the repository where Keel's tests find it.
fn istio_samples() -> Option<PathBuf> {
    let sub = "samples/bookinfo/networking";
    let mut candidates = vec![PathBuf::from(sub)];
    if let Some(root) = source_root() {
        candidates.push(root.join("../shared/istio-samples").join(sub));
    }
    candidates
        .into_iter()
        .find(|d| d.join("virtual-service-all-v1.yaml").is_file())
        .map(|d| d.canonicalize().unwrap_or(d))
}

/// `cargo run -p keel-cli -- demo` builds only `keel`: when `keel-proxy` or `keel-sample` is
/// missing beside it in a Cargo target directory of the repository it came from, build them
/// there, with the same profile, before starting.
fn build_missing(dir: &Path) -> Result<(), u8> {
    let missing: Vec<&str> = ["keel-proxy", "keel-sample"]
        .into_iter()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    let (Some(root), Some(target)) = (source_root(), dir.parent()) else {
        return Ok(());
    };
    // A Cargo target directory has this file; an installed keel (~/.cargo/bin) does not.
    if missing.is_empty() || !target.join("CACHEDIR.TAG").is_file() {
        return Ok(());
    }
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let profile_args: Vec<&str> = match profile {
        "debug" => Vec::new(),
        "release" => vec!["--release"],
        other => vec!["--profile", other],
    };
    let _ = writeln!(
        std::io::stdout(),
        "… {} not built yet: building (cargo build {}-p keel-proxy -p keel-samples; a few minutes the first time)",
        missing.join(" and "),
        profile_args
            .iter()
            .map(|a| format!("{a} "))
            .collect::<String>()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target)
        .args(["-p", "keel-proxy", "-p", "keel-samples"])
        .args(&profile_args)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => {
            eprintln_safe!("error: building keel-proxy and keel-sample failed ({s})");
            Err(exit::FAILURE)
        }
        Err(e) => {
            eprintln_safe!("error: cannot run cargo to build keel-proxy and keel-sample: {e}");
            Err(exit::FAILURE)
        }
    }
}

//! Standalone mode: a gateway configured from Istio YAML files alone. The files are read,
//! validated with Istio's rules and compiled; when they change they are read again, and an
//! invalid change is reported and ignored — the last good configuration keeps serving.
//!
//! The gateway is its own control plane, so it also does what istiod does for
//! RequestAuthentications: the key sets of `jwksUri` (and of OpenID discovery) are fetched,
//! refreshed and compiled in inline (crate `keel-jwks`, the code the control plane runs), and
//! a change of keys is applied like a change of files.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keel_config::{Level, LoadOptions, load_paths, validate_resources};
use keel_jwks::{FIRST_FETCH_WAIT, JwksHandle};
use keel_snapshot::Snapshot;
use keel_snapshot::compile::gateway::{GatewayOptions, compile};
use keel_snapshot::compile::jwt::remote_sources;
use keel_snapshot::jwt::{RemoteJwks, WantedJwks};
use serde::{Deserialize, Serialize};

use crate::server::{Listeners, Shared};

/// What to read and how to build the gateway.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub paths: Vec<PathBuf>,
    pub namespace: String,
    pub gateway: GatewayOptions,
    pub compiler: Compiler,
}

/// Where the YAML is read, validated and compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Compiler {
    /// In this process.
    #[default]
    InProcess,
    /// In a short-lived child process running this binary's `compile` command. Reading and
    /// validating every Istio kind is most of the proxy's code; run elsewhere, none of it
    /// becomes resident in the long-running gateway (measured with bench/proxy.sh's loads:
    /// peak RSS 6.5 MiB, 9.0 MiB compiling in process).
    ///
    /// The compiler stays in this binary rather than a separate one: the linker places the
    /// code a gateway runs apart from the rest (`build.rs`), so code only the child runs is
    /// never mapped in the parent (of keel-config, the parent runs only the duration parser
    /// for its flags); a separate binary would only save disk.
    Child(PathBuf),
}

/// What `keel-proxy compile` prints: the snapshot and warnings, or the errors.
#[derive(Debug, Serialize, Deserialize)]
pub struct CompileOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub errors: Vec<String>,
    /// The remote key sets the configuration's RequestAuthentications need: the parent
    /// fetches them (it keeps the cache) and hands them to the next compile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwks_sources: Vec<WantedJwks>,
}

/// A compiled configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
    /// The remote key sets it needs ([`remote_sources`]).
    pub jwks_sources: Vec<WantedJwks>,
}

static VERSION: AtomicU64 = AtomicU64::new(0);

/// Reads, validates and compiles the files (where `cfg.compiler` says). Errors are the lines
/// a user needs to fix; any error rejects the whole change (a half-applied configuration
/// would route surprisingly).
pub fn load(cfg: &StandaloneConfig) -> Result<(Snapshot, Vec<String>), Vec<String>> {
    load_full(cfg).map(|l| (l.snapshot, l.warnings))
}

/// As [`load`], with the remote key sets the configuration needs. Compiles with the key sets
/// in `cfg.gateway.jwks`.
pub fn load_full(cfg: &StandaloneConfig) -> Result<Loaded, Vec<String>> {
    let reads_stdin = cfg.paths.iter().any(|p| p.as_os_str() == "-");
    let mut loaded = match &cfg.compiler {
        Compiler::Child(exe) if !reads_stdin => match load_in_child(exe, cfg) {
            Ok(result) => result?,
            Err(e) => {
                tracing::warn!("{e}; compiling in this process instead");
                load_in_process(cfg)?
            }
        },
        _ => load_in_process(cfg)?,
    };
    loaded.snapshot.version = format!("{}", VERSION.fetch_add(1, Ordering::Relaxed) + 1);
    Ok(loaded)
}

/// Loads the configuration with the remote key sets it needs: new sources are fetched first
/// (for at most [`FIRST_FETCH_WAIT`], as istiod does when it meets a new `jwksUri`), and the
/// files compiled again if that brought keys. `cfg.gateway.jwks` is left at the key sets used.
pub async fn load_resolving(
    cfg: &mut StandaloneConfig,
    jwks: &JwksHandle,
) -> Result<Loaded, Vec<String>> {
    cfg.gateway.jwks = jwks.current();
    let mut loaded = load_blocking(cfg.clone()).await?;
    jwks.want(&loaded.jwks_sources, FIRST_FETCH_WAIT).await;
    let now = jwks.current();
    if !now.same_keys(&cfg.gateway.jwks) {
        cfg.gateway.jwks = now;
        loaded = load_blocking(cfg.clone()).await?;
    }
    Ok(loaded)
}

async fn load_blocking(cfg: StandaloneConfig) -> Result<Loaded, Vec<String>> {
    match tokio::task::spawn_blocking(move || load_full(&cfg)).await {
        Ok(loaded) => loaded,
        Err(e) => Err(vec![format!("reading the configuration failed: {e}")]),
    }
}

/// `keel-proxy compile`: compiles in this process and says so as [`CompileOutput`].
pub fn compile_output(cfg: &StandaloneConfig) -> CompileOutput {
    match load_in_process(cfg) {
        Ok(loaded) => CompileOutput {
            snapshot: Some(loaded.snapshot),
            warnings: loaded.warnings,
            errors: Vec::new(),
            jwks_sources: loaded.jwks_sources,
        },
        Err(errors) => CompileOutput {
            snapshot: None,
            warnings: Vec::new(),
            errors,
            jwks_sources: Vec::new(),
        },
    }
}

type LoadResult = Result<Loaded, Vec<String>>;

/// Runs `exe compile` for `cfg`; the outer error means the child could not be used at all.
/// The fetched key sets go to the child on its stdin (the child fetches nothing).
fn load_in_child(exe: &std::path::Path, cfg: &StandaloneConfig) -> Result<LoadResult, String> {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("compile")
        .arg("--namespace")
        .arg(&cfg.namespace)
        .arg("--bind")
        .arg(cfg.gateway.bind.to_string());
    for p in &cfg.paths {
        cmd.arg("--filename").arg(p);
    }
    for g in &cfg.gateway.gateways {
        cmd.arg("--gateway").arg(g);
    }
    let keys = if cfg.gateway.jwks.is_empty() {
        None
    } else {
        cmd.arg("--jwks-stdin");
        Some(
            serde_json::to_vec(&*cfg.gateway.jwks)
                .map_err(|e| format!("cannot write the key sets for the compiler: {e}"))?,
        )
    };
    let mut child = cmd
        .stdin(if keys.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run the configuration compiler {}: {e}",
                exe.display()
            )
        })?;
    if let (Some(keys), Some(mut stdin)) = (keys, child.stdin.take()) {
        // Dropping stdin closes it: the child reads to the end.
        stdin.write_all(&keys).map_err(|e| {
            format!(
                "cannot hand the key sets to the configuration compiler {}: {e}",
                exe.display()
            )
        })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("the configuration compiler {} failed: {e}", exe.display()))?;
    let parsed: CompileOutput = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "the configuration compiler {} ({}) printed no result: {e}",
            exe.display(),
            out.status
        )
    })?;
    Ok(match parsed.snapshot {
        Some(snapshot) if parsed.errors.is_empty() => Ok(Loaded {
            snapshot,
            warnings: parsed.warnings,
            jwks_sources: parsed.jwks_sources,
        }),
        _ => Err(parsed.errors),
    })
}

/// Reads, validates and compiles the files in this process.
pub fn load_in_process(cfg: &StandaloneConfig) -> LoadResult {
    let loaded = load_paths(
        &cfg.paths,
        &LoadOptions {
            default_namespace: cfg.namespace.clone(),
            ..Default::default()
        },
    );
    let mut errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .map(|d| d.to_string())
        .collect();
    errors.extend(
        validate_resources(&loaded.resources, "istio-system")
            .iter()
            .filter(|d| d.level == Level::Error)
            .map(|d| d.to_string()),
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let compiled = compile(&loaded.resources, &cfg.gateway);
    let warnings = compiled
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.resource, w.message))
        .collect();
    Ok(Loaded {
        snapshot: compiled.snapshot,
        warnings,
        jwks_sources: remote_sources(&loaded.resources),
    })
}

/// The key sets a `compile --jwks-stdin` child was handed.
pub fn read_jwks(input: impl std::io::Read) -> Result<RemoteJwks, String> {
    serde_json::from_reader(input).map_err(|e| format!("the key sets on stdin are not valid: {e}"))
}

/// Applies a snapshot: swap it in, then bind/unbind listeners. Returns bind errors.
pub async fn apply(shared: &Arc<Shared>, listeners: &Listeners, snapshot: Snapshot) -> Vec<String> {
    shared.install(snapshot);
    listeners.reconcile(shared).await
}

/// Watches the files and re-applies them on every change (debounced), and whenever the
/// fetched key sets change.
pub async fn watch(
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
    mut cfg: StandaloneConfig,
    jwks: JwksHandle,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = {
        use notify::Watcher;
        let tx = tx.clone();
        let roots = cfg.paths.clone();
        let mut w = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            // Only changes to the configuration itself (not, say, a log file beside it).
            if event.paths.iter().any(|p| is_config_path(p, &roots)) {
                let _ = tx.send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(
                    "cannot watch configuration files ({e}); changes will not be picked up"
                );
                return;
            }
        };
        for p in &cfg.paths {
            // Watch the parent of a file too: editors replace files by rename.
            let target = if p.is_file() {
                p.parent()
                    .map(|d| d.to_path_buf())
                    .unwrap_or_else(|| p.clone())
            } else {
                p.clone()
            };
            if let Err(e) = w.watch(&target, notify::RecursiveMode::Recursive) {
                tracing::warn!("cannot watch {}: {e}", target.display());
            }
        }
        w
    };
    let mut keys = jwks.subscribe();
    keys.mark_unchanged();
    loop {
        let cause = tokio::select! {
            event = rx.recv() => {
                if event.is_none() {
                    break;
                }
                // Let a burst of writes settle, then read once.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                "configuration reloaded"
            }
            changed = keys.changed() => {
                if changed.is_err() {
                    break;
                }
                "JWT key sets changed; configuration recompiled"
            }
        };
        keys.mark_unchanged();
        match load_resolving(&mut cfg, &jwks).await {
            Ok(loaded) if same_config(&shared.runtime.load().snapshot, &loaded.snapshot) => {}
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                let version = loaded.snapshot.version.clone();
                for e in apply(&shared, &listeners, loaded.snapshot).await {
                    tracing::error!("{e}");
                }
                tracing::info!(version, "{cause}");
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    "configuration change rejected ({} errors); still serving the last good configuration",
                    errors.len()
                );
            }
        }
    }
    drop(watcher);
}

/// A watched file itself, or a `.yaml`/`.yml`/`.json` file under a watched directory.
fn is_config_path(p: &std::path::Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| {
        if r.is_dir() || (!r.exists() && p.starts_with(r)) {
            p.starts_with(r)
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        } else {
            p == r.as_path() || p.file_name() == r.file_name()
        }
    })
}

/// Equal apart from the version number.
pub(crate) fn same_config(a: &Snapshot, b: &Snapshot) -> bool {
    a.listeners == b.listeners && a.clusters == b.clusters
}

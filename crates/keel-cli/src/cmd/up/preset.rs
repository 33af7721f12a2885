//! What `keel demo` gives `keel up` beyond its flags: manifests built into the binary and the
//! closing lines of the summary.

use std::time::Instant;

use keel_config::{LoadOptions, Loaded, load_paths, load_str};

use crate::cli::UpArgs;

/// A command built on `keel up` (`keel demo`).
#[derive(Debug, Clone)]
pub struct Preset {
    /// The command's name in the banner.
    pub name: &'static str,
    /// Manifests built into the binary, as (name for messages, YAML), read before `-f`'s files.
    pub manifests: Vec<(&'static str, &'static str)>,
    /// Lines printed last in the summary, after the mesh is ready.
    pub epilogue: Vec<String>,
    /// When the command started, for the time to ready.
    pub started: Instant,
    /// The flag that moves the ingress gateway's port, for the error when it is taken.
    pub port_flag: &'static str,
}

impl Preset {
    /// The summary's last lines: the time to ready, then the epilogue.
    pub fn closing(&self) -> Vec<String> {
        let mut out = vec![format!(
            "\n{} is up, {:.1} s after the command",
            self.name,
            self.started.elapsed().as_secs_f64()
        )];
        out.extend(self.epilogue.iter().cloned());
        out
    }
}

/// The built-in manifests (if any), then the files.
pub(super) fn load_all(args: &UpArgs) -> Loaded {
    let opts = LoadOptions::default();
    let mut loaded = Loaded::default();
    for (name, text) in args.preset.iter().flat_map(|p| &p.manifests) {
        let l = load_str(text, name, &opts);
        loaded.resources.extend(l.resources);
        loaded.diagnostics.extend(l.diagnostics);
    }
    if !args.files.is_empty() {
        let l = load_paths(&args.files, &opts);
        loaded.resources.extend(l.resources);
        loaded.diagnostics.extend(l.diagnostics);
    }
    loaded
}

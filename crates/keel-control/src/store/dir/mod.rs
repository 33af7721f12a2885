//! [`DirStore`]: the embedded store, a directory of YAML files.
//!
//! Layout (see [`canonical_path`]): the store writes each resource to
//! `<root>/<namespace>/<resource>/<name>.yaml` (`_cluster` for cluster-scoped kinds). Any
//! other `.yaml`, `.yml` or `.json` file under the root is read too, whatever it holds, so a
//! copied `bookinfo.yaml` works; hidden files and directories are skipped.
//!
//! Files are the unit of change: a file whose content is invalid (YAML, schema or Istio
//! validation errors) is reported with file and line, and its last good content stays in
//! force until it is fixed. Writes through [`ConfigStore::apply`] go to the resource's own
//! file (where it already lives, else its canonical path); a resource that shares a file
//! with others is changed by editing that file.

mod scan;
mod write;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use keel_config::{Diagnostic, Level, LoadOptions, Resource, load_str, validate_resources};
use serde_json::Value;
use tokio::sync::watch;

use super::layout::canonical_path;
use super::{Change, ConfigStore, ResourceKey, Snapshot, StoreError, StoredResource, normalized};
use crate::time::{format_rfc3339, parse_rfc3339};
use scan::{read_limited, remove_temp_files, scan};

/// Istio's default root namespace (`istio-system`), where mesh-wide policy lives.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// Deepest directory nesting read (guards against symlink loops).
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone)]
pub struct DirStoreOptions {
    /// The mesh's root namespace, for validation.
    pub root_namespace: String,
}

impl Default for DirStoreOptions {
    fn default() -> Self {
        DirStoreOptions {
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_string(),
        }
    }
}

/// A store kept in a directory of YAML files, watched for edits by hand.
///
/// ```
/// use keel_control::store::{ConfigStore, DirStore, DirStoreOptions, WriteOptions};
/// # let dir = tempfile::tempdir().unwrap();
/// let (store, _report) = DirStore::open(dir.path(), DirStoreOptions::default()).unwrap();
/// let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n";
/// let (resources, _) = keel_control::store::read_for_apply(
///     &[keel_config::source::Input { name: "ns.yaml".into(), text: yaml.into() }],
///     &Default::default(),
/// ).unwrap();
/// let report = store.apply(resources, WriteOptions::default()).unwrap();
/// assert_eq!(report.results[0].1.to_string(), "created");
/// assert!(dir.path().join("_cluster/namespaces/prod.yaml").exists());
/// ```
pub struct DirStore {
    root: PathBuf,
    opts: DirStoreOptions,
    state: Mutex<State>,
    tx: watch::Sender<Arc<Snapshot>>,
}

#[derive(Default)]
struct State {
    /// Every config file under the root, by path relative to it.
    files: BTreeMap<PathBuf, FileState>,
    /// Resources defined in more than one file (all but the one used).
    duplicates: Vec<Diagnostic>,
}

struct FileState {
    /// The content last read (`None`: unreadable), to tell real changes from our own writes.
    content: Option<Vec<u8>>,
    /// The resources of the last good content.
    good: Vec<Resource>,
    /// Problems of the current content: errors (then `good` is older content), warnings, notes.
    problems: Vec<Diagnostic>,
    has_errors: bool,
    /// Documents that are not resources the mesh reads (say, a Job).
    extra_docs: usize,
    mtime: Option<SystemTime>,
}

/// What a reload found.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// The store's version afterwards.
    pub version: u64,
    /// Resources added, updated or removed.
    pub changes: Vec<Change>,
    /// Problems in the files read this time, and resources defined twice.
    pub problems: Vec<Diagnostic>,
    /// Files read because they are new or changed, relative to the root.
    pub files_read: Vec<PathBuf>,
    pub files_removed: Vec<PathBuf>,
    /// Files with errors: their last good content, if any, stays in force.
    pub rejected_files: Vec<RejectedFile>,
    /// Resources in the store afterwards.
    pub resources: usize,
}

/// A file whose content is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedFile {
    /// Relative to the store's root.
    pub path: PathBuf,
    /// Whether earlier, valid content of the file stays in force (else the file is left out).
    pub kept_last_good: bool,
}

impl ReloadReport {
    /// Nothing on disk changed.
    pub fn is_empty(&self) -> bool {
        self.files_read.is_empty() && self.files_removed.is_empty()
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DirStore {
    /// Opens (creating it if needed) and reads the directory. Temporary files left by a crash
    /// are removed. Invalid files are in the report, not an error: the store starts without them.
    pub fn open(
        root: impl Into<PathBuf>,
        opts: DirStoreOptions,
    ) -> Result<(DirStore, ReloadReport), StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_error(&root))?;
        remove_temp_files(&root, 0);
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        let store = DirStore {
            root,
            opts,
            state: Mutex::new(State::default()),
            tx,
        };
        let report = store.reload();
        Ok((store, report))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the directory again and publishes what changed. Called by the watcher; files
    /// whose content didn't change (the store's own writes among them) are not parsed again.
    pub fn reload(&self) -> ReloadReport {
        let mut state = self.lock();
        self.reload_locked(&mut state)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reload_locked(&self, state: &mut State) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut found = Vec::new();
        scan(&self.root, Path::new(""), 0, &mut found);
        let removed: Vec<PathBuf> = state
            .files
            .keys()
            .filter(|p| found.binary_search(p).is_err())
            .cloned()
            .collect();
        for path in removed {
            state.files.remove(&path);
            report.files_removed.push(path);
        }
        for rel in found {
            let abs = self.root.join(&rel);
            let (content, read_error) = match read_limited(&abs) {
                Ok(bytes) => (Some(bytes), None),
                Err(e) => (None, Some(e.to_string())),
            };
            if state.files.get(&rel).is_some_and(|f| f.content == content) {
                continue;
            }
            let previous = state.files.remove(&rel).map(|f| f.good);
            let mtime = fs::metadata(&abs).and_then(|m| m.modified()).ok();
            let file = self.parse_file(&rel, content, read_error, previous, mtime);
            report.problems.extend(file.problems.iter().cloned());
            if file.has_errors {
                report.rejected_files.push(RejectedFile {
                    path: rel.clone(),
                    kept_last_good: !file.good.is_empty(),
                });
            }
            report.files_read.push(rel.clone());
            state.files.insert(rel, file);
        }
        let old = self.snapshot();
        if !report.is_empty() {
            let initial = old.version == 0;
            let next = if initial {
                max_stored_version(state) + 1
            } else {
                old.version + 1
            };
            let new = self.merge(state, next, &old, initial);
            report.changes = new.changes_since(&old);
            report.problems.extend(state.duplicates.iter().cloned());
            if new.version != old.version || new.resources != old.resources {
                self.tx.send_replace(Arc::new(new));
            }
        }
        let now = self.snapshot();
        report.version = now.version;
        report.resources = now.resources.len();
        report
    }

    /// Reads one file's content into resources, keeping `previous` if it has errors.
    fn parse_file(
        &self,
        rel: &Path,
        content: Option<Vec<u8>>,
        read_error: Option<String>,
        previous: Option<Vec<Resource>>,
        mtime: Option<SystemTime>,
    ) -> FileState {
        let name: Arc<str> = Arc::from(self.root.join(rel).display().to_string());
        let text = content.as_deref().map(std::str::from_utf8);
        let (resources, problems) = match (text, read_error) {
            (Some(Ok(text)), _) => self.check(text, &name),
            (Some(Err(_)), _) => (
                Vec::new(),
                vec![file_error(&name, "cannot read: not UTF-8 text")],
            ),
            (None, e) => (
                Vec::new(),
                vec![file_error(
                    &name,
                    &format!("cannot read: {}", e.unwrap_or_default()),
                )],
            ),
        };
        let has_errors = problems.iter().any(|d| d.level == Level::Error);
        let extra_docs = problems.iter().filter(|d| d.level == Level::Note).count();
        FileState {
            content,
            good: if has_errors {
                previous.unwrap_or_default()
            } else {
                resources
            },
            problems,
            has_errors,
            extra_docs,
            mtime,
        }
    }

    /// Loads and validates a text as a store file: Istio's rules plus the store's own.
    fn check(&self, text: &str, name: &str) -> (Vec<Resource>, Vec<Diagnostic>) {
        let loaded = load_str(text, name, &LoadOptions::default());
        let mut problems = loaded.diagnostics;
        problems.extend(validate_resources(
            &loaded.resources,
            &self.opts.root_namespace,
        ));
        problems.extend(super::input::store_rules(&loaded.resources, None));
        problems.sort_by_key(|d| (d.line.unwrap_or(0), d.column.unwrap_or(0)));
        (loaded.resources, problems)
    }

    /// Builds the snapshot from every file's good resources. A resource defined in several
    /// files is taken from its canonical path if it is one of them, else from the first file
    /// in path order; the others are reported. Changed resources get version `next`.
    fn merge(&self, state: &mut State, next: u64, old: &Snapshot, initial: bool) -> Snapshot {
        type Candidate<'a> = (&'a PathBuf, &'a Resource, Option<SystemTime>);
        let mut candidates: BTreeMap<ResourceKey, Vec<Candidate<'_>>> = BTreeMap::new();
        for (path, file) in &state.files {
            for r in &file.good {
                candidates
                    .entry(ResourceKey::of(r))
                    .or_default()
                    .push((path, r, file.mtime));
            }
        }
        let mut duplicates = Vec::new();
        let mut resources = BTreeMap::new();
        let mut changed = false;
        for (key, found) in candidates {
            let canonical = canonical_path(&key);
            let win = found
                .iter()
                .position(|(p, ..)| Some(*p) == canonical.as_ref())
                .unwrap_or(0);
            let (path, r, mtime) = found[win];
            for (i, (_, other, _)) in found.iter().enumerate() {
                if i != win {
                    duplicates.push(
                        Diagnostic::new(
                            Level::Warning,
                            &other.origin.file,
                            Some(other.origin.pos),
                            format!(
                                "also defined in {}, which is used; this definition is ignored (keep one)",
                                r.origin.file
                            ),
                        )
                        .with_resource(key.resource_ref()),
                    );
                }
            }
            let previous = old.get(&key);
            let stored = stored(&key, path, r, mtime, previous, next, initial);
            changed |= previous.is_none_or(|p| p.resource_version != stored.resource_version);
            resources.insert(key, Arc::new(stored));
        }
        changed |= old.resources.keys().any(|k| !resources.contains_key(k));
        state.duplicates = duplicates;
        Snapshot {
            version: if changed { next } else { old.version },
            resources,
        }
    }
}

/// The object as the client gave it, with the namespace filled in (or removed, for
/// cluster-scoped kinds).
pub(crate) fn desired_object(r: &Resource) -> Value {
    let mut v = r.origin.node.to_json();
    if let Some(obj) = v.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(m) = meta.as_object_mut() {
            if r.kind().info().namespaced {
                m.insert("namespace".into(), Value::from(r.namespace()));
            } else {
                m.remove("namespace");
            }
        }
    }
    v
}

/// Sets the metadata the store manages.
fn set_managed(object: &mut Value, version: u64, generation: i64, created: &str) {
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::from(version.to_string()));
        m.insert("generation".into(), Value::from(generation));
        m.insert("creationTimestamp".into(), Value::from(created));
    }
}

/// The stored form of a resource read from `path`, keeping the versions of `previous` if its
/// content is the same.
fn stored(
    key: &ResourceKey,
    path: &Path,
    r: &Resource,
    mtime: Option<SystemTime>,
    previous: Option<&Arc<StoredResource>>,
    next: u64,
    initial: bool,
) -> StoredResource {
    let mut object = desired_object(r);
    let (resource_version, generation, created) = match previous {
        Some(p) if normalized(&p.object) == normalized(&object) => {
            (p.resource_version, p.generation, p.created.clone())
        }
        Some(p) => (
            next,
            r.meta
                .generation
                .filter(|g| *g > p.generation)
                .unwrap_or(p.generation + 1),
            p.created.clone(),
        ),
        None => (
            // At start, versions written in the files carry over.
            match r.meta.resource_version.parse::<u64>() {
                Ok(v) if initial && v > 0 => v,
                _ => next,
            },
            r.meta.generation.filter(|g| *g > 0).unwrap_or(1),
            r.meta
                .creation_timestamp
                .clone()
                .filter(|t| parse_rfc3339(t).is_some())
                .unwrap_or_else(|| format_rfc3339(mtime.unwrap_or_else(SystemTime::now))),
        ),
    };
    set_managed(&mut object, resource_version, generation, &created);
    StoredResource {
        key: key.clone(),
        resource: r.clone(),
        object,
        resource_version,
        generation,
        created,
        path: path.to_path_buf(),
    }
}

/// The highest `metadata.resourceVersion` written in the files.
fn max_stored_version(state: &State) -> u64 {
    state
        .files
        .values()
        .flat_map(|f| &f.good)
        .filter_map(|r| r.meta.resource_version.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

fn file_error(name: &Arc<str>, message: &str) -> Diagnostic {
    Diagnostic::new(Level::Error, name, None, message)
}

//! The config store: every resource the control plane knows, Istio's and Kubernetes' alike,
//! behind one trait so that a Kubernetes-API store can later take the directory's place.
//!
//! A store hands out immutable [`Snapshot`]s. Each change (an apply, a delete, a file edited by
//! hand) publishes a new one with a higher [`Snapshot::version`]; subscribers get a
//! `tokio::sync::watch` receiver, which always holds the latest snapshot and wakes them when it
//! changes. A push engine debounces on it and diffs two snapshots with
//! [`Snapshot::changes_since`]: a receiver that was slow sees only the latest version, and the
//! diff tells it everything that changed in between.
//!
//! Writes are validated before anything changes: an apply with one invalid resource is
//! rejected as a whole with every reason ([`StoreError::Rejected`]).

pub(crate) mod atomic;
mod dir;
mod input;
mod layout;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use keel_config::{Diagnostic, Kind, Resource, ResourceRef};
use serde_json::Value;

pub use dir::{DirStore, DirStoreOptions, RejectedFile, ReloadReport};
pub use input::{ReadOptions, read_for_apply, read_for_delete};
pub use layout::{CLUSTER_DIR, canonical_path, resource_dir_name};
pub use watch::WatchHandle;

/// A resource's identity: its kind (which includes the API group), namespace (empty for
/// cluster-scoped kinds) and name. Two applies of the same identity are the same resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let namespace = if kind.info().namespaced {
            namespace.into()
        } else {
            String::new()
        };
        ResourceKey {
            kind,
            namespace,
            name: name.into(),
        }
    }

    pub fn of(r: &Resource) -> Self {
        ResourceKey::new(r.kind(), r.namespace(), r.name())
    }

    pub fn resource_ref(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind.name().to_string(),
            group: self.kind.group().to_string(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// kubectl's name for the kind in messages: `virtualservice.networking.istio.io`,
    /// `deployment.apps`, `service`.
    pub fn kubectl_kind(kind: Kind) -> String {
        let lower = kind.name().to_ascii_lowercase();
        match kind.group() {
            "" => lower,
            group => format!("{lower}.{group}"),
        }
    }
}

impl fmt::Display for ResourceKey {
    /// `VirtualService default/reviews`, as `keel validate` names resources.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.resource_ref().fmt(f)
    }
}

/// A resource as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub key: ResourceKey,
    /// The typed resource; its origin is the file it was read from.
    pub resource: Resource,
    /// The whole object as stored, with `metadata.resourceVersion`, `generation` and
    /// `creationTimestamp` filled in: what `keel get -o yaml` shows.
    pub object: Value,
    /// The store version at which this resource last changed.
    pub resource_version: u64,
    /// Starts at 1; one more each time the object changes.
    pub generation: i64,
    /// RFC 3339, when the store first saw it.
    pub created: String,
    /// Where it lives, relative to the store's root (for [`DirStore`]).
    pub path: PathBuf,
}

/// Everything in the store at one version. Cheap to clone and to hold: resources are shared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Grows by one with each change; never goes back within a run of the store.
    pub version: u64,
    pub resources: BTreeMap<ResourceKey, Arc<StoredResource>>,
}

/// Which resources a list returns; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kind: Option<Kind>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Filter {
    pub fn matches(&self, key: &ResourceKey) -> bool {
        self.kind.is_none_or(|k| k == key.kind)
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| !key.kind.info().namespaced || *ns == key.namespace)
            && self.name.as_ref().is_none_or(|n| *n == key.name)
    }
}

impl Snapshot {
    pub fn get(&self, key: &ResourceKey) -> Option<&Arc<StoredResource>> {
        self.resources.get(key)
    }

    /// Matching resources, ordered by kind, namespace and name.
    pub fn list<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a Arc<StoredResource>> {
        self.resources
            .iter()
            .filter(|(k, _)| filter.matches(k))
            .map(|(_, r)| r)
    }

    /// What changed from `older` to this snapshot, in key order.
    pub fn changes_since(&self, older: &Snapshot) -> Vec<Change> {
        let mut out = Vec::new();
        for (key, r) in &self.resources {
            match older.resources.get(key) {
                None => out.push(Change::new(key, ChangeKind::Added)),
                Some(o) if o.resource_version != r.resource_version => {
                    out.push(Change::new(key, ChangeKind::Updated))
                }
                Some(_) => {}
            }
        }
        for key in older.resources.keys() {
            if !self.resources.contains_key(key) {
                out.push(Change::new(key, ChangeKind::Removed));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Updated,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: ResourceKey,
    pub kind: ChangeKind,
}

impl Change {
    fn new(key: &ResourceKey, kind: ChangeKind) -> Self {
        Change {
            key: key.clone(),
            kind,
        }
    }
}

/// What an apply did to one resource, as `kubectl apply` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyOutcome {
    Created,
    Configured,
    Unchanged,
}

impl fmt::Display for ApplyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeleteOutcome {
    #[serde(rename = "deleted")]
    Deleted,
    #[serde(rename = "not found")]
    NotFound,
}

impl fmt::Display for DeleteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeleteOutcome::Deleted => "deleted",
            DeleteOutcome::NotFound => "not found",
        })
    }
}

/// Options for writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Validate and report what would happen, change nothing (kubectl's `--dry-run=server`).
    pub dry_run: bool,
}

/// The result of an apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// One entry per applied resource, in the order given.
    pub results: Vec<(ResourceKey, ApplyOutcome)>,
    /// Validation warnings (the apply went through).
    pub warnings: Vec<Diagnostic>,
    /// The store's version after the apply (what it would be, for a dry run).
    pub version: u64,
}

/// The result of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteReport {
    pub results: Vec<(ResourceKey, DeleteOutcome)>,
    pub version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input is invalid; nothing was changed. Every problem found, errors and warnings.
    #[error("{}; nothing was changed", summarize(.0))]
    Rejected(Vec<Diagnostic>),
    /// The write can't be done as asked (e.g. the resource lives in a file with others).
    #[error("{0}")]
    Conflict(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn summarize(diags: &[Diagnostic]) -> String {
    let errors = diags
        .iter()
        .filter(|d| d.level == keel_config::Level::Error)
        .count();
    match errors {
        1 => "1 error".to_string(),
        n => format!("{n} errors"),
    }
}

/// A place resources are kept. Reads come from snapshots (no I/O); writes may block on disk
/// or network, so async callers run them with `spawn_blocking`.
pub trait ConfigStore: Send + Sync {
    /// The current snapshot.
    fn snapshot(&self) -> Arc<Snapshot>;

    /// A receiver that holds the latest snapshot and is woken on every change.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Snapshot>>;

    /// Creates or replaces resources, all or nothing: every resource is validated first, and
    /// if any is invalid nothing changes and every reason is returned.
    fn apply(
        &self,
        resources: Vec<Resource>,
        opts: WriteOptions,
    ) -> Result<ApplyReport, StoreError>;

    /// Deletes resources; absent ones are reported as [`DeleteOutcome::NotFound`].
    fn delete(&self, keys: &[ResourceKey], opts: WriteOptions) -> Result<DeleteReport, StoreError>;

    /// Problems in the stored configuration that the store works around (an invalid file whose
    /// last good content stays in force, a resource defined twice), with file and line.
    fn problems(&self) -> Vec<Diagnostic>;

    fn get(&self, key: &ResourceKey) -> Option<Arc<StoredResource>> {
        self.snapshot().get(key).cloned()
    }

    fn list(&self, filter: &Filter) -> Vec<Arc<StoredResource>> {
        self.snapshot().list(filter).cloned().collect()
    }
}

/// The object without the fields the store manages, for "did it change?" comparisons.
pub(crate) fn normalized(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
    }
    v
}

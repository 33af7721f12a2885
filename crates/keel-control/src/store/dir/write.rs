//! Writes to a [`DirStore`]: where each resource goes, the apply plan, and the
//! [`ConfigStore`] implementation.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use keel_config::{Diagnostic, Kind, Level, Resource, validate_resources};
use tokio::sync::watch;

use super::{DirStore, FileState, State, desired_object, set_managed};
use crate::emit;
use crate::store::layout::canonical_path;
use crate::store::{
    ApplyOutcome, ApplyReport, ConfigStore, DeleteOutcome, DeleteReport, ResourceKey, Snapshot,
    StoreError, WriteOptions, atomic, normalized,
};
use crate::time::format_rfc3339;

impl DirStore {
    /// The files that hold `key`, if each holds nothing else and has no errors: the files a
    /// write may replace or remove.
    fn own_files(&self, state: &State, key: &ResourceKey) -> Result<Vec<PathBuf>, StoreError> {
        let holders: Vec<(&PathBuf, &FileState)> = state
            .files
            .iter()
            .filter(|(_, f)| f.good.iter().any(|r| ResourceKey::of(r) == *key))
            .collect();
        for (path, f) in &holders {
            let abs = self.root.join(path);
            if f.has_errors {
                let first = f
                    .problems
                    .iter()
                    .find(|d| d.level == Level::Error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                return Err(StoreError::Conflict(format!(
                    "{key} is defined in {}, which has been edited and is now invalid ({first}); fix or remove that file first",
                    abs.display()
                )));
            }
            if f.good.len() > 1 || f.extra_docs > 0 {
                return Err(StoreError::Conflict(format!(
                    "{key} is defined in {} together with other objects; change it by editing that file, or move it to a file of its own",
                    abs.display()
                )));
            }
        }
        Ok(holders.into_iter().map(|(p, _)| p.clone()).collect())
    }

    /// Where an apply writes `key`: its own file, else its canonical path if that is free.
    fn target_path(&self, state: &State, key: &ResourceKey) -> Result<PathBuf, StoreError> {
        let own = self.own_files(state, key)?;
        match own.as_slice() {
            [path] => return Ok(path.clone()),
            [] => {}
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|p| self.root.join(p).display().to_string())
                    .collect();
                return Err(StoreError::Conflict(format!(
                    "{key} is defined in several files ({}); remove all but one",
                    list.join(", ")
                )));
            }
        }
        let path = canonical_path(key).ok_or_else(|| {
            StoreError::Conflict(format!("{key}: the name can't be used as a file name"))
        })?;
        if let Some(f) = state.files.get(&path)
            && (f.has_errors || !f.good.is_empty() || f.extra_docs > 0)
        {
            return Err(StoreError::Conflict(format!(
                "{} is where {key} belongs, but it holds something else{}; move or fix that file first",
                self.root.join(&path).display(),
                if f.has_errors { " and is invalid" } else { "" }
            )));
        }
        Ok(path)
    }

    /// Plans an apply: outcomes, and the files to write with their parsed state.
    fn plan_apply(
        &self,
        state: &State,
        resources: &[Resource],
        next: u64,
    ) -> Result<ApplyPlan, StoreError> {
        let old = self.snapshot();
        let now = format_rfc3339(SystemTime::now());
        let mut results = Vec::new();
        let mut writes = Vec::new();
        for r in resources {
            let key = ResourceKey::of(r);
            let mut object = desired_object(r);
            let previous = old.get(&key);
            let outcome = match previous {
                None => ApplyOutcome::Created,
                Some(p) if normalized(&p.object) == normalized(&object) => ApplyOutcome::Unchanged,
                Some(_) => ApplyOutcome::Configured,
            };
            results.push((key.clone(), outcome));
            if outcome == ApplyOutcome::Unchanged {
                continue;
            }
            let path = self.target_path(state, &key)?;
            set_managed(
                &mut object,
                next,
                previous.map_or(1, |p| p.generation + 1),
                previous.map_or(now.as_str(), |p| p.created.as_str()),
            );
            let text = emit::to_yaml(&object);
            // What is written must read back as what was asked for.
            let name = self.root.join(&path).display().to_string();
            let (back, problems) = self.check(&text, &name);
            let faithful = back.len() == 1
                && !problems.iter().any(|d| d.level == Level::Error)
                && normalized(&desired_object(&back[0])) == normalized(&object);
            if !faithful {
                return Err(StoreError::Conflict(format!(
                    "internal error: {key} would not read back as written; nothing was changed (please report this)"
                )));
            }
            writes.push(PlannedWrite {
                path,
                text,
                private: key.kind == Kind::Secret,
                file: FileState {
                    content: None,
                    good: back,
                    problems,
                    has_errors: false,
                    extra_docs: 0,
                    mtime: None,
                },
            });
        }
        Ok((results, writes))
    }
}

/// What an apply will report, and the files it will write.
type ApplyPlan = (Vec<(ResourceKey, ApplyOutcome)>, Vec<PlannedWrite>);

struct PlannedWrite {
    path: PathBuf,
    text: String,
    private: bool,
    file: FileState,
}

impl ConfigStore for DirStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    fn apply(
        &self,
        resources: Vec<Resource>,
        opts: WriteOptions,
    ) -> Result<ApplyReport, StoreError> {
        let mut diags = validate_resources(&resources, &self.opts.root_namespace);
        diags.extend(crate::store::input::store_rules(&resources, None));
        if diags.iter().any(|d| d.level == Level::Error) {
            return Err(StoreError::Rejected(diags));
        }
        let mut state = self.lock();
        let old = self.snapshot();
        let next = old.version + 1;
        let (results, writes) = self.plan_apply(&state, &resources, next)?;
        let version = if writes.is_empty() { old.version } else { next };
        let report = ApplyReport {
            results,
            warnings: diags,
            version,
        };
        if opts.dry_run || writes.is_empty() {
            return Ok(report);
        }
        for mut w in writes {
            let abs = self.root.join(&w.path);
            if let Err(e) = atomic::write(&abs, w.text.as_bytes(), w.private) {
                // Some files may be written: make the snapshot match the disk again.
                self.reload_locked(&mut state);
                return Err(StoreError::Io {
                    path: abs,
                    source: e,
                });
            }
            w.file.content = Some(w.text.into_bytes());
            w.file.mtime = fs::metadata(&abs).and_then(|m| m.modified()).ok();
            state.files.insert(w.path, w.file);
        }
        let new = self.merge(&mut state, next, &old, false);
        self.tx.send_replace(Arc::new(new));
        Ok(report)
    }

    fn delete(&self, keys: &[ResourceKey], opts: WriteOptions) -> Result<DeleteReport, StoreError> {
        let mut state = self.lock();
        let old = self.snapshot();
        let mut results = Vec::new();
        let mut removals: Vec<PathBuf> = Vec::new();
        for key in keys {
            if old.get(key).is_none() {
                results.push((key.clone(), DeleteOutcome::NotFound));
                continue;
            }
            removals.extend(self.own_files(&state, key)?);
            results.push((key.clone(), DeleteOutcome::Deleted));
        }
        // Deleting a Namespace deletes everything in it, as Kubernetes' namespace controller
        // does; the report lists each so the user sees what went with it.
        let contents: Vec<ResourceKey> = results
            .iter()
            .filter(|(k, outcome)| k.kind == Kind::Namespace && *outcome == DeleteOutcome::Deleted)
            .flat_map(|(ns, _)| namespace_contents(&old, &ns.name))
            .filter(|k| !keys.contains(k))
            .collect();
        for key in contents {
            removals.extend(self.own_files(&state, &key).map_err(|e| {
                StoreError::Conflict(format!(
                    "namespace {} can't be deleted with everything in it: {e}",
                    key.namespace
                ))
            })?);
            results.push((key, DeleteOutcome::Deleted));
        }
        removals.sort();
        removals.dedup();
        let next = old.version + 1;
        if opts.dry_run || removals.is_empty() {
            let version = if removals.is_empty() {
                old.version
            } else {
                next
            };
            return Ok(DeleteReport { results, version });
        }
        for path in removals {
            let abs = self.root.join(&path);
            if let Err(e) = atomic::remove(&abs, &self.root) {
                self.reload_locked(&mut state);
                return Err(StoreError::Io {
                    path: abs,
                    source: e,
                });
            }
            state.files.remove(&path);
        }
        let new = self.merge(&mut state, next, &old, false);
        let version = new.version;
        self.tx.send_replace(Arc::new(new));
        Ok(DeleteReport { results, version })
    }

    fn problems(&self) -> Vec<Diagnostic> {
        let state = self.lock();
        let mut out: Vec<Diagnostic> = state
            .files
            .values()
            .flat_map(|f| f.problems.iter().cloned())
            .collect();
        out.extend(state.duplicates.iter().cloned());
        out
    }
}

/// The resources that live in namespace `ns`, in key order.
fn namespace_contents(snapshot: &Snapshot, ns: &str) -> Vec<ResourceKey> {
    snapshot
        .resources
        .keys()
        .filter(|k| k.kind.info().namespaced && k.namespace == ns)
        .cloned()
        .collect()
}

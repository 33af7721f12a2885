//! Watching a [`DirStore`]'s directory: edits by hand are read within a fraction of a second.
//!
//! Events are only a hint: after a burst settles, the whole directory is read again and
//! compared with what the store holds (see `CRATES.md`, pitfall 13: Kubernetes' ConfigMap
//! mounts change by swapping a symlink, reported differently on each system).

use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::Watcher;

use super::atomic::is_temp_name;
use super::{DirStore, ReloadReport, StoreError};

/// How long the directory must be quiet before it is read.
const QUIET: Duration = Duration::from_millis(50);
/// The longest a steady stream of events can delay a read.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Stops watching when dropped.
pub struct WatchHandle {
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        // Dropping the watcher closes the channel, which ends the thread.
        self.watcher.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl DirStore {
    /// Watches the directory on a thread of its own; `on_reload` is called after each reload
    /// that found changed files (with the problems found in them).
    pub fn watch<F>(self: &Arc<Self>, mut on_reload: F) -> Result<WatchHandle, StoreError>
    where
        F: FnMut(&ReloadReport) + Send + 'static,
    {
        let (tx, rx) = channel::<()>();
        let kick = tx.clone();
        let watch_error = |e: notify::Error| StoreError::Io {
            path: self.root().to_path_buf(),
            source: std::io::Error::other(format!("cannot watch: {e}")),
        };
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let relevant = match &res {
                Ok(event) => {
                    !matches!(event.kind, notify::EventKind::Access(_))
                        && !event.paths.iter().all(|p| {
                            p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(is_temp_name)
                        })
                }
                Err(_) => true,
            };
            if relevant {
                let _ = tx.send(());
            }
        })
        .map_err(watch_error)?;
        watcher
            .watch(self.root(), notify::RecursiveMode::Recursive)
            .map_err(watch_error)?;
        let store = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("keel-config-watch".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let start = Instant::now();
                    loop {
                        match rx.recv_timeout(QUIET) {
                            Ok(()) if start.elapsed() < MAX_DELAY => {}
                            Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let report = store.reload();
                    if !report.is_empty() {
                        on_reload(&report);
                    }
                }
            })
            .map_err(|e| StoreError::Io {
                path: self.root().to_path_buf(),
                source: e,
            })?;
        // Edits made between `open` and now would otherwise wait for the next event.
        let _ = kick.send(());
        drop(kick);
        Ok(WatchHandle {
            watcher: Some(watcher),
            thread: Some(thread),
        })
    }
}

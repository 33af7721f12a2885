//! What the mesh's followers (the reconciler, the ingress gateway's follower) wait for: a new
//! store snapshot, or the next tick to look at their processes.

use std::sync::Arc;
use std::time::Duration;

use keel_control::store::Snapshot;
use tokio::sync::watch;

/// How often followers look at their processes between changes.
pub const TICK: Duration = Duration::from_millis(100);

/// One wake-up.
pub enum Wake {
    /// The store changed: act on this snapshot.
    Changed(Arc<Snapshot>),
    /// Nothing changed within a tick.
    Tick,
}

/// The store's changes and ticks between them, first the snapshot in force.
pub struct StoreTicker {
    rx: watch::Receiver<Arc<Snapshot>>,
    open: bool,
    first: bool,
}

impl StoreTicker {
    pub fn new(rx: watch::Receiver<Arc<Snapshot>>) -> StoreTicker {
        StoreTicker {
            rx,
            open: true,
            first: true,
        }
    }

    pub async fn next(&mut self) -> Wake {
        if std::mem::take(&mut self.first) {
            return Wake::Changed(self.rx.borrow_and_update().clone());
        }
        if self.open {
            match tokio::time::timeout(TICK, self.rx.changed()).await {
                Ok(Ok(())) => return Wake::Changed(self.rx.borrow_and_update().clone()),
                // The store is gone (the mesh is stopping): ticks only.
                Ok(Err(_)) => self.open = false,
                Err(_) => return Wake::Tick,
            }
        }
        tokio::time::sleep(TICK).await;
        Wake::Tick
    }
}

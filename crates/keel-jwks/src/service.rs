//! [`JwksHandle`]: the cache driven in the background — due sources fetched concurrently,
//! results recorded, the key sets published on a watch channel whose receivers are woken
//! only when keys change (that is what should trigger a push).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use keel_snapshot::jwt::{JwksSource, RemoteJwks, WantedJwks};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::cache::{Cache, Report, SourceStatus, Timing};
use crate::fetch::{ClientOptions, Fetcher, HttpFetcher};

/// Called with every report besides the `tracing` log: `keel up` and `keel control-plane`
/// print them, having no log subscriber.
pub type Reporter = Arc<dyn Fn(&Report) + Send + Sync>;

/// How the service runs.
#[derive(Clone, Default)]
pub struct Settings {
    pub timing: Timing,
    pub reporter: Option<Reporter>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("timing", &self.timing)
            .field("reporter", &self.reporter.is_some())
            .finish()
    }
}

/// Fetch counts, under istiod's metric names.
#[derive(Debug, Default)]
pub struct Stats {
    /// `pilot_jwks_resolver_network_fetch_success_total`
    pub success: AtomicU64,
    /// `pilot_jwks_resolver_network_fetch_fail_total`
    pub fail: AtomicU64,
}

impl Stats {
    /// The two counters as Prometheus text.
    pub fn render(&self) -> String {
        format!(
            "# HELP pilot_jwks_resolver_network_fetch_success_total Total number of successfully network fetch by pilot jwks resolver\n\
             # TYPE pilot_jwks_resolver_network_fetch_success_total counter\n\
             pilot_jwks_resolver_network_fetch_success_total {}\n\
             # HELP pilot_jwks_resolver_network_fetch_fail_total Total number of failed network fetch by pilot jwks resolver\n\
             # TYPE pilot_jwks_resolver_network_fetch_fail_total counter\n\
             pilot_jwks_resolver_network_fetch_fail_total {}\n",
            self.success.load(Ordering::Relaxed),
            self.fail.load(Ordering::Relaxed)
        )
    }
}

struct Inner {
    cache: Mutex<Cache>,
    published: watch::Sender<Arc<RemoteJwks>>,
    /// Bumped after every attempt: wakes [`JwksHandle::want`]'s waiters.
    attempts: watch::Sender<u64>,
    /// Wakes the driver: new sources, or the last handle gone.
    wake: Arc<Notify>,
    fetcher: Arc<dyn Fetcher>,
    reporter: Option<Reporter>,
    stats: Arc<Stats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The driver holds only a weak reference: wake it so it sees it should stop.
        self.wake.notify_one();
    }
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding the lock can't leave the cache half-updated in a way that
        // matters more than stopping every fetch would.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, report: &Report) {
        if report.warning {
            tracing::warn!("jwks: {}", report.message);
        } else {
            tracing::info!("jwks: {}", report.message);
        }
        if let Some(r) = &self.reporter {
            r(report);
        }
    }

    /// Publishes the cache's key sets; receivers are woken only if the keys changed.
    fn publish(&self, cache: &Cache) {
        let remote = cache.remote();
        self.published.send_if_modified(|current| {
            let changed = !current.same_keys(&remote);
            *current = Arc::new(remote);
            changed
        });
    }
}

/// The running key cache. Cheap to clone; the background task stops when the last clone is
/// dropped. Needs a Tokio runtime.
#[derive(Clone)]
pub struct JwksHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksHandle").finish_non_exhaustive()
    }
}

impl JwksHandle {
    /// Starts the cache with `fetcher` (tests give a fake one).
    pub fn spawn(fetcher: Arc<dyn Fetcher>, settings: Settings) -> JwksHandle {
        let (published, _) = watch::channel(Arc::new(RemoteJwks::default()));
        let (attempts, _) = watch::channel(0);
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            cache: Mutex::new(Cache::new(settings.timing)),
            published,
            attempts,
            wake: wake.clone(),
            fetcher,
            reporter: settings.reporter,
            stats: Arc::default(),
        });
        tokio::spawn(drive(Arc::downgrade(&inner), wake));
        JwksHandle { inner }
    }

    /// Starts the cache with the real HTTP fetcher. The error (an unreadable `--jwks-ca`)
    /// names the file and the fix.
    pub fn http(client: &ClientOptions, settings: Settings) -> Result<JwksHandle, String> {
        Ok(JwksHandle::spawn(
            Arc::new(HttpFetcher::new(client)?),
            settings,
        ))
    }

    /// The configuration now needs exactly `wanted` ([`keel_snapshot::compile::jwt::remote_sources`]):
    /// new sources are fetched at once, sources no longer named are forgotten. Waits up to
    /// `wait` for every new source's first answer (success or failure), so a compile right
    /// after can carry the keys — istiod likewise fetches a new `jwksUri` while it builds
    /// the push (within its 5 s timeout). `Duration::ZERO` returns at once.
    pub async fn want(&self, wanted: &[WantedJwks], wait: Duration) {
        let mut attempts = self.inner.attempts.subscribe();
        {
            let mut cache = self.inner.cache();
            cache.set_wanted(wanted, Instant::now());
            self.inner.publish(&cache);
        }
        self.inner.wake.notify_one();
        if wait.is_zero() {
            return;
        }
        let sources: Vec<JwksSource> = wanted.iter().map(|w| w.source.clone()).collect();
        let deadline = Instant::now() + wait;
        loop {
            if self.inner.cache().all_attempted(&sources) {
                return;
            }
            match tokio::time::timeout_at(deadline, attempts.changed()).await {
                Ok(Ok(())) => {}
                // The deadline, or the service gone: compile with what there is.
                _ => return,
            }
        }
    }

    /// The key sets now, for a compile.
    pub fn current(&self) -> Arc<RemoteJwks> {
        self.inner.published.borrow().clone()
    }

    /// Follows the key sets: woken when keys change (not when only an error does).
    pub fn subscribe(&self) -> watch::Receiver<Arc<RemoteJwks>> {
        self.inner.published.subscribe()
    }

    /// Every source's state (`/debug/jwksz`).
    pub fn status(&self) -> Vec<SourceStatus> {
        self.inner.cache().status(Instant::now(), SystemTime::now())
    }

    /// The fetch counters (the control plane's `/metrics`).
    pub fn stats(&self) -> Arc<Stats> {
        self.inner.stats.clone()
    }
}

/// The background task: fetch what is due, sleep until the next is due or a new source
/// arrives; stop when every handle is gone.
async fn drive(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let due = inner.cache().take_due(Instant::now());
            for (source, timeout) in due {
                tokio::spawn(attempt(inner.clone(), source, timeout));
            }
            inner.cache().next_due()
        };
        // A fetch finishing wakes this loop too (its retry time is new).
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// One attempt for one source, recorded in the cache.
async fn attempt(inner: Arc<Inner>, source: JwksSource, timeout: Duration) {
    let result = crate::resolve::fetch(&*inner.fetcher, &source, timeout).await;
    let counter = if result.is_ok() {
        &inner.stats.success
    } else {
        &inner.stats.fail
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let outcome = {
        let mut cache = inner.cache();
        let outcome = cache.on_result(&source, result, Instant::now(), SystemTime::now());
        inner.publish(&cache);
        outcome
    };
    if let Some(report) = &outcome.report {
        inner.report(report);
    }
    inner.attempts.send_modify(|n| *n += 1);
    inner.wake.notify_one();
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

//! Labelled metric series: lock-light storage keyed by label values, with a last-update time
//! per series so idle ones can be dropped.
//!
//! The hot path ([`SeriesMap::update`]) hashes the borrowed label values, takes a read lock and
//! finds the series by hash and equality: no allocation unless the label set is new. Values are
//! atomics, so concurrent requests on the same series never wait for each other. Only a new
//! label set, [`SeriesMap::expire`] and nothing else take the write lock.
//!
//! In front of that sits an optional index of *shortcuts* ([`SeriesMap::with_shortcut`]): a
//! caller that can name a label set by something cheaper than its label values (pointers to
//! shared identity records, a status code) finds the series without building, hashing and
//! comparing the labels. Building and finding Istio's 25 labels was a tenth of the proxy's
//! instructions per request (bench/proxy-instructions.sh); the shortcut is a few words.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

/// Source of "now" for series ages, behind a trait so tests move time by hand.
pub trait Clock: Send + Sync {
    /// The current monotonic time.
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A Prometheus histogram with fixed upper bounds (`le`), counting each observation once in
/// the first bucket whose bound is >= the value; rendering accumulates.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One slot per bound plus the overflow (`+Inf`) slot; not cumulative.
    buckets: Box<[AtomicU64]>,
    /// `f64` bits of the sum of observations.
    sum: AtomicU64,
}

/// A consistent reading of a histogram: cumulative bucket counts, in bound order.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        let slot = self.bounds.partition_point(|bound| *bound < value);
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }

    /// Reads the buckets once; `count` is derived from them so that `+Inf` and `_count` agree.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            running += bucket.load(Ordering::Relaxed);
            if i < self.bounds.len() {
                cumulative.push(running);
            }
        }
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            count: running,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

/// One label set and the metrics recorded under it.
#[derive(Debug)]
pub struct Series<M> {
    /// Label values, in the order of the map's label names.
    pub labels: Box<[Box<str>]>,
    /// Nanoseconds since the map's epoch at the last update.
    last_update: AtomicU64,
    pub metrics: M,
}

// foldhash, not SipHash: hashing 25 label values per request with SipHash was a twentieth of
// the proxy's instructions (bench/proxy.sh). It is still seeded per process.
type Buckets<M> = HashMap<u64, Vec<Arc<Series<M>>>, RandomState>;

/// Shortcut keys by their caller-computed hash, each with the series it stands for.
type Shortcuts<K, M> = HashMap<u64, Vec<(K, Arc<Series<M>>)>, RandomState>;

/// Shortcuts kept at most; past this the index starts again empty. Keys hold pointers to
/// records a config change replaces, so stale ones pile up slowly; this bounds them.
const MAX_SHORTCUTS: usize = 4096;

/// All series of one label schema (e.g. the 25 labels of Istio's HTTP metrics), and
/// shortcuts to them keyed by `K`.
pub struct SeriesMap<M, K = ()> {
    hasher: RandomState,
    epoch: Instant,
    clock: Arc<dyn Clock>,
    inner: RwLock<Buckets<M>>,
    shortcuts: RwLock<Shortcuts<K, M>>,
}

impl<M, K> SeriesMap<M, K> {
    pub fn new(clock: Arc<dyn Clock>) -> SeriesMap<M, K> {
        SeriesMap {
            hasher: RandomState::default(),
            epoch: clock.now(),
            clock,
            inner: RwLock::new(HashMap::default()),
            shortcuts: RwLock::new(HashMap::default()),
        }
    }

    /// Runs `f` on the series a shortcut with this `hash` leads to, if one `is` the caller's
    /// key, and marks it updated now. `None`: no such shortcut yet (use
    /// [`SeriesMap::update_with_shortcut`]).
    pub fn with_shortcut<R>(
        &self,
        hash: u64,
        is: impl Fn(&K) -> bool,
        f: impl FnOnce(&M) -> R,
    ) -> Option<R> {
        let shortcuts = self
            .shortcuts
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let (_, series) = shortcuts.get(&hash)?.iter().find(|(k, _)| is(k))?;
        series
            .last_update
            .store(self.now_nanos(), Ordering::Relaxed);
        Some(f(&series.metrics))
    }

    /// [`SeriesMap::update`], and remembers `key` (whose hash is `hash`) as a shortcut to the
    /// series. The caller's key must decide the labels: equal keys, equal labels.
    pub fn update_with_shortcut<R>(
        &self,
        hash: u64,
        key: K,
        labels: &[&str],
        new: impl FnOnce() -> M,
        f: impl FnOnce(&M) -> R,
    ) -> R {
        let mut shortcuts = self
            .shortcuts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (series, result) = self.update_series(labels, new, f);
        if shortcuts.values().map(Vec::len).sum::<usize>() >= MAX_SHORTCUTS {
            shortcuts.clear();
        }
        shortcuts.entry(hash).or_default().push((key, series));
        result
    }

    fn now_nanos(&self) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    fn hash(&self, labels: &[&str]) -> u64 {
        self.hasher.hash_one(labels)
    }

    /// Runs `f` on the series for `labels` (created with `new` if there is none) and marks it
    /// updated now.
    pub fn update<R>(
        &self,
        labels: &[&str],
        new: impl FnOnce() -> M,
        f: impl FnOnce(&M) -> R,
    ) -> R {
        self.update_series(labels, new, f).1
    }

    fn update_series<R>(
        &self,
        labels: &[&str],
        new: impl FnOnce() -> M,
        f: impl FnOnce(&M) -> R,
    ) -> (Arc<Series<M>>, R) {
        let hash = self.hash(labels);
        let now = self.now_nanos();
        {
            let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = find(&map, hash, labels) {
                series.last_update.store(now, Ordering::Relaxed);
                return (series.clone(), f(&series.metrics));
            }
        }
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = find(&map, hash, labels) {
            series.last_update.store(now, Ordering::Relaxed);
            return (series.clone(), f(&series.metrics));
        }
        let series = Arc::new(Series {
            labels: labels.iter().map(|v| Box::from(*v)).collect(),
            last_update: AtomicU64::new(now),
            metrics: new(),
        });
        let result = f(&series.metrics);
        map.entry(hash).or_default().push(series.clone());
        (series, result)
    }

    /// Every series, sorted by label values so that the exposition is stable between scrapes.
    pub fn snapshot(&self) -> Vec<Arc<Series<M>>> {
        let mut all: Vec<Arc<Series<M>>> = {
            let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            map.values().flatten().cloned().collect()
        };
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all
    }

    /// Removes series not updated for `idle`; returns how many were removed.
    pub fn expire(&self, idle: std::time::Duration) -> usize {
        let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        // Shortcuts first, and held until the end: an update through a shortcut then either
        // happens before the series' age is read, or finds no shortcut and goes through the
        // labels. Either way it is not counted on a series already removed.
        let mut shortcuts = self
            .shortcuts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let cutoff = self.now_nanos().saturating_sub(idle);
        let mut map = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut removed = 0;
        map.retain(|_, chain| {
            let before = chain.len();
            chain.retain(|s| s.last_update.load(Ordering::Relaxed) > cutoff);
            removed += before - chain.len();
            !chain.is_empty()
        });
        if removed > 0 {
            shortcuts.clear();
        }
        removed
    }

    pub fn len(&self) -> usize {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        map.values().map(Vec::len).sum()
    }
}

fn find<'m, M>(map: &'m Buckets<M>, hash: u64, labels: &[&str]) -> Option<&'m Arc<Series<M>>> {
    map.get(&hash)?.iter().find(|series| {
        series.labels.len() == labels.len()
            && series.labels.iter().zip(labels).all(|(a, b)| &**a == *b)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A clock that only moves when told to.
    pub(crate) struct ManualClock {
        start: Instant,
        offset: Mutex<Duration>,
    }

    impl ManualClock {
        pub(crate) fn new() -> Arc<ManualClock> {
            Arc::new(ManualClock {
                start: Instant::now(),
                offset: Mutex::new(Duration::ZERO),
            })
        }

        pub(crate) fn advance(&self, by: Duration) {
            let mut offset = self.offset.lock().unwrap_or_else(PoisonError::into_inner);
            *offset += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    const BOUNDS: &[f64] = &[1.0, 10.0, 100.0];

    #[test]
    fn histogram_counts_each_value_in_first_bucket_at_or_above_it() {
        let h = Histogram::new(BOUNDS);
        for v in [0.5, 1.0, 1.5, 10.0, 1000.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 4, 4]);
        assert_eq!(s.count, 5);
        assert_eq!(s.sum, 1013.0);
    }

    #[test]
    fn same_labels_share_one_series_and_different_labels_do_not() {
        let map = SeriesMap::<Counter>::new(ManualClock::new());
        map.update(&["a", "b"], Counter::default, |c| c.add(1));
        map.update(&["a", "b"], Counter::default, |c| c.add(2));
        map.update(&["a", "c"], Counter::default, |c| c.add(5));
        // The same concatenation split differently is a different label set.
        map.update(&["ab", ""], Counter::default, |c| c.add(7));
        let all = map.snapshot();
        let values: Vec<(Vec<&str>, u64)> = all
            .iter()
            .map(|s| (s.labels.iter().map(|l| &**l).collect(), s.metrics.get()))
            .collect();
        assert_eq!(
            values,
            vec![
                (vec!["a", "b"], 3),
                (vec!["a", "c"], 5),
                (vec!["ab", ""], 7)
            ]
        );
    }

    #[test]
    fn expire_removes_only_series_idle_longer_than_the_window() {
        let clock = ManualClock::new();
        let map = SeriesMap::<Counter>::new(clock.clone());
        map.update(&["old"], Counter::default, |c| c.add(1));
        clock.advance(Duration::from_secs(50));
        map.update(&["fresh"], Counter::default, |c| c.add(1));
        clock.advance(Duration::from_secs(20));
        assert_eq!(map.expire(Duration::from_secs(60)), 1);
        assert_eq!(map.len(), 1);
        assert_eq!(&*map.snapshot()[0].labels[0], "fresh");
        // A removed series comes back from zero when traffic returns.
        map.update(&["old"], Counter::default, |c| c.add(1));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn shortcuts_lead_to_the_labels_series_and_die_with_it() {
        let clock = ManualClock::new();
        let map = SeriesMap::<Counter, &'static str>::new(clock.clone());
        assert!(map.with_shortcut(7, |k| *k == "a", |c| c.add(1)).is_none());
        map.update_with_shortcut(7, "a", &["x"], Counter::default, |c| c.add(1));
        assert_eq!(map.with_shortcut(7, |k| *k == "a", |c| c.add(1)), Some(()));
        // Another key with the same hash is not taken for this one.
        assert!(
            map.with_shortcut(7, |k| *k == "b", |c| c.add(100))
                .is_none()
        );
        // The labels path and the shortcut count on one series.
        map.update(&["x"], Counter::default, |c| c.add(1));
        assert_eq!(map.snapshot()[0].metrics.get(), 3);
        clock.advance(Duration::from_secs(120));
        assert_eq!(map.expire(Duration::from_secs(60)), 1);
        // Gone with its series: the next update recreates both, from zero.
        assert!(map.with_shortcut(7, |k| *k == "a", |c| c.add(1)).is_none());
        map.update_with_shortcut(7, "a", &["x"], Counter::default, |c| c.add(1));
        assert_eq!(map.snapshot()[0].metrics.get(), 1);
    }

    #[test]
    fn concurrent_updates_are_all_counted() {
        let map = Arc::new(SeriesMap::<Counter>::new(ManualClock::new()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let map = map.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        map.update(&["x"], Counter::default, |c| c.add(1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(map.snapshot()[0].metrics.get(), 4000);
    }
}

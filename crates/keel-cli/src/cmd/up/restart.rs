//! Restarting exited processes as Kubernetes' `restartPolicy: Always` does: each container (and
//! the sidecar) of a pod is restarted on its own, after a back-off that starts at 10 s, doubles
//! with each exit up to 5 minutes, and starts over once the process has run for 10 minutes
//! (the kubelet's CrashLoopBackOff).
//!
//! The base can be shortened for tests with `KEEL_RESTART_BACKOFF_MS` (not a documented flag:
//! a real mesh has no reason to restart faster than Kubernetes); the cap and the reset scale
//! with it (30 and 60 times the base).

use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// The environment variable that shortens the back-off base (milliseconds).
pub const BACKOFF_ENV: &str = "KEEL_RESTART_BACKOFF_MS";

/// Kubernetes' back-off base.
const BASE: Duration = Duration::from_secs(10);

/// The back-off of one process: how long to wait before restart number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    /// Exits since the process last ran long enough to reset the back-off.
    failures: u32,
}

impl Backoff {
    /// Kubernetes' back-off, or the base [`BACKOFF_ENV`] sets.
    pub fn from_env() -> Backoff {
        let base = std::env::var(BACKOFF_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(BASE, Duration::from_millis);
        Backoff::new(base)
    }

    pub fn new(base: Duration) -> Backoff {
        Backoff { base, failures: 0 }
    }

    /// The delay before restarting a process that started at `started` and exited `now`:
    /// the base, doubled for each exit since it last ran for 60 bases, at most 30 bases.
    pub fn next(&mut self, started: Instant, now: Instant) -> Duration {
        if now.saturating_duration_since(started) >= self.base * 60 {
            self.failures = 0;
        }
        let delay = self
            .base
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.base * 30);
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

/// `status 1` or `signal 9`, as the restart line says it.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// `20 s`, or `0.2 s` below a second.
pub fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_from_10_s_to_5_minutes_and_resets_after_10_minutes() {
        let mut b = Backoff::new(BASE);
        let t0 = Instant::now();
        let secs: Vec<u64> = (0..8).map(|_| b.next(t0, t0).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
        // A process that ran 10 minutes starts over.
        let later = t0 + Duration::from_secs(600);
        assert_eq!(b.next(t0, later), Duration::from_secs(10));
        assert_eq!(b.next(later, later), Duration::from_secs(20));
    }

    #[test]
    fn a_short_base_scales_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let t0 = Instant::now();
        let ms: Vec<u128> = (0..7).map(|_| b.next(t0, t0).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3000, 3000]);
        assert_eq!(
            b.next(t0, t0 + Duration::from_secs(6)),
            Duration::from_millis(100)
        );
        assert_eq!(seconds(Duration::from_millis(200)), "0.2 s");
        assert_eq!(seconds(Duration::from_secs(20)), "20 s");
    }

    #[test]
    fn exit_statuses_read_as_the_restart_line_says_them() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(describe(ExitStatus::from_raw(1 << 8)), "status 1");
        assert_eq!(describe(ExitStatus::from_raw(9)), "signal 9");
    }
}

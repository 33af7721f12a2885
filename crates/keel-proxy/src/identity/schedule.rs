//! When to renew and when to retry — pure arithmetic, tested without clocks.
//!
//! Renewal follows Istio's agent (`rotateTime` in `security/pkg/nodeagent/cache/secretcache.go`):
//! with `SECRET_GRACE_PERIOD_RATIO` r (0.5) and `SECRET_GRACE_PERIOD_RATIO_JITTER` j (0.01),
//! the grace period is `(r ± U[0, j]) × lifetime` (clamped to [0, 1] of it) before expiry, the
//! lifetime counted from receipt to `not_after`. A 24 h certificate is renewed after about
//! 12 h ± 15 min, so proxies started together don't all call the CA at the same moment.

use std::time::Duration;

/// Istio's `SECRET_GRACE_PERIOD_RATIO`.
pub const GRACE_RATIO: f64 = 0.5;
/// Istio's `SECRET_GRACE_PERIOD_RATIO_JITTER`.
pub const GRACE_RATIO_JITTER: f64 = 0.01;

/// How long after receipt a certificate of `lifetime` is renewed. `random` is uniform in
/// [-1, 1]: its sign picks the jitter's direction and its size the fraction of `jitter`, as
/// Istio draws a sign and a magnitude.
pub fn renew_after(lifetime: Duration, ratio: f64, jitter: f64, random: f64) -> Duration {
    let grace = (ratio + jitter * random.clamp(-1.0, 1.0)).clamp(0.0, 1.0);
    lifetime.mul_f64(1.0 - grace)
}

/// Retry delays after failures: `initial`, doubling, at most `max`, forever.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial.min(max),
        }
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        now
    }

    /// After a success, the next failure starts again from `initial`.
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn a_day_long_certificate_is_renewed_at_twelve_hours_give_or_take_fifteen_minutes() {
        let mid = renew_after(DAY, GRACE_RATIO, GRACE_RATIO_JITTER, 0.0);
        assert_eq!(mid, Duration::from_secs(12 * 3600));
        let early = renew_after(DAY, GRACE_RATIO, GRACE_RATIO_JITTER, 1.0);
        let late = renew_after(DAY, GRACE_RATIO, GRACE_RATIO_JITTER, -1.0);
        // 1% of 24 h is 14.4 min each way.
        assert_eq!(early, Duration::from_secs(12 * 3600 - 864));
        assert_eq!(late, Duration::from_secs(12 * 3600 + 864));
        for i in 0..=20 {
            let r = f64::from(i) / 10.0 - 1.0;
            let d = renew_after(DAY, GRACE_RATIO, GRACE_RATIO_JITTER, r);
            assert!(early <= d && d <= late, "{r}: {d:?}");
        }
    }

    #[test]
    fn the_grace_is_clamped_to_the_lifetime() {
        assert_eq!(renew_after(DAY, 1.5, 0.0, 0.0), Duration::ZERO);
        assert_eq!(renew_after(DAY, -0.5, 0.0, 0.0), DAY);
        assert_eq!(renew_after(Duration::ZERO, 0.5, 0.01, 0.3), Duration::ZERO);
        // Out-of-range randomness is clamped too.
        assert_eq!(
            renew_after(DAY, 0.5, 0.01, 7.0),
            renew_after(DAY, 0.5, 0.01, 1.0)
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}

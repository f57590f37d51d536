//! Crash restart policy, pure: how long to wait before starting a crashed dyno again.
//!
//! The first crash restarts at once (as Heroku does); later consecutive crashes wait
//! `initial * 2^(n-2)` up to a cap, with "equal jitter" (half fixed, half random) so a fleet of
//! dynos crashing together does not restart in lockstep. A run that lasted `reset_after` resets the
//! count; so does a new release. It never gives up: robots run unattended for weeks.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl BackoffPolicy {
    /// The consecutive-crash count after a crash of a process that ran for `ran_for`.
    pub fn next_count(&self, previous: u32, ran_for: Duration) -> u32 {
        if ran_for >= self.reset_after {
            1
        } else {
            previous.saturating_add(1)
        }
    }

    /// The delay before restarting after the `count`-th consecutive crash; `jitter` in [0, 1).
    pub fn delay(&self, count: u32, jitter: f64) -> Duration {
        if count <= 1 {
            return Duration::ZERO;
        }
        let exp = (count - 2).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn first_crash_restarts_at_once() {
        assert_eq!(policy().delay(1, 0.9), Duration::ZERO);
    }

    #[test]
    fn grows_exponentially_to_the_cap_and_never_gives_up() {
        let p = policy();
        let d: Vec<Duration> = (2..=5).map(|n| p.delay(n, 1.0)).collect();
        assert_eq!(d, [100, 200, 400, 800].map(Duration::from_millis));
        assert_eq!(p.delay(40, 1.0), Duration::from_secs(60));
        assert_eq!(p.delay(u32::MAX, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let p = policy();
        assert_eq!(p.delay(3, 0.0), Duration::from_millis(100));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(150));
        assert!(p.delay(3, 7.0) <= Duration::from_millis(200));
    }

    #[test]
    fn stable_run_resets_count() {
        let p = policy();
        assert_eq!(p.next_count(5, Duration::from_secs(1)), 6);
        assert_eq!(p.next_count(5, Duration::from_secs(61)), 1);
        assert_eq!(p.next_count(u32::MAX, Duration::ZERO), u32::MAX);
    }
}

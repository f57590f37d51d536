//! Retry policy, pure: how long to wait before trying again after the `n`-th consecutive
//! failure. Two users: the supervisor restarting a crashed dyno, the MQTT link reconnecting.
//!
//! Waits grow as `initial * 2^k` up to a cap, with "equal jitter" (half fixed, half random) so a
//! fleet failing together does not retry in lockstep. With `first_at_once` the first failure is
//! retried at once (a dyno's first crash, as Heroku does) and doubling starts at the second. A run
//! (or connection) that lasted `reset_after` resets the count. It never gives up: robots run
//! unattended for weeks.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
    /// Retry the first failure without waiting.
    pub first_at_once: bool,
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

    /// The delay before retrying after the `count`-th consecutive failure; `jitter` in [0, 1).
    pub fn delay(&self, count: u32, jitter: f64) -> Duration {
        let waits_from = if self.first_at_once { 2 } else { 1 };
        if count < waits_from {
            return Duration::ZERO;
        }
        let exp = (count - waits_from).min(30);
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
            first_at_once: true,
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
    fn without_first_at_once_the_first_failure_waits_initial() {
        let p = BackoffPolicy {
            first_at_once: false,
            ..policy()
        };
        assert_eq!(p.delay(0, 1.0), Duration::ZERO);
        let d: Vec<Duration> = (1..=4).map(|n| p.delay(n, 1.0)).collect();
        assert_eq!(d, [100, 200, 400, 800].map(Duration::from_millis));
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(p.delay(u32::MAX, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn stable_run_resets_count() {
        let p = policy();
        assert_eq!(p.next_count(5, Duration::from_secs(1)), 6);
        assert_eq!(p.next_count(5, Duration::from_secs(61)), 1);
        assert_eq!(p.next_count(u32::MAX, Duration::ZERO), u32::MAX);
    }
}

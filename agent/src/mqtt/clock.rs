//! The time rule for signed fleet payloads (commands, desired docs, bundles), pure.
//!
//! With a trusted clock: not issued in the future, not expired, each with the clock-skew
//! allowance. With an untrusted one ([`crate::clock`]: unsynchronised, or behind the last
//! trusted time), the wall clock says nothing, so neither check can use it:
//! - nothing is "from the future" (a robot in 1970 would refuse everything): a payload issued
//!   after what this robot knows of the time is what a robot off the grid must take;
//! - expiry is judged against the lower bound of the true time (the last trusted time, plus the
//!   time since in the same boot): what expired by it is expired for sure;
//! - a payload issued before the last trusted time (less the allowance) is refused: it was made
//!   while this robot still knew the time, so it is old news, and how old is unknown.
//!
//! Signatures, targets, ids and versions are checked as always (`verify.rs`): a replay is a
//! replay whatever the clock says, and only a version newer than any seen moves an app.

use super::verify::Rejection;
use crate::clock::Judged;

/// Issue time and expiry against the clock's verdict, with the clock-skew allowance.
pub fn check_times(ts: u64, expires: u64, now: &Judged, skew_ms: u64) -> Result<(), Rejection> {
    if now.trusted && ts > now.now_ms.saturating_add(skew_ms) {
        return Err(Rejection::FromFuture {
            ts,
            now: now.now_ms,
        });
    }
    if !now.trusted && ts.saturating_add(skew_ms) < now.floor_ms {
        return Err(Rejection::BeforeTrustedTime {
            ts,
            floor: now.floor_ms,
        });
    }
    if expires.saturating_add(skew_ms) < now.now_ms {
        return Err(Rejection::Expired {
            expires,
            now: now.now_ms,
            skew_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::judge::{judge, Anchor, Boot, Reading};

    const BUILD: u64 = 1_790_000_000_000;
    const T: u64 = 1_796_000_000_000;
    const SKEW: u64 = 300_000;
    const HOUR: u64 = 3_600_000;

    fn unsynced_1970(anchor: Option<&Anchor>, boot_ms: u64) -> Judged {
        let r = Reading {
            wall_ms: 1_000,
            synced: Some(false),
            boot: Some(Boot {
                id: "b1".into(),
                ms: boot_ms,
            }),
        };
        judge(&r, anchor, BUILD, SKEW)
    }

    fn anchor() -> Anchor {
        Anchor {
            wall_ms: T,
            boot: Some(Boot {
                id: "b0".into(),
                ms: 0,
            }),
        }
    }

    #[test]
    fn synced_as_before() {
        let now = Judged::trusted_at(T);
        assert_eq!(check_times(T, T + HOUR, &now, SKEW), Ok(()));
        assert_eq!(check_times(T + SKEW, T + HOUR, &now, SKEW), Ok(()));
        assert_eq!(
            check_times(T + SKEW + 1, T + HOUR, &now, SKEW)
                .unwrap_err()
                .code(),
            "from_future"
        );
        assert_eq!(
            check_times(T - 2 * HOUR, T - HOUR, &now, SKEW)
                .unwrap_err()
                .code(),
            "expired"
        );
    }

    #[test]
    fn unsynced_in_1970_takes_what_was_made_after_the_build() {
        let now = unsynced_1970(None, 5_000);
        // A command made today (long after the build date) passes: no lockout.
        assert_eq!(check_times(T, T + HOUR, &now, SKEW), Ok(()));
        // Made before the build: older than anything this robot could have missed.
        let e = check_times(BUILD - HOUR, BUILD + 23 * HOUR, &now, SKEW).unwrap_err();
        assert_eq!(e.code(), "before_trusted_time");
        // Expired before the build: expired for sure.
        let e = check_times(BUILD - 2 * HOUR, BUILD - HOUR, &now, SKEW).unwrap_err();
        assert_eq!(e.code(), "before_trusted_time");
    }

    #[test]
    fn unsynced_after_a_trusted_time() {
        let a = anchor();
        let now = unsynced_1970(Some(&a), 9_000);
        assert_eq!(now.now_ms, T, "another boot: the anchor is the bound");
        // Made after the last trusted time: taken, even far "in the future" of the wall clock.
        assert_eq!(
            check_times(T + 30 * HOUR, T + 31 * HOUR, &now, SKEW),
            Ok(())
        );
        // Made within the allowance before it: taken.
        assert_eq!(check_times(T - SKEW, T + HOUR, &now, SKEW), Ok(()));
        // Stale issued-at: made an hour before, still "valid" by its expiry: refused.
        let e = check_times(T - HOUR, T + 23 * HOUR, &now, SKEW).unwrap_err();
        assert_eq!(e.code(), "before_trusted_time");
        assert!(e.to_string().contains("trusted its clock"), "{e}");
    }

    #[test]
    fn expiry_counts_the_time_since_the_anchor_in_the_same_boot() {
        let a = Anchor {
            wall_ms: T,
            boot: Some(Boot {
                id: "b1".into(),
                ms: 1_000,
            }),
        };
        // Two hours into the same boot since the anchor, the wall clock back in 1970.
        let now = unsynced_1970(Some(&a), 1_000 + 2 * HOUR);
        assert_eq!(now.now_ms, T + 2 * HOUR);
        // Made after the anchor but expired an hour ago by the monotonic count: expired.
        let e = check_times(T + 10, T + HOUR, &now, SKEW).unwrap_err();
        assert_eq!(e.code(), "expired");
        assert_eq!(check_times(T + HOUR, T + 3 * HOUR, &now, SKEW), Ok(()));
    }

    #[test]
    fn a_clock_jumping_backwards_keeps_the_floor() {
        let a = anchor();
        let r = Reading {
            wall_ms: T - 48 * HOUR,
            synced: Some(true),
            boot: None,
        };
        let now = judge(&r, Some(&a), BUILD, SKEW);
        assert!(!now.trusted);
        // What the set-back clock would have taken (valid two days ago) is refused.
        let e = check_times(T - 48 * HOUR, T - 47 * HOUR, &now, SKEW).unwrap_err();
        assert_eq!(e.code(), "before_trusted_time");
        // Fresh payloads still pass.
        assert_eq!(check_times(T + HOUR, T + 2 * HOUR, &now, SKEW), Ok(()));
    }
}

#[cfg(test)]
#[path = "clock_tests.rs"]
mod verify_tests;

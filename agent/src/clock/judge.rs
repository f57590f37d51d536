//! Whether this robot's wall clock can be trusted, and what time to judge signed payloads by:
//! pure (the readings are passed in), so every case is a unit test.
//!
//! A board without a real-time clock boots in 1970 and keeps a wrong time until NTP answers,
//! which on a robot off the grid may be never. Judging a signed command's expiry by such a clock
//! either locks the robot out (everything looks issued in the future) or, with a clock that is
//! behind, lets long-expired commands in. So robokud keeps a lower bound of the true time, the
//! [`Anchor`]: the wall time it last saw while the kernel said the clock was synchronised, with
//! the boot it was seen in and how long that boot had run. The true time now is at least the
//! anchor, plus the time elapsed since it when the boot is the same one (`CLOCK_BOOTTIME`
//! counts suspend too), and at least robokud's build date.
//!
//! The clock is **trusted** when the kernel does not say it is unsynchronised and the wall clock
//! is not behind that lower bound (by more than the slack). Otherwise it is **untrusted**, and
//! [`Judged`] says what to judge by instead: expiry against the lower bound (`now_ms`), and
//! nothing issued before the last trusted time (`floor_ms`) minus the slack.

use serde::{Deserialize, Serialize};

/// The boot a reading was taken in: the kernel's boot id and the ms since that boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    pub id: String,
    pub ms: u64,
}

/// One look at the clocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The wall clock, unix ms.
    pub wall_ms: u64,
    /// The kernel's NTP state (`adjtimex`): `Some(false)` unsynchronised, `None` unknown.
    pub synced: Option<bool>,
    pub boot: Option<Boot>,
}

/// The last trusted time, persisted (`<data>/clock.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The wall clock while synchronised, unix ms.
    pub wall_ms: u64,
    #[serde(default)]
    pub boot: Option<Boot>,
}

/// The verdict on the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub trusted: bool,
    pub synced: Option<bool>,
    pub wall_ms: u64,
    /// What expiry is judged against: the wall clock when trusted, else the lower bound of the
    /// true time (never earlier than the wall clock).
    pub now_ms: u64,
    /// Untrusted only: payloads issued before this (minus the slack) are refused. The last
    /// trusted time, or robokud's build date when there is none.
    pub floor_ms: u64,
    pub last_trusted_ms: Option<u64>,
    /// Why the clock is untrusted.
    pub reason: Option<String>,
}

impl Judged {
    /// A clock trusted as it reads (what verification did before clocks were judged; tests).
    pub fn trusted_at(now_ms: u64) -> Judged {
        Judged {
            trusted: true,
            synced: Some(true),
            wall_ms: now_ms,
            now_ms,
            floor_ms: 0,
            last_trusted_ms: None,
            reason: None,
        }
    }
}

impl From<u64> for Judged {
    fn from(now_ms: u64) -> Judged {
        Judged::trusted_at(now_ms)
    }
}

/// The lower bound of the true time the anchor and the build date give.
pub fn lower_bound(r: &Reading, anchor: Option<&Anchor>, build_ms: u64) -> u64 {
    let Some(a) = anchor else {
        return build_ms;
    };
    let elapsed = match (&a.boot, &r.boot) {
        (Some(then), Some(now)) if then.id == now.id => now.ms.saturating_sub(then.ms),
        _ => 0,
    };
    build_ms.max(a.wall_ms.saturating_add(elapsed))
}

/// Judges the clock: see the module doc.
pub fn judge(r: &Reading, anchor: Option<&Anchor>, build_ms: u64, slack_ms: u64) -> Judged {
    let known = lower_bound(r, anchor, build_ms);
    let last_trusted_ms = anchor.map(|a| a.wall_ms);
    let reason = if r.synced == Some(false) {
        Some("the kernel says the clock is not synchronised (no NTP or RTC time yet)".to_string())
    } else if r.wall_ms.saturating_add(slack_ms) < known {
        let behind = (known - r.wall_ms) / 1000;
        Some(match last_trusted_ms {
            Some(_) => format!("the clock is {behind} s behind the last trusted time"),
            None => format!("the clock is {behind} s behind robokud's build date (never set)"),
        })
    } else {
        None
    };
    match reason {
        None => Judged {
            trusted: true,
            synced: r.synced,
            wall_ms: r.wall_ms,
            now_ms: r.wall_ms,
            floor_ms: 0,
            last_trusted_ms,
            reason: None,
        },
        Some(why) => Judged {
            trusted: false,
            synced: r.synced,
            wall_ms: r.wall_ms,
            now_ms: r.wall_ms.max(known),
            floor_ms: build_ms.max(last_trusted_ms.unwrap_or(0)),
            last_trusted_ms,
            reason: Some(why),
        },
    }
}

/// Whether `r` should become the new anchor: only a time the kernel calls synchronised and the
/// judge trusts, and then rarely (a new boot, or `every_ms` after the last one), so the data
/// dir sees one small write an hour.
pub fn worth_saving(r: &Reading, j: &Judged, anchor: Option<&Anchor>, every_ms: u64) -> bool {
    if !j.trusted || r.synced != Some(true) {
        return false;
    }
    match anchor {
        None => true,
        Some(a) => {
            let other_boot = a.boot.as_ref().map(|b| &b.id) != r.boot.as_ref().map(|b| &b.id);
            other_boot || r.wall_ms >= a.wall_ms.saturating_add(every_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: u64 = 1_790_000_000_000;
    const T: u64 = 1_796_000_000_000;
    const SLACK: u64 = 300_000;

    fn boot(id: &str, ms: u64) -> Option<Boot> {
        Some(Boot { id: id.into(), ms })
    }

    fn read(wall_ms: u64, synced: Option<bool>, b: Option<Boot>) -> Reading {
        Reading {
            wall_ms,
            synced,
            boot: b,
        }
    }

    #[test]
    fn a_synced_clock_is_trusted_as_it_reads() {
        let a = Anchor {
            wall_ms: T,
            boot: boot("b1", 1000),
        };
        let j = judge(
            &read(T + 5000, Some(true), boot("b1", 6000)),
            Some(&a),
            BUILD,
            SLACK,
        );
        assert!(j.trusted);
        assert_eq!(j.now_ms, T + 5000);
        assert_eq!(j.reason, None);
        // Unknown sync state, but a plausible time: trusted too.
        assert!(judge(&read(T, None, None), Some(&a), BUILD, SLACK).trusted);
    }

    #[test]
    fn unsynced_in_1970_without_an_anchor_falls_back_to_the_build_date() {
        let j = judge(
            &read(3_000, Some(false), boot("b1", 3_000)),
            None,
            BUILD,
            SLACK,
        );
        assert!(!j.trusted);
        assert_eq!(j.now_ms, BUILD);
        assert_eq!(j.floor_ms, BUILD);
        assert_eq!(j.last_trusted_ms, None);
        assert!(j.reason.unwrap().contains("not synchronised"));
        // A clock that claims sync but reads 1970 is no better.
        let j = judge(&read(3_000, Some(true), None), None, BUILD, SLACK);
        assert!(!j.trusted);
        assert!(j.reason.unwrap().contains("build date"), "never set");
    }

    #[test]
    fn unsynced_after_a_trusted_time_counts_the_time_since_in_the_same_boot() {
        let a = Anchor {
            wall_ms: T,
            boot: boot("b1", 10_000),
        };
        // Same boot, an hour later by CLOCK_BOOTTIME, the wall clock reset to 1970.
        let j = judge(
            &read(5, Some(false), boot("b1", 3_610_000)),
            Some(&a),
            BUILD,
            SLACK,
        );
        assert!(!j.trusted);
        assert_eq!(j.now_ms, T + 3_600_000);
        assert_eq!(j.floor_ms, T);
        assert_eq!(j.last_trusted_ms, Some(T));
        // Another boot: the time elapsed is unknown, the anchor itself is the bound.
        let j = judge(
            &read(5, Some(false), boot("b2", 9_000)),
            Some(&a),
            BUILD,
            SLACK,
        );
        assert_eq!(j.now_ms, T);
        assert_eq!(j.floor_ms, T);
        // A wall clock ahead of the bound is used as it is (still untrusted: unsynced).
        let j = judge(
            &read(T + 7_200_000, Some(false), None),
            Some(&a),
            BUILD,
            SLACK,
        );
        assert!(!j.trusted);
        assert_eq!(j.now_ms, T + 7_200_000);
    }

    #[test]
    fn a_clock_jumping_backwards_is_untrusted_even_when_called_synced() {
        let a = Anchor {
            wall_ms: T,
            boot: boot("b1", 0),
        };
        // A day back, the kernel still saying synchronised.
        let j = judge(
            &read(T - 86_400_000, Some(true), boot("b1", 60_000)),
            Some(&a),
            BUILD,
            SLACK,
        );
        assert!(!j.trusted);
        assert_eq!(j.now_ms, T + 60_000);
        assert!(j.reason.unwrap().contains("behind the last trusted time"));
        // Within the slack: trusted (NTP steps a little).
        let j = judge(
            &read(T - 1_000, Some(true), boot("b2", 0)),
            Some(&a),
            BUILD,
            SLACK,
        );
        assert!(j.trusted);
        // And it is never saved as the new anchor while untrusted.
        let r = read(T - 86_400_000, Some(true), boot("b1", 60_000));
        let j = judge(&r, Some(&a), BUILD, SLACK);
        assert!(!worth_saving(&r, &j, Some(&a), 3_600_000));
    }

    #[test]
    fn anchors_are_saved_rarely_and_only_when_synced() {
        let a = Anchor {
            wall_ms: T,
            boot: boot("b1", 0),
        };
        let at = |wall, synced, b| {
            let r = read(wall, synced, b);
            let j = judge(&r, Some(&a), BUILD, SLACK);
            worth_saving(&r, &j, Some(&a), 3_600_000)
        };
        assert!(
            !at(T + 60_000, Some(true), boot("b1", 60_000)),
            "a minute later"
        );
        assert!(
            at(T + 3_600_000, Some(true), boot("b1", 3_600_000)),
            "an hour later"
        );
        assert!(at(T + 60_000, Some(true), boot("b2", 1_000)), "a new boot");
        assert!(
            !at(T + 3_600_000, None, boot("b1", 3_600_000)),
            "sync unknown"
        );
        assert!(
            !at(T + 3_600_000, Some(false), boot("b1", 3_600_000)),
            "unsynced"
        );
        let r = read(T, Some(true), None);
        assert!(worth_saving(
            &r,
            &judge(&r, None, BUILD, SLACK),
            None,
            3_600_000
        ));
    }
}

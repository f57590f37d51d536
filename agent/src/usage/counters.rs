//! Bytes per channel for the current UTC day and month (pure: the caller passes the time).
//!
//! The calendar only moves forward, with two exceptions for clocks that cannot be trusted:
//! - a clock that goes back by less than a day (NTP stepping back across midnight) keeps
//!   counting into the newest day seen, so no byte is counted twice nor a day reset twice;
//! - a clock before [`PLAUSIBLE_MS`] (a board without RTC booting in 1970) also keeps counting
//!   into the newest day seen: the robot cannot know the date, and starting a fresh day would
//!   hand it a fresh budget;
//! - a plausible clock more than a day behind the newest day seen means that day came from a
//!   wrong clock (an RTC set years ahead, then corrected): the counters follow the clock, or a
//!   budget would stay spent until the wrong date came round.

use super::Channel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// 2020-01-01T00:00:00Z: a clock before this is not set.
pub const PLAUSIBLE_MS: u64 = 1_577_836_800_000;
const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    /// `2026-12-03`, `2026-12`.
    pub day: String,
    pub month: String,
    /// Start of `day`, unix ms (for the clock rules).
    pub day_start: u64,
    pub today: [u64; Channel::COUNT],
    pub this_month: [u64; Channel::COUNT],
}

/// The UTC day and month of `ms`, and the start of that day.
pub fn calendar(ms: u64) -> (String, String, u64) {
    let iso = roboku_wire::iso8601(ms);
    (
        iso[..10].to_string(),
        iso[..7].to_string(),
        ms - ms % DAY_MS,
    )
}

impl Counters {
    pub fn new(now_ms: u64) -> Counters {
        let (day, month, day_start) = calendar(now_ms);
        Counters {
            day,
            month,
            day_start,
            today: [0; Channel::COUNT],
            this_month: [0; Channel::COUNT],
        }
    }

    /// Moves to `now_ms`'s day and month when the rules above say so; true if the day changed.
    pub fn roll(&mut self, now_ms: u64) -> bool {
        let (day, month, day_start) = calendar(now_ms);
        if day == self.day {
            return false;
        }
        let forward = day_start > self.day_start;
        let corrected = now_ms >= PLAUSIBLE_MS && now_ms + DAY_MS < self.day_start;
        if !forward && !corrected {
            return false;
        }
        if month != self.month {
            self.month = month;
            self.this_month = [0; Channel::COUNT];
        }
        self.day = day;
        self.day_start = day_start;
        self.today = [0; Channel::COUNT];
        true
    }

    /// Milliseconds (on the counters' clock) from `now_ms` to the start of the next UTC day, when
    /// [`Counters::roll`] has something to do; never zero. Pure.
    pub fn until_next_day(&self, now_ms: u64) -> u64 {
        let next = now_ms.max(self.day_start) / DAY_MS * DAY_MS + DAY_MS;
        (next - now_ms.min(next)).max(1)
    }

    /// Counts `n` bytes on `ch` at `now_ms`.
    pub fn add(&mut self, now_ms: u64, ch: Channel, n: u64) {
        self.roll(now_ms);
        let i = ch as usize;
        self.today[i] = self.today[i].saturating_add(n);
        self.this_month[i] = self.this_month[i].saturating_add(n);
    }

    pub fn saved(&self) -> Saved {
        let map = |a: &[u64; Channel::COUNT]| {
            Channel::ALL
                .iter()
                .filter(|c| a[**c as usize] > 0)
                .map(|c| (c.name().to_string(), a[*c as usize]))
                .collect()
        };
        Saved {
            v: 1,
            day: self.day.clone(),
            month: self.month.clone(),
            day_start: self.day_start,
            today: map(&self.today),
            month_bytes: map(&self.this_month),
        }
    }

    /// Back from the file; channels this version does not know are dropped.
    pub fn from_saved(s: &Saved) -> Result<Counters, String> {
        let (day, month, start) = calendar(s.day_start);
        if s.v != 1 || day != s.day || month != s.month || start != s.day_start {
            return Err(format!(
                "version {} with day {:?}, month {:?}, day_start {} that do not agree",
                s.v, s.day, s.month, s.day_start
            ));
        }
        let arr = |m: &BTreeMap<String, u64>| {
            let mut a = [0; Channel::COUNT];
            for (k, v) in m {
                if let Some(c) = Channel::parse(k) {
                    a[c as usize] = *v;
                }
            }
            a
        };
        Ok(Counters {
            day,
            month,
            day_start: start,
            today: arr(&s.today),
            this_month: arr(&s.month_bytes),
        })
    }
}

/// What `<data>/usage.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    pub v: u32,
    pub day: String,
    pub month: String,
    pub day_start: u64,
    pub today: BTreeMap<String, u64>,
    pub month_bytes: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03T00:00:00Z.
    const DEC3: u64 = 1_796_256_000_000;
    const H: u64 = 3_600_000;

    #[test]
    fn calendar_is_utc() {
        assert_eq!(roboku_wire::iso8601(DEC3), "2026-12-03T00:00:00.000Z");
        assert_eq!(calendar(DEC3 + 23 * H).0, "2026-12-03");
        assert_eq!(calendar(DEC3 - 1).0, "2026-12-02");
        assert_eq!(calendar(0), ("1970-01-01".into(), "1970-01".into(), 0));
    }

    #[test]
    fn the_next_day_is_where_roll_has_work() {
        let c = Counters::new(DEC3 + 23 * H);
        assert_eq!(c.until_next_day(DEC3 + 23 * H), H);
        assert_eq!(c.until_next_day(DEC3 + 24 * H - 1), 1);
        let mut rolled = c.clone();
        assert!(rolled.roll(DEC3 + 23 * H + c.until_next_day(DEC3 + 23 * H)));
        // A clock stepped back (kept in the newest day): the next day after the one counted.
        assert_eq!(c.until_next_day(DEC3 + 22 * H), 2 * H);
        assert_eq!(c.until_next_day(DEC3 - H), 25 * H);
        // Never zero, so an owner waiting for it never spins.
        assert!(Counters::new(0).until_next_day(0) > 0);
    }

    #[test]
    fn the_day_rolls_at_midnight_and_the_month_keeps_counting() {
        let mut c = Counters::new(DEC3 + 23 * H);
        c.add(DEC3 + 23 * H, Channel::Telemetry, 100);
        c.add(DEC3 + 24 * H - 1, Channel::Telemetry, 1);
        assert_eq!(c.today[Channel::Telemetry as usize], 101);
        c.add(DEC3 + 24 * H, Channel::Telemetry, 5);
        assert_eq!(c.day, "2026-12-04");
        assert_eq!(c.today[Channel::Telemetry as usize], 5);
        assert_eq!(c.this_month[Channel::Telemetry as usize], 106);
    }

    #[test]
    fn the_month_rolls_on_the_first() {
        // 2026-12-31T23:00Z, then 2027-01-01T00:00Z.
        let dec31 = DEC3 + 28 * 24 * H;
        let mut c = Counters::new(dec31 + 23 * H);
        assert_eq!(c.month, "2026-12");
        c.add(dec31 + 23 * H, Channel::Drains, 7);
        c.add(dec31 + 24 * H, Channel::Drains, 3);
        assert_eq!(
            (c.day.as_str(), c.month.as_str()),
            ("2027-01-01", "2027-01")
        );
        assert_eq!(c.today[Channel::Drains as usize], 3);
        assert_eq!(c.this_month[Channel::Drains as usize], 3);
    }

    #[test]
    fn a_small_step_back_keeps_the_newest_day() {
        let mut c = Counters::new(DEC3);
        c.add(DEC3 + 1000, Channel::Acks, 10);
        // NTP steps back 2 s across midnight: still Dec 3, nothing reset.
        c.add(DEC3 - 2000, Channel::Acks, 1);
        assert_eq!(c.day, "2026-12-03");
        assert_eq!(c.today[Channel::Acks as usize], 11);
        // And forward again: the same day, still not reset.
        c.add(DEC3 + 5000, Channel::Acks, 1);
        assert_eq!(c.today[Channel::Acks as usize], 12);
    }

    #[test]
    fn a_clock_in_1970_keeps_counting_into_the_saved_day() {
        let mut c = Counters::new(DEC3 + H);
        c.add(DEC3 + H, Channel::Telemetry, 900);
        // Reboot without RTC: the clock reads 1970. The budget must not start afresh.
        c.add(5_000, Channel::Telemetry, 50);
        assert_eq!(c.day, "2026-12-03");
        assert_eq!(c.today[Channel::Telemetry as usize], 950);
        // NTP sets the clock later that day: still the same day.
        c.add(DEC3 + 2 * H, Channel::Telemetry, 1);
        assert_eq!(c.today[Channel::Telemetry as usize], 951);
    }

    #[test]
    fn a_wrong_future_date_is_left_when_a_plausible_clock_is_far_behind() {
        // An RTC set to 2031, then corrected: counting follows the real date.
        let y2031 = DEC3 + 5 * 365 * 24 * H;
        let mut c = Counters::new(y2031);
        c.add(y2031, Channel::Reported, 500);
        c.add(DEC3, Channel::Reported, 1);
        assert_eq!(c.day, "2026-12-03");
        assert_eq!(c.today[Channel::Reported as usize], 1);
        assert_eq!(c.this_month[Channel::Reported as usize], 1);
    }

    #[test]
    fn saves_and_loads_and_refuses_what_does_not_agree() {
        let mut c = Counters::new(DEC3 + H);
        c.add(DEC3 + H, Channel::Telemetry, 9);
        c.add(DEC3 + H, Channel::Commands, 4);
        let s = c.saved();
        assert_eq!(s.today.len(), 2);
        let text = serde_json::to_string(&s).unwrap();
        let back: Saved = serde_json::from_str(&text).unwrap();
        assert_eq!(Counters::from_saved(&back).unwrap(), c);
        let mut bad = s.clone();
        bad.day = "2026-12-04".into();
        assert!(Counters::from_saved(&bad)
            .unwrap_err()
            .contains("do not agree"));
        // Unknown channels (a newer robokud's file) are dropped, not an error.
        let mut newer = s;
        newer.today.insert("video".into(), 5);
        assert_eq!(Counters::from_saved(&newer).unwrap(), c);
    }
}

//! Budgets and the flow rule (pure: no clock, no IO, no tokio).
//!
//! A budget is bytes per UTC day or month (`1MB/day`, `50MB/month`; K, M, G are powers of
//! 1024 as in `disk_reserve`). The rule, [`decide`]:
//! - critical channels (commands in, acks out, artifact downloads, MQTT keep-alive and
//!   handshakes) always flow: a robot over its budget can still be deployed to and answers;
//! - a channel without a budget flows;
//! - a message that would take the period's bytes past the budget is held (`Paused`);
//! - past [`SLOW_AT_PERCENT`] of the budget the channel is `Slow` (its sender thins out: a
//!   quarter of the telemetry, reported state coalesced, smaller log replies);
//! - otherwise `Open`.

use super::Channel;

/// Where a channel starts to slow down, percent of its budget.
pub const SLOW_AT_PERCENT: u64 = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub period: Period,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flow {
    Open,
    Slow,
    Paused,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Open => "open",
            Flow::Slow => "slow",
            Flow::Paused => "paused",
        }
    }
}

/// May `next` more bytes go on `ch`, which has used `day` bytes today and `month` this month?
pub fn decide(ch: Channel, budget: Option<Budget>, day: u64, month: u64, next: u64) -> Flow {
    if ch.critical() {
        return Flow::Open;
    }
    let Some(b) = budget else {
        return Flow::Open;
    };
    let used = match b.period {
        Period::Day => day,
        Period::Month => month,
    };
    if used.saturating_add(next) > b.bytes {
        Flow::Paused
    } else if used.saturating_mul(100) >= b.bytes.saturating_mul(SLOW_AT_PERCENT) {
        Flow::Slow
    } else {
        Flow::Open
    }
}

impl std::str::FromStr for Budget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("budget {s:?}: {why}; write BYTES/day or BYTES/month, e.g. 1MB/day, 50M/month")
        };
        let (amount, period) = s.trim().split_once('/').ok_or_else(|| bad("no period"))?;
        let period = match period.trim() {
            "day" | "d" => Period::Day,
            "month" | "mo" => Period::Month,
            _ => return Err(bad("the period must be day or month")),
        };
        let t = amount.trim();
        let t = t.strip_suffix("iB").or(t.strip_suffix('B')).unwrap_or(t);
        let (num, shift) = match t.char_indices().last() {
            Some((i, 'K' | 'k')) => (&t[..i], 10),
            Some((i, 'M' | 'm')) => (&t[..i], 20),
            Some((i, 'G' | 'g')) => (&t[..i], 30),
            _ => (t, 0),
        };
        let n: u64 = num
            .trim()
            .parse()
            .map_err(|_| bad("not a number of bytes"))?;
        let bytes = n.checked_mul(1 << shift).ok_or_else(|| bad("too large"))?;
        Ok(Budget { bytes, period })
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.bytes;
        let (n, unit) = if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            (b >> 30, "GB")
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            (b >> 20, "MB")
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            (b >> 10, "KB")
        } else {
            (b, "B")
        };
        write!(f, "{n}{unit}/{}", self.period.as_str())
    }
}

impl serde::Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Budget {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_budgets() {
        assert_eq!(
            b("1MB/day"),
            Budget {
                bytes: 1 << 20,
                period: Period::Day
            }
        );
        assert_eq!(b("50M/month").bytes, 50 << 20);
        assert_eq!(b(" 1500 / day ").bytes, 1500);
        assert_eq!(b("2GiB/month").to_string(), "2GB/month");
        assert_eq!(b("1MB/day").to_string(), "1MB/day");
        assert_eq!(b("1500/day").to_string(), "1500B/day");
        for bad in ["1MB", "1MB/week", "lots/day", "99999999999G/day", ""] {
            let e = bad.parse::<Budget>().unwrap_err();
            assert!(e.contains("budget") && e.contains("e.g."), "{bad}: {e}");
        }
    }

    #[test]
    fn critical_channels_always_flow() {
        let tiny = Some(b("1/day"));
        for ch in [
            Channel::Commands,
            Channel::Acks,
            Channel::Artifacts,
            Channel::Mqtt,
        ] {
            assert_eq!(decide(ch, tiny, u64::MAX, u64::MAX, 1 << 30), Flow::Open);
        }
    }

    #[test]
    fn no_budget_flows() {
        assert_eq!(
            decide(Channel::Telemetry, None, u64::MAX, u64::MAX, 1),
            Flow::Open
        );
    }

    #[test]
    fn slows_past_80_percent_and_pauses_before_crossing() {
        let day = Some(b("1000/day"));
        let t = Channel::Telemetry;
        assert_eq!(decide(t, day, 0, 0, 100), Flow::Open);
        assert_eq!(decide(t, day, 799, 0, 100), Flow::Open);
        assert_eq!(decide(t, day, 800, 0, 100), Flow::Slow);
        assert_eq!(decide(t, day, 900, 0, 100), Flow::Slow);
        // Exactly at the budget is allowed; one byte more is not.
        assert_eq!(decide(t, day, 901, 0, 100), Flow::Paused);
        assert_eq!(decide(t, day, 1000, 0, 0), Flow::Slow);
        assert_eq!(decide(t, day, 1001, 0, 0), Flow::Paused);
    }

    #[test]
    fn the_period_picks_the_counter() {
        let month = Some(b("1000/month"));
        assert_eq!(decide(Channel::Drains, month, 0, 1000, 1), Flow::Paused);
        assert_eq!(decide(Channel::Drains, month, 5000, 10, 1), Flow::Open);
        let day = Some(b("1000/day"));
        assert_eq!(decide(Channel::Logs, day, 10, 5000, 1), Flow::Open);
    }
}

//! Byte accounting and budgets per channel: what robokud sends and receives over MQTT, artifact
//! downloads and log drains, per UTC day and month, persisted in `<data>/usage.json`.
//!
//! - [`Meter`] (cheap to clone) is what the doors count into and ask before sending
//!   non-critical traffic. Counting is one atomic add, asking reads atomics: nothing here ever
//!   waits, so no sender (and never supervision) is slowed by the accounting itself.
//! - `task.rs` is the one owner of the counters: it folds the pending bytes into the calendar
//!   counters (when the doors counted some: at most once per [`TICK`], never on a timer while
//!   nothing is counted) and at midnight UTC, publishes the totals back to the meter, and saves the file every
//!   `budget.flush_secs` and at shutdown (write, fsync, rename): a kill -9 loses at most that.
//! - `counters.rs` (calendar, clock rules) and `budget.rs` (the flow rule) are pure.
//! - `clock.rs`: the clock the counters read, which a test knob accelerates in debug builds.
//!
//! MQTT bytes are counted as they cross the wire (TCP payload, what a broker's `$SYS` byte
//! counters see): a publish is its fixed header, topic, packet id and payload
//! ([`publish_size`]); incoming packets their exact size; CONNECT, SUBSCRIBE, PUBACK, PINGREQ
//! and DISCONNECT go to the `mqtt` channel. TLS records and TCP/IP headers are not counted.

pub mod budget;
pub mod clock;
pub mod counters;
mod task;

pub use budget::{Budget, Flow};
pub use task::start;

use crate::settings::BudgetSettings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How soon after a count the owner folds pending bytes and refreshes what the meter answers
/// (the counts that arrive meanwhile are folded with it).
pub const TICK: Duration = Duration::from_millis(250);

/// Where bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    /// `cmd` and `desired` messages in.
    Commands = 0,
    /// Acks out.
    Acks,
    /// Retained `reported` and `status` out.
    Reported,
    Telemetry,
    /// Fleet `logs` replies.
    Logs,
    /// Log drains (syslog, HTTPS).
    Drains,
    /// Artifact and delta downloads (HTTP bodies and headers).
    Artifacts,
    /// MQTT's own packets: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBACK, PING, DISCONNECT.
    Mqtt,
}

impl Channel {
    pub const COUNT: usize = 8;
    pub const ALL: [Channel; Channel::COUNT] = [
        Channel::Commands,
        Channel::Acks,
        Channel::Reported,
        Channel::Telemetry,
        Channel::Logs,
        Channel::Drains,
        Channel::Artifacts,
        Channel::Mqtt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Commands => "commands",
            Channel::Acks => "acks",
            Channel::Reported => "reported",
            Channel::Telemetry => "telemetry",
            Channel::Logs => "logs",
            Channel::Drains => "drains",
            Channel::Artifacts => "artifacts",
            Channel::Mqtt => "mqtt",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == s)
    }

    /// Traffic that flows whatever the budgets say.
    pub fn critical(self) -> bool {
        matches!(
            self,
            Channel::Commands | Channel::Acks | Channel::Artifacts | Channel::Mqtt
        )
    }

    /// The MQTT channel an outgoing topic belongs to.
    pub fn of_topic(topic: &str) -> Channel {
        match topic.rsplit('/').next() {
            Some("ack") => Channel::Acks,
            Some("reported" | "status") => Channel::Reported,
            Some("telemetry") => Channel::Telemetry,
            Some("logs") => Channel::Logs,
            _ => Channel::Mqtt,
        }
    }
}

/// Bytes of an MQTT 3.1.1 PUBLISH on the wire: fixed header (1 byte and the remaining length's
/// 1-4 bytes), topic length and topic, packet id when QoS > 0, payload.
pub fn publish_size(topic: usize, qos1: bool, payload: usize) -> u64 {
    let remaining = 2 + topic + if qos1 { 2 } else { 0 } + payload;
    (1 + varint_len(remaining) + remaining) as u64
}

/// Bytes of a CONNECT with this client id, Last Will and keep-alive (no login).
pub fn connect_size(client_id: usize, will_topic: usize, will_payload: usize) -> u64 {
    let remaining = 10 + 2 + client_id + 2 + will_topic + 2 + will_payload;
    (1 + varint_len(remaining) + remaining) as u64
}

/// Bytes of a SUBSCRIBE of these topic filters.
pub fn subscribe_size<'a>(filters: impl Iterator<Item = &'a str>) -> u64 {
    let remaining = 2 + filters.map(|f| 2 + f.len() + 1).sum::<usize>();
    (1 + varint_len(remaining) + remaining) as u64
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

struct Inner {
    /// Bytes counted since the owner last folded them.
    pending: [AtomicU64; Channel::COUNT],
    /// Totals of the current day and month as of the last fold (pending not included).
    day: [AtomicU64; Channel::COUNT],
    month: [AtomicU64; Channel::COUNT],
    budgets: [Option<Budget>; Channel::COUNT],
    /// The day (its start, unix ms, + 1; 0: never) in which a message of this channel was last
    /// held back by its budget: what `roboku usage` shows as `paused` that day, even while a
    /// few bytes of budget are left.
    held: [AtomicU64; Channel::COUNT],
    /// The start of the day being counted, + 1 (written by the owner after the totals).
    period: AtomicU64,
    /// The day and month being counted (written by the owner only).
    keys: Mutex<(String, String)>,
    /// Told on every count: the owner sleeps while nothing is counted.
    counted: tokio::sync::Notify,
    flush_secs: u64,
    clock: clock::Clock,
}

/// The counting side, shared by every door. See the module doc.
#[derive(Clone)]
pub struct Meter(Arc<Inner>);

impl Meter {
    pub fn new(b: &BudgetSettings, clock: clock::Clock) -> Meter {
        let mut budgets = [None; Channel::COUNT];
        for (ch, budget) in b.by_channel() {
            budgets[ch as usize] = Some(budget);
        }
        Meter(Arc::new(Inner {
            pending: Default::default(),
            day: Default::default(),
            month: Default::default(),
            budgets,
            held: Default::default(),
            period: AtomicU64::new(0),
            keys: Mutex::new((String::new(), String::new())),
            counted: tokio::sync::Notify::new(),
            flush_secs: b.flush_secs.max(1),
            clock,
        }))
    }

    /// A meter that counts but has no budgets and is never saved (unit tests, tools).
    pub fn unbudgeted() -> Meter {
        Meter::new(&BudgetSettings::default(), clock::Clock::real())
    }

    pub fn add(&self, ch: Channel, bytes: u64) {
        self.0.pending[ch as usize].fetch_add(bytes, Ordering::Relaxed);
        // One atomic when the owner is already told (a stored permit), never a wait.
        self.0.counted.notify_one();
    }

    /// Counts an outgoing MQTT publish on the channel of its topic.
    pub fn published(&self, topic: &str, qos1: bool, payload: usize) {
        self.add(
            Channel::of_topic(topic),
            publish_size(topic.len(), qos1, payload),
        );
    }

    /// Today's and this month's bytes on `ch`, pending ones included.
    pub fn used(&self, ch: Channel) -> (u64, u64) {
        let i = ch as usize;
        let p = self.0.pending[i].load(Ordering::Relaxed);
        (
            self.0.day[i].load(Ordering::Relaxed).saturating_add(p),
            self.0.month[i].load(Ordering::Relaxed).saturating_add(p),
        )
    }

    /// May `next` more bytes go on `ch` now? ([`budget::decide`]) A `Paused` answer is
    /// remembered for [`Meter::state`].
    pub fn flow(&self, ch: Channel, next: u64) -> Flow {
        // The day first: the owner writes it after the totals, so these totals are that day's
        // (or newer); a refusal on stale totals is never remembered for a new day.
        let period = self.0.period.load(Ordering::Acquire);
        let (d, m) = self.used(ch);
        let f = budget::decide(ch, self.0.budgets[ch as usize], d, m, next);
        if f == Flow::Paused {
            self.0.held[ch as usize].store(period, Ordering::Relaxed);
        }
        f
    }

    /// What `ch` is doing: `Paused` once a message was held back in this period (or no byte
    /// is left), else what the budget says with nothing more to send.
    pub fn state(&self, ch: Channel) -> Flow {
        let period = self.0.period.load(Ordering::Acquire);
        if period != 0 && self.0.held[ch as usize].load(Ordering::Relaxed) == period {
            return Flow::Paused;
        }
        let (d, m) = self.used(ch);
        budget::decide(ch, self.0.budgets[ch as usize], d, m, 0)
    }

    pub fn budget(&self, ch: Channel) -> Option<Budget> {
        self.0.budgets[ch as usize]
    }

    /// What `GET /v1/usage` answers.
    pub fn report(&self) -> roboku_wire::usage::UsageReport {
        let (day, month) = self.keys();
        let channels = Channel::ALL
            .into_iter()
            .map(|ch| {
                let (today, this_month) = self.used(ch);
                let b = self.budget(ch);
                roboku_wire::usage::UsageChannel {
                    name: ch.name().to_string(),
                    critical: ch.critical(),
                    today,
                    month: this_month,
                    budget: b.map(|b| b.to_string()),
                    budget_bytes: b.map(|b| b.bytes),
                    period: b.map(|b| b.period.as_str().to_string()),
                    flow: self.state(ch).as_str().to_string(),
                }
            })
            .collect();
        roboku_wire::usage::UsageReport {
            day,
            month,
            now: self.0.clock.now_ms(),
            clock: self.0.clock.note(),
            flush_secs: self.0.flush_secs,
            channels,
        }
    }

    /// The compact form for `reported`.
    pub fn summary(&self) -> roboku_wire::usage::UsageSummary {
        let mut s = roboku_wire::usage::UsageSummary {
            day: self.keys().0,
            ..Default::default()
        };
        for ch in Channel::ALL {
            let (d, m) = self.used(ch);
            s.today += d;
            s.month += m;
            if d > 0 {
                s.by.insert(ch.name().to_string(), d);
            }
            match self.state(ch) {
                Flow::Open => {}
                Flow::Slow => s.slow.push(ch.name().to_string()),
                Flow::Paused => s.paused.push(ch.name().to_string()),
            }
        }
        s
    }

    fn keys(&self) -> (String, String) {
        self.0.keys.lock().map(|k| k.clone()).unwrap_or_default()
    }

    pub fn clock(&self) -> &clock::Clock {
        &self.0.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{Publish, QoS};

    #[test]
    fn publish_size_is_what_rumqttc_writes() {
        for (topic, qos, n) in [
            ("rk/v1/d/r1/telemetry", QoS::AtMostOnce, 100),
            ("rk/v1/d/r1/ack", QoS::AtLeastOnce, 300),
            ("rk/v1/d/r1/logs", QoS::AtLeastOnce, 20_000),
            ("t", QoS::AtLeastOnce, 3_000_000),
        ] {
            let mut p = Publish::new(topic, qos, vec![b'x'; n]);
            p.pkid = 1;
            let mut buf = bytes::BytesMut::new();
            let written = p.write(&mut buf).unwrap();
            assert_eq!(buf.len(), written);
            assert_eq!(
                publish_size(topic.len(), qos == QoS::AtLeastOnce, n),
                buf.len() as u64,
                "{topic} {n}"
            );
        }
    }

    #[test]
    fn subscribe_size_is_what_rumqttc_writes() {
        let filters = ["rk/v1/d/r1/cmd", "rk/v1/g/field/desired"];
        let subs = filters
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce))
            .collect::<Vec<_>>();
        let s = rumqttc::Subscribe::new_many(subs);
        let mut buf = bytes::BytesMut::new();
        s.write(&mut buf).unwrap();
        assert_eq!(subscribe_size(filters.into_iter()), buf.len() as u64);
    }

    #[test]
    fn topics_map_to_channels() {
        assert_eq!(Channel::of_topic("rk/v1/d/r1/ack"), Channel::Acks);
        assert_eq!(Channel::of_topic("rk/v1/d/r1/reported"), Channel::Reported);
        assert_eq!(Channel::of_topic("rk/v1/d/r1/status"), Channel::Reported);
        assert_eq!(
            Channel::of_topic("rk/v1/d/r1/telemetry"),
            Channel::Telemetry
        );
        assert_eq!(Channel::of_topic("rk/v1/d/r1/logs"), Channel::Logs);
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.name()), Some(c));
        }
    }

    #[test]
    fn the_meter_answers_from_pending_bytes_too() {
        let b = BudgetSettings {
            telemetry: Some("1000/day".parse().unwrap()),
            ..BudgetSettings::default()
        };
        let m = Meter::new(&b, clock::Clock::real());
        m.0.period.store(1, Ordering::Release);
        assert_eq!(m.flow(Channel::Telemetry, 100), Flow::Open);
        m.add(Channel::Telemetry, 850);
        assert_eq!(m.flow(Channel::Telemetry, 100), Flow::Slow);
        assert_eq!(m.flow(Channel::Telemetry, 151), Flow::Paused);
        m.add(Channel::Acks, 1 << 30);
        assert_eq!(m.flow(Channel::Acks, 1 << 30), Flow::Open);
        // Held back once: shown as paused, though 150 bytes are left.
        let s = m.summary();
        assert_eq!(s.paused, vec!["telemetry".to_string()]);
        assert_eq!(s.today, 850 + (1 << 30));
        m.0.period.store(7, Ordering::Release);
        assert_eq!(m.summary().slow, vec!["telemetry".to_string()]);
    }
}

//! Reported state and telemetry.
//!
//! `reported` (retained, QoS 1) says what runs: per app the current release, its slug and the
//! fleet artifact it came from, the formation and every dyno's state; plus agent version, groups,
//! disk free and the last final ack. Published on every connect and after every change a fleet
//! job made (coalesced), and every `telemetry_secs` if something changed meanwhile (a local
//! `roboku` command, a crash).
//!
//! `telemetry` (QoS 0, not retained) is small on purpose: about 100 bytes of JSON, ~185 bytes on
//! the wire with topic, MQTT and TCP/IP headers (~240 with the broker's TCP ACK); at the default
//! 60 s that is 1440 messages and about 0.35 MB a day per robot (the 30 s keep-alive costs about
//! as much again).

use super::intake::View;
use super::Shared;
use crate::engine::{Command, Door, Reply};
use crate::usage::{Channel, Flow};
use crate::util::now_ms;
use roboku_wire::fleet::{topic, Reported, ReportedApp, ReportedDyno, Telemetry};
use roboku_wire::usage::UsageSummary;
use rumqttc::QoS;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Under a `reported` budget the state still goes out on connect and at least this often.
pub const HEARTBEAT: Duration = Duration::from_secs(3600);
/// A slowed `reported` goes out at most once per this many telemetry periods (at least 60 s).
const SLOW_PERIODS: u32 = 4;

pub(super) async fn run(
    shared: Arc<Shared>,
    view: watch::Receiver<Arc<View>>,
    mut connected: watch::Receiver<Option<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Reported is looked at again every `telemetry_secs` (something may have changed without a
    // fleet job: a local command, a crash); telemetry goes at the same period, or at the test
    // knob's (`usage/clock.rs`) on its own tick, without rebuilding `reported` each time.
    let secs = shared.settings.mqtt.telemetry_secs;
    let period = Duration::from_secs(if secs == 0 { 3600 } else { secs });
    let telemetry_every = crate::usage::clock::telemetry_period(secs);
    let slow_gap = (period * SLOW_PERIODS).max(Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tele = tokio::time::interval(telemetry_every.unwrap_or(period));
    tele.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent: Option<(Reported, tokio::time::Instant)> = None;
    let mut ticks: u64 = 0;
    loop {
        let mut force = false;
        tokio::select! {
            _ = shutdown.changed() => break,
            r = connected.changed() => {
                if r.is_err() { break; }
                force = true;
            }
            _ = shared.out.changed.notified() => {}
            _ = tick.tick() => {}
            _ = tele.tick() => {
                let session = *connected.borrow();
                if let (true, Some(session)) = (telemetry_every.is_some(), session) {
                    ticks += 1;
                    telemetry(&shared, session, ticks).await;
                }
                continue;
            }
        }
        let session = *connected.borrow();
        let Some(session) = session else {
            continue;
        };
        let snapshot = view.borrow().clone();
        let Some(rep) = reported(&shared, &snapshot, session).await else {
            continue;
        };
        // `ts`, the clock's readings and the byte counts always differ; publish only when the content did (or on
        // connect), and as the `reported` budget allows.
        let same = last_sent
            .as_ref()
            .is_some_and(|(l, _)| comparable(l) == comparable(&rep));
        let since = last_sent.as_ref().map(|(_, t)| t.elapsed());
        let topic = topic::reported(&shared.device);
        let payload = serde_json::to_vec(&rep).unwrap_or_default();
        let size = crate::usage::publish_size(topic.len(), true, payload.len());
        let flow = shared.usage.flow(Channel::Reported, size);
        if due(flow, force, !same, since, slow_gap)
            && shared.out.publish(topic, QoS::AtLeastOnce, true, payload)
        {
            last_sent = Some((rep, tokio::time::Instant::now()));
        }
    }
}

/// What decides whether `reported` changed: not its time, not the clock's readings, not the
/// byte counts (they change with every message, this one included), but what the budgets hold
/// back and the day.
fn comparable(r: &Reported) -> Reported {
    Reported {
        ts: 0,
        clock: r.clock.clone().map(|c| roboku_wire::ClockStatus {
            wall_ms: 0,
            judged_ms: 0,
            ..c
        }),
        usage: r.usage.as_ref().map(|u| UsageSummary {
            day: u.day.clone(),
            slow: u.slow.clone(),
            paused: u.paused.clone(),
            ..UsageSummary::default()
        }),
        ..r.clone()
    }
}

/// Is a `reported` due? On connect always; after the heartbeat always (the minimal heartbeat
/// a budget leaves); otherwise when it changed, at once if the channel is open, at most every
/// `slow_gap` when slowed, not at all when paused. Pure.
fn due(
    flow: Flow,
    connect: bool,
    changed: bool,
    since: Option<Duration>,
    slow_gap: Duration,
) -> bool {
    let Some(since) = since else {
        return true;
    };
    if connect || since >= HEARTBEAT {
        return true;
    }
    changed
        && match flow {
            Flow::Open => true,
            Flow::Slow => since >= slow_gap,
            Flow::Paused => false,
        }
}

/// Builds the reported state from the engine; `None` if the engine is gone.
pub(super) async fn reported(shared: &Shared, view: &View, session: u64) -> Option<Reported> {
    let call = |cmd| shared.engine.call(Door::Mqtt, cmd);
    let Ok(Reply::Apps(apps)) = call(Command::ListApps).await else {
        return None;
    };
    let mut out = Vec::with_capacity(apps.len());
    for a in apps {
        let name = a.name.clone();
        let mut r = ReportedApp {
            name: name.clone(),
            release: a.release,
            fleet_version: view.versions.get(&name).copied(),
            waiting: a.waiting.clone(),
            ..ReportedApp::default()
        };
        if let Ok(Reply::Releases(rs)) = call(Command::Releases { app: name.clone() }).await {
            if let Some(cur) = rs.into_iter().find(|x| x.current) {
                r.artifact = cur
                    .artifact
                    .map(|a| a.sha256)
                    .or_else(|| view.artifacts.get(&cur.slug).cloned());
                r.slug = Some(cur.slug);
                r.probation = cur.probation;
                r.auto_rollback = (cur.door == "agent"
                    && cur.description.starts_with("Rollback to v"))
                .then_some(cur.description);
            }
        }
        if let Ok(Reply::Formation(f)) = call(Command::Formation { app: name.clone() }).await {
            r.formation = f.into_iter().map(|e| (e.ptype, e.count)).collect();
        }
        if let Ok(Reply::Dynos(ds)) = call(Command::Ps { app: name.clone() }).await {
            r.dynos = ds
                .into_iter()
                .map(|d| ReportedDyno {
                    name: d.name,
                    state: d.state,
                    pid: d.pid,
                    restarts: d.restarts,
                    health: d.health,
                })
                .collect();
        }
        out.push(r);
    }
    Some(Reported {
        device: shared.device.clone(),
        ts: now_ms(),
        session,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        groups: shared.groups.clone(),
        allow_unsigned: shared.settings.mqtt.allow_unsigned,
        disk_free: super::artifact::free_bytes(&shared.settings.data_dir),
        apps: out,
        last_ack: shared.out.last_ack(),
        artifacts: super::bases::list(&shared.settings.bases_dir()),
        clock: Some(crate::clock::status(&shared.settings)),
        usage: Some(shared.usage.summary()),
    })
}

/// One telemetry message, as the telemetry budget allows: slowed, every fourth tick; paused,
/// none (checked with this message's size, so the budget is never crossed).
async fn telemetry(shared: &Shared, _session: u64, tick: u64) {
    let flow = shared.usage.flow(Channel::Telemetry, 0);
    if flow == Flow::Paused || (flow == Flow::Slow && !tick.is_multiple_of(4)) {
        return;
    }
    let Ok(Reply::Status(s)) = shared.engine.call(Door::Mqtt, Command::Status).await else {
        return;
    };
    let host = shared
        .telemetry
        .as_ref()
        .and_then(|t| t.lock().host_latest.clone());
    let t = match host {
        Some(h) => Telemetry {
            ts: now_ms(),
            up: s.dynos_running as u32,
            want: s.dynos_desired as u32,
            rss: s.agent_rss,
            disk: h.disk_free,
            load: h.load.map(|l| (l[0] * 100.0).round() as u32),
            mem: h.mem_available,
        },
        None => Telemetry {
            ts: now_ms(),
            up: s.dynos_running as u32,
            want: s.dynos_desired as u32,
            rss: s.agent_rss,
            disk: super::artifact::free_bytes(&shared.settings.data_dir),
            load: load_avg(),
            mem: mem_available(),
        },
    };
    let payload = serde_json::to_vec(&t).unwrap_or_default();
    let topic = topic::telemetry(&shared.device);
    let size = crate::usage::publish_size(topic.len(), false, payload.len());
    if shared.usage.flow(Channel::Telemetry, size) == Flow::Paused {
        return;
    }
    shared.out.publish(topic, QoS::AtMostOnce, false, payload);
}

/// 1-minute load average × 100, from /proc/loadavg.
fn load_avg() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let first: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((first * 100.0).round() as u32)
}

/// MemAvailable in bytes, from /proc/meminfo.
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::{due, Flow, HEARTBEAT};
    use std::time::Duration;

    #[test]
    fn reported_is_due_as_the_budget_allows() {
        let s = |n| Some(Duration::from_secs(n));
        let gap = Duration::from_secs(240);
        // First ever, on connect, after the heartbeat: always, even paused.
        assert!(due(Flow::Paused, false, false, None, gap));
        assert!(due(Flow::Paused, true, false, s(1), gap));
        assert!(due(Flow::Paused, false, false, Some(HEARTBEAT), gap));
        // A change: at once when open, after the gap when slow, never when paused.
        assert!(due(Flow::Open, false, true, s(1), gap));
        assert!(!due(Flow::Slow, false, true, s(1), gap));
        assert!(due(Flow::Slow, false, true, s(240), gap));
        assert!(!due(Flow::Paused, false, true, s(3000), gap));
        // No change, no connect: nothing.
        assert!(!due(Flow::Open, false, false, s(5), gap));
    }
    #[test]
    fn proc_readers_work_here() {
        assert!(super::load_avg().is_some());
        assert!(super::mem_available().unwrap() > 0);
    }

    #[test]
    fn telemetry_is_small() {
        let t = roboku_wire::fleet::Telemetry {
            ts: 1_760_000_000_000,
            up: 12,
            want: 12,
            rss: 14_000_000,
            disk: Some(12_345_678_901),
            load: Some(153),
            mem: Some(1_234_567_890),
        };
        let n = serde_json::to_vec(&t).unwrap().len();
        assert!(n < 120, "{n} bytes");
    }
}

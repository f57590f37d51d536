//! Telemetry: the bounded history behind the dashboard's charts and `/metrics`.
//!
//! There is one sampler of dynos, the engine's (it already reads every dyno's cgroup for
//! `roboku ps`, the OOM notes and MQTT reports): after each round it *offers* the readings here
//! with a non-blocking `try_send` on a bounded channel, so a slow reader of the history can
//! never slow supervision: a round that finds the channel full is dropped and counted. This
//! module's own task samples the host (`host.rs`) when a round arrives (so both cost one
//! wake-up per interval), on its own only when rounds stop coming, and owns the rings.
//! Readers (the dashboard, `/metrics`) lock the history only to copy what they show out of it.
//!
//! It never touches processes or the store, and never calls the engine.

pub mod host;
pub mod metrics;
pub mod ring;
pub mod series;

use ring::Ring;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One dyno in one sampling round, as the engine saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct DynoReading {
    pub app: String,
    pub dyno: String,
    pub cpu_percent: Option<f64>,
    pub memory: Option<u64>,
    /// `memory_max` of its process type, bytes.
    pub memory_limit: Option<u64>,
    /// When its last process ended, and whether the OOM killer ended it.
    pub last_exit: Option<(u64, bool)>,
    pub release: u32,
}

/// Every dyno of the engine at one instant (unix ms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    pub t: u64,
    pub dynos: Vec<DynoReading>,
}

/// One point of a dyno's chart, 12 bytes: an hour at 1 s for 100 dynos is ~4 MB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub t: u32,
    /// Percent of one core; NaN when unknown.
    pub cpu: f32,
    /// KiB; `u32::MAX` when unknown.
    pub mem_kib: u32,
}

/// Something worth a line on the time axis.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    /// Unix ms.
    pub t: u64,
    /// `exit`, `oom` or `release`.
    pub kind: &'static str,
    pub text: String,
}

/// One host point for the host chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostPoint {
    pub t: u32,
    pub cpu: f32,
    pub mem_used_kib: u32,
}

#[derive(Debug, Clone)]
pub struct DynoSeries {
    pub points: Ring<Point>,
    pub marks: Ring<Mark>,
    pub memory_limit: Option<u64>,
    last_exit_at: Option<u64>,
    release: u32,
    /// Unix ms of the last round that had this dyno.
    last_seen: u64,
}

/// Marks kept per dyno (crashes in a loop would otherwise fill the chart).
const MARKS: usize = 64;

/// The rings: per dyno and for the host.
#[derive(Debug)]
pub struct History {
    cap: usize,
    keep_ms: u64,
    pub dynos: BTreeMap<(String, String), DynoSeries>,
    pub host: Ring<HostPoint>,
    pub host_latest: Option<host::HostSample>,
    pub rounds: u64,
}

impl History {
    /// Enough room for `keep` of history at one point per `every`.
    pub fn new(keep: Duration, every: Duration) -> History {
        let every = every.max(Duration::from_millis(1));
        let cap = (keep.as_millis() / every.as_millis()).max(1) as usize;
        History {
            cap,
            keep_ms: keep.as_millis() as u64,
            dynos: BTreeMap::new(),
            host: Ring::new(cap),
            host_latest: None,
            rounds: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Adds a round: a point per dyno, a mark for every new exit and release; forgets dynos
    /// not seen for longer than the history keeps.
    pub fn record(&mut self, round: &Round) {
        self.rounds += 1;
        for r in &round.dynos {
            let cap = self.cap;
            let s = self
                .dynos
                .entry((r.app.clone(), r.dyno.clone()))
                .or_insert_with(|| DynoSeries {
                    points: Ring::new(cap),
                    marks: Ring::new(MARKS),
                    memory_limit: None,
                    last_exit_at: r.last_exit.map(|e| e.0),
                    release: r.release,
                    last_seen: round.t,
                });
            s.last_seen = round.t;
            s.memory_limit = r.memory_limit;
            if let Some((at, oom)) = r.last_exit {
                if s.last_exit_at != Some(at) {
                    s.last_exit_at = Some(at);
                    let (kind, text) = if oom {
                        ("oom", format!("{} OOM-killed", r.dyno))
                    } else {
                        ("exit", format!("{} exited", r.dyno))
                    };
                    s.marks.push(Mark { t: at, kind, text });
                }
            }
            if r.release != s.release {
                s.release = r.release;
                s.marks.push(Mark {
                    t: round.t,
                    kind: "release",
                    text: format!("v{}", r.release),
                });
            }
            s.points.push(Point {
                t: (round.t / 1000) as u32,
                cpu: r.cpu_percent.map(|c| c as f32).unwrap_or(f32::NAN),
                mem_kib: r
                    .memory
                    .map(|m| (m / 1024).min(u32::MAX as u64 - 1) as u32)
                    .unwrap_or(u32::MAX),
            });
        }
        let keep = self.keep_ms;
        self.dynos
            .retain(|_, s| round.t.saturating_sub(s.last_seen) <= keep);
    }

    pub fn record_host(&mut self, h: host::HostSample) {
        let used = match (h.mem_total, h.mem_available) {
            (Some(t), Some(a)) => (t.saturating_sub(a) / 1024) as u32,
            _ => u32::MAX,
        };
        self.host.push(HostPoint {
            t: (h.t / 1000) as u32,
            cpu: h.cpu_percent.map(|c| c as f32).unwrap_or(f32::NAN),
            mem_used_kib: used,
        });
        self.host_latest = Some(h);
    }
}

/// The handle the engine offers rounds through and readers read from. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    history: Arc<Mutex<History>>,
    tx: mpsc::Sender<Round>,
    dropped: Arc<AtomicU64>,
}

/// Rounds waiting for the telemetry task; more than this and the newest is dropped.
const QUEUE: usize = 4;

impl Telemetry {
    /// A handle and the receiving end, without a task (tests drive `apply` themselves).
    pub fn new(keep: Duration, every: Duration) -> (Telemetry, mpsc::Receiver<Round>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Telemetry {
                history: Arc::new(Mutex::new(History::new(keep, every))),
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Hands a round over without waiting: never blocks the caller (the engine loop).
    pub fn offer(&self, round: Round) {
        if self.tx.try_send(round).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Rounds dropped because the telemetry task was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The history, locked: copy out what you need and let go (never hold it across `.await`).
    pub fn lock(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The host is sampled on its own when no round came for this long (or two periods).
const ALONE: Duration = Duration::from_secs(60);

/// Starts the telemetry task: applies offered rounds and samples the host with each (one
/// wake-up for both, every `every`), or on its own when no round came for [`ALONE`] (an
/// engine that stopped sampling still leaves the host chart going), until `stop` turns true.
pub fn start(
    data_dir: &std::path::Path,
    keep: Duration,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> (Telemetry, tokio::task::JoinHandle<()>) {
    let (t, mut rx) = Telemetry::new(keep, every);
    let handle = t.clone();
    let mut sampler = host::HostSampler::new(data_dir);
    // Long enough that the engine's rounds reset it before tokio's timer wheel ever wakes for
    // it (see `crate::alarm`).
    let alone_after = every.saturating_mul(2).max(ALONE);
    let task = tokio::spawn(async move {
        let sample_host = |sampler: &mut host::HostSampler| {
            let h = sampler.sample(crate::util::now_ms());
            handle.lock().record_host(h);
        };
        sample_host(&mut sampler);
        loop {
            let alone = tokio::time::Instant::now() + alone_after;
            tokio::select! {
                round = rx.recv() => match round {
                    Some(r) => {
                        handle.lock().record(&r);
                        sample_host(&mut sampler);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(alone) => sample_host(&mut sampler),
                _ = stop.changed() => break,
            }
        }
    });
    (t, task)
}

#[cfg(test)]
mod tests;

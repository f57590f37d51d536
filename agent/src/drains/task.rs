//! One drain's task: reads its app's log store from the drain's cursor, sends, persists where it
//! got to. It wakes on the log task's broadcast of new lines (which never waits for anyone) and
//! once a second; it owns its state file and nothing else, and nobody waits on it.

use super::delivery::{Delivery, CONFIRM_MS};
use super::reader::{Cursor, Reader};
use super::send::{self, Conn, Meta};
use super::url::Target;
use super::Told;
use crate::usage::{Channel, Flow};
use crate::util::now_ms;
use roboku_wire::drains::DrainCounters;
use roboku_wire::LogLine;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio_rustls::TlsConnector;

/// Bytes of stored JSON read per batch.
const BATCH_BYTES: usize = 256 * 1024;
/// Least time between two state file writes, and between two pending counts.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
const COUNT_EVERY: Duration = Duration::from_secs(2);
/// Least time between two sends (lines coming one by one go out in batches).
const ROUND: Duration = Duration::from_millis(50);
/// The same past 80 % of the drains budget.
const SLOW_ROUND: Duration = Duration::from_secs(1);

/// What is kept in `<data>/drains/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Saved {
    pub cursor: Cursor,
    pub counters: DrainCounters,
}

pub(super) struct Drain {
    pub id: String,
    pub app: String,
    pub token: String,
    pub target: Target,
    pub host: String,
    pub app_dir: PathBuf,
    pub state_path: PathBuf,
    pub tls: Result<Option<TlsConnector>, String>,
    /// Byte counters and the drains budget (`crate::usage`).
    pub usage: crate::usage::Meter,
    pub mqtt: super::mqtt::Setup,
}

impl Drain {
    pub async fn run(
        self,
        status: watch::Sender<DrainCounters>,
        mut lines: broadcast::Receiver<LogLine>,
        mut stop: watch::Receiver<Told>,
    ) {
        let mut reader = Reader::new(self.app_dir.clone());
        let saved = load(&self.state_path);
        let fresh = saved.is_none();
        let saved = saved.unwrap_or_else(|| Saved {
            cursor: reader.end(),
            counters: DrainCounters::default(),
        });
        let mut d = Delivery::new(saved.cursor, saved.counters);
        let mut conn: Option<Conn> = None;
        let mut last_persist = Persisted::default();
        let mut last_count: Option<Instant> = None;
        let mut retry_at: Option<Instant> = None;
        if fresh {
            self.persist(&d, &mut last_persist, true);
        }
        loop {
            if *stop.borrow() != Told::Run {
                break;
            }
            // Wait: for the retry time after a failure, else for news or the tick.
            let stopped = match retry_at {
                Some(t) => wait_until(t, &mut stop).await,
                None => false,
            };
            if stopped {
                break;
            }
            retry_at = None;
            let round = Instant::now();
            let step = self.step(&mut d, &mut conn, &mut reader, &mut stop).await;
            let now = now_ms();
            let idle = matches!(step, Step::Idle);
            match step {
                Step::Stopped => break,
                Step::Failed(err) => {
                    conn = None;
                    let delay = d.failed(
                        err.clone(),
                        now,
                        rand::Rng::gen::<f64>(&mut rand::rngs::OsRng),
                    );
                    tracing::debug!(drain = self.id, app = self.app, error = %err, ?delay, "drain failed; retrying");
                    retry_at = Some(Instant::now() + delay);
                }
                Step::Sent => {}
                Step::Idle => {
                    if let Some(c) = &mut conn {
                        if d.has_unconfirmed() && c.alive().await {
                            d.alive(now);
                        }
                    }
                }
            }
            if last_count.is_none_or(|t| t.elapsed() >= COUNT_EVERY) {
                d.counters.pending = reader.pending(d.committed()).unwrap_or(d.counters.pending);
                last_count = Some(Instant::now());
            }
            self.persist(&d, &mut last_persist, false);
            status.send_replace(d.counters.clone());
            if idle && retry_at.is_none() {
                let tick = if d.has_unconfirmed() {
                    Duration::from_millis(CONFIRM_MS / 4)
                } else {
                    Duration::from_secs(1)
                };
                if self.wait_news(&mut lines, &mut stop, tick).await {
                    break;
                }
            } else if retry_at.is_none() {
                // More to send: go on, but not faster than a round (slowed by the budget, one
                // batch a second).
                let next = match self.usage.flow(Channel::Drains, 0) {
                    Flow::Open => round + ROUND,
                    _ => round + SLOW_ROUND,
                };
                if wait_until(next, &mut stop).await {
                    break;
                }
            }
        }
        match *stop.borrow() {
            Told::Forget => {
                let _ = std::fs::remove_file(&self.state_path);
            }
            _ => self.persist(&d, &mut last_persist, true),
        }
    }

    /// Connects if needed, reads one batch and sends it.
    async fn step(
        &self,
        d: &mut Delivery,
        conn: &mut Option<Conn>,
        reader: &mut Reader,
        stop: &mut watch::Receiver<Told>,
    ) -> Step {
        let tls = match &self.tls {
            Ok(t) => t.as_ref(),
            Err(e) => return Step::Failed(e.clone()),
        };
        // Over the drains budget the lines wait in the log store (within its quota) until the
        // next day or month; a batch already read is sent whole, so a budget is crossed by at
        // most one batch.
        if self.usage.flow(Channel::Drains, 0) == Flow::Paused {
            return Step::Idle;
        }
        let batch = match reader.read(d.read_from(), BATCH_BYTES) {
            Ok(b) => b,
            Err(e) => {
                return Step::Failed(format!(
                    "reading the logs in {}: {e}",
                    self.app_dir.display()
                ))
            }
        };
        let (Some(start), Some(end)) = (batch.start, batch.end) else {
            return Step::Idle;
        };
        if start != d.read_from() || batch.dropped > 0 {
            d.skipped(start, batch.dropped);
        }
        if batch.lines.is_empty() {
            if end != d.read_from() {
                d.advanced(end);
            }
            // A stream the receiver closed is found now, not at the next line.
            if let Some(c) = conn {
                if !c.alive().await {
                    return Step::Failed("the receiver closed the connection".into());
                }
            }
            return Step::Idle;
        }
        if let Some(c) = conn.as_mut() {
            if !c.alive().await {
                return Step::Failed("the receiver closed the connection".into());
            }
        }
        if conn.is_none() {
            match or_stop(stop, send::connect(&self.target, tls, &self.mqtt)).await {
                None => return Step::Stopped,
                Some(Ok(c)) => *conn = Some(c),
                Some(Err(e)) => return Step::Failed(e),
            }
        }
        let Some(c) = conn.as_mut() else {
            return Step::Idle;
        };
        let meta = Meta {
            host: &self.host,
            token: &self.token,
            frame_id: format!("{}-{}-{}", self.id, start.file, start.offset),
        };
        match or_stop(stop, c.send(&batch.lines, &meta, &self.target)).await {
            None => Step::Stopped,
            Some(Err(e)) => Step::Failed(e),
            Some(Ok(bytes)) => {
                self.usage.add(Channel::Drains, bytes);
                let acked = !matches!(c, Conn::Tcp(_) | Conn::Tls(_));
                d.written(start, end, batch.lines.len() as u64, now_ms(), acked);
                d.alive(now_ms());
                Step::Sent
            }
        }
    }

    /// Waits for a line of this app, `tick`, or stop (true).
    async fn wait_news(
        &self,
        lines: &mut broadcast::Receiver<LogLine>,
        stop: &mut watch::Receiver<Told>,
        tick: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + tick;
        loop {
            tokio::select! {
                r = lines.recv() => match r {
                    Ok(l) if l.app != self.app => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return false,
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(deadline).await;
                        return false;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => return false,
                _ = stop.changed() => return true,
            }
        }
    }

    /// Writes the cursor and counters (fsynced) when they changed since the last write, at most
    /// once per [`PERSIST_EVERY`] unless `now`: an idle drain writes nothing.
    fn persist(&self, d: &Delivery, last: &mut Persisted, now: bool) {
        if !now && last.at.is_some_and(|t| t.elapsed() < PERSIST_EVERY) {
            return;
        }
        // In flight is the moment's, not state: left out so a write in flight changes no file.
        let saved = Saved {
            cursor: d.committed(),
            counters: DrainCounters {
                in_flight: 0,
                ..d.counters.clone()
            },
        };
        let Ok(bytes) = serde_json::to_vec(&saved) else {
            return;
        };
        if last.bytes.as_ref() == Some(&bytes) {
            return;
        }
        last.at = Some(Instant::now());
        match crate::util::write_atomic(&self.state_path, &bytes) {
            Ok(()) => last.bytes = Some(bytes),
            Err(e) => {
                tracing::warn!(drain = self.id, app = self.app, error = %e, "cannot save the drain's cursor; lines may be sent again after a restart");
            }
        }
    }
}

/// The drain's state file as last written.
#[derive(Default)]
struct Persisted {
    at: Option<Instant>,
    bytes: Option<Vec<u8>>,
}

enum Step {
    Sent,
    Idle,
    Failed(String),
    Stopped,
}

fn load(path: &std::path::Path) -> Option<Saved> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable drain state; starting after the newest line");
            None
        }
    }
}

/// Sleeps until `t`; true if told to stop meanwhile.
async fn wait_until(t: Instant, stop: &mut watch::Receiver<Told>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(t.into()) => false,
        _ = stop.changed() => true,
    }
}

/// Runs `f` unless told to stop first (`None`).
async fn or_stop<T>(
    stop: &mut watch::Receiver<Told>,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        v = f => Some(v),
        _ = stop.changed() => None,
    }
}

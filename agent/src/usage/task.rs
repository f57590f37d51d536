//! The owner of the counters: folds what the meter counted, rolls the calendar, publishes the
//! totals back to the meter, and saves `<data>/usage.json` now and then and at the end.

use super::counters::{Counters, Saved};
use super::{Channel, Meter, TICK};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Loads the saved counters and starts the owner; the task ends (after a last save) when
/// `shutdown` turns true.
pub fn start(
    meter: Meter,
    path: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let now = meter.clock().now_ms();
    let mut counters = load(&path, now);
    counters.roll(now);
    publish(&meter, &counters);
    tokio::spawn(async move {
        let every = Duration::from_secs(meter.0.flush_secs);
        let mut saved_at = Instant::now();
        let mut folded_at = Instant::now();
        let mut dirty = false;
        // Set once a count arrived: when the owner folds it (TICK after the last fold, so a
        // burst of counts costs one wake-up).
        let mut fold_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut wake = now + next_roll(&meter, &counters);
            if let Some(t) = fold_at {
                wake = wake.min(t);
            }
            if dirty {
                wake = wake.min(saved_at + every);
            }
            let stop = tokio::select! {
                _ = meter.0.counted.notified(), if fold_at.is_none() => {
                    fold_at = Some((folded_at + TICK).max(Instant::now()));
                    continue;
                }
                _ = tokio::time::sleep_until(wake.into()) => false,
                _ = shutdown.changed() => true,
            };
            fold_at = None;
            folded_at = Instant::now();
            dirty |= fold(&meter, &mut counters);
            if dirty && (stop || saved_at.elapsed() >= every) {
                let (c, p) = (counters.saved(), path.clone());
                match tokio::task::spawn_blocking(move || save(&p, &c)).await {
                    Ok(Ok(())) => dirty = false,
                    Ok(Err(e)) => tracing::warn!(error = %e, "saving the byte counters failed"),
                    Err(e) => tracing::warn!(error = %e, "saving the byte counters failed"),
                }
                saved_at = Instant::now();
            }
            if stop || *shutdown.borrow() {
                break;
            }
        }
    })
}

/// The longest the owner sleeps while nothing is counted: a wall clock stepped past midnight
/// is noticed within this.
const LOOK_AT_THE_CALENDAR: Duration = Duration::from_secs(60);

/// Real time until the counters' next day begins (when `fold` rolls them), at most
/// [`LOOK_AT_THE_CALENDAR`].
fn next_roll(meter: &Meter, c: &Counters) -> Duration {
    let clock = meter.clock();
    clock
        .real_time(c.until_next_day(clock.now_ms()))
        .min(LOOK_AT_THE_CALENDAR)
}

/// Moves pending bytes into the counters; true if anything changed.
fn fold(meter: &Meter, c: &mut Counters) -> bool {
    let now = meter.clock().now_ms();
    let mut changed = c.roll(now);
    let mut taken = [0u64; Channel::COUNT];
    for ch in Channel::ALL {
        let n = meter.0.pending[ch as usize].load(Ordering::Relaxed);
        if n > 0 {
            c.add(now, ch, n);
            taken[ch as usize] = n;
            changed = true;
        }
    }
    // Totals first, then take the pending bytes off: a reader in between counts them twice
    // (holds back a little early), never not at all.
    publish(meter, c);
    for ch in Channel::ALL {
        if taken[ch as usize] > 0 {
            meter.0.pending[ch as usize].fetch_sub(taken[ch as usize], Ordering::Relaxed);
        }
    }
    changed
}

fn publish(meter: &Meter, c: &Counters) {
    for ch in Channel::ALL {
        let i = ch as usize;
        meter.0.day[i].store(c.today[i], Ordering::Relaxed);
        meter.0.month[i].store(c.this_month[i], Ordering::Relaxed);
    }
    // After the totals (see `Meter::flow`); a new day ends what was held back the day before.
    meter.0.period.store(c.day_start + 1, Ordering::Release);
    if let Ok(mut k) = meter.0.keys.lock() {
        if k.0 != c.day || k.1 != c.month {
            *k = (c.day.clone(), c.month.clone());
        }
    }
}

/// The saved counters, or fresh ones (a missing file is a first start; a bad one is set aside
/// as `usage.json.bad` and said so).
fn load(path: &Path, now: u64) -> Counters {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Counters::new(now),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the byte counters; starting from zero");
            return Counters::new(now);
        }
    };
    let parsed = serde_json::from_slice::<Saved>(&text)
        .map_err(|e| e.to_string())
        .and_then(|s| Counters::from_saved(&s));
    match parsed {
        Ok(c) => c,
        Err(e) => {
            let bad = path.with_extension("json.bad");
            let _ = std::fs::rename(path, &bad);
            tracing::warn!(path = %path.display(), moved_to = %bad.display(), error = %e, "the byte counters file is not valid; starting from zero");
            Counters::new(now)
        }
    }
}

/// Write to a temp file, fsync, rename over: a reader (or a kill -9) sees the old or the new.
fn save(path: &Path, s: &Saved) -> Result<(), String> {
    let text = serde_json::to_vec(s).map_err(|e| format!("encoding: {e}"))?;
    crate::util::write_atomic(path, &text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_counters_come_back_and_a_bad_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.json");
        let now = 1_796_256_000_000 + 1000;
        let mut c = Counters::new(now);
        c.add(now, Channel::Telemetry, 1234);
        save(&path, &c.saved()).unwrap();
        assert_eq!(load(&path, now), c);
        std::fs::write(&path, b"{\"v\": 1, \"day\": ").unwrap();
        assert_eq!(load(&path, now), Counters::new(now));
        assert!(dir.path().join("usage.json.bad").exists());
        assert!(!path.exists());
    }

    #[test]
    fn fold_moves_pending_bytes_without_losing_any() {
        let m = Meter::unbudgeted();
        let mut c = Counters::new(m.clock().now_ms());
        m.add(Channel::Drains, 10);
        assert_eq!(m.used(Channel::Drains), (10, 10));
        assert!(fold(&m, &mut c));
        assert_eq!(m.used(Channel::Drains), (10, 10));
        m.add(Channel::Drains, 5);
        assert!(fold(&m, &mut c));
        assert!(!fold(&m, &mut c));
        assert_eq!(c.today[Channel::Drains as usize], 15);
        assert_eq!(m.used(Channel::Drains), (15, 15));
    }
}

//! Disk pressure: what robokud does when the data filesystem runs low, pure (free space in,
//! actions out) so every step is a unit test; `watch` is the thin task around it.
//!
//! Three levels, with hysteresis so a filesystem hovering at a mark does not flap:
//! - **normal**: free space at or above the low-water mark (twice the reserve);
//! - **low**: below it. Once on entering: slug GC runs early (unreferenced slugs), and every
//!   app's rotated log segment (`app.log.1`, its oldest stored lines) is deleted;
//! - **full**: at or below the reserve. Log lines are no longer written to disk (they still
//!   reach the in-memory ring, `roboku logs` and followers; log drains, which read the stored
//!   files, miss them), so a chatty dyno cannot fill the disk; rotated segments are deleted again.
//!
//! Back to normal only once free space is a quarter of the reserve above the low-water mark:
//! then logs are written to disk again. Never touched: the running release, the store, slugs a
//! kept release refers to. Supervision goes on throughout (nothing here waits on the engine
//! for longer than a message; the engine never waits on this).
//!
//! The free space is looked at (one `statvfs`) every second while it is below the low-water
//! mark or could reach it within a second at [`FILL_BYTES_PER_SEC`]; with more room, after
//! the time that room takes to fill at that rate, at most every 30 s: an idle robot with a
//! roomy disk is not woken every second for this.
//!
//! Telemetry history is in memory only (bounded by `history_secs`), so there is none on disk to
//! shed.

use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Normal,
    Low,
    Full,
}

/// What to do on one look at the free space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Run slug GC now.
    pub gc: bool,
    /// Delete every app's rotated log segment.
    pub shed_logs: bool,
    /// `Some(true)`: stop writing log lines to disk; `Some(false)`: write them again.
    pub pause_logs: Option<bool>,
}

/// The level for `free` bytes, with `reserved` bytes reserved, coming from `prev`.
pub fn level(free: u64, reserved: u64, prev: Level) -> Level {
    let low_water = reserved.saturating_mul(2);
    let recover = low_water.saturating_add(reserved / 4);
    if free <= reserved {
        Level::Full
    } else if free < low_water {
        // Between the marks: stay full until out of the reserve, low otherwise.
        Level::Low
    } else if prev != Level::Normal && free < recover {
        prev.min(Level::Low)
    } else {
        Level::Normal
    }
}

/// What changes when the level goes from `prev` to `now`.
pub fn actions(prev: Level, now: Level) -> Actions {
    let mut a = Actions::default();
    if now > prev {
        a.gc = true;
        a.shed_logs = true;
    }
    if now == Level::Full && prev != Level::Full {
        a.pause_logs = Some(true);
    }
    if now != Level::Full && prev == Level::Full {
        // Out of the reserve: resume (the low mark still sheds, without pausing).
        a.pause_logs = Some(false);
    }
    a
}

/// How often the free space is looked at (one `statvfs`) when it is short or could be soon.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The longest between two looks, however much space is free.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(30);
/// The fastest the data filesystem is assumed to fill: faster than a robot's eMMC or SD card
/// writes, so space above the low-water mark cannot run out between two looks.
const FILL_BYTES_PER_SEC: u64 = 256 << 20;

/// When to look again: every second once below the low-water mark (twice the reserve) or
/// about to be, else after the time the space above the mark takes to fill at
/// [`FILL_BYTES_PER_SEC`] (at most [`LOOK_AT_LEAST_EVERY`]). Pure.
pub fn next_look(free: u64, reserved: u64, level: Level) -> Duration {
    if level != Level::Normal {
        return LOOK_EVERY;
    }
    let headroom = free.saturating_sub(reserved.saturating_mul(2));
    Duration::from_secs(headroom / FILL_BYTES_PER_SEC).clamp(LOOK_EVERY, LOOK_AT_LEAST_EVERY)
}

/// Watches the data filesystem until `stop`, acting on every change of level.
pub async fn watch(
    settings: crate::settings::Settings,
    engine: crate::engine::EngineHandle,
    logs: crate::logs::LogHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut prev = Level::Normal;
    loop {
        let mut wait = LOOK_EVERY;
        if let Ok((free, total)) = super::space(&settings.data_dir) {
            let reserved = settings.disk_reserve.bytes(total);
            let now = level(free, reserved, prev);
            wait = next_look(free, reserved, now);
            if now != prev {
                tracing::warn!(from = ?prev, to = ?now, free, reserved, dir = %settings.data_dir.display(), "disk pressure");
            }
            let a = actions(prev, now);
            if a.gc {
                // Never waits on the engine for long: a call is a message and a reply.
                let _ = engine
                    .call(crate::engine::Door::Agent, crate::engine::Command::GcSlugs)
                    .await;
            }
            if a.shed_logs || a.pause_logs.is_some() {
                logs.pressure(a.shed_logs, a.pause_logs);
            }
            prev = now;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::{Full, Low, Normal};

    const R: u64 = 16 << 20;

    #[test]
    fn looks_often_only_when_space_could_run_short_soon() {
        let gib = 1u64 << 30;
        assert_eq!(next_look(50 * gib, R, Normal), LOOK_AT_LEAST_EVERY);
        // 64 MiB with a 16 MiB reserve (the fault tests' disk): every second.
        assert_eq!(next_look(64 << 20, R, Normal), LOOK_EVERY);
        assert_eq!(
            next_look(2 * R + 10 * FILL_BYTES_PER_SEC, R, Normal),
            Duration::from_secs(10)
        );
        assert_eq!(next_look(50 * gib, R, Low), LOOK_EVERY);
        assert_eq!(next_look(0, R, Full), LOOK_EVERY);
        assert_eq!(next_look(0, 0, Normal), LOOK_EVERY);
    }

    #[test]
    fn levels_with_hysteresis() {
        assert_eq!(level(100 << 20, R, Normal), Normal);
        assert_eq!(level(2 * R - 1, R, Normal), Low);
        assert_eq!(level(R, R, Low), Full);
        assert_eq!(level(R + 1, R, Full), Low, "out of the reserve");
        // Just above the low-water mark is not enough to call it normal again.
        assert_eq!(level(2 * R + 1, R, Low), Low);
        assert_eq!(level(2 * R + R / 4, R, Low), Normal);
        // Coming from full straight past the low-water mark: low until the recover mark.
        assert_eq!(level(2 * R + 1, R, Full), Low);
        assert_eq!(level(0, 0, Normal), Full, "no reserve, no space");
    }

    #[test]
    fn gc_and_shedding_first_then_pausing_then_recovery() {
        assert_eq!(actions(Normal, Normal), Actions::default());
        let low = actions(Normal, Low);
        assert!(low.gc && low.shed_logs);
        assert_eq!(low.pause_logs, None, "low sheds, it does not pause");
        assert_eq!(actions(Low, Low), Actions::default(), "once per episode");
        let full = actions(Low, Full);
        assert!(full.gc && full.shed_logs);
        assert_eq!(full.pause_logs, Some(true));
        assert_eq!(actions(Full, Full), Actions::default());
        assert_eq!(actions(Full, Low).pause_logs, Some(false));
        assert_eq!(actions(Full, Normal).pause_logs, Some(false));
        assert_eq!(actions(Low, Normal), Actions::default());
        let straight = actions(Normal, Full);
        assert!(straight.gc && straight.shed_logs && straight.pause_logs == Some(true));
    }
}

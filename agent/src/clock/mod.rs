//! The clock: whether robokud may believe its wall clock, and what it judges signed fleet
//! commands, desired docs and offline bundles by when it may not (docs/offline.md, "Clocks that
//! cannot be trusted").
//!
//! - `judge.rs`, pure: trusted or not, the time expiry is judged against, the last trusted time.
//! - `source.rs`: the readings (wall clock, the kernel's NTP state, boot id, `CLOCK_BOOTTIME`)
//!   and the test knob that pretends them.
//! - here: the persisted last trusted time (`<data>/clock.json`), [`observe`] for anyone who
//!   needs a verdict, and [`keep`], the one task that writes the file: rarely (at start, on a new
//!   boot, then at most hourly) and only while the kernel says the clock is synchronised.
//!
//! Readers read the small file each time (a fleet payload, a status): one writer, no shared
//! mutable state, and what a reader sees is always a whole file (write, fsync, rename).

pub mod judge;
pub mod source;

pub use judge::{Anchor, Judged};
pub use source::TestClock;

use crate::settings::Settings;
use roboku_wire::ClockStatus;
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;

/// No clock before this can be right: robokud's build date (`SOURCE_DATE_EPOCH` when the build
/// sets it, else the date this rule was written), unix ms.
pub fn build_floor_ms() -> u64 {
    const WRITTEN: u64 = 1_793_491_200_000; // 2026-11-01
    option_env!("SOURCE_DATE_EPOCH")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(WRITTEN, |s| WRITTEN.max(s.saturating_mul(1000)))
}

/// How often a synchronised clock is written down as the last trusted time.
const SAVE_EVERY: Duration = Duration::from_secs(3600);
/// How often [`keep`] looks at the clock.
const LOOK_EVERY: Duration = Duration::from_secs(60);

/// The last trusted time, if one was saved; a corrupt file is ignored (and replaced at the next
/// synchronised look), so it can never lock the robot out.
pub fn load_anchor(path: &Path) -> Option<Anchor> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading the last trusted time failed");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the last trusted time is corrupt; ignored");
            None
        }
    }
}

/// The slack: what a payload's times may be off by (`clock_skew_secs`).
fn slack_ms(settings: &Settings) -> u64 {
    settings.mqtt.clock_skew_secs.saturating_mul(1000)
}

/// The clock's verdict now.
pub fn observe(settings: &Settings) -> Judged {
    let r = source::read(settings.test_clock.as_ref());
    let anchor = load_anchor(&settings.clock_path());
    judge::judge(&r, anchor.as_ref(), build_floor_ms(), slack_ms(settings))
}

/// What status shows of the clock (`GET /v1/status`, reported state).
pub fn status(settings: &Settings) -> ClockStatus {
    let j = observe(settings);
    let skew = settings.mqtt.clock_skew_secs;
    let rule = if j.trusted {
        format!("synced: signed commands and bundles expire by the wall clock (allowance {skew} s)")
    } else {
        format!(
            "untrusted clock: signed commands and bundles are taken when newer than any seen and \
             issued at or after {} (the {}, less {skew} s); expiry is judged against {}",
            roboku_wire::iso8601(j.floor_ms),
            if j.last_trusted_ms.is_some() {
                "last trusted time"
            } else {
                "build date"
            },
            if j.last_trusted_ms.is_some() {
                "the last trusted time plus the time since (in this boot)"
            } else {
                "the build date"
            }
        )
    };
    ClockStatus {
        trusted: j.trusted,
        synced: j.synced,
        wall_ms: j.wall_ms,
        judged_ms: j.now_ms,
        last_trusted_ms: j.last_trusted_ms,
        rule,
        reason: j.reason,
        test_knob: settings.test_clock.as_ref().map(|t| t.spec().to_string()),
    }
}

/// Writes the last trusted time while the clock is synchronised, until `stop`.
pub async fn keep(settings: Settings, mut stop: watch::Receiver<bool>) {
    let path = settings.clock_path();
    let mut anchor = load_anchor(&path);
    let mut was_trusted = None;
    loop {
        let r = source::read(settings.test_clock.as_ref());
        let j = judge::judge(&r, anchor.as_ref(), build_floor_ms(), slack_ms(&settings));
        if was_trusted != Some(j.trusted) {
            match &j.reason {
                None => tracing::info!(wall_ms = j.wall_ms, "clock trusted"),
                // Not synchronised but plausible (no NTP yet, an offline robot): normal off the
                // grid, so no warning; a clock reading behind what robokud knows is one.
                Some(why) if j.wall_ms >= j.floor_ms => tracing::info!(
                    reason = why.as_str(),
                    judged_ms = j.now_ms,
                    floor_ms = j.floor_ms,
                    "clock not trusted (not synchronised): signed commands and bundles are judged by the last trusted time"
                ),
                Some(why) => tracing::warn!(
                    reason = why.as_str(),
                    judged_ms = j.now_ms,
                    floor_ms = j.floor_ms,
                    "clock NOT trusted: signed commands and bundles are judged by the last trusted time"
                ),
            }
            was_trusted = Some(j.trusted);
        }
        if judge::worth_saving(&r, &j, anchor.as_ref(), SAVE_EVERY.as_millis() as u64) {
            let next = Anchor {
                wall_ms: r.wall_ms,
                boot: r.boot.clone(),
            };
            let (p, bytes) = (path.clone(), serde_json::to_vec(&next).unwrap_or_default());
            let saved = tokio::task::spawn_blocking(move || crate::util::write_atomic(&p, &bytes))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match saved {
                Ok(()) => anchor = Some(next),
                Err(e) => tracing::warn!(error = %e, "cannot save the last trusted time"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_or_missing_anchor_is_no_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clock.json");
        assert_eq!(load_anchor(&p), None);
        std::fs::write(&p, b"{nope").unwrap();
        assert_eq!(load_anchor(&p), None);
        let a = Anchor {
            wall_ms: 5,
            boot: None,
        };
        std::fs::write(&p, serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(load_anchor(&p), Some(a));
    }

    #[test]
    fn status_names_the_rule_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        s.test_clock = Some(TestClock::parse("unsynced:0").unwrap());
        let st = status(&s);
        assert!(!st.trusted);
        assert!(st.rule.starts_with("untrusted clock"), "{}", st.rule);
        assert!(st.rule.contains("build date"), "{}", st.rule);
        assert_eq!(st.judged_ms, build_floor_ms());
        assert_eq!(st.test_knob.as_deref(), Some("unsynced:0"));
        s.test_clock = Some(TestClock::parse("synced").unwrap());
        let st = status(&s);
        assert!(st.trusted, "{st:?}");
        assert!(st.rule.starts_with("synced"), "{}", st.rule);
    }
}

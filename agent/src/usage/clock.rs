//! The clock the byte counters read: the system clock, or (debug builds only, for tests) an
//! accelerated one so a test can live through a simulated day in seconds.
//!
//! Test knobs, honoured only when robokud is built with debug assertions (a release build
//! ignores them, so a robot in the field cannot be told a different date):
//! - `ROBOKU_TEST_USAGE_CLOCK=START_MS*SCALE`: the usage clock starts at `START_MS` (unix ms) and runs
//!   `SCALE` times faster than real time (`1796256000000*2880`: 2026-12-03, a day in 30 s);
//! - `ROBOKU_TEST_TELEMETRY_MS=N`: telemetry every N real milliseconds instead of
//!   `mqtt.telemetry_secs`.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Clock {
    /// `None`: the system clock.
    fake: Option<(Instant, u64, u64)>,
}

impl Clock {
    pub fn real() -> Clock {
        Clock { fake: None }
    }

    /// The system clock, or the accelerated one `ROBOKU_TEST_USAGE_CLOCK` asks for in a debug build.
    pub fn from_env() -> Clock {
        if cfg!(debug_assertions) {
            if let Ok(v) = std::env::var("ROBOKU_TEST_USAGE_CLOCK") {
                match parse(&v) {
                    Some((start, scale)) => {
                        tracing::warn!(
                            start,
                            scale,
                            "TEST KNOB: the usage clock is accelerated (ROBOKU_TEST_USAGE_CLOCK)"
                        );
                        return Clock::accelerated(start, scale);
                    }
                    None => tracing::error!(
                        value = v,
                        "ROBOKU_TEST_USAGE_CLOCK must be START_MS*SCALE; ignored"
                    ),
                }
            }
        }
        Clock::real()
    }

    pub fn accelerated(start_ms: u64, scale: u64) -> Clock {
        Clock {
            fake: Some((Instant::now(), start_ms, scale.max(1))),
        }
    }

    pub fn now_ms(&self) -> u64 {
        match self.fake {
            None => crate::util::now_ms(),
            Some((t0, start, scale)) => {
                start.saturating_add((t0.elapsed().as_millis() as u64).saturating_mul(scale))
            }
        }
    }

    /// The real time in which this clock advances by `ms` (less when it is accelerated).
    pub fn real_time(&self, ms: u64) -> Duration {
        match self.fake {
            None => Duration::from_millis(ms),
            Some((_, _, scale)) => Duration::from_millis(ms.div_ceil(scale)),
        }
    }

    /// Said in `roboku usage` when the clock is not the system's.
    pub fn note(&self) -> Option<String> {
        self.fake.map(|(_, _, scale)| {
            format!("test clock, {scale}x real time (ROBOKU_TEST_USAGE_CLOCK)")
        })
    }
}

fn parse(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once('*')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The telemetry period: `ROBOKU_TEST_TELEMETRY_MS` in a debug build, else `secs` (None: off).
pub fn telemetry_period(secs: u64) -> Option<Duration> {
    if cfg!(debug_assertions) {
        if let Some(ms) = std::env::var("ROBOKU_TEST_TELEMETRY_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
        {
            return Some(Duration::from_millis(ms));
        }
    }
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_knob() {
        assert_eq!(
            super::parse("1796256000000*2880"),
            Some((1_796_256_000_000, 2880))
        );
        assert_eq!(super::parse("1796256000000"), None);
        assert_eq!(super::parse("x*2"), None);
    }

    #[test]
    fn an_accelerated_clock_runs_ahead() {
        let c = super::Clock::accelerated(1000, 1_000_000);
        assert!(c.now_ms() >= 1000);
        assert!(c.note().unwrap().contains("1000000x"));
        assert!(super::Clock::real().note().is_none());
    }
}

//! Where clock readings come from: the host (wall clock, the kernel's NTP state, the boot id
//! and `CLOCK_BOOTTIME`), or the test knob that pretends a clock (tests cannot set the host's).

use super::judge::{Boot, Reading};
use std::time::Instant;

/// A pretended clock (`--test-clock`, or `ROBOKU_TEST_CLOCK` in debug builds only): the kernel's
/// NTP state as given and, with a start time, a wall clock that starts there and ticks with
/// the monotonic clock. The boot id and `CLOCK_BOOTTIME` stay the host's. A test knob: status
/// says when it is on.
#[derive(Debug, Clone)]
pub struct TestClock {
    pub synced: bool,
    pub start_ms: Option<u64>,
    origin: Instant,
    spec: String,
}

impl TestClock {
    /// `synced`, `unsynced`, `synced:MS` or `unsynced:MS` (MS: unix ms the wall clock starts at).
    pub fn parse(spec: &str) -> Result<TestClock, String> {
        let bad =
            || format!("test clock {spec:?}: expected synced|unsynced[:UNIX_MS], e.g. unsynced:0");
        let (state, start) = match spec.split_once(':') {
            Some((s, ms)) => (s, Some(ms.trim().parse::<u64>().map_err(|_| bad())?)),
            None => (spec, None),
        };
        let synced = match state.trim() {
            "synced" => true,
            "unsynced" => false,
            _ => return Err(bad()),
        };
        Ok(TestClock {
            synced,
            start_ms: start,
            origin: Instant::now(),
            spec: spec.to_string(),
        })
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }
}

/// Reads the clocks: the test clock when one is set, else the host's.
pub fn read(test: Option<&TestClock>) -> Reading {
    let boot = boot();
    match test {
        Some(t) => Reading {
            wall_ms: match t.start_ms {
                Some(s) => s.saturating_add(t.origin.elapsed().as_millis() as u64),
                None => crate::util::now_ms(),
            },
            synced: Some(t.synced),
            boot,
        },
        None => Reading {
            wall_ms: crate::util::now_ms(),
            synced: kernel_synced(),
            boot,
        },
    }
}

/// The kernel's view of clock synchronisation (adjtimex, read only); `None` when it cannot say.
pub fn kernel_synced() -> Option<bool> {
    // SAFETY: a zeroed timex with modes 0 only reads; ntp_adjtime writes into it and nothing
    // else.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    (state >= 0).then_some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

/// This boot's id and the ms since it (suspend included).
fn boot() -> Option<Boot> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let ms = (ts.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(ts.tv_nsec as u64 / 1_000_000);
    Some(Boot {
        id: id.trim().to_string(),
        ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_specs() {
        let t = TestClock::parse("unsynced:0").unwrap();
        assert!(!t.synced);
        assert_eq!(t.start_ms, Some(0));
        let r = read(Some(&t));
        assert_eq!(r.synced, Some(false));
        assert!(r.wall_ms < 60_000, "starts at 1970 and ticks");
        assert!(TestClock::parse("synced").unwrap().synced);
        for bad in ["", "sync", "unsynced:x", "synced:-1"] {
            let e = TestClock::parse(bad).unwrap_err();
            assert!(e.contains("synced|unsynced"), "{e}");
        }
    }

    #[test]
    fn the_host_clock_reads_with_its_boot() {
        let r = read(None);
        assert!(r.wall_ms > 0);
        let b = r.boot.expect("boot id and CLOCK_BOOTTIME on Linux");
        assert_eq!(b.id.len(), 36, "{}", b.id);
    }
}

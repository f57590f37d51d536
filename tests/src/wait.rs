//! Polling with deadlines, the only synchronisation the tests use.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POLL: Duration = Duration::from_millis(20);

/// Polls `cond` every 20 ms until it is true; panics naming `what` when `deadline` passes.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Checks `cond` every 20 ms for `window`; panics naming `what` the first time it is false.
pub fn holds_for(what: &str, window: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < window {
        if !cond() {
            panic!("{what} stopped holding after {:?}", start.elapsed());
        }
        std::thread::sleep(POLL);
    }
}

/// Unix milliseconds, the unit of every time on the wire.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

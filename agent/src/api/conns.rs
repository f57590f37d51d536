//! The API socket's connection budget: at most `cap` open connections (a share of the fd limit,
//! so doors can never eat the fds supervision needs for spools, pidfds and spawns), a deadline for
//! a connection's first request, and, when full, the oldest connection that never sent a
//! request makes room for the new one (so a flood of idle clients cannot lock out `roboku ps`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a connection may stay open without sending a whole request header.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Never more connections than this, whatever the fd limit.
const MAX_CONNECTIONS: u64 = 512;

/// One open connection.
#[derive(Default)]
pub struct Slot {
    /// A request arrived on it (it is a real client, not one holding a socket open).
    pub served: AtomicBool,
    /// Told to close (evicted to make room).
    pub evict: Notify,
}

/// The open connections, oldest first.
pub struct Conns {
    cap: usize,
    open: Mutex<VecDeque<Arc<Slot>>>,
}

/// The connection cap for a soft fd limit of `nofile`: a quarter of it (each connection can hold
/// an fd or two: the socket, an upload's temp file), at least 16, at most [`MAX_CONNECTIONS`].
pub fn cap_for(nofile: u64) -> usize {
    (nofile / 4).clamp(16, MAX_CONNECTIONS) as usize
}

impl Conns {
    pub fn new(cap: usize) -> Conns {
        Conns {
            cap,
            open: Mutex::new(VecDeque::new()),
        }
    }

    /// Admits a new connection: its slot, or `None` when every open one is serving a request
    /// (the caller closes the new one). When full, evicts the oldest idle-since-accept one.
    pub fn admit(&self) -> Option<Arc<Slot>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.cap {
            let idle = open
                .iter()
                .position(|s| !s.served.load(Ordering::Relaxed))?;
            if let Some(old) = open.remove(idle) {
                old.evict.notify_one();
            }
        }
        let slot = Arc::new(Slot::default());
        open.push_back(slot.clone());
        Some(slot)
    }

    /// The connection ended.
    pub fn release(&self, slot: &Arc<Slot>) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|s| !Arc::ptr_eq(s, slot));
    }

    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

/// A warning said at most once per period, with how many were held back meanwhile.
pub struct RateLimited {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimited {
    pub fn new(period: Duration) -> RateLimited {
        RateLimited {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(held back since the last one)` when this occurrence should be logged.
    pub fn tick(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.period => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_table_evicts_the_oldest_connection_that_never_sent_a_request() {
        let c = Conns::new(3);
        let a = c.admit().unwrap();
        let b = c.admit().unwrap();
        let d = c.admit().unwrap();
        a.served.store(true, Ordering::Relaxed);
        let e = c.admit().expect("b makes room");
        assert_eq!(c.len(), 3);
        let open = c.open.lock().unwrap();
        assert!(open.iter().any(|s| Arc::ptr_eq(s, &a)));
        assert!(!open.iter().any(|s| Arc::ptr_eq(s, &b)), "b evicted");
        assert!(open.iter().any(|s| Arc::ptr_eq(s, &d)));
        assert!(open.iter().any(|s| Arc::ptr_eq(s, &e)));
        drop(open);
        for s in [&d, &e] {
            s.served.store(true, Ordering::Relaxed);
        }
        assert!(c.admit().is_none(), "every open connection is serving");
        c.release(&a);
        assert!(c.admit().is_some());
    }

    #[test]
    fn cap_is_a_quarter_of_the_fd_limit_within_bounds() {
        assert_eq!(cap_for(1024), 256);
        assert_eq!(cap_for(20), 16);
        assert_eq!(cap_for(1 << 20), 512);
    }

    #[test]
    fn warnings_are_rate_limited_and_count_what_was_held_back() {
        let t0 = Instant::now();
        let mut r = RateLimited::new(Duration::from_secs(10));
        assert_eq!(r.tick(t0), Some(0));
        assert_eq!(r.tick(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.tick(t0 + Duration::from_secs(2)), None);
        assert_eq!(r.tick(t0 + Duration::from_secs(11)), Some(2));
    }
}

//! A door's connection budget: at most `cap` open connections (a share of the fd limit, so
//! doors can never eat the fds supervision needs for spools, pidfds and spawns), a deadline for
//! a connection's first request (and, through hyper's header timeout, for each later one), and,
//! when full, the oldest connection that never sent a request makes room for the new one (so a
//! flood of idle clients cannot lock out `roboku ps`). Every HTTP door (the API socket, the
//! gateway's slug server) accepts and serves its connections through one [`Door`].

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};

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

/// One listener's accept side: its connection table and its rate-limited warnings.
pub struct Door {
    /// What the warnings call it: `API socket`, `slug server`.
    what: &'static str,
    table: Arc<Conns>,
    accept_warn: RateLimited,
    full_warn: RateLimited,
}

impl Door {
    pub fn new(what: &'static str, cap: usize) -> Door {
        Door {
            what,
            table: Arc::new(Conns::new(cap)),
            accept_warn: RateLimited::new(Duration::from_secs(10)),
            full_warn: RateLimited::new(Duration::from_secs(10)),
        }
    }

    /// What an `accept` gave: the connection with its slot, or `None` when accepting failed
    /// (logged, then a pause: out of fds, spinning would only burn CPU) or every slot is
    /// serving a request (the new connection is closed).
    pub async fn admit<S>(&mut self, accepted: std::io::Result<S>) -> Option<(S, Arc<Slot>)> {
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                if let Some(held) = self.accept_warn.tick(Instant::now()) {
                    tracing::warn!(door = self.what, error = %e, held_back = held, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                return None;
            }
        };
        let Some(slot) = self.table.admit() else {
            if let Some(held) = self.full_warn.tick(Instant::now()) {
                tracing::warn!(
                    door = self.what,
                    open = self.table.len(),
                    held_back = held,
                    "connection limit reached; refusing a connection"
                );
            }
            return None;
        };
        Some((stream, slot))
    }

    /// Serves an admitted connection on its own task until it ends, is evicted, sends nothing
    /// within [`FIRST_REQUEST_TIMEOUT`], or `stop` turns (then gracefully); frees its slot.
    pub fn spawn<I, F, Fut, B>(
        &self,
        slot: Arc<Slot>,
        io: I,
        handler: F,
        mut stop: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn(Request<Incoming>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (table, what) = (self.table.clone(), self.what);
        tokio::spawn(async move {
            let served = slot.clone();
            let service = service_fn(move |req| {
                served.served.store(true, Ordering::Relaxed);
                handler(req)
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(FIRST_REQUEST_TIMEOUT)
                // A client that shuts down its write side once its request is sent (`nc -N`,
                // `socat`, a refused upload's sender) still gets the answer: without this,
                // hyper closes at the EOF before the answer is written.
                .half_close(true)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(conn);
            let first = tokio::time::sleep(FIRST_REQUEST_TIMEOUT);
            tokio::pin!(first);
            let mut waiting = true;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r { tracing::debug!(door = what, error = %e, "connection ended") }
                        break;
                    }
                    _ = stop.changed() => conn.as_mut().graceful_shutdown(),
                    _ = slot.evict.notified() => break,
                    _ = &mut first, if waiting => {
                        waiting = false;
                        if !slot.served.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
            }
            table.release(&slot);
        });
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

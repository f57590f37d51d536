//! A one-shot alarm on a `timerfd`, for a loop that sleeps seconds at a time while nothing
//! happens (the engine between sampling rounds).
//!
//! Why not `tokio::time::sleep`: tokio's timer wheel keeps a deadline more than 64 ms away in
//! a coarser level and wakes its driver at that level's slot boundary to move it down (every
//! 4.1 s for deadlines 4-262 s away, again 64 ms before the end), so a 5 s sleep costs two or
//! three wake-ups of a thread instead of one. The kernel wakes a timerfd once, at its deadline.
//! Without a timerfd (it cannot be created) the alarm is a tokio sleep.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct Alarm {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl Alarm {
    /// Must be called inside a tokio runtime with IO enabled.
    pub fn new() -> Alarm {
        // SAFETY: plain syscall; the fd it returns is owned right below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        let fd = if raw < 0 {
            let e = std::io::Error::last_os_error();
            tracing::debug!(error = %e, "no timerfd; the engine sleeps on tokio's timer");
            None
        } else {
            // SAFETY: `raw` is a new fd nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open while registered.
            match unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) } {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot register the timerfd; the engine sleeps on tokio's timer");
                    None
                }
            }
        };
        Alarm { fd }
    }

    /// Returns at `deadline` (at once if it passed). Cancel-safe: dropping the future leaves
    /// nothing behind that matters (the next call sets the alarm anew).
    pub async fn sleep_until(&self, deadline: Instant) {
        let Some(fd) = &self.fd else {
            return tokio::time::sleep_until(deadline.into()).await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if arm(fd.get_ref(), left).is_err() {
            return tokio::time::sleep_until(deadline.into()).await;
        }
        // A stale readiness (an alarm that rang while nobody waited) reads EAGAIN here after
        // the new `arm`, which clears it and waits for the new ring.
        let rang = fd
            .async_io(Interest::READABLE, |fd| {
                let mut ticks = [0u8; 8];
                // SAFETY: reads at most 8 bytes into `ticks`.
                let n = unsafe { libc::read(fd.as_raw_fd(), ticks.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            })
            .await;
        if rang.is_err() {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm::new()
    }
}

/// Sets the timer to ring once, `after` from now (relative: no clock conversion needed).
fn arm(fd: &OwnedFd, after: Duration) -> std::io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            // Never all zero: that would disarm it.
            tv_nsec: (after.subsec_nanos().max(1)) as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
    let r = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rings_at_its_deadline_and_again_after_a_cancelled_wait() {
        let alarm = Alarm::new();
        assert!(alarm.fd.is_some(), "timerfd must work here");
        let start = Instant::now();
        alarm.sleep_until(start + Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        // A wait given up before its ring, then an alarm that rang with nobody waiting: the
        // next wait still waits for its own deadline.
        let _ = tokio::time::timeout(
            Duration::from_millis(5),
            alarm.sleep_until(Instant::now() + Duration::from_secs(3600)),
        )
        .await;
        let armed = Instant::now();
        let _ = tokio::time::timeout(
            Duration::from_millis(1),
            alarm.sleep_until(armed + Duration::from_millis(500)),
        )
        .await
        .expect_err("given up before its ring");
        // Until it rang with nobody waiting.
        let mut pfd = libc::pollfd {
            fd: alarm.fd.as_ref().unwrap().get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(
            unsafe { libc::poll(&mut pfd, 1, 10_000) },
            1,
            "the alarm rang"
        );
        let t = Instant::now();
        alarm.sleep_until(t + Duration::from_millis(50)).await;
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "returned on the stale ring: {:?}",
            t.elapsed()
        );
        // A past deadline returns at once.
        tokio::time::timeout(Duration::from_secs(5), alarm.sleep_until(start))
            .await
            .expect("a past deadline returns at once");
    }
}

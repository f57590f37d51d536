//! Removing the cgroups of dyno instances that are gone, one at a time on one blocking thread.
//!
//! Why: a stop of 500 dynos hands over 500 removals at once. As 500 blocking jobs (up to 16
//! threads) their rmdirs wait on each other for the parent directory's lock and the kernel's
//! cgroup mutex (a system-wide off-CPU profile of one 500 -> 0: 130 ms summed in `do_rmdir` ->
//! `down_write`), and they take both cores from the exits still to be reaped. Queued, one
//! thread does the same rmdirs without waiting on itself, and the other core stays free.
//!
//! The queue is the one piece of state shared with the worker; [`Queue`] is its pure part.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The removals waiting and whether a worker is draining them. Pure.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: VecDeque<String>,
    draining: bool,
}

impl Queue {
    /// Queues `rel`; `true` when no worker is draining, so the caller must start one.
    pub fn push(&mut self, rel: String) -> bool {
        self.waiting.push_back(rel);
        !std::mem::replace(&mut self.draining, true)
    }

    /// The next removal for the worker, or `None` (the worker stops; the next push starts one).
    pub fn next(&mut self) -> Option<String> {
        let next = self.waiting.pop_front();
        if next.is_none() {
            self.draining = false;
        }
        next
    }
}

/// The engine's handle: queues a removal and starts the worker when none runs.
#[derive(Clone)]
pub struct Sweeper {
    queue: Arc<Mutex<Queue>>,
    driver: Arc<dyn crate::cgroup::CgroupDriver>,
}

impl Sweeper {
    pub fn new(driver: Arc<dyn crate::cgroup::CgroupDriver>) -> Sweeper {
        Sweeper {
            queue: Arc::default(),
            driver,
        }
    }

    /// Kills whatever is left in the instance's cgroup `rel` and removes it, off the engine.
    pub fn remove(&self, rel: String) {
        let start = self.lock().push(rel);
        if start {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.drain());
        }
    }

    fn drain(&self) {
        while let Some(rel) = self.lock().next() {
            super::supervise::remove_cgroup(self.driver.as_ref(), &rel);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A removal that panicked leaves the queue as it was: carry on with it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_drains_in_order_and_the_next_push_after_it_stops_starts_another() {
        let mut q = Queue::default();
        assert!(
            q.push("a/web.1@1".into()),
            "the first push starts the worker"
        );
        assert!(!q.push("a/web.2@2".into()), "one is draining");
        assert_eq!(q.next().as_deref(), Some("a/web.1@1"));
        assert!(!q.push("a/web.3@3".into()), "still draining");
        assert_eq!(q.next().as_deref(), Some("a/web.2@2"));
        assert_eq!(q.next().as_deref(), Some("a/web.3@3"));
        assert_eq!(q.next(), None, "empty: the worker stops");
        assert!(
            q.push("a/web.4@4".into()),
            "so the next push starts one again"
        );
    }

    #[test]
    fn the_worker_removes_every_queued_cgroup() {
        let fake = crate::cgroup::fake::FakeCgroups::new();
        let driver: Arc<dyn crate::cgroup::CgroupDriver> = Arc::new(fake.clone());
        let limits = roboku_wire::Limits::default();
        for i in 1..=5 {
            driver.create(&format!("a/web.{i}@{i}"), &limits).unwrap();
        }
        let sweeper = Sweeper::new(driver);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 1..=5 {
                sweeper.remove(format!("a/web.{i}@{i}"));
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while (1..=5).any(|i| fake.limits(&format!("a/web.{i}@{i}")).is_some()) {
                assert!(std::time::Instant::now() < deadline, "not all removed");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        });
        assert!(sweeper.lock().next().is_none(), "nothing left queued");
    }
}

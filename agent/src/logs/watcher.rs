//! Which spools have news: an inotify watch on each app's spool dir, so the task sleeps until a
//! dyno writes (idle CPU is zero, no polling). Only when inotify is unavailable or fails does it
//! fall back to rescanning every spool once a second.

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{Interval, MissedTickBehavior};

/// Rescan interval when inotify is unavailable.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// `AsyncFd` wants `AsRawFd`; nix's `Inotify` only offers `AsFd`.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Something that may have grown.
#[derive(Debug, PartialEq)]
pub(super) enum News {
    /// `<app>/spool/<dyno>.out` was written or created.
    Spool { app: String, dyno: String },
    /// Events were lost (or we are polling): any spool may have grown.
    Everything,
}

pub(super) struct Watcher {
    inotify: Option<AsyncFd<InotifyFd>>,
    by_wd: HashMap<WatchDescriptor, String>,
    by_app: HashMap<String, WatchDescriptor>,
    /// Set once polling is needed.
    poll: Option<Interval>,
}

impl Watcher {
    /// Must be called inside a tokio runtime with IO enabled.
    pub fn new() -> Self {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|i| {
                // SAFETY: `InotifyFd` owns the fd and returns the same, open one for as long as
                // it lives, which is as long as the `AsyncFd` that owns it.
                unsafe { AsyncFd::register_with_interest(InotifyFd(i), Interest::READABLE) }
                    .map_err(std::io::Error::from)
            });
        let mut watcher = Watcher {
            inotify: None,
            by_wd: HashMap::new(),
            by_app: HashMap::new(),
            poll: None,
        };
        match inotify {
            Ok(fd) => watcher.inotify = Some(fd),
            Err(e) => watcher.start_polling(&e),
        }
        watcher
    }

    fn start_polling(&mut self, why: &dyn std::fmt::Display) {
        if self.poll.is_none() {
            tracing::warn!(error = %why, "inotify unavailable; rescanning spools every second");
            let mut tick = tokio::time::interval(POLL_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            self.poll = Some(tick);
        }
    }

    /// Watches `app`'s spool dir `dir` (once; later calls do nothing).
    pub fn add(&mut self, app: &str, dir: &Path) {
        if self.by_app.contains_key(app) {
            return;
        }
        let Some(fd) = &self.inotify else { return };
        match fd
            .get_ref()
            .0
            .add_watch(dir, AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE)
        {
            Ok(wd) => {
                self.by_wd.insert(wd, app.to_owned());
                self.by_app.insert(app.to_owned(), wd);
            }
            Err(e) => self.start_polling(&e),
        }
    }

    pub fn remove(&mut self, app: &str) {
        if let Some(wd) = self.by_app.remove(app) {
            self.by_wd.remove(&wd);
            if let Some(fd) = &self.inotify {
                let _ = fd.get_ref().0.rm_watch(wd);
            }
        }
    }

    /// Waits for news. Cancel-safe: no event is lost when the future is dropped.
    pub async fn next(&mut self) -> Vec<News> {
        loop {
            let events = tokio::select! {
                events = next_events(self.inotify.as_ref()) => events,
                _ = tick(self.poll.as_mut()) => return vec![News::Everything],
            };
            match events {
                Ok(events) => {
                    let news = self.translate(events);
                    if !news.is_empty() {
                        return news;
                    }
                }
                Err(e) => {
                    self.inotify = None;
                    self.start_polling(&e);
                    return vec![News::Everything];
                }
            }
        }
    }

    /// Keeps what concerns spools (our own offset files are written in the same dir).
    fn translate(&mut self, events: Vec<InotifyEvent>) -> Vec<News> {
        let mut news = Vec::new();
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                news.push(News::Everything);
            } else if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                // The dir is gone; a later `add` watches it anew.
                if let Some(app) = self.by_wd.remove(&ev.wd) {
                    self.by_app.remove(&app);
                }
            } else if let Some(app) = self.by_wd.get(&ev.wd) {
                let name = ev.name.as_deref().and_then(|n| n.to_str());
                if let Some(dyno) = name.and_then(|n| n.strip_suffix(".out")) {
                    news.push(News::Spool {
                        app: app.clone(),
                        dyno: dyno.to_owned(),
                    });
                }
            }
        }
        news
    }
}

/// Waits for inotify events; never completes without inotify.
async fn next_events(fd: Option<&AsyncFd<InotifyFd>>) -> std::io::Result<Vec<InotifyEvent>> {
    match fd {
        Some(fd) => {
            fd.async_io(Interest::READABLE, |i| {
                i.0.read_events().map_err(std::io::Error::from)
            })
            .await
        }
        None => std::future::pending().await,
    }
}

/// The next poll tick; never completes when not polling.
async fn tick(poll: Option<&mut Interval>) {
    match poll {
        Some(tick) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reports_spool_writes_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Watcher::new();
        assert!(watcher.poll.is_none(), "inotify must work here");
        watcher.add("app", dir.path());
        std::fs::write(dir.path().join("web.1.offset"), "12").unwrap();
        std::fs::write(dir.path().join("web.1.out"), "hello\n").unwrap();
        let news = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .unwrap();
        assert!(!news.is_empty());
        let want = News::Spool {
            app: "app".into(),
            dyno: "web.1".into(),
        };
        assert!(news.iter().all(|n| *n == want), "{news:?}");

        watcher.remove("app");
        std::fs::write(dir.path().join("web.2.out"), "x\n").unwrap();
        let other = tempfile::tempdir().unwrap();
        watcher.add("other", other.path());
        std::fs::write(other.path().join("run.1.out"), "x\n").unwrap();
        let news = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .unwrap();
        let want = News::Spool {
            app: "other".into(),
            dyno: "run.1".into(),
        };
        assert!(
            news.iter().all(|n| *n == want),
            "a removed app stays quiet: {news:?}"
        );
    }
}

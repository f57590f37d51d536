//! When the bundle inbox may have changed, so the inbox task sleeps while nothing happens
//! instead of listing the directory every `bundle_scan_ms`.
//!
//! Three things ring it: an inotify watch on the inbox (a file created, written, moved in or
//! out, changed or removed), a change of the mount table (`/proc/self/mountinfo` polls with
//! `POLLPRI`: a USB stick automounted at the inbox path is a new directory, which is then
//! watched anew) and, as a safety net for what inotify cannot see (a network filesystem
//! changed by another host), [`SAFETY_SCAN`]. Without inotify it rings every `every`, as the
//! plain scan did.
//!
//! Only ever a hint: the inbox task decides from its own scan, so a spurious ring costs one
//! listing and a missed event at most [`SAFETY_SCAN`].

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The longest between two scans of an inbox nobody touched.
pub const SAFETY_SCAN: Duration = Duration::from_secs(60);

/// `AsyncFd` wants `AsRawFd`; nix's `Inotify` only offers `AsFd`.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct Doorbell {
    dir: PathBuf,
    inotify: Option<AsyncFd<InotifyFd>>,
    watch: Option<WatchDescriptor>,
    mounts: Option<AsyncFd<std::fs::File>>,
    /// When it last rang: it rings at most once per `every`, however busy whoever writes
    /// into the inbox is (anyone may, so a flood of events must not become a flood of scans).
    rang: tokio::time::Instant,
}

/// What changes of the inbox directory are looked for.
fn interesting() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
}

impl Doorbell {
    /// Must be called inside a tokio runtime with IO enabled. Never fails: what cannot be
    /// watched is polled.
    pub fn new(dir: &Path) -> Doorbell {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|i| {
                // SAFETY: `InotifyFd` owns the fd and returns the same, open one for as long as
                // it lives, which is as long as the `AsyncFd` that owns it.
                unsafe { AsyncFd::register_with_interest(InotifyFd(i), Interest::READABLE) }
                    .map_err(std::io::Error::from)
            });
        let inotify = match inotify {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "inotify unavailable; the bundle inbox is scanned every bundle_scan_ms");
                None
            }
        };
        let mounts = std::fs::File::open("/proc/self/mountinfo").and_then(|f| {
            // SAFETY: the `AsyncFd` owns the `File`, so the fd stays open while registered.
            unsafe { AsyncFd::register_with_interest(f, Interest::PRIORITY) }
                .map_err(std::io::Error::from)
        });
        let mounts = match mounts {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch the mount table; a stick mounted at the bundle inbox is seen at the next safety scan");
                None
            }
        };
        let mut bell = Doorbell {
            dir: dir.to_path_buf(),
            inotify,
            watch: None,
            mounts,
            rang: tokio::time::Instant::now(),
        };
        bell.rewatch();
        bell
    }

    /// Whether changes are seen as they happen (else [`Doorbell::ring`] polls).
    pub fn watching(&self) -> bool {
        self.watch.is_some()
    }

    /// Watches the directory now at the inbox path (after a mount it is another one). The new
    /// watch is added before the old one goes: the same directory keeps its descriptor (no
    /// event at all), another one gets a new descriptor and the old one's `IN_IGNORED`, which
    /// [`Doorbell::drain`] knows for stale. Removing first made every rewatch queue an
    /// `IN_IGNORED` that drain took for a dropped watch and answered with another rewatch: after
    /// one mount anywhere on the robot the inbox task woke every `bundle_scan_ms` for ever.
    fn rewatch(&mut self) {
        let Some(fd) = &self.inotify else { return };
        let old = self.watch.take();
        match fd.get_ref().0.add_watch(&self.dir, interesting()) {
            Ok(wd) => self.watch = Some(wd),
            // Absent for now (a mount point not there yet): polled until a mount change.
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot watch the bundle inbox; scanning it every bundle_scan_ms")
            }
        }
        if let Some(old) = old.filter(|o| Some(*o) != self.watch) {
            let _ = fd.get_ref().0.rm_watch(old);
        }
    }

    /// Returns once the inbox may have changed: at once after `every` when `busy` (a file is
    /// still being written: the scan must look again) or when nothing is watched; else on a
    /// change, a mount, or after [`SAFETY_SCAN`]; never sooner than `every` after the last
    /// ring. Events that came meanwhile are consumed.
    pub async fn ring(&mut self, busy: bool, every: Duration) {
        self.wait(busy, every).await;
        tokio::time::sleep_until(self.rang + every).await;
        self.drain();
        self.rang = tokio::time::Instant::now();
    }

    async fn wait(&mut self, busy: bool, every: Duration) {
        if busy || !self.watching() {
            tokio::time::sleep(every).await;
            self.drain();
            if !self.watching() {
                self.rewatch();
            }
            return;
        }
        let changed = async {
            match &self.inotify {
                Some(fd) => {
                    let _ = fd.readable().await.map(|mut g| g.clear_ready());
                }
                None => std::future::pending().await,
            }
        };
        let mounted = async {
            match &self.mounts {
                Some(m) => match m.ready(Interest::PRIORITY).await {
                    Ok(mut g) => {
                        g.clear_ready();
                        true
                    }
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let remount = tokio::select! {
            _ = changed => false,
            m = mounted => m,
            _ = tokio::time::sleep(SAFETY_SCAN) => false,
        };
        self.drain();
        if remount {
            self.rewatch();
        }
    }

    /// Reads and forgets the queued events (the scan that follows sees what they said). A
    /// watch the kernel dropped (the directory removed or unmounted) is set up anew; what is
    /// said of an earlier watch (its `IN_IGNORED` after a rewatch) is stale.
    fn drain(&mut self) {
        let Some(fd) = &self.inotify else { return };
        let mut gone = false;
        while let Ok(events) = fd.get_ref().0.read_events() {
            if events.is_empty() {
                break;
            }
            gone |= events.iter().any(|e| {
                Some(e.wd) == self.watch
                    && e.mask.intersects(
                        AddWatchFlags::IN_IGNORED
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF
                            | AddWatchFlags::IN_UNMOUNT,
                    )
            });
        }
        if gone {
            self.rewatch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan interval in these tests (the safety scan stays at a minute).
    const EVERY: Duration = Duration::from_millis(10);

    async fn rings_within(bell: &mut Doorbell, what: &str) {
        tokio::time::timeout(Duration::from_secs(10), bell.ring(false, EVERY))
            .await
            .unwrap_or_else(|_| panic!("{what}: no ring within 10 s"));
    }

    #[tokio::test]
    async fn rings_on_a_new_file_a_write_and_a_removal_and_not_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let mut bell = Doorbell::new(dir.path());
        assert!(bell.watching(), "inotify must work here");
        let f = dir.path().join("a.rkb");
        std::fs::write(&f, b"x").unwrap();
        rings_within(&mut bell, "created").await;
        std::fs::write(&f, b"xy").unwrap();
        rings_within(&mut bell, "written").await;
        std::fs::remove_file(&f).unwrap();
        rings_within(&mut bell, "removed").await;
        // Nothing happened since: no ring (the events above were all consumed).
        let quiet = tokio::time::timeout(Duration::from_millis(300), bell.ring(false, EVERY)).await;
        assert!(quiet.is_err(), "rang with nothing changed");
    }

    #[tokio::test]
    async fn a_removed_and_recreated_inbox_is_watched_again() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("inbox");
        std::fs::create_dir(&dir).unwrap();
        let mut bell = Doorbell::new(&dir);
        std::fs::remove_dir(&dir).unwrap();
        rings_within(&mut bell, "removed dir").await;
        assert!(!bell.watching());
        std::fs::create_dir(&dir).unwrap();
        // Not watched: the next ring is a poll, which watches the new directory.
        bell.ring(false, EVERY).await;
        assert!(bell.watching());
        std::fs::write(dir.join("b.rkb"), b"x").unwrap();
        rings_within(&mut bell, "file in the new dir").await;
    }

    #[tokio::test]
    async fn a_rewatch_of_the_same_inbox_queues_nothing_that_asks_for_another() {
        // What a mount anywhere on the robot does: the inbox is watched anew. It used to queue
        // an IN_IGNORED that drain answered with another rewatch, and so on every ring.
        let dir = tempfile::tempdir().unwrap();
        let mut bell = Doorbell::new(dir.path());
        let first = bell.watch.expect("watched");
        bell.rewatch();
        assert_eq!(
            bell.watch,
            Some(first),
            "the same directory keeps its watch"
        );
        let fd = bell.inotify.as_ref().expect("inotify").get_ref();
        let queued = fd.0.read_events().unwrap_or_default();
        assert!(queued.is_empty(), "a rewatch queued {queued:?}");
    }

    #[tokio::test]
    async fn a_stale_ignored_event_of_an_earlier_watch_does_not_rewatch() {
        // Another directory at the path (a stick mounted there, here a rename): a new watch,
        // the old one's IN_IGNORED stays in the queue and must not start a rewatch loop.
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("inbox");
        std::fs::create_dir(&dir).unwrap();
        let mut bell = Doorbell::new(&dir);
        let first = bell.watch.expect("watched");
        std::fs::rename(&dir, parent.path().join("old")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        bell.drain(); // the rename's IN_MOVE_SELF: the path now holds another directory
        let second = bell.watch.expect("watched again");
        assert_ne!(second, first);
        bell.drain(); // the first watch's IN_IGNORED: stale
        assert_eq!(bell.watch, Some(second), "a stale event rewatched");
        std::fs::write(dir.join("c.rkb"), b"x").unwrap();
        rings_within(&mut bell, "file in the renamed-in dir").await;
    }

    #[tokio::test]
    async fn a_flood_of_events_rings_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut bell = Doorbell::new(dir.path());
        let every = Duration::from_millis(200);
        let f = dir.path().join("noise");
        let start = tokio::time::Instant::now();
        for i in 0..3 {
            std::fs::write(&f, format!("{i}")).unwrap();
            bell.ring(false, every).await;
        }
        // Three rings, each at least `every` after the one before (the first after `new`).
        assert!(start.elapsed() >= every * 3, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn busy_polls_at_the_scan_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut bell = Doorbell::new(dir.path());
        tokio::time::timeout(Duration::from_secs(10), bell.ring(true, EVERY))
            .await
            .expect("a busy ring is a poll");
    }
}

//! One app's stored lines: `app.log` (JSON lines of [`LogLine`]) rotated to `app.log.1` when it
//! passes half the quota, so the two together stay within about the quota; plus a ring of the
//! newest lines for `recent` without touching the disk.
//!
//! The disk is best effort: when a write fails (disk full) the batch is dropped from disk but
//! stays in the ring and reaches followers, and a warning is logged at most once a minute.

use super::lines::Lines;
use super::{history, LogFilter};
use roboku_wire::{LogLine, LogSource};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Lines kept in memory per app.
pub(super) const RING: usize = 1000;
/// Least time between two "cannot store logs" warnings of one app.
const WARN_EVERY: Duration = Duration::from_secs(60);

pub(super) struct AppStore {
    app: String,
    dir: PathBuf,
    /// `app.log` is rotated before it would pass this.
    half_quota: u64,
    file: Option<File>,
    /// Bytes in `app.log` (as far as we know).
    size: u64,
    /// Serialized lines not yet written.
    buf: Vec<u8>,
    /// One serialized line, kept across lines.
    json: Vec<u8>,
    /// A failed write may have left half a line: start the next write on a fresh line.
    torn: bool,
    ring: VecDeque<LogLine>,
    /// The ring holds every stored line (the files have nothing older).
    ring_is_all: bool,
    last_warn: Option<Instant>,
    /// Disk pressure (`disk::pressure`): lines are kept in the ring only, not written.
    pub paused: bool,
}

impl AppStore {
    /// Opens the store of `app` in `dir`, loading the ring from what is on disk.
    pub fn open(dir: PathBuf, app: &str, quota_bytes: u64) -> Self {
        let mut store = AppStore {
            app: app.to_owned(),
            half_quota: quota_bytes / 2,
            file: None,
            size: std::fs::metadata(dir.join("app.log"))
                .map(|m| m.len())
                .unwrap_or(0),
            buf: Vec::new(),
            json: Vec::new(),
            torn: false,
            ring: VecDeque::new(),
            ring_is_all: true,
            last_warn: None,
            paused: false,
            dir,
        };
        match history::tail(&store.files(), RING, &LogFilter::default()) {
            Ok(lines) => {
                store.ring_is_all = lines.len() < RING;
                store.ring = lines.into();
            }
            Err(e) => {
                store.ring_is_all = false;
                tracing::warn!(app, error = %e, "cannot read stored logs");
            }
        }
        store
    }

    fn files(&self) -> [PathBuf; 2] {
        super::store_files(&self.dir)
    }

    /// Stores `line` (on disk at the next [`AppStore::flush`]).
    pub fn push(&mut self, line: LogLine) {
        self.append(&LineRef {
            ts: line.ts,
            app: &line.app,
            dyno: &line.dyno,
            source: line.source,
            line: &line.line,
        });
        self.ring_push(line);
    }

    /// Stores a batch of one dyno's lines, all stamped `ts`, with no allocation per line:
    /// each is serialized into the write buffer, and only the newest [`RING`] become
    /// [`LogLine`]s for the ring.
    pub fn push_lines(&mut self, ts: u64, dyno: &str, source: LogSource, lines: &Lines) {
        if lines.is_empty() {
            return;
        }
        let app = self.app.clone();
        // Every line of the batch shares its JSON up to the text (`line` is the last field):
        // serialize that once, and per line only the text.
        let mut head = Vec::new();
        let empty = LineRef {
            ts,
            app: &app,
            dyno,
            source,
            line: "",
        };
        let shared =
            serde_json::to_writer(&mut head, &empty).is_ok() && head.ends_with(br#","line":""}"#);
        head.truncate(head.len().saturating_sub(3)); // `""}`
        for line in lines.iter() {
            if shared {
                self.append_text(&head, line);
            } else {
                self.append(&LineRef { line, ..empty });
            }
        }
        let skip = lines.len().saturating_sub(RING);
        if skip > 0 {
            self.ring_is_all = false;
        }
        for line in lines.iter().skip(skip) {
            self.ring_push(LogLine {
                ts,
                app: self.app.clone(),
                dyno: dyno.to_owned(),
                source,
                line: line.to_owned(),
            });
        }
    }

    /// Serializes one line into the write buffer, rotating first if it would pass the half.
    fn append(&mut self, line: &LineRef<'_>) {
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        let done = serde_json::to_writer(&mut json, line);
        self.commit(json, done);
    }

    /// [`AppStore::append`] for a line whose JSON is `head` (ending in `"line":`) + its text.
    fn append_text(&mut self, head: &[u8], text: &str) {
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        json.extend_from_slice(head);
        let done = serde_json::to_writer(&mut json, text);
        json.push(b'}');
        self.commit(json, done);
    }

    /// Appends the serialized line `json` (if it was) to the write buffer, then keeps `json`'s
    /// allocation for the next line.
    fn commit(&mut self, mut json: Vec<u8>, done: serde_json::Result<()>) {
        match done {
            Ok(()) => {
                json.push(b'\n');
                let used = self.size + self.buf.len() as u64;
                if used > 0 && used + json.len() as u64 > self.half_quota {
                    self.flush();
                    self.rotate();
                }
                self.buf.extend_from_slice(&json);
            }
            Err(e) => tracing::warn!(app = %self.app, error = %e, "cannot encode log line"),
        }
        self.json = json;
    }

    fn ring_push(&mut self, line: LogLine) {
        if self.ring.len() == RING {
            self.ring.pop_front();
            self.ring_is_all = false;
        }
        self.ring.push_back(line);
    }

    /// Writes buffered lines to `app.log`; on failure they are dropped from disk.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.paused {
            // The disk is at its reserve: the lines stay in the ring (and reached followers).
            self.buf.clear();
            return;
        }
        if self.torn {
            self.buf.insert(0, b'\n');
        }
        let buf = std::mem::take(&mut self.buf);
        match self.write(&buf) {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.torn = false;
            }
            Err(e) => {
                self.torn = true;
                self.file = None;
                self.size = std::fs::metadata(self.dir.join("app.log"))
                    .map(|m| m.len())
                    .unwrap_or(0);
                self.warn(&e);
            }
        }
        // Keep the allocation for the next batch.
        self.buf = buf;
        self.buf.clear();
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                std::fs::create_dir_all(&self.dir)?;
                self.file.insert(
                    OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(self.dir.join("app.log"))?,
                )
            }
        };
        file.write_all(buf)
    }

    /// Starts a new `app.log`, the current one replacing `app.log.1`.
    fn rotate(&mut self) {
        self.file = None;
        let [old, current] = self.files();
        match std::fs::rename(&current, &old) {
            Ok(()) => self.size = 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.size = 0,
            Err(e) => {
                // Keep the size so the next push retries; meanwhile the file may pass the half.
                self.warn(&e);
            }
        }
    }

    fn warn(&mut self, e: &std::io::Error) {
        if !may_warn(&mut self.last_warn) {
            return;
        }
        tracing::warn!(app = %self.app, dir = %self.dir.display(), error = %e, "cannot store logs; lines kept in memory only");
    }

    /// The last `n` stored lines matching `filter`, oldest first. Call after a flush.
    pub fn recent(&self, n: usize, filter: &LogFilter) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = self
            .ring
            .iter()
            .rev()
            .filter(|l| filter.matches(l))
            .take(n)
            .cloned()
            .collect();
        if lines.len() < n && !self.ring_is_all {
            match history::tail(&self.files(), n, filter) {
                Ok(from_disk) => return from_disk,
                Err(e) => tracing::warn!(app = %self.app, error = %e, "cannot read stored logs"),
            }
        }
        lines.reverse();
        lines
    }
}

/// [`LogLine`] borrowed: serializes to the same JSON (a test holds them to it).
#[derive(serde::Serialize)]
struct LineRef<'a> {
    ts: u64,
    app: &'a str,
    dyno: &'a str,
    source: LogSource,
    line: &'a str,
}

/// Whether a warning that was last given at `last` may be given again (at most once a
/// minute, so a full disk does not flood the journal); if so, records it as given now.
pub(super) fn may_warn(last: &mut Option<Instant>) -> bool {
    if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

/// Size on disk of an app's stored logs (for tests and quotas).
#[cfg(test)]
pub(super) fn stored_bytes(dir: &std::path::Path) -> u64 {
    ["app.log", "app.log.1"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::LogSource;

    fn line(i: usize) -> LogLine {
        LogLine {
            ts: i as u64,
            app: "a".into(),
            dyno: "web.1".into(),
            source: LogSource::App,
            line: format!("line {i}"),
        }
    }

    #[test]
    fn a_borrowed_line_serializes_as_the_wire_type() {
        for source in [LogSource::App, LogSource::Roboku] {
            let owned = LogLine {
                ts: 17,
                app: "a\"b".into(),
                dyno: "web.1".into(),
                source,
                line: "tab\there \u{1} é".into(),
            };
            let borrowed = LineRef {
                ts: owned.ts,
                app: &owned.app,
                dyno: &owned.dyno,
                source,
                line: &owned.line,
            };
            assert_eq!(
                serde_json::to_string(&borrowed).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
        }
    }

    #[test]
    fn a_batch_is_stored_like_the_same_lines_one_by_one() {
        let (one, batch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let quota = 50_000;
        let mut by_line = AppStore::open(one.path().to_owned(), "a", quota);
        let mut by_batch = AppStore::open(batch.path().to_owned(), "a", quota);
        let mut lines = Lines::default();
        for i in 0..(RING + 500) {
            let mut l = line(i);
            l.ts = 7;
            if i % 3 == 0 {
                l.line.push_str(" \"quoted\" \\ \t \u{7} é");
            }
            lines.push(l.line.as_bytes());
            by_line.push(l);
        }
        by_batch.push_lines(7, "web.1", LogSource::App, &lines);
        by_line.flush();
        by_batch.flush();
        for f in ["app.log", "app.log.1"] {
            assert_eq!(
                std::fs::read(one.path().join(f)).unwrap(),
                std::fs::read(batch.path().join(f)).unwrap(),
                "{f}"
            );
        }
        let all = LogFilter::default();
        assert_eq!(by_line.recent(RING, &all), by_batch.recent(RING, &all));
        assert_eq!(
            by_line.recent(RING + 10, &all),
            by_batch.recent(RING + 10, &all)
        );
    }

    #[test]
    fn rotates_within_quota_and_reloads_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let quota = 20_000;
        let mut store = AppStore::open(dir.path().to_owned(), "a", quota);
        for i in 0..5000 {
            store.push(line(i));
            if i % 7 == 0 {
                store.flush();
            }
        }
        store.flush();
        assert!(
            stored_bytes(dir.path()) <= quota,
            "{} > {quota}",
            stored_bytes(dir.path())
        );
        assert_eq!(
            store.recent(3, &LogFilter::default()),
            [line(4997), line(4998), line(4999)]
        );
        let kept = store.recent(RING + 10, &LogFilter::default());
        assert!(kept.len() < RING + 10, "old lines are gone from disk");
        assert_eq!(kept.last(), Some(&line(4999)));
        drop(store);
        let reopened = AppStore::open(dir.path().to_owned(), "a", quota);
        assert_eq!(reopened.recent(kept.len() + 5, &LogFilter::default()), kept);
    }

    #[test]
    fn a_paused_store_keeps_lines_in_memory_and_writes_again_when_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AppStore::open(dir.path().to_owned(), "a", 1 << 20);
        store.push(line(1));
        store.flush();
        let before = stored_bytes(dir.path());
        store.paused = true;
        for i in 2..100 {
            store.push(line(i));
            store.flush();
        }
        assert_eq!(
            stored_bytes(dir.path()),
            before,
            "nothing written while paused"
        );
        assert_eq!(store.recent(1, &LogFilter::default()), [line(99)]);
        store.paused = false;
        store.push(line(100));
        store.flush();
        assert!(stored_bytes(dir.path()) > before, "written again");
    }

    #[test]
    fn a_failing_disk_keeps_lines_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app.log")).unwrap(); // cannot be opened as a file
        let mut store = AppStore::open(dir.path().to_owned(), "a", 1 << 20);
        store.push(line(1));
        store.flush();
        store.push(line(2));
        store.flush();
        assert_eq!(store.recent(10, &LogFilter::default()), [line(1), line(2)]);
    }
}

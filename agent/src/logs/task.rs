//! The log task: the only owner of every app's store and every tailed spool. It sleeps until a
//! message arrives or inotify reports a spool write (idle CPU is zero), reads what is new, stores
//! it and fans it out. It must never block a caller and never panic: failures are logged and the
//! task carries on.
//!
//! A spool that grows faster than one read budget is finished on later turns of the loop (after
//! yielding to the runtime), so one chatty dyno cannot starve the others or the messages.

use super::lines::Lines;
use super::spool::{Backlog, Spool};
use super::store::{may_warn, AppStore};
use super::watcher::{News, Watcher};
use super::{create_dirs, LogFilter, Msg};
use crate::util::now_ms;
use roboku_wire::{LogLine, LogSource};
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};
use tokio::time::sleep_until;

/// Bytes read from one spool per turn of the loop.
const READ_BUDGET: u64 = 1024 * 1024;

struct App {
    store: AppStore,
    spools: HashMap<String, Spool>,
    last_warn: Option<Instant>,
}

pub(super) struct Task {
    logs_dir: PathBuf,
    quota_bytes: u64,
    apps: HashMap<String, App>,
    watcher: Watcher,
    /// Spools that had more than a budget to read: `(app, dyno)`.
    pending: HashSet<(String, String)>,
    lines: broadcast::Sender<LogLine>,
    /// Disk pressure: stores keep lines in memory only.
    paused: bool,
    /// When the earliest offset not yet persisted is due ([`Spool::save_deadline`]).
    next_save: Option<Instant>,
    /// The lines of one read, kept across reads.
    scratch: Lines,
    /// The bytes of one read, shared by every spool ([`Spool::read`]).
    read_buf: Vec<u8>,
}

impl Task {
    pub fn new(logs_dir: PathBuf, quota_bytes: u64, lines: broadcast::Sender<LogLine>) -> Self {
        Task {
            watcher: Watcher::new(),
            logs_dir,
            quota_bytes,
            apps: HashMap::new(),
            pending: HashSet::new(),
            lines,
            paused: false,
            next_save: None,
            scratch: Lines::default(),
            read_buf: Vec::new(),
        }
    }

    /// Runs until every handle is dropped or a shutdown message arrives.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        loop {
            tokio::select! {
                biased;
                msg = rx.recv() => match msg {
                    None => break,
                    Some(msg) => if self.handle(msg).is_break() {
                        return;
                    },
                },
                news = self.watcher.next() => self.on_news(news),
                _ = tokio::task::yield_now(), if !self.pending.is_empty() => {
                    for (app, dyno) in std::mem::take(&mut self.pending) {
                        self.pump(&app, &dyno, false);
                    }
                }
                _ = until(self.next_save) => self.save_offsets(),
            }
        }
        self.finish();
    }

    /// Handles one request; breaks on shutdown.
    fn handle(&mut self, msg: Msg) -> ControlFlow<()> {
        match msg {
            Msg::System { app, dyno, line } if valid(&app) => {
                let line = LogLine {
                    ts: now_ms(),
                    app,
                    dyno,
                    source: LogSource::Roboku,
                    line,
                };
                let a = self.app(&line.app.clone());
                a.store.push(line.clone());
                a.store.flush();
                let _ = self.lines.send(line);
            }
            Msg::Watch { app, dyno } if valid(&app) && valid(&dyno) => self.watch(&app, &dyno),
            Msg::Unwatch { app, dyno } => {
                self.pump(&app, &dyno, true);
                if let Some(a) = self.apps.get_mut(&app) {
                    a.spools.remove(&dyno);
                }
                self.pending.remove(&(app, dyno));
            }
            Msg::RemoveApp { app } if valid(&app) => self.remove_app(&app),
            Msg::RenameApp { from, to, done } if valid(&from) && valid(&to) => {
                let _ = done.send(self.rename_app(&from, &to));
            }
            Msg::Recent {
                app,
                n,
                filter,
                reply,
            } => {
                let _ = reply.send(self.recent(&app, n, &filter));
            }
            Msg::Pressure { shed, pause } => self.pressure(shed, pause),
            Msg::Shutdown { done } => {
                self.finish();
                let _ = done.send(());
                return ControlFlow::Break(());
            }
            other => tracing::warn!(msg = ?other, "ignoring log request with an invalid name"),
        }
        ControlFlow::Continue(())
    }

    /// The state of `app`, opened (and its ring loaded from disk) on first use.
    fn app(&mut self, app: &str) -> &mut App {
        let (dir, quota, paused) = (self.logs_dir.join(app), self.quota_bytes, self.paused);
        self.apps.entry(app.to_owned()).or_insert_with(|| {
            let mut store = AppStore::open(dir, app, quota);
            store.paused = paused;
            App {
                store,
                spools: HashMap::new(),
                last_warn: None,
            }
        })
    }

    /// Disk pressure: deletes every app's rotated segment (the oldest stored lines; apps whose
    /// store is not open too) and pauses or resumes writing to disk.
    fn pressure(&mut self, shed: bool, pause: Option<bool>) {
        if shed {
            let mut freed = 0u64;
            if let Ok(dirs) = std::fs::read_dir(&self.logs_dir) {
                for d in dirs.flatten() {
                    let [old, _] = super::store_files(&d.path());
                    let size = std::fs::symlink_metadata(&old).map(|m| m.len());
                    if let Ok(size) = size {
                        match std::fs::remove_file(&old) {
                            Ok(()) => freed += size,
                            Err(e) => {
                                tracing::warn!(path = %old.display(), error = %e, "disk pressure: cannot remove a rotated log segment")
                            }
                        }
                    }
                }
            }
            tracing::warn!(
                freed,
                "disk pressure: removed the rotated log segments (oldest lines)"
            );
        }
        if let Some(p) = pause {
            self.paused = p;
            for a in self.apps.values_mut() {
                a.store.paused = p;
            }
            if p {
                tracing::warn!("disk pressure: log lines are kept in memory only (the data disk is at its reserve)");
            } else {
                tracing::info!("disk pressure over: log lines are written to disk again");
            }
        }
    }

    fn watch(&mut self, app: &str, dyno: &str) {
        let dir = self.logs_dir.join(app).join("spool");
        if let Err(e) = create_dirs(&dir) {
            tracing::warn!(app, dyno, error = %e, "cannot watch spool");
            return;
        }
        // Watch the directory before the first read, so no write slips in between.
        self.watcher.add(app, &dir);
        let a = self.app(app);
        if !a.spools.contains_key(dyno) {
            match Spool::open(&dir, dyno) {
                Ok(spool) => {
                    a.spools.insert(dyno.to_owned(), spool);
                }
                Err(e) => {
                    tracing::warn!(app, dyno, error = %e, "cannot open spool");
                    return;
                }
            }
        }
        self.pump(app, dyno, false);
    }

    fn on_news(&mut self, news: Vec<News>) {
        let mut touched = HashSet::new();
        for n in news {
            match n {
                News::Everything => return self.pump_all(),
                News::Spool { app, dyno } => {
                    if self
                        .apps
                        .get(&app)
                        .is_some_and(|a| a.spools.contains_key(&dyno))
                    {
                        touched.insert((app, dyno));
                    }
                }
            }
        }
        for (app, dyno) in touched {
            self.pump(&app, &dyno, false);
        }
    }

    fn pump_all(&mut self) {
        let all: Vec<(String, String)> = self
            .apps
            .iter()
            .flat_map(|(app, a)| a.spools.keys().map(move |d| (app.clone(), d.clone())))
            .collect();
        for (app, dyno) in all {
            self.pump(&app, &dyno, false);
        }
    }

    /// Reads what is new in a spool (all of it when `to_end`, a final partial line included),
    /// stores it, then persists the offset and reclaims space, in that order: the offset at
    /// once when `to_end`, else when [`Spool::stored`] says it is due (the timer of
    /// `next_save` catches the rest).
    fn pump(&mut self, app: &str, dyno: &str, to_end: bool) {
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        let Some(spool) = a.spools.get_mut(dyno) else {
            return;
        };
        let mut lines = std::mem::take(&mut self.scratch);
        let mut more;
        loop {
            lines.clear();
            let now = now_ms();
            let (ts, done) = match spool.read(READ_BUDGET, &mut lines, &mut self.read_buf) {
                Ok(batch) => {
                    more = batch.more;
                    let ts = batch.written_by.map_or(now, |w| w.min(now));
                    (ts, batch.backlog_done)
                }
                Err(e) => {
                    if may_warn(&mut a.last_warn) {
                        tracing::warn!(app, dyno, error = %e, "cannot read spool");
                    }
                    more = false;
                    (now, None)
                }
            };
            if to_end && !more {
                spool.finish(&mut lines);
            }
            a.store.push_lines(ts, dyno, LogSource::App, &lines);
            if self.lines.receiver_count() > 0 {
                for line in lines.iter() {
                    let _ = self.lines.send(LogLine {
                        ts,
                        app: app.to_owned(),
                        dyno: dyno.to_owned(),
                        source: LogSource::App,
                        line: line.to_owned(),
                    });
                }
            }
            if let Some(note) = done.and_then(|b| backlog_note(&b, now)) {
                let line = LogLine {
                    ts: now,
                    app: app.to_owned(),
                    dyno: dyno.to_owned(),
                    source: LogSource::Roboku,
                    line: note,
                };
                a.store.push(line.clone());
                let _ = self.lines.send(line);
            }
            if !(to_end && more) {
                break;
            }
        }
        self.scratch = lines;
        a.store.flush();
        if to_end || spool.stored(Instant::now()) {
            if let Err(e) = spool.save_offset().and_then(|()| spool.reclaim()) {
                if may_warn(&mut a.last_warn) {
                    tracing::warn!(app, dyno, error = %e, "cannot persist spool offset or reclaim space");
                }
            }
        }
        if let Some(due) = spool.save_deadline() {
            self.next_save = Some(self.next_save.map_or(due, |t| t.min(due)));
        }
        if more {
            self.pending.insert((app.to_owned(), dyno.to_owned()));
        }
    }

    /// Persists every offset that is behind (their lines are stored already) and reclaims the
    /// space up to it: the timer's half of the batching in [`Task::pump`].
    fn save_offsets(&mut self) {
        self.next_save = None;
        for (app, a) in &mut self.apps {
            for (dyno, spool) in &mut a.spools {
                if spool.save_deadline().is_none() {
                    continue;
                }
                if let Err(e) = spool.save_offset().and_then(|()| spool.reclaim()) {
                    if may_warn(&mut a.last_warn) {
                        tracing::warn!(app, dyno, error = %e, "cannot persist spool offset or reclaim space");
                    }
                }
            }
        }
    }

    fn remove_app(&mut self, app: &str) {
        self.apps.remove(app);
        self.watcher.remove(app);
        self.pending.retain(|(a, _)| a != app);
        let dir = self.logs_dir.join(app);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(app, dir = %dir.display(), error = %e, "cannot delete app logs")
            }
        }
    }

    /// Stores what is left in `from`'s spools, forgets both names' state (their files are read
    /// again under the new name when its dynos start) and moves the directory.
    fn rename_app(&mut self, from: &str, to: &str) -> Result<(), String> {
        let dynos: Vec<String> = self
            .apps
            .get(from)
            .map(|a| a.spools.keys().cloned().collect())
            .unwrap_or_default();
        for dyno in &dynos {
            self.pump(from, dyno, true);
        }
        for app in [from, to] {
            if let Some(mut a) = self.apps.remove(app) {
                a.store.flush();
                for (dyno, spool) in &mut a.spools {
                    if let Err(e) = spool.save_offset() {
                        tracing::warn!(app, dyno, error = %e, "cannot persist spool offset");
                    }
                }
            }
            self.watcher.remove(app);
            self.pending.retain(|(a, _)| a != app);
        }
        let (src, dst) = (self.logs_dir.join(from), self.logs_dir.join(to));
        crate::util::move_dir(&src, &dst, true)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn recent(&mut self, app: &str, n: usize, filter: &LogFilter) -> Vec<LogLine> {
        // Do not create state for an app that has never logged anything.
        if !valid(app) || (!self.apps.contains_key(app) && !self.logs_dir.join(app).exists()) {
            return Vec::new();
        }
        // Answer with everything written before the request, not only what inotify reported yet.
        let dynos: Vec<String> = self
            .apps
            .get(app)
            .map(|a| a.spools.keys().cloned().collect())
            .unwrap_or_default();
        for dyno in dynos {
            self.pump(app, &dyno, false);
        }
        let a = self.app(app);
        a.store.flush();
        a.store.recent(n, filter)
    }

    /// Stores everything buffered and persists every offset (graceful shutdown).
    fn finish(&mut self) {
        for (app, a) in &mut self.apps {
            a.store.flush();
            for (dyno, spool) in &mut a.spools {
                if let Err(e) = spool.save_offset() {
                    tracing::warn!(app, dyno, error = %e, "cannot persist spool offset");
                }
            }
        }
    }
}

/// Backlog older than this when found gets a line saying how its lines are stamped (a dyno's
/// first lines, found milliseconds after its start, do not).
const NOTE_BACKLOG_AFTER_MS: u64 = 1000;

/// What a reader of the logs must know about lines written while robokud was not reading them:
/// they carry the time of the spool's last write before it read them again, and the interval in
/// which each was written.
fn backlog_note(b: &Backlog, now: u64) -> Option<String> {
    // How old it was when found, not how long reading it took.
    if b.lines == 0 || b.found_at.saturating_sub(b.written_by) < NOTE_BACKLOG_AFTER_MS {
        return None;
    }
    let age = now.saturating_sub(b.written_by);
    let secs = |ms: u64| format!("{:.1}s", ms as f64 / 1000.0);
    let after = match b.read_before {
        Some(r) if r <= b.written_by => format!(
            ", written after robokud last read this spool ({} before)",
            secs(now.saturating_sub(r))
        ),
        _ => String::new(),
    };
    Some(format!(
        "{} written while robokud was not reading {} the time of the spool's last write \
         ({} before this line): each was written at or before its stamp{after}",
        match b.lines {
            1 => "1 line".to_string(),
            n => format!("{n} lines"),
        },
        if b.lines == 1 { "carries" } else { "carry" },
        secs(age)
    ))
}

/// Waits until `deadline`; never completes without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// App and dyno names become path components: refuse anything that could leave `logs_dir`.
fn valid(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

//! Logs: each dyno's stdout+stderr go to an append-only spool file that the dyno holds itself
//! (so a dyno never depends on a pipe only the running agent holds, and a slow reader never slows
//! it). The log task tails the spools (inotify, no busy polling), stamps each line, appends it to
//! the app's bounded log store, keeps a ring of recent lines and fans lines out to followers.
//!
//! Layout under `logs_dir`:
//! - `<app>/spool/<dyno>.out`: the spool the dyno appends to; consumed ranges are punched out
//!   (hole punching), so it stays small on disk while the dyno keeps its fd ([`spool`]).
//! - `<app>/spool/<dyno>.offset`: how far the spool has been consumed, so a restarted agent
//!   resumes without duplicating or losing lines.
//! - `<app>/app.log` + `<app>/app.log.1`: JSON lines of [`LogLine`], together at most about
//!   `quota_bytes` ([`store`]).
//!
//! The task ([`task`]) is the only owner of all of this (a renamed app's directory is moved by
//! it too, see [`LogHandle::rename_app`]; only the start, before the task runs, finishes a move
//! an agent crash interrupted); [`LogHandle`] only sends it messages,
//! so neither the engine nor a dyno ever waits on logs.

mod history;
mod lines;
mod spool;
mod store;
mod task;
mod watcher;

#[cfg(test)]
mod tests;

use crate::util::{IoContext, PathError};
use roboku_wire::{LogLine, LogSource};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tokio::sync::{broadcast, mpsc, oneshot};

/// How many lines a follower may fall behind before it loses lines (it never slows anyone).
const FOLLOW_CAPACITY: usize = 1024;

/// Which lines a reader wants (every filter given must match).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// `web.1` (one dyno) or `web` (every dyno of the type).
    pub dyno: Option<String>,
    pub source: Option<LogSource>,
    /// Only lines stamped at or after this (unix ms). Lines are stamped as they are stored, so
    /// a reader going back in time may stop at the first older line (see `history`).
    pub since: Option<u64>,
    /// Only lines whose text matches.
    pub grep: Option<Grep>,
}

/// A regular expression over a line's text (`regex-lite`: linear time, size-limited, so a
/// hostile pattern can neither spin nor eat memory). Compared by its source text.
#[derive(Debug, Clone)]
pub struct Grep {
    source: String,
    re: regex_lite::Regex,
}

/// Longest pattern accepted (the envelope is capped anyway; this keeps compiled sizes small).
pub const MAX_GREP_LEN: usize = 1024;

impl Grep {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Grep, String> {
        if pattern.len() > MAX_GREP_LEN {
            return Err(format!(
                "grep pattern is {} bytes, more than {MAX_GREP_LEN}",
                pattern.len()
            ));
        }
        let re = regex_lite::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("grep pattern {pattern:?}: {e}"))?;
        Ok(Grep {
            source: pattern.to_string(),
            re,
        })
    }
    pub fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }
}

impl PartialEq for Grep {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl LogFilter {
    /// Whether `line` is one the reader wants: `web` matches every `web.N`, `web.1` only itself.
    pub fn matches(&self, line: &LogLine) -> bool {
        if self.source.is_some_and(|s| s != line.source) {
            return false;
        }
        if self.since.is_some_and(|t| line.ts < t) {
            return false;
        }
        if self.grep.as_ref().is_some_and(|g| !g.is_match(&line.line)) {
            return false;
        }
        match &self.dyno {
            None => true,
            Some(want) => {
                line.dyno == *want
                    || (!want.contains('.')
                        && line
                            .dyno
                            .strip_prefix(want.as_str())
                            .is_some_and(|rest| rest.starts_with('.')))
            }
        }
    }
}

/// An app's stored lines, oldest file first: `<app dir>/app.log.1`, `<app dir>/app.log` (drains
/// read them too, see `crate::drains`).
pub fn store_files(app_dir: &Path) -> [PathBuf; 2] {
    [app_dir.join("app.log.1"), app_dir.join("app.log")]
}

/// The spool file of one dyno: `<logs_dir>/<app>/spool/<dyno>.out`.
pub fn spool_path(logs_dir: &Path, app: &str, dyno: &str) -> PathBuf {
    logs_dir.join(app).join("spool").join(format!("{dyno}.out"))
}

/// Opens (creating dirs as needed) the spool for writing, `O_APPEND`, to hand to the dyno as
/// both stdout and stderr.
pub fn open_spool(logs_dir: &Path, app: &str, dyno: &str) -> Result<File, PathError> {
    let path = spool_path(logs_dir, app, dyno);
    if let Some(dir) = path.parent() {
        create_dirs(dir)?;
    }
    // std opens with O_CLOEXEC already; the dyno gets the fd through dup2 onto 1 and 2.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .at("open spool", &path)
}

/// Creates `dir` and its parents with mode 0755.
fn create_dirs(dir: &Path) -> Result<(), PathError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .at("create dir", dir)
}

/// What the log task can fail at; the task logs these and carries on.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("{op} {}: {source}", path.display())]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// A message to the log task.
#[derive(Debug)]
enum Msg {
    System {
        app: String,
        dyno: String,
        line: String,
    },
    Watch {
        app: String,
        dyno: String,
    },
    Unwatch {
        app: String,
        dyno: String,
    },
    RemoveApp {
        app: String,
    },
    RenameApp {
        from: String,
        to: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    Recent {
        app: String,
        n: usize,
        filter: LogFilter,
        reply: oneshot::Sender<Vec<LogLine>>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
    Pressure {
        shed: bool,
        pause: Option<bool>,
    },
}

/// A cheap, cloneable handle to the log task. Every method is non-blocking for the caller
/// (the engine must never wait on logs). The task ends when every handle is dropped or on
/// [`LogHandle::shutdown`].
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::UnboundedSender<Msg>,
    lines: broadcast::Sender<LogLine>,
}

/// Starts the log task. `quota_bytes` bounds each app's stored logs. Must be called inside a
/// tokio runtime (with IO enabled, for inotify).
pub fn start(logs_dir: PathBuf, quota_bytes: u64) -> LogHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (lines, _) = broadcast::channel(FOLLOW_CAPACITY);
    tokio::spawn(task::Task::new(logs_dir, quota_bytes, lines.clone()).run(rx));
    LogHandle { tx, lines }
}

impl LogHandle {
    /// Sends `msg`; if the task is gone (shut down) there is nobody left to tell, so it is dropped.
    fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
    }

    /// Records a line from roboku itself (source `roboku`) about `dyno` (or `roboku`).
    pub fn system(&self, app: &str, dyno: &str, line: String) {
        self.send(Msg::System {
            app: app.to_owned(),
            dyno: dyno.to_owned(),
            line,
        });
    }

    /// Starts (or keeps) tailing a dyno's spool, from where the last reader stopped.
    pub fn watch(&self, app: &str, dyno: &str) {
        self.send(Msg::Watch {
            app: app.to_owned(),
            dyno: dyno.to_owned(),
        });
    }

    /// Drains what is left of the spool (a final partial line included), then stops tailing
    /// it. The spool and its offset stay (all holes once consumed), so a dyno restarted under
    /// the same name that already opened the same file loses nothing.
    pub fn unwatch(&self, app: &str, dyno: &str) {
        self.send(Msg::Unwatch {
            app: app.to_owned(),
            dyno: dyno.to_owned(),
        });
    }

    /// Deletes an app's logs and spools.
    pub fn remove_app(&self, app: &str) {
        self.send(Msg::RemoveApp {
            app: app.to_owned(),
        });
    }

    /// Moves an app's logs and spools to its new name (`apps:rename`, once none of its dynos
    /// runs): what is left in its spools is stored first, then `<logs>/<from>` becomes
    /// `<logs>/<to>`. Resolves when that is done; an error says why the logs stayed.
    pub async fn rename_app(&self, from: &str, to: &str) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.send(Msg::RenameApp {
            from: from.to_owned(),
            to: to.to_owned(),
            done,
        });
        rx.await
            .unwrap_or_else(|_| Err("the log task has stopped".into()))
    }

    /// The last `n` stored lines of `app` that match `filter`, oldest first.
    pub async fn recent(&self, app: &str, n: usize, filter: LogFilter) -> Vec<LogLine> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Recent {
            app: app.to_owned(),
            n,
            filter,
            reply,
        });
        rx.await.unwrap_or_default()
    }

    /// Every new line of every app, as it is stored.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.lines.subscribe()
    }

    /// Disk pressure (`disk::pressure`): `shed` deletes every app's rotated segment
    /// (`app.log.1`, the oldest stored lines); `pause` stops (`Some(true)`) or resumes
    /// (`Some(false)`) writing lines to disk. Lines always reach the ring and followers.
    pub fn pressure(&self, shed: bool, pause: Option<bool>) {
        self.send(Msg::Pressure { shed, pause });
    }

    /// Persists every offset and store, then stops the task (for the agent's graceful
    /// shutdown; other handles' messages are dropped afterwards). Returns once it is done.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        self.send(Msg::Shutdown { done });
        let _ = rx.await;
    }
}

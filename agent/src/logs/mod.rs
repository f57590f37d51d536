//! Logs: each dyno's stdout+stderr go to an append-only spool file that the dyno holds itself
//! (so a dyno never depends on a pipe only the running agent holds, and a slow reader never slows
//! it). The log task tails the spools (inotify, no busy polling), stamps each line, appends it to
//! the app's bounded log store, keeps a ring of recent lines and fans lines out to followers.
//! (Stub: the contract below is fixed; the implementation lands with its tests.)

use roboku_wire::{LogLine, LogSource};
use std::fs::File;
use std::path::{Path, PathBuf};
use tokio::sync::broadcast;

/// Which lines a reader wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogFilter {
    /// `web.1` (one dyno) or `web` (every dyno of the type).
    pub dyno: Option<String>,
    pub source: Option<LogSource>,
}

/// The spool file of one dyno: `<logs_dir>/<app>/spool/<dyno>.out`.
pub fn spool_path(logs_dir: &Path, app: &str, dyno: &str) -> PathBuf {
    logs_dir.join(app).join("spool").join(format!("{dyno}.out"))
}

/// Opens (creating dirs as needed) the spool for writing, `O_APPEND`, to hand to the dyno as
/// both stdout and stderr.
pub fn open_spool(logs_dir: &Path, app: &str, dyno: &str) -> Result<File, crate::util::PathError> {
    let _ = (logs_dir, app, dyno);
    todo!()
}

/// A cheap, cloneable handle to the log task. Every method is non-blocking for the caller
/// (the engine must never wait on logs).
#[derive(Clone)]
pub struct LogHandle {
    _private: (),
}

/// Starts the log task. `quota_bytes` bounds each app's stored logs.
pub fn start(logs_dir: PathBuf, quota_bytes: u64) -> LogHandle {
    let _ = (logs_dir, quota_bytes);
    todo!()
}

impl LogHandle {
    /// Records a line from roboku itself (source `roboku`) about `dyno` (or `roboku`).
    pub fn system(&self, app: &str, dyno: &str, line: String) { let _ = (app, dyno, line); todo!() }
    /// Starts (or keeps) tailing a dyno's spool, from where the last reader stopped.
    pub fn watch(&self, app: &str, dyno: &str) { let _ = (app, dyno); todo!() }
    /// Drains what is left of the spool, then stops tailing it.
    pub fn unwatch(&self, app: &str, dyno: &str) { let _ = (app, dyno); todo!() }
    /// Deletes an app's logs and spools.
    pub fn remove_app(&self, app: &str) { let _ = app; todo!() }
    /// The last `n` stored lines of `app` that match `filter`, oldest first.
    pub async fn recent(&self, app: &str, n: usize, filter: LogFilter) -> Vec<LogLine> { let _ = (app, n, filter); todo!() }
    /// Every new line of every app, as it is stored.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> { todo!() }
}

//! cgroups: one small trait ([`CgroupDriver`]), a v1 and a v2 implementation over cgroupfs, a
//! `none` driver for hosts where cgroups cannot be used, and a fake for tests.
//!
//! The mount point is passed in, so tests can point a driver at a temp dir laid out like a
//! cgroup mount. The drivers write cgroupfs directly (no cgroups-rs: it would pull a second nix
//! and its errors carry no paths); every IO error names the file and the operation.
//!
//! This module owns roboku's subtree (`roboku` by default) and nothing outside it: it never
//! moves the agent itself (except [`delegate::enter_supervisor_leaf`], once at startup inside a
//! delegated systemd unit when no holder unit is there, and [`holder::hold`] in the holder
//! process), and never writes limits above its own subtree (v2 only enables controllers in
//! `cgroup.subtree_control` of the subtree's parent, which it needs).
//!
//! `kill_all` blocks for up to [`KILL_TIMEOUT`]; call it from a blocking context.

pub mod delegate;
pub mod favor;
mod files;
pub mod holder;
pub mod host;
mod limits;
mod none;
mod v1;
mod v2;

pub mod fake;

#[cfg(test)]
mod real_tests;

pub use none::NoCgroups;
pub use v1::V1;
pub use v2::{v2_subtree_root, V2};

use roboku_wire::{CgroupStatus, Limits};
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

/// How long `kill_all` keeps killing and waiting for a cgroup to empty.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Io(#[from] crate::util::PathError),
    #[error("invalid limit: {0}")]
    Invalid(String),
    /// A cgroupfs file held something the driver cannot parse.
    #[error("unexpected contents in {}: {text:?}", path.display())]
    Malformed { path: PathBuf, text: String },
    /// `kill_all` gave up: these processes were still in the cgroup at the deadline.
    #[error("{} still holds processes {pids:?} after SIGKILL", path.display())]
    NotEmpty { path: PathBuf, pids: Vec<i32> },
    /// The `none` driver has no cgroup to ask (stats, pids).
    #[error("cgroups are not in use: {0}")]
    Disabled(String),
}

/// Resource use of one cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    /// Working set: usage minus inactive page cache (what the kernel would not reclaim first).
    pub memory_bytes: u64,
    /// Total CPU time used, nanoseconds.
    pub cpu_usage_ns: u64,
    pub pids: u64,
    /// OOM kills inside this cgroup since it was created.
    pub oom_kills: u64,
    /// The raw memory charge, page cache included (`memory.usage_in_bytes`, `memory.current`):
    /// see [`CgroupDriver::memory_charge`].
    pub charge: u64,
}

/// A cgroup is named by a relative path under roboku's subtree: `demo/web.1`.
pub trait CgroupDriver: Send + Sync + 'static {
    /// What `roboku status` shows.
    fn status(&self) -> CgroupStatus;
    /// Creates the cgroup (and parents) if missing and applies `limits`.
    fn create(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError>;
    /// Applies `limits` to an existing cgroup (None = unlimited).
    fn update(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError>;
    /// Opens the files a child writes `0` to (between fork and exec) to join the cgroup.
    /// They are write-only and close-on-exec.
    fn join_files(&self, rel: &str) -> Result<Vec<File>, CgroupError>;
    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError>;
    /// Total CPU time used, nanoseconds: one file read, so a sampler can tell a dyno that did
    /// nothing since its last reading (and skip the rest of [`CgroupDriver::stats`]).
    fn cpu_usage_ns(&self, rel: &str) -> Result<u64, CgroupError> {
        self.stats(rel).map(|s| s.cpu_usage_ns)
    }
    /// The raw memory charge ([`CgroupStats::charge`]): one small file, so a sampler can tell
    /// that an idle dyno's memory did not move (its page cache was not reclaimed) without
    /// parsing `memory.stat`.
    fn memory_charge(&self, rel: &str) -> Result<u64, CgroupError> {
        self.stats(rel).map(|s| s.charge)
    }

    /// OOM kills counted in the cgroup: one file read, for an exit (the rest of
    /// [`CgroupDriver::stats`] is not needed then).
    fn oom_kills(&self, rel: &str) -> Result<u64, CgroupError> {
        self.stats(rel).map(|s| s.oom_kills)
    }
    /// Pids of every process in the cgroup.
    fn pids(&self, rel: &str) -> Result<Vec<i32>, CgroupError>;
    /// SIGKILLs every process in the cgroup (v2: `cgroup.kill` where the kernel has it) and
    /// waits (bounded by [`KILL_TIMEOUT`]) until it is empty. A missing cgroup is fine.
    fn kill_all(&self, rel: &str) -> Result<(), CgroupError>;
    /// Removes the cgroup once it is empty (missing is fine).
    fn remove(&self, rel: &str) -> Result<(), CgroupError>;
    /// Names of the cgroups directly under `rel` (`""`: roboku's subtree root), to sweep what
    /// an earlier robokud left. Drivers without a hierarchy have none.
    fn children(&self, _rel: &str) -> Vec<String> {
        Vec::new()
    }
}

/// Picks the driver for this host: v2 if the mount is a unified hierarchy with the controllers,
/// else v1 if the memory and pids hierarchies are mounted and roboku's subtree can be created
/// in them, else `none` with a reason. Never fails: a host without cgroups still runs dynos.
///
/// `holder`: on v2, the delegated cgroup of the holder unit (see [`holder::find`]): roboku's
/// subtree is then `<holder>/<name>`; without it, beside the agent's own cgroup.
pub fn detect(
    mount: PathBuf,
    name: &str,
    enabled: bool,
    holder: Option<&std::path::Path>,
) -> Box<dyn CgroupDriver> {
    match pick(mount, name, enabled, holder) {
        Ok(driver) => driver,
        Err(reason) => Box::new(NoCgroups::new(reason)),
    }
}

fn pick(
    mount: PathBuf,
    name: &str,
    enabled: bool,
    holder: Option<&std::path::Path>,
) -> Result<Box<dyn CgroupDriver>, String> {
    if !enabled {
        return Err("cgroups turned off in settings".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("robokud is not running as root: limits are stored but not enforced".into());
    }
    files::check_rel(name).map_err(|e| format!("bad cgroup name {name:?}: {e}"))?;
    if name.contains('/') {
        return Err(format!(
            "bad cgroup name {name:?}: must be a single path component"
        ));
    }
    if mount.join("cgroup.controllers").exists() {
        let root = match holder {
            Some(dir) => dir.join(name),
            None => {
                let proc_self = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                v2_subtree_root(&mount, name, &proc_self)
            }
        };
        let driver = V2::open(&mount, root).map_err(|e| format!("cgroup v2: {e}"))?;
        return Ok(Box::new(driver));
    }
    if let Some(driver) = V1::find(&mount, name) {
        driver
            .create_root()
            .map_err(|e| format!("cgroup v1: {e}"))?;
        return Ok(Box::new(driver));
    }
    Err(format!(
        "no usable cgroups under {}: need cgroup v2 with the memory and pids controllers, or \
         v1 memory and pids hierarchies",
        mount.display()
    ))
}

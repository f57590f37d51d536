//! cgroups: one small trait ([`CgroupDriver`]), a v1 and a v2 implementation over cgroupfs, a
//! `none` driver for hosts where cgroups cannot be used, and a fake for tests.
//! The mount point is passed in, so tests can point a driver at a temp dir.
//! (Stub: the contract below is fixed; the implementation lands with its tests.)

use roboku_wire::{CgroupStatus, Limits};
use std::fs::File;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Io(#[from] crate::util::PathError),
    #[error("invalid limit: {0}")]
    Invalid(String),
}

/// Resource use of one cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub memory_bytes: u64,
    /// Total CPU time used, nanoseconds.
    pub cpu_usage_ns: u64,
    pub pids: u64,
    /// OOM kills inside this cgroup since it was created.
    pub oom_kills: u64,
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
    fn join_files(&self, rel: &str) -> Result<Vec<File>, CgroupError>;
    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError>;
    /// Pids of every process in the cgroup.
    fn pids(&self, rel: &str) -> Result<Vec<i32>, CgroupError>;
    /// SIGKILLs every process in the cgroup (v2: `cgroup.kill` where the kernel has it).
    fn kill_all(&self, rel: &str) -> Result<(), CgroupError>;
    /// Removes the cgroup once it is empty (missing is fine).
    fn remove(&self, rel: &str) -> Result<(), CgroupError>;
}

/// Picks the driver for this host: v2 if the mount is a unified hierarchy with the controllers,
/// else v1 if the memory/cpu/pids hierarchies are mounted and writable, else `none` with a reason.
pub fn detect(mount: PathBuf, name: &str, enabled: bool) -> Box<dyn CgroupDriver> {
    let _ = (mount, name, enabled);
    todo!("cgroup detect")
}

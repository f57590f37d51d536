//! cgroup v2: one unified tree. Under the packaged units roboku's subtree is
//! `<holder unit cgroup>/<name>` (`/sys/fs/cgroup/system.slice/roboku-dynos.service/roboku`, see
//! [`super::holder`]): the caller passes that root. Otherwise ([`v2_subtree_root`]) it is
//! `<mount>/<name>`, or, when the agent runs in a leaf of a delegated cgroup, `<mount><parent of
//! the agent's cgroup>/<name>`: dynos go beside the daemon, inside the delegation.
//!
//! Controllers must be enabled top-down: each level's `cgroup.subtree_control` from the subtree
//! root's parent to the dyno's parent gets `+cpuset +cpu +memory +pids` (those it has).

use super::files::{self, check_rel, levels};
use super::limits::{check, Checked, CPU_PERIOD_US};
use super::{CgroupDriver, CgroupError, CgroupStats, KILL_TIMEOUT};
use roboku_wire::{CgroupStatus, Limits};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Controllers roboku enables for its subtree, in the order the kernel lists them.
const WANTED: [&str; 4] = ["cpuset", "cpu", "memory", "pids"];
/// Required for limits to mean anything.
const REQUIRED: [&str; 2] = ["memory", "pids"];

#[derive(Debug, Clone)]
pub struct V2 {
    /// roboku's subtree root, e.g. `/sys/fs/cgroup/roboku`.
    root: PathBuf,
    kill_timeout: Duration,
}

/// Where roboku's subtree lives, given the text of `/proc/self/cgroup`: beside the agent when it
/// runs in a delegated (non-root) cgroup, else directly under the mount.
pub fn v2_subtree_root(mount: &Path, name: &str, proc_self_cgroup: &str) -> PathBuf {
    let own = proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim);
    match own {
        Some(path) if path != "/" && path.starts_with('/') => {
            let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
            let rel = parent.strip_prefix("/").unwrap_or(parent);
            mount.join(rel).join(name)
        }
        _ => mount.join(name),
    }
}

impl V2 {
    /// A driver rooted at `root` (the subtree root itself, see [`v2_subtree_root`]).
    pub fn new(root: PathBuf) -> Self {
        V2 {
            root,
            kill_timeout: KILL_TIMEOUT,
        }
    }

    /// Checks the mount's controllers and creates the subtree root `root` (see
    /// [`v2_subtree_root`]); the error says why v2 is unusable.
    pub fn open(mount: &Path, root: PathBuf) -> Result<Self, CgroupError> {
        let have = files::read(&mount.join("cgroup.controllers"))?;
        let missing: Vec<&str> = REQUIRED
            .into_iter()
            .filter(|c| !have.split_whitespace().any(|h| h == *c))
            .collect();
        if !missing.is_empty() {
            return Err(CgroupError::Invalid(format!(
                "{} lacks the {} controller(s)",
                mount.display(),
                missing.join(" and ")
            )));
        }
        let driver = V2::new(root);
        files::mkdir(&driver.root)?;
        Ok(driver)
    }

    /// For tests: how long `kill_all` waits for the cgroup to empty.
    pub fn with_kill_timeout(mut self, timeout: Duration) -> Self {
        self.kill_timeout = timeout;
        self
    }

    fn dir(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Adds whichever of [`WANTED`] this level has but has not yet enabled for its children.
    /// One write: the kernel applies the list all or nothing.
    fn enable_controllers(level: &Path) -> Result<(), CgroupError> {
        let have = files::read_optional(&level.join("cgroup.controllers"))?.unwrap_or_default();
        let on = files::read_optional(&level.join("cgroup.subtree_control"))?.unwrap_or_default();
        let add: Vec<String> = WANTED
            .into_iter()
            .filter(|c| have.split_whitespace().any(|h| h == *c))
            .filter(|c| !on.split_whitespace().any(|h| h == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if add.is_empty() {
            return Ok(());
        }
        Ok(files::write(
            &level.join("cgroup.subtree_control"),
            &add.join(" "),
        )?)
    }

    fn apply(&self, rel: &str, limits: &Checked) -> Result<(), CgroupError> {
        let dir = self.dir(rel);
        let bytes = |v: Option<u64>| v.map_or_else(|| "max".to_string(), |b| b.to_string());
        // `set` skips resetting files of controllers that are absent; setting one is an error.
        files::set(
            &dir.join("memory.max"),
            &bytes(limits.memory_max),
            limits.memory_max.is_none(),
        )?;
        // No swap escape: a dyno with a memory limit gets no swap (file absent without swap).
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            files::write(
                &swap,
                if limits.memory_max.is_some() {
                    "0"
                } else {
                    "max"
                },
            )?;
        }
        files::set(
            &dir.join("memory.high"),
            &bytes(limits.memory_high),
            limits.memory_high.is_none(),
        )?;
        let quota = limits
            .cpu_quota_us
            .map_or_else(|| "max".to_string(), |q| q.to_string());
        files::set(
            &dir.join("cpu.max"),
            &format!("{quota} {CPU_PERIOD_US}"),
            limits.cpu_quota_us.is_none(),
        )?;
        files::set(
            &dir.join("pids.max"),
            &bytes(limits.pids),
            limits.pids.is_none(),
        )?;
        // Empty = inherit the parent's CPUs.
        let cpus = limits.cpuset.as_deref().unwrap_or("");
        files::set(&dir.join("cpuset.cpus"), cpus, limits.cpuset.is_none())?;
        Ok(())
    }
}

impl CgroupDriver for V2 {
    fn status(&self) -> CgroupStatus {
        CgroupStatus {
            mode: "v2".into(),
            root: self.root.display().to_string(),
            enforced: true,
            reason: None,
            joins: None,
        }
    }

    fn create(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        check_rel(rel)?;
        let limits = check(limits)?;
        let levels = levels(&self.root, rel);
        for dir in &levels {
            files::mkdir(dir)?;
        }
        // The subtree root's parent too: nobody else enables controllers for a delegated root.
        let parents = self
            .root
            .parent()
            .into_iter()
            .chain(levels.iter().map(PathBuf::as_path));
        for level in parents.take(levels.len()) {
            Self::enable_controllers(level)?;
        }
        self.apply(rel, &limits)
    }

    fn update(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        check_rel(rel)?;
        self.apply(rel, &check(limits)?)
    }

    fn join_files(&self, rel: &str) -> Result<Vec<File>, CgroupError> {
        check_rel(rel)?;
        Ok(vec![files::open_join(&self.dir(rel).join("cgroup.procs"))?])
    }

    /// memory = memory.current minus inactive_file (the working set); cpu from cpu.stat
    /// usage_usec; oom_kills from memory.events.
    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError> {
        check_rel(rel)?;
        let dir = self.dir(rel);
        let current = files::read_u64(&dir.join("memory.current"))?;
        let inactive = files::read_keyed(&dir.join("memory.stat"), "inactive_file")?;
        let usage_usec = files::read_keyed(&dir.join("cpu.stat"), "usage_usec")?;
        Ok(CgroupStats {
            memory_bytes: current.saturating_sub(inactive),
            cpu_usage_ns: usage_usec.saturating_mul(1000),
            pids: files::read_u64(&dir.join("pids.current"))?,
            oom_kills: files::read_keyed(&dir.join("memory.events"), "oom_kill")?,
            charge: current,
        })
    }

    fn memory_charge(&self, rel: &str) -> Result<u64, CgroupError> {
        check_rel(rel)?;
        files::read_u64(&self.dir(rel).join("memory.current"))
    }

    fn cpu_usage_ns(&self, rel: &str) -> Result<u64, CgroupError> {
        check_rel(rel)?;
        let usage_usec = files::read_keyed(&self.dir(rel).join("cpu.stat"), "usage_usec")?;
        Ok(usage_usec.saturating_mul(1000))
    }

    fn oom_kills(&self, rel: &str) -> Result<u64, CgroupError> {
        check_rel(rel)?;
        files::read_keyed(&self.dir(rel).join("memory.events"), "oom_kill")
    }

    fn pids(&self, rel: &str) -> Result<Vec<i32>, CgroupError> {
        check_rel(rel)?;
        files::read_pids(&self.dir(rel).join("cgroup.procs"))
    }

    /// `cgroup.kill` (Linux 5.14+) kills the whole subtree atomically, forks included; older
    /// kernels get the kill loop. Either way, returns once `cgroup.procs` is empty.
    fn kill_all(&self, rel: &str) -> Result<(), CgroupError> {
        check_rel(rel)?;
        let dir = self.dir(rel);
        let procs = dir.join("cgroup.procs");
        let kill = dir.join("cgroup.kill");
        if kill.exists() {
            files::write(&kill, "1")?;
            files::wait_empty(&procs, self.kill_timeout)
        } else {
            files::kill_until_empty(&[procs], self.kill_timeout)
        }
    }

    fn remove(&self, rel: &str) -> Result<(), CgroupError> {
        check_rel(rel)?;
        Ok(files::rmdir(&self.dir(rel))?)
    }

    fn children(&self, rel: &str) -> Vec<String> {
        if !rel.is_empty() && check_rel(rel).is_err() {
            return Vec::new();
        }
        files::child_dirs(&self.dir(rel))
    }
}

#[cfg(test)]
#[path = "v2_tests.rs"]
mod tests;

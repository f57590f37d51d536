//! cgroup v1: one directory per hierarchy (`<mount>/memory/roboku/demo/web.1`,
//! `<mount>/pids/roboku/...`). memory and pids are required; cpu, cpuacct (separate or joined
//! as `cpu,cpuacct`), cpuset and freezer are used when mounted.
//!
//! A dyno joins only the hierarchies it needs: memory, pids and cpuacct always (limits, fork-bomb
//! guard, CPU accounting), cpu only with a CPU quota, cpuset only with a CPU list. Every join is a
//! cgroup migration, and on v1 a migration can wait for an RCU grace period: six joins per start
//! made a dyno start cost 6-9 ms here, three cost half that. A later `ps:resize` that adds a
//! cpu or cpuset limit creates that group and moves the dyno's processes into it.
//!
//! v1 quirks handled here: a new cpuset group starts with empty `cpus`/`mems` (nothing can join
//! it until they are copied from the parent), and `memsw` (memory+swap) must stay >= the memory
//! limit at every step, so the order of the two writes depends on the direction of the change.

use super::files::{self, check_rel, levels};
use super::limits::{check, Checked, CPU_PERIOD_US};
use super::{CgroupDriver, CgroupError, CgroupStats, KILL_TIMEOUT};
use roboku_wire::{CgroupStatus, Limits};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What v1 writes for "no limit" in byte-valued files.
const UNLIMITED: &str = "-1";

#[derive(Debug, Clone)]
pub struct V1 {
    mount: PathBuf,
    name: String,
    memory: PathBuf,
    pids: PathBuf,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    cpuset: Option<PathBuf>,
    freezer: Option<PathBuf>,
    /// Every distinct hierarchy root above, once (a joined `cpu,cpuacct` counts once).
    hierarchies: Vec<PathBuf>,
    kill_timeout: Duration,
}

/// The hierarchy root mounting `controller`, found by its directory and a file only a mounted
/// hierarchy root has. Joined mounts (`cpu,cpuacct`) and symlinks to them resolve to one path.
fn hierarchy(mount: &Path, controller: &str, marker: &str) -> Option<PathBuf> {
    let candidates = [controller, "cpu,cpuacct", "cpuacct,cpu"];
    let joinable = matches!(controller, "cpu" | "cpuacct");
    candidates
        .iter()
        .take(if joinable { 3 } else { 1 })
        .map(|dir| mount.join(dir))
        .find(|dir| dir.join(marker).exists())
        .map(|dir| dir.canonicalize().unwrap_or(dir))
}

/// Whether memsw must be written before the memory limit: when the limit grows (or goes away),
/// raising it first would break memsw >= limit.
fn memsw_first(current_limit: u64, new_limit: Option<u64>) -> bool {
    match new_limit {
        None => true,
        Some(b) => b >= current_limit,
    }
}

impl V1 {
    /// Finds the hierarchies under `mount`; `None` unless memory and pids are both mounted.
    pub fn find(mount: &Path, name: &str) -> Option<V1> {
        let memory = hierarchy(mount, "memory", "memory.limit_in_bytes")?;
        let pids = hierarchy(mount, "pids", "cgroup.procs")?;
        let cpu = hierarchy(mount, "cpu", "cpu.cfs_quota_us");
        let cpuacct = hierarchy(mount, "cpuacct", "cpuacct.usage");
        let cpuset = hierarchy(mount, "cpuset", "cpuset.cpus");
        let freezer = hierarchy(mount, "freezer", "cgroup.procs");
        let mut hierarchies: Vec<PathBuf> = Vec::new();
        for h in [
            Some(&memory),
            Some(&pids),
            cpu.as_ref(),
            cpuacct.as_ref(),
            cpuset.as_ref(),
            freezer.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if !hierarchies.contains(h) {
                hierarchies.push(h.clone());
            }
        }
        Some(V1 {
            mount: mount.into(),
            name: name.into(),
            memory,
            pids,
            cpu,
            cpuacct,
            cpuset,
            freezer,
            hierarchies,
            kill_timeout: KILL_TIMEOUT,
        })
    }

    /// For tests: how long `kill_all` waits for the cgroup to empty.
    pub fn with_kill_timeout(mut self, timeout: Duration) -> Self {
        self.kill_timeout = timeout;
        self
    }

    /// Creates roboku's subtree in every hierarchy (detect's "can we write here" check).
    pub fn create_root(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            self.make_level(h, &h.join(&self.name))?;
        }
        Ok(())
    }

    fn dir(&self, hierarchy: &Path, rel: &str) -> PathBuf {
        hierarchy.join(&self.name).join(rel)
    }

    /// mkdir one level; in the cpuset hierarchy also give it its parent's cpus and mems.
    fn make_level(&self, hierarchy: &Path, dir: &Path) -> Result<(), CgroupError> {
        files::mkdir(dir)?;
        if self.cpuset.as_deref() == Some(hierarchy) {
            let parent = dir.parent().unwrap_or(hierarchy);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let own = files::read_optional(&dir.join(file))?.unwrap_or_default();
                if own.trim().is_empty() {
                    let inherited = files::read(&parent.join(file))?;
                    files::write(&dir.join(file), inherited.trim())?;
                }
            }
        }
        Ok(())
    }

    /// The hierarchies a dyno with `limits` is placed in.
    fn needed(&self, limits: &Checked) -> Vec<PathBuf> {
        let mut out = vec![self.memory.clone()];
        let optional = [
            Some(&self.pids),
            self.cpuacct.as_ref(),
            self.cpu.as_ref().filter(|_| limits.cpu_quota_us.is_some()),
            self.cpuset.as_ref().filter(|_| limits.cpuset.is_some()),
        ];
        for h in optional.into_iter().flatten() {
            if !out.contains(h) {
                out.push(h.clone());
            }
        }
        out
    }

    /// Makes the leaf group in `h`: one mkdir when the parents exist (the common case), else
    /// every level from roboku's root down.
    fn make_leaf(&self, h: &Path, rel: &str) -> Result<bool, CgroupError> {
        // mkdir first (a new instance's leaf never exists): one syscall in the common case.
        let leaf = self.dir(h, rel);
        match std::fs::create_dir(&leaf) {
            Ok(()) => {
                if self.cpuset.as_deref() == Some(h) {
                    self.make_level(h, &leaf)?;
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && leaf.is_dir() => {
                if self.cpuset.as_deref() == Some(h) {
                    for dir in levels(&h.join(&self.name), rel) {
                        self.make_level(h, &dir)?;
                    }
                }
                Ok(false)
            }
            Err(_) => {
                for dir in levels(&h.join(&self.name), rel) {
                    self.make_level(h, &dir)?;
                }
                Ok(true)
            }
        }
    }

    /// On a fresh group only what is set needs writing: everything starts unlimited.
    fn apply_fresh(&self, rel: &str, limits: &Checked) -> Result<(), CgroupError> {
        let mem = self.dir(&self.memory, rel);
        if limits.memory_max.is_some() {
            self.set_memory_max(&mem, limits.memory_max)?;
        }
        if let Some(high) = limits.memory_high {
            files::write(&mem.join("memory.soft_limit_in_bytes"), &high.to_string())?;
        }
        if let (Some(cpu), Some(q)) = (&self.cpu, limits.cpu_quota_us) {
            let dir = self.dir(cpu, rel);
            files::write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            files::write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
        }
        if let Some(n) = limits.pids {
            files::write(&self.dir(&self.pids, rel).join("pids.max"), &n.to_string())?;
        }
        if let (Some(cpuset), Some(cpus)) = (&self.cpuset, &limits.cpuset) {
            files::write(&self.dir(cpuset, rel).join("cpuset.cpus"), cpus)?;
        }
        Ok(())
    }

    /// Refuses limits for controllers that are not mounted, before anything is written.
    fn check_mounted(&self, limits: &Checked) -> Result<(), CgroupError> {
        if self.cpu.is_none() && limits.cpu_quota_us.is_some() {
            return Err(self.missing("cpu"));
        }
        if self.cpuset.is_none() && limits.cpuset.is_some() {
            return Err(self.missing("cpuset"));
        }
        Ok(())
    }

    fn apply(&self, rel: &str, limits: &Checked) -> Result<(), CgroupError> {
        // Refuse before writing anything, so a refused update changes nothing.
        self.check_mounted(limits)?;
        let mem = self.dir(&self.memory, rel);
        self.set_memory_max(&mem, limits.memory_max)?;
        let high = limits.memory_high.map(|b| b.to_string());
        files::write(
            &mem.join("memory.soft_limit_in_bytes"),
            high.as_deref().unwrap_or(UNLIMITED),
        )?;

        if let Some(cpu) = self.cpu.as_ref().filter(|h| self.dir(h, rel).is_dir()) {
            let dir = self.dir(cpu, rel);
            files::write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            let quota = limits.cpu_quota_us.map(|q| q.to_string());
            files::write(
                &dir.join("cpu.cfs_quota_us"),
                quota.as_deref().unwrap_or("-1"),
            )?;
        }

        let pids = limits.pids.map(|n| n.to_string());
        files::write(
            &self.dir(&self.pids, rel).join("pids.max"),
            pids.as_deref().unwrap_or("max"),
        )?;

        if let Some(cpuset) = self.cpuset.as_ref().filter(|h| self.dir(h, rel).is_dir()) {
            let dir = self.dir(cpuset, rel);
            let cpus = match &limits.cpuset {
                Some(cpus) => cpus.clone(),
                // Unlimited = everything the parent may use.
                None => {
                    let parent = dir.parent().unwrap_or(cpuset);
                    files::read(&parent.join("cpuset.cpus"))?.trim().to_string()
                }
            };
            files::write(&dir.join("cpuset.cpus"), &cpus)?;
        }
        Ok(())
    }

    /// memory.limit_in_bytes and, when swap accounting exists, memory.memsw.limit_in_bytes to the
    /// same value so a dyno cannot escape into swap. The kernel keeps memsw >= limit at every
    /// write: lower the limit first when shrinking, raise memsw first when growing.
    fn set_memory_max(&self, dir: &Path, max: Option<u64>) -> Result<(), CgroupError> {
        let limit = dir.join("memory.limit_in_bytes");
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        let value = max.map(|b| b.to_string());
        let value = value.as_deref().unwrap_or(UNLIMITED);
        if !memsw.exists() {
            return Ok(files::write(&limit, value)?);
        }
        if memsw_first(files::read_u64(&limit)?, max) {
            files::write(&memsw, value)?;
            files::write(&limit, value)?;
        } else {
            files::write(&limit, value)?;
            files::write(&memsw, value)?;
        }
        Ok(())
    }

    fn missing(&self, controller: &str) -> CgroupError {
        CgroupError::Invalid(format!(
            "a {controller} limit is set but no {controller} hierarchy is mounted under {}",
            self.mount.display()
        ))
    }

    /// `cgroup.procs` of the hierarchies every dyno process is certainly in.
    fn procs_files(&self, rel: &str) -> Vec<PathBuf> {
        let mut out = vec![self.dir(&self.memory, rel).join("cgroup.procs")];
        if self.pids != self.memory {
            out.push(self.dir(&self.pids, rel).join("cgroup.procs"));
        }
        out
    }

    /// Freezes the cgroup so nothing forks between reading the pid list and killing it, kills
    /// the frozen set, then thaws (frozen tasks only die once thawed). Best effort: without a
    /// freezer, or if freezing does not settle in time, the kill loop alone has to do.
    fn frozen_kill(&self, rel: &str) -> Result<(), CgroupError> {
        let Some(freezer) = &self.freezer else {
            return Ok(());
        };
        let state = self.dir(freezer, rel).join("freezer.state");
        if !state.exists() || files::write(&state, "FROZEN").is_err() {
            return Ok(());
        }
        files::wait_for_value(&state, "FROZEN", Duration::from_millis(500));
        for procs in self.procs_files(rel) {
            files::sigkill_all(&files::read_pids(&procs).unwrap_or_default());
        }
        files::write(&state, "THAWED")?;
        Ok(())
    }
}

impl CgroupDriver for V1 {
    fn status(&self) -> CgroupStatus {
        let names: Vec<String> = self
            .hierarchies
            .iter()
            .filter_map(|h| h.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        CgroupStatus {
            mode: "v1".into(),
            root: format!(
                "{}/{{{}}}/{}",
                self.mount.display(),
                names.join(","),
                self.name
            ),
            enforced: true,
            reason: None,
            joins: None,
        }
    }

    fn create(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        check_rel(rel)?;
        let limits = check(limits)?;
        self.check_mounted(&limits)?;
        for h in self.needed(&limits) {
            self.make_leaf(&h, rel)?;
        }
        self.apply_fresh(rel, &limits)
    }

    fn update(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        check_rel(rel)?;
        let limits = check(limits)?;
        self.check_mounted(&limits)?;
        // A limit on a controller the dyno is not in yet: make that group and move it there.
        let pids =
            files::read_pids(&self.dir(&self.memory, rel).join("cgroup.procs")).unwrap_or_default();
        for h in self.needed(&limits) {
            if self.make_leaf(&h, rel)? {
                let procs = self.dir(&h, rel).join("cgroup.procs");
                for pid in &pids {
                    // A process that exited meanwhile cannot be moved; that is fine.
                    let _ = files::write(&procs, &pid.to_string());
                }
            }
        }
        self.apply(rel, &limits)
    }

    fn join_files(&self, rel: &str) -> Result<Vec<File>, CgroupError> {
        check_rel(rel)?;
        let mut out = Vec::with_capacity(self.hierarchies.len());
        for h in &self.hierarchies {
            let dir = self.dir(h, rel);
            if dir.is_dir() {
                out.push(files::open_join(&dir.join("cgroup.procs"))?);
            }
        }
        Ok(out)
    }

    /// memory = usage_in_bytes minus total_inactive_file (the working set, as `docker stats`).
    /// cpu is 0 when no cpuacct hierarchy is mounted; oom_kills 0 on kernels before 4.13.
    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError> {
        check_rel(rel)?;
        let mem = self.dir(&self.memory, rel);
        let usage = files::read_u64(&mem.join("memory.usage_in_bytes"))?;
        let stat = files::read(&mem.join("memory.stat"))?;
        let inactive = files::keyed(&stat, "total_inactive_file")
            .or_else(|| files::keyed(&stat, "inactive_file"))
            .unwrap_or(0);
        let cpu_usage_ns = match &self.cpuacct {
            Some(h) => files::read_u64(&self.dir(h, rel).join("cpuacct.usage"))?,
            None => 0,
        };
        Ok(CgroupStats {
            memory_bytes: usage.saturating_sub(inactive),
            cpu_usage_ns,
            pids: files::read_u64(&self.dir(&self.pids, rel).join("pids.current"))?,
            oom_kills: files::read_keyed(&mem.join("memory.oom_control"), "oom_kill")?,
            charge: usage,
        })
    }

    fn memory_charge(&self, rel: &str) -> Result<u64, CgroupError> {
        check_rel(rel)?;
        files::read_u64(&self.dir(&self.memory, rel).join("memory.usage_in_bytes"))
    }

    fn cpu_usage_ns(&self, rel: &str) -> Result<u64, CgroupError> {
        check_rel(rel)?;
        match &self.cpuacct {
            Some(h) => files::read_u64(&self.dir(h, rel).join("cpuacct.usage")),
            None => Err(CgroupError::Disabled(
                "no cpuacct hierarchy: CPU time is not counted".into(),
            )),
        }
    }

    fn oom_kills(&self, rel: &str) -> Result<u64, CgroupError> {
        check_rel(rel)?;
        let mem = self.dir(&self.memory, rel);
        files::read_keyed(&mem.join("memory.oom_control"), "oom_kill")
    }

    fn pids(&self, rel: &str) -> Result<Vec<i32>, CgroupError> {
        check_rel(rel)?;
        files::read_pids(&self.dir(&self.memory, rel).join("cgroup.procs"))
    }

    fn kill_all(&self, rel: &str) -> Result<(), CgroupError> {
        check_rel(rel)?;
        let thawed = self.frozen_kill(rel);
        files::kill_until_empty(&self.procs_files(rel), self.kill_timeout)?;
        thawed
    }

    fn remove(&self, rel: &str) -> Result<(), CgroupError> {
        check_rel(rel)?;
        // Try every hierarchy so one busy dir does not leave the others behind.
        let mut first_err = None;
        for (i, h) in self.hierarchies.iter().enumerate() {
            if i == 1 {
                crate::fault::point("cgroup.removing");
            }
            if let Err(e) = files::rmdir(&self.dir(h, rel)) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }

    /// The children in any hierarchy: a removal cut short (a busy `pids` dir, or robokud killed
    /// between two `rmdir`s) can leave a dir in one hierarchy only, and the start sweep must
    /// still see it (it only ever looked at `memory`, so such a dir stayed for good).
    fn children(&self, rel: &str) -> Vec<String> {
        if !rel.is_empty() && check_rel(rel).is_err() {
            return Vec::new();
        }
        let mut all: Vec<String> = self
            .hierarchies
            .iter()
            .flat_map(|h| files::child_dirs(&self.dir(h, rel)))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
#[path = "v1_tests.rs"]
mod tests;

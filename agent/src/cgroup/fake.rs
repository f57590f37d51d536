//! An in-memory [`CgroupDriver`] for tests of the supervisor and engine: records every call,
//! keeps per-cgroup limits, returns stats and pids the test set, and fails on demand.
//! It signals no process: `kill_all` only forgets the pids it was given.

use super::{CgroupDriver, CgroupError, CgroupStats};
use crate::util::PathError;
use roboku_wire::{CgroupStatus, Limits};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which trait method a call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FakeOp {
    Create,
    Update,
    JoinFiles,
    Stats,
    CpuUsage,
    MemoryCharge,
    Pids,
    KillAll,
    Remove,
}

/// One recorded call: the method, the cgroup, and the limits for create/update.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeCall {
    pub op: FakeOp,
    pub rel: String,
    pub limits: Option<Limits>,
}

#[derive(Default)]
struct State {
    calls: Vec<FakeCall>,
    groups: BTreeMap<String, Limits>,
    stats: BTreeMap<String, CgroupStats>,
    pids: BTreeMap<String, Vec<i32>>,
    fail_next: BTreeMap<FakeOp, String>,
}

/// Clones share state: hand one to the code under test, keep one to inspect.
#[derive(Clone, Default)]
pub struct FakeCgroups {
    state: Arc<Mutex<State>>,
}

fn not_found(rel: &str) -> CgroupError {
    CgroupError::Io(PathError {
        op: "open",
        path: PathBuf::from("fake-cgroup").join(rel),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

impl FakeCgroups {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the call and returns the injected failure, if one was queued for `op`.
    fn record(
        &self,
        op: FakeOp,
        rel: &str,
        limits: Option<&Limits>,
    ) -> Result<MutexGuard<'_, State>, CgroupError> {
        let mut st = self.lock();
        st.calls.push(FakeCall {
            op,
            rel: rel.into(),
            limits: limits.cloned(),
        });
        match st.fail_next.remove(&op) {
            Some(msg) => Err(CgroupError::Invalid(msg)),
            None => Ok(st),
        }
    }

    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// Calls of one kind, as the cgroups they were about.
    pub fn calls_of(&self, op: FakeOp) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.op == op)
            .map(|c| c.rel.clone())
            .collect()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.lock().groups.contains_key(rel)
    }

    /// The limits last applied to an existing cgroup.
    pub fn limits(&self, rel: &str) -> Option<Limits> {
        self.lock().groups.get(rel).cloned()
    }

    pub fn set_stats(&self, rel: &str, stats: CgroupStats) {
        self.lock().stats.insert(rel.into(), stats);
    }

    pub fn set_pids(&self, rel: &str, pids: Vec<i32>) {
        self.lock().pids.insert(rel.into(), pids);
    }

    /// The next call of `op` fails with `CgroupError::Invalid(message)` (and is still recorded).
    pub fn fail_next(&self, op: FakeOp, message: &str) {
        self.lock().fail_next.insert(op, message.into());
    }
}

impl CgroupDriver for FakeCgroups {
    fn status(&self) -> CgroupStatus {
        CgroupStatus {
            mode: "fake".into(),
            root: "fake-cgroup".into(),
            enforced: true,
            reason: None,
            joins: None,
        }
    }

    fn create(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        let mut st = self.record(FakeOp::Create, rel, Some(limits))?;
        st.groups.insert(rel.into(), limits.clone());
        Ok(())
    }

    fn update(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        let mut st = self.record(FakeOp::Update, rel, Some(limits))?;
        match st.groups.get_mut(rel) {
            Some(current) => *current = limits.clone(),
            None => return Err(not_found(rel)),
        }
        Ok(())
    }

    /// `/dev/null`, so a real child can write `0` into it between fork and exec.
    fn join_files(&self, rel: &str) -> Result<Vec<File>, CgroupError> {
        let st = self.record(FakeOp::JoinFiles, rel, None)?;
        if !st.groups.contains_key(rel) {
            return Err(not_found(rel));
        }
        let path = PathBuf::from("/dev/null");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| PathError {
                op: "open",
                path,
                source,
            })?;
        Ok(vec![file])
    }

    fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError> {
        let st = self.record(FakeOp::Stats, rel, None)?;
        if !st.groups.contains_key(rel) {
            return Err(not_found(rel));
        }
        let mut stats = st.stats.get(rel).cloned().unwrap_or_default();
        if !st.stats.contains_key(rel) {
            stats.pids = st.pids.get(rel).map_or(0, |p| p.len() as u64);
        }
        Ok(stats)
    }

    fn cpu_usage_ns(&self, rel: &str) -> Result<u64, CgroupError> {
        let st = self.record(FakeOp::CpuUsage, rel, None)?;
        if !st.groups.contains_key(rel) {
            return Err(not_found(rel));
        }
        Ok(st.stats.get(rel).map_or(0, |s| s.cpu_usage_ns))
    }

    fn memory_charge(&self, rel: &str) -> Result<u64, CgroupError> {
        let st = self.record(FakeOp::MemoryCharge, rel, None)?;
        if !st.groups.contains_key(rel) {
            return Err(not_found(rel));
        }
        Ok(st.stats.get(rel).map_or(0, |s| s.charge))
    }

    fn pids(&self, rel: &str) -> Result<Vec<i32>, CgroupError> {
        let st = self.record(FakeOp::Pids, rel, None)?;
        Ok(st.pids.get(rel).cloned().unwrap_or_default())
    }

    fn kill_all(&self, rel: &str) -> Result<(), CgroupError> {
        let mut st = self.record(FakeOp::KillAll, rel, None)?;
        st.pids.remove(rel);
        Ok(())
    }

    /// Like rmdir: fine when missing, EBUSY while pids are recorded.
    fn remove(&self, rel: &str) -> Result<(), CgroupError> {
        let mut st = self.record(FakeOp::Remove, rel, None)?;
        if st.pids.get(rel).is_some_and(|p| !p.is_empty()) {
            return Err(CgroupError::Io(PathError {
                op: "remove cgroup dir",
                path: PathBuf::from("fake-cgroup").join(rel),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            }));
        }
        st.groups.remove(rel);
        st.stats.remove(rel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_records_calls_and_behaves_like_a_cgroup() {
        let fake = FakeCgroups::new();
        let driver: Box<dyn CgroupDriver> = Box::new(fake.clone());
        let limits = Limits {
            pids: Some(10),
            ..Limits::default()
        };
        assert!(
            driver.update("demo/web.1", &limits).is_err(),
            "update needs an existing cgroup"
        );
        driver.create("demo/web.1", &limits).unwrap();
        assert_eq!(fake.limits("demo/web.1"), Some(limits.clone()));
        assert_eq!(driver.join_files("demo/web.1").unwrap().len(), 1);

        fake.set_pids("demo/web.1", vec![42]);
        assert_eq!(driver.pids("demo/web.1").unwrap(), vec![42]);
        assert_eq!(driver.stats("demo/web.1").unwrap().pids, 1);
        assert!(
            driver.remove("demo/web.1").is_err(),
            "busy while pids remain"
        );
        driver.kill_all("demo/web.1").unwrap();
        driver.remove("demo/web.1").unwrap();
        assert!(!fake.exists("demo/web.1"));

        fake.fail_next(FakeOp::Create, "disk on fire");
        let err = driver
            .create("demo/web.2", &limits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("disk on fire"), "{err}");
        driver.create("demo/web.2", &limits).unwrap();
        assert_eq!(
            fake.calls_of(FakeOp::Create),
            vec!["demo/web.1", "demo/web.2", "demo/web.2"]
        );
        assert_eq!(fake.calls().len(), 10);
    }
}

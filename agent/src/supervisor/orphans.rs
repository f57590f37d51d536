//! Finding again the processes an earlier robokud started, by the tag every dyno and release
//! command carries in its environment (`ROBOKU_AGENT=<data dir>`, `ROBOKU_INSTANCE=<app>/<dyno>@<n>`),
//! which whatever they fork inherits. At start each one is either re-adopted (its instance is in
//! the store) or killed, so a dyno forked just before a crash cannot outlive it unseen (and hold
//! its `$PORT` against the tracked replacement).

use super::procfs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Names the agent (its data dir) that started the process.
pub const AGENT_VAR: &str = "ROBOKU_AGENT";
/// Names the instance (`demo/web.1@17`, the same as its cgroup).
pub const INSTANCE_VAR: &str = "ROBOKU_INSTANCE";

/// A tagged process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub pid: i32,
    pub session: Option<i32>,
    pub start_time: Option<u64>,
    pub instance: String,
}

impl Tagged {
    /// The process robokud forked itself (it called setsid, so it leads its session).
    pub fn is_leader(&self) -> bool {
        self.session == Some(self.pid)
    }
}

/// The data dir as tags carry it (absolute, so two agents never mistake each other's processes).
pub fn agent_id(data_dir: &Path) -> PathBuf {
    std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf())
}

/// Adds the tag of `instance` to a dyno's environment.
pub fn tag(env: &mut BTreeMap<String, String>, data_dir: &Path, instance: &str) {
    env.insert(AGENT_VAR.into(), agent_id(data_dir).display().to_string());
    env.insert(INSTANCE_VAR.into(), instance.to_string());
}

/// Every live process tagged by the agent of `data_dir`.
pub fn scan(data_dir: &Path) -> Vec<Tagged> {
    let agent = format!("{AGENT_VAR}={}", agent_id(data_dir).display());
    let instance_prefix = format!("{INSTANCE_VAR}=");
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut ours = false;
        let mut instance = None;
        for var in environ.split(|&b| b == 0) {
            if var == agent.as_bytes() {
                ours = true;
            } else if let Some(v) = var.strip_prefix(instance_prefix.as_bytes()) {
                instance = Some(String::from_utf8_lossy(v).into_owned());
            }
        }
        if let (true, Some(instance)) = (ours, instance) {
            found.push(Tagged {
                pid,
                session: procfs::session(pid),
                start_time: procfs::start_time(pid),
                instance,
            });
        }
    }
    found
}

/// SIGKILLs each process and waits (bounded by `timeout`) until every one is gone (or a zombie),
/// so the ports and files it held are free. Returns the pids still alive at the deadline.
pub fn kill_and_wait(procs: &[Tagged], timeout: Duration) -> Vec<i32> {
    for p in procs {
        if procfs::start_time(p.pid) == p.start_time {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = procs
            .iter()
            .filter(|p| procfs::start_time(p.pid) == p.start_time && !procfs::is_zombie(p.pid))
            .map(|p| p.pid)
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn finds_tagged_processes_of_its_own_agent_only_and_kills_them() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let spawn = |data: &Path, instance: &str| {
            let mut env = BTreeMap::new();
            tag(&mut env, data, instance);
            Command::new("sleep").arg("100").envs(env).spawn().unwrap()
        };
        let mut mine = spawn(dir.path(), "demo/web.1@7");
        let mut theirs = spawn(other.path(), "demo/web.1@7");
        let found = scan(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, mine.id() as i32);
        assert_eq!(found[0].instance, "demo/web.1@7");
        assert!(!found[0].is_leader(), "sleep did not call setsid");
        assert!(kill_and_wait(&found, Duration::from_secs(5)).is_empty());
        assert!(mine.wait().is_ok());
        assert_eq!(scan(dir.path()), []);
        assert_eq!(scan(other.path()).len(), 1);
        theirs.kill().unwrap();
        theirs.wait().unwrap();
    }
}

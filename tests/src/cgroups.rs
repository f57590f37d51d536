//! The agent's cgroup v1 subtree as the tests see it: which processes are in it, and tearing it
//! down after a test (the agent should, but a failed test must leave nothing behind either way).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const CONTROLLERS: [&str; 7] = [
    "pids",
    "memory",
    "cpu",
    "cpuacct",
    "cpu,cpuacct",
    "cpuset",
    "freezer",
];

/// `/sys/fs/cgroup/<controller>/<name>` for every mounted controller, each real directory once.
pub fn roots(name: &str) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for c in CONTROLLERS {
        let dir = Path::new("/sys/fs/cgroup").join(c).join(name);
        if let Ok(real) = dir.canonicalize() {
            if seen.insert(real.clone()) {
                out.push(real);
            }
        }
    }
    out
}

/// Every directory under `root`, deepest first.
fn dirs_depth_first(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(dirs_depth_first(&e.path()));
            }
        }
    }
    if root.is_dir() {
        out.push(root.to_path_buf());
    }
    out
}

/// Pids in the pids-controller subtree `/sys/fs/cgroup/pids/<rel>`.
pub fn procs_in(rel: &str) -> Vec<i64> {
    let root = Path::new("/sys/fs/cgroup/pids").join(rel);
    dirs_depth_first(&root)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i64>>()
        })
        .collect()
}

/// Child cgroup directories of `/sys/fs/cgroup/pids/<rel>` whose name starts with `prefix`.
pub fn children(rel: &str, prefix: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup/pids").join(rel);
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

/// SIGKILLs everything in the subtree `name` (in every controller) and removes its directories.
pub fn destroy(name: &str) {
    for _ in 0..50 {
        let mut left = 0;
        for root in roots(name) {
            for dir in dirs_depth_first(&root) {
                if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i64>().ok()) {
                        crate::procs::kill(pid, libc::SIGKILL);
                        left += 1;
                    }
                }
            }
        }
        if left == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for root in roots(name) {
        for dir in dirs_depth_first(&root) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

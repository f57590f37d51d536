//! cgroup v1 helpers for the bench: the peers' own per-child cgroups, counting an app's dyno
//! cgroups, and removing a whole subtree (killing what is still inside) at the end of a run.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const MOUNT: &str = "/sys/fs/cgroup";

/// Every mounted hierarchy root once (`cpu` and `cpuacct` are links to one `cpu,cpuacct`).
fn hierarchy_roots() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let Ok(rd) = fs::read_dir(MOUNT) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(p) = e.path().canonicalize() else {
            continue;
        };
        if p.is_dir() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Dirs under `root` (root included), children before parents.
fn post_order(root: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                post_order(&e.path(), out);
            }
        }
    }
    out.push(root.to_path_buf());
}

fn pids_of(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every process in `<hierarchy>/<name>/**` in every hierarchy and removes the dirs.
pub fn remove_tree(name: &str) {
    let mut dirs = Vec::new();
    for h in hierarchy_roots() {
        let top = h.join(name);
        if top.is_dir() {
            post_order(&top, &mut dirs);
        }
    }
    if dirs.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for dir in &dirs {
        loop {
            for pid in pids_of(dir) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("warning: cannot remove {}: {e}", dir.display());
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// How many dyno cgroups `<name>/<app>/*` exist, over every hierarchy.
pub fn children(name: &str, app: &str) -> usize {
    hierarchy_roots()
        .iter()
        .filter_map(|h| fs::read_dir(h.join(name).join(app)).ok())
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .count()
        })
        .sum()
}

/// A subtree the peer loops put their children in; removed (with anything left in it) on drop.
pub struct PeerTree {
    pub name: String,
}

impl PeerTree {
    pub fn new(name: &str) -> PeerTree {
        remove_tree(name);
        PeerTree { name: name.into() }
    }

    /// `<mount>/<controller>/<name>`, created if needed (with cpuset's cpus/mems filled in).
    pub fn root(&self, controller: &str) -> PathBuf {
        let h = Path::new(MOUNT).join(controller);
        let dir = h.join(&self.name);
        mkdir_level(&h, &dir, controller == "cpuset");
        dir
    }
}

impl Drop for PeerTree {
    fn drop(&mut self) {
        remove_tree(&self.name);
    }
}

/// mkdir one cgroup; a new v1 cpuset group needs its parent's cpus and mems before anyone joins.
pub fn mkdir_level(parent: &Path, dir: &Path, cpuset: bool) {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return,
        Err(e) => panic!("mkdir {}: {e}", dir.display()),
    }
    if cpuset {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let v = fs::read_to_string(parent.join(f)).unwrap_or_default();
            write(&dir.join(f), v.trim());
        }
    }
}

pub fn write(path: &Path, value: &str) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

//! The peers: what starting 100 processes costs without roboku, timed in this same process.
//!
//! - `bare`: `std::process::Command` spawn loop (std picks posix_spawn / clone(CLONE_VFORK)).
//! - `cgroup3`: the same plus, per child, a fresh cgroup in memory, pids and cpu: mkdir, spawn,
//!   write the pid into each `cgroup.procs` from the parent.
//! - `fork_setsid`: `setsid()` in a `pre_exec` hook, as robokud does: std then forks instead of
//!   using posix_spawn (the cost of the fork path alone).
//! - `mirror`: what robokud asks of the kernel per dyno, without its bookkeeping: a fresh cgroup
//!   in every hierarchy robokud uses (memory, pids, cpu, cpuacct, cpuset with cpus/mems copied,
//!   freezer), opened before the spawn and joined between fork and exec in a `pre_exec` hook
//!   with `setsid()`.

use crate::cg::{self, PeerTree};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CMD: &str = "exec sleep 100000";

fn sh() -> Command {
    let mut c = Command::new("/bin/sh");
    c.args(["-c", CMD])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// SIGKILL and reap every child.
pub fn reap(children: Vec<Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

pub fn bare(n: usize) -> Duration {
    let mut children = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        children.push(sh().spawn().expect("spawn sh"));
    }
    let took = t.elapsed();
    reap(children);
    took
}

pub fn cgroup3(n: usize, tree: &PeerTree) -> Duration {
    let roots: Vec<_> = ["memory", "pids", "cpu"]
        .iter()
        .map(|c| tree.root(c))
        .collect();
    let mut children = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let dirs: Vec<_> = roots.iter().map(|r| r.join(format!("c{i}"))).collect();
        for (r, d) in roots.iter().zip(&dirs) {
            cg::mkdir_level(r, d, false);
        }
        let child = sh().spawn().expect("spawn sh");
        let pid = child.id().to_string();
        for d in &dirs {
            cg::write(&d.join("cgroup.procs"), &pid);
        }
        children.push(child);
    }
    let took = t.elapsed();
    reap(children);
    cleanup_children(tree, &["memory", "pids", "cpu"]);
    took
}

/// The hierarchies robokud puts a dyno in (when mounted), each once.
const MIRROR: [&str; 6] = ["memory", "pids", "cpu", "cpuacct", "cpuset", "freezer"];

/// `(controller, <mount>/<controller>/<tree>)` for every mounted hierarchy robokud uses.
pub fn mirror_roots(tree: &PeerTree) -> Vec<(&'static str, PathBuf)> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for c in MIRROR {
        let h = Path::new(cg::MOUNT).join(c);
        let Ok(canon) = h.canonicalize() else {
            continue;
        };
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon);
        out.push((c, tree.root(c)));
    }
    out
}

/// Starts `cmd` the way robokud starts a dyno: a fresh cgroup `<name>` in every hierarchy,
/// opened before the fork and joined with `setsid()` between fork and exec.
pub fn spawn_mirrored(roots: &[(&str, PathBuf)], name: &str, mut cmd: Command) -> Child {
    let mut join: Vec<File> = Vec::with_capacity(roots.len());
    for (c, r) in roots {
        let d = r.join(name);
        cg::mkdir_level(r, &d, *c == "cpuset");
        let path = d.join("cgroup.procs");
        join.push(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
        );
    }
    let fds: Vec<i32> = join.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: only async-signal-safe syscalls on values prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in &fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn sh");
    drop(join);
    child
}

/// Removes `<root>/<name>` in every hierarchy (its processes are reaped).
pub fn remove_mirrored(roots: &[(&str, PathBuf)], name: &str) {
    for (_, r) in roots {
        let _ = std::fs::remove_dir(r.join(name));
    }
}

/// The fork path alone: `setsid()` in `pre_exec` (std then forks instead of posix_spawn).
pub fn fork_setsid(n: usize) -> Duration {
    let mut children = Vec::with_capacity(n);
    let t = Instant::now();
    for _ in 0..n {
        let mut cmd = sh();
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        children.push(cmd.spawn().expect("spawn sh"));
    }
    let took = t.elapsed();
    reap(children);
    took
}

pub fn mirror(n: usize, tree: &PeerTree) -> Duration {
    let roots = mirror_roots(tree);
    let mut children = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        children.push(spawn_mirrored(&roots, &format!("c{i}"), sh()));
    }
    let took = t.elapsed();
    reap(children);
    for i in 0..n {
        remove_mirrored(&roots, &format!("c{i}"));
    }
    took
}

/// Removes the per-child cgroups (the children are reaped, so they are empty).
fn cleanup_children(tree: &PeerTree, controllers: &[&str]) {
    for c in controllers {
        let root = tree.root(c);
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
    }
}

//! Starting one dyno process: `/bin/sh -c` after sourcing `.profile.d/*.sh` (`script.rs`: a
//! simple command is `exec`ed, so no shell stays behind), in its own session
//! and process group, inside its cgroup from its very first instruction (it joins between fork and
//! exec, so nothing it forks can escape), as the dyno user, with stdout and stderr on its spool.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Who a dyno runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

pub struct SpawnSpec {
    /// The Procfile command, run by `/bin/sh -c`.
    pub command: String,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// `None`: run as the agent's own user.
    pub run_as: Option<RunAs>,
    /// The dyno's spool: stdout and stderr.
    pub spool: File,
    /// Its stdin (an attached one-off's pipe or pty); `/dev/null` when `None`.
    pub stdin: Option<File>,
    /// Make stdin (a pty slave) the controlling terminal of the dyno's session.
    pub controlling_tty: bool,
    /// `cgroup.procs` files to write `0` to between fork and exec.
    pub join: Vec<File>,
    pub nice: Option<i32>,
    /// Supplementary groups besides the user's own gid (device access).
    pub groups: Vec<u32>,
    /// `sched_setscheduler` policy and priority (SCHED_FIFO/RR), set before dropping root.
    pub rt: Option<(i32, i32)>,
}

/// A started process: its pid, a pidfd to watch it, and its start time (pid reuse guard).
pub struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub start_time: Option<u64>,
}

pub fn spawn(spec: SpawnSpec) -> std::io::Result<Spawned> {
    let script = super::script::shell_script(&spec.command);
    spawn_script(spec, script)
}

/// [`spawn`] with the script given to `/bin/sh -c` (a spare's waits first, see [`super::spare`]).
pub(super) fn spawn_script(spec: SpawnSpec, script: String) -> std::io::Result<Spawned> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .stdin(spec.stdin.map(Stdio::from).unwrap_or_else(Stdio::null))
        .stdout(Stdio::from(spec.spool.try_clone()?))
        .stderr(Stdio::from(spec.spool));
    let join: Vec<i32> = spec.join.iter().map(|f| f.as_raw_fd()).collect();
    let nice = spec.nice;
    let rt = spec.rt;
    let ctty = spec.controlling_tty;
    let ids = spec.run_as.as_ref().map(|r| (r.uid, r.gid));
    let mut groups: Vec<libc::gid_t> = ids.map(|(_, gid)| vec![gid]).unwrap_or_default();
    for g in &spec.groups {
        if !groups.contains(g) {
            groups.push(*g);
        }
    }
    let agent = std::process::id() as i32;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls
    // (setsid, ioctl TIOCSCTTY, umask, write, setpriority, sched_setscheduler, setgroups,
    // setgid, setuid, getppid) on values prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if ctty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // robokud's own umask (0077) is not the app's: files it makes are as usual.
            libc::umask(0o022);
            for fd in &join {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(n) = nice {
                if libc::setpriority(libc::PRIO_PROCESS, 0, n) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some((policy, prio)) = rt {
                let param = libc::sched_param {
                    sched_priority: prio,
                };
                if libc::sched_setscheduler(0, policy, &param) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some((uid, gid)) = ids {
                if libc::setgroups(groups.len(), groups.as_ptr()) < 0
                    || libc::setgid(gid) < 0
                    || libc::setuid(uid) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // An agent killed between our fork and exec cannot record us, and until exec our
            // environment carries no tag to be found by: do not become a dyno nobody knows.
            if libc::getppid() != agent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(spec.join);
    let pid = child.id() as i32;
    // The child is reaped by the exit watcher through waitpid; std's Child is not needed further.
    drop(child);
    let pidfd = pidfd_open(pid)?;
    Ok(Spawned {
        pid,
        pidfd,
        start_time: super::procfs::start_time(pid),
    })
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the dyno's whole process group (its pid is the group id: it called setsid).
pub fn signal_group(pid: i32, signal: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-pid, signal) == 0 }
}

/// Looks up the user dynos run as. `Err` says why it cannot be used.
pub fn lookup_user(name: &str) -> Result<RunAs, String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(RunAs {
            name: name.to_string(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(format!("no user {name:?} on this host")),
        Err(e) => Err(format!("looking up user {name:?}: {e}")),
    }
}

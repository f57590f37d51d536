//! Starting one dyno process: `/bin/sh -c` after sourcing `.profile.d/*.sh` (`script.rs`: a
//! simple command is `exec`ed, so no shell stays behind; `direct.rs`: plain words with nothing to
//! source skip the shell altogether), in its own session
//! and process group, inside its cgroup from its very first instruction (it joins between fork and
//! exec, so nothing it forks can escape), as the dyno user, with stdout and stderr on its spool.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

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

/// Starts the dyno: its program itself when the shell would only `exec` it ([`super::direct`]),
/// else (or when no path of it execs) `/bin/sh -c` with the prelude.
pub fn spawn(mut spec: SpawnSpec) -> std::io::Result<Spawned> {
    let script = super::script::shell_script(&spec.command);
    let shell: &[&str] = &["/bin/sh", "-c", &script];
    let Some(d) = super::direct::direct(&spec.command, &spec.cwd, &spec.env) else {
        return spawn_program(spec, shell, &[]);
    };
    let argv: Vec<&str> = d.argv.iter().map(String::as_str).collect();
    let first: Vec<(&str, &[&str])> = d.paths.iter().map(|p| (p.as_str(), &argv[..])).collect();
    spec.env.insert("PWD".into(), d.pwd);
    spawn_program(spec, shell, &first)
}

/// [`spawn`] with the script given to `/bin/sh -c` (a spare's waits first, see [`super::spare`]).
pub(super) fn spawn_script(spec: SpawnSpec, script: String) -> std::io::Result<Spawned> {
    spawn_program(spec, &["/bin/sh", "-c", &script], &[])
}

/// Starts `argv` (its first word is the program's path), after trying the programs of
/// `try_first` in order: the child is started by [`super::launch`] (`clone(CLONE_VM |
/// CLONE_VFORK)`: robokud's memory is not copied), joins its cgroups, drops to the dyno user and
/// execs.
fn spawn_program(
    spec: SpawnSpec,
    argv: &[&str],
    try_first: &[(&str, &[&str])],
) -> std::io::Result<Spawned> {
    let stdin: OwnedFd = match spec.stdin {
        Some(f) => f.into(),
        None => File::open("/dev/null")
            .map_err(|e| std::io::Error::new(e.kind(), format!("open /dev/null: {e}")))?
            .into(),
    };
    let stdout: OwnedFd = spec.spool.try_clone()?.into();
    let stderr: OwnedFd = spec.spool.into();
    let ids = spec.run_as.as_ref().map(|r| {
        let mut groups: Vec<libc::gid_t> = vec![r.gid];
        for g in &spec.groups {
            if !groups.contains(g) {
                groups.push(*g);
            }
        }
        (r.uid, r.gid, groups)
    });
    let prepared = super::launch::Prepared::new(super::launch::Plan {
        path: argv[0],
        argv,
        try_first,
        env: &spec.env,
        cwd: &spec.cwd,
        stdin,
        stdout,
        stderr,
        join: spec.join.iter().map(|f| f.as_raw_fd()).collect(),
        ctty: spec.controlling_tty,
        nice: spec.nice,
        rt: spec.rt,
        ids,
    })?;
    let pid = super::launch::launch(&prepared)?;
    drop(prepared);
    drop(spec.join);
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

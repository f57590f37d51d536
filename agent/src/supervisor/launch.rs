//! The fork and exec of a dyno without copying robokud: `clone(CLONE_VM | CLONE_VFORK)`, as
//! `posix_spawn` does it, with the confinement steps `posix_spawn` cannot do (cgroup joins,
//! setgroups/setgid/setuid, nice, real-time policy, controlling terminal) run by the child before
//! `execve`.
//!
//! Why: a `fork` of a multithreaded robokud copies its page tables and then makes every page its
//! threads touch fault (copy on write) until the child execs; at a scale to 500 that is 500 times
//! robokud's whole mapped memory, paid in robokud's CPU. With `CLONE_VM` the child borrows
//! robokud's memory and stack-less state until `execve`, and `CLONE_VFORK` holds the calling
//! thread (only it) until then, so the exec's outcome is known when [`launch`] returns.
//!
//! What the child may do, since it shares robokud's memory while other robokud threads go on:
//! raw system calls on values prepared before the clone ([`Prepared`]), nothing that takes a lock
//! or allocates (no malloc, no stdio, no Rust formatting), and it writes only to its own stack and
//! to the [`Outcome`] the parent reads after. set*id go through raw syscalls: glibc's wrappers
//! would broadcast the change to every thread of robokud's (shared) thread list. Every signal is
//! blocked in the calling thread across the clone, and the child puts caught signals back to
//! their default before unblocking, so no robokud handler ever runs in the child.
//!
//! Order in the child (each step's failure ends it with exit status 127 and the step and errno
//! in the outcome): setsid, umask 022, the cgroup joins (so it is confined before anything else
//! it does), stdin/stdout/stderr, the controlling terminal, chdir, nice, real-time policy,
//! groups/gid/uid, the check that robokud is still its parent, signals, execve (of the programs to
//! try first, in order, then of the program itself: a failed execve changes nothing).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A step of the child, named in the error when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    None = 0,
    Setsid,
    JoinCgroup,
    Stdio,
    ControllingTty,
    Chdir,
    Nice,
    RealTime,
    SetGroups,
    SetGid,
    SetUid,
    ParentGone,
    Exec,
}

impl Step {
    fn from_u8(v: u8) -> Step {
        const ALL: [Step; 13] = [
            Step::None,
            Step::Setsid,
            Step::JoinCgroup,
            Step::Stdio,
            Step::ControllingTty,
            Step::Chdir,
            Step::Nice,
            Step::RealTime,
            Step::SetGroups,
            Step::SetGid,
            Step::SetUid,
            Step::ParentGone,
            Step::Exec,
        ];
        ALL.get(v as usize).copied().unwrap_or(Step::None)
    }

    /// What the step does, for errors ("cannot start `x`: joining its cgroup: ...").
    pub fn describe(self) -> &'static str {
        match self {
            Step::None => "starting",
            Step::Setsid => "setsid",
            Step::JoinCgroup => "joining its cgroup (cgroup.procs)",
            Step::Stdio => "setting stdin/stdout/stderr",
            Step::ControllingTty => "taking its terminal (TIOCSCTTY)",
            Step::Chdir => "changing into its directory",
            Step::Nice => "setting its nice value",
            Step::RealTime => "setting its real-time policy (sched_setscheduler)",
            Step::SetGroups => "setting its groups (setgroups)",
            Step::SetGid => "setting its gid",
            Step::SetUid => "setting its uid",
            Step::ParentGone => "checking that robokud is still its parent",
            Step::Exec => "exec",
        }
    }
}

/// A program and its argv as `execve` takes them.
struct Exec {
    path: CString,
    /// Kept alive for the pointers in `argv_ptrs`.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
}

impl Exec {
    fn new(path: &str, argv: &[&str]) -> std::io::Result<Exec> {
        let path = cstring("the program path", path)?;
        let argv = argv
            .iter()
            .map(|a| cstring("an argument", a))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Exec {
            argv_ptrs: ptrs(&argv),
            path,
            _argv: argv,
        })
    }
}

/// The pointers of `v`'s strings, NULL-terminated.
fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Everything the child needs, made before the clone (so the child allocates nothing).
pub struct Prepared {
    /// Tried in order before `exec`; the first that execs is the child.
    try_first: Vec<Exec>,
    exec: Exec,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: CString,
    /// stdin, stdout, stderr (each >= 3, so no dup2 lands on another one of them).
    stdio: [OwnedFd; 3],
    join: Vec<RawFd>,
    ctty: bool,
    nice: Option<i32>,
    rt: Option<(i32, i32)>,
    /// `(uid, gid, groups)`.
    ids: Option<(u32, u32, Vec<libc::gid_t>)>,
    parent: libc::pid_t,
}

/// What a child is started with. `join` fds stay owned by the caller until [`launch`] returns.
pub struct Plan<'a> {
    pub path: &'a str,
    pub argv: &'a [&'a str],
    /// Programs `(path, argv)` exec'd in order before `path`: the first that execs is the child;
    /// `path` runs only when every one of them failed (and its failure is the one reported).
    pub try_first: &'a [(&'a str, &'a [&'a str])],
    pub env: &'a std::collections::BTreeMap<String, String>,
    pub cwd: &'a std::path::Path,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub join: Vec<RawFd>,
    pub ctty: bool,
    pub nice: Option<i32>,
    pub rt: Option<(i32, i32)>,
    pub ids: Option<(u32, u32, Vec<libc::gid_t>)>,
}

fn cstring(what: &str, s: &str) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} holds a NUL byte"),
        )
    })
}

/// `fd` moved to a number >= 3 (close-on-exec), so that putting the three on 0, 1 and 2 never
/// overwrites one of them.
fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl F_DUPFD_CLOEXEC returns a new fd or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl Prepared {
    /// Turns a plan into C strings and pointer arrays. Pure but for moving fds above 2.
    pub fn new(plan: Plan<'_>) -> std::io::Result<Prepared> {
        let exec = Exec::new(plan.path, plan.argv)?;
        let try_first = plan
            .try_first
            .iter()
            .map(|(path, argv)| Exec::new(path, argv))
            .collect::<std::io::Result<Vec<_>>>()?;
        let envp = plan
            .env
            .iter()
            .map(|(k, v)| {
                if k.is_empty() || k.contains('=') {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("environment variable name {k:?} is empty or holds '='"),
                    ));
                }
                cstring(&format!("environment variable {k}"), &format!("{k}={v}"))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let cwd = cstring("the directory", &plan.cwd.display().to_string())?;
        Ok(Prepared {
            try_first,
            exec,
            envp_ptrs: ptrs(&envp),
            _envp: envp,
            cwd,
            stdio: [
                above_stdio(plan.stdin)?,
                above_stdio(plan.stdout)?,
                above_stdio(plan.stderr)?,
            ],
            join: plan.join,
            ctty: plan.ctty,
            nice: plan.nice,
            rt: plan.rt,
            ids: plan.ids,
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
        })
    }
}

/// Where the child leaves the step that failed and its errno (read after the vfork returns).
#[repr(C)]
struct Outcome {
    step: u8,
    errno: i32,
}

struct Shared<'a> {
    p: &'a Prepared,
    out: *mut Outcome,
}

/// The child's stack: it runs on its own (the parent's thread is held, but its stack frames
/// are live). Syscalls only, so this is plenty.
const STACK: usize = 64 * 1024;

/// Starts the prepared child; returns its pid once it has exec'd. A child that failed a step
/// has been reaped; the error names the step.
pub fn launch(p: &Prepared) -> std::io::Result<i32> {
    let mut out = Outcome { step: 0, errno: 0 };
    let shared = Shared { p, out: &mut out };
    let mut stack = vec![0u8; STACK];
    // The stack grows down on every architecture robokud runs on; keep its top 16-aligned.
    let top = (stack.as_mut_ptr() as usize + STACK) & !15;
    // SAFETY: all-ones sets are plain data; pthread_sigmask only reads `all` and writes `old`.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: `child` only makes raw syscalls on `shared` (alive: CLONE_VFORK holds this
    // thread until the child has exec'd or exited) and writes to `out` and its own stack.
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &shared as *const Shared as *mut libc::c_void,
        )
    };
    let clone_err = std::io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(std::io::Error::new(
            clone_err.kind(),
            format!("clone: {clone_err}"),
        ));
    }
    // SAFETY: the child is done with `out` (it exec'd or exited: CLONE_VFORK).
    let (step, errno) = unsafe {
        (
            std::ptr::read_volatile(&out.step),
            std::ptr::read_volatile(&out.errno),
        )
    };
    if step != 0 {
        // SAFETY: reaps our own child, which has exited.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        let e = std::io::Error::from_raw_os_error(errno);
        return Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", Step::from_u8(step).describe()),
        ));
    }
    Ok(pid)
}

/// The child, between clone and execve. Never returns on success.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Shared`, alive while the parent is held by CLONE_VFORK.
    let shared = unsafe { &*(arg as *const Shared) };
    let step = match unsafe { child_steps(shared.p) } {
        Ok(()) => Step::Exec, // execve returned: it failed
        Err(step) => step,
    };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: `out` points to the parent's Outcome, which nobody else touches meanwhile.
    unsafe {
        std::ptr::write_volatile(&mut (*shared.out).errno, errno);
        std::ptr::write_volatile(&mut (*shared.out).step, step as u8);
        libc::_exit(127)
    }
}

/// The steps; `Ok` only when execve returned (failed). Raw syscalls only (see the module doc).
unsafe fn child_steps(p: &Prepared) -> Result<(), Step> {
    // SAFETY: runs only in the vfork child (see the module doc): raw syscalls on `p`.
    unsafe {
        let ok = |r: libc::c_long, step: Step| if r < 0 { Err(step) } else { Ok(()) };
        ok(libc::setsid() as libc::c_long, Step::Setsid)?;
        // robokud's own umask (0077) is not the app's: files it makes are as usual.
        libc::umask(0o022);
        for fd in &p.join {
            ok(
                libc::write(*fd, b"0".as_ptr().cast(), 1) as libc::c_long,
                Step::JoinCgroup,
            )?;
        }
        for (target, fd) in p.stdio.iter().enumerate() {
            ok(
                libc::dup2(fd.as_raw_fd(), target as i32) as libc::c_long,
                Step::Stdio,
            )?;
        }
        if p.ctty {
            ok(
                libc::ioctl(0, libc::TIOCSCTTY, 0) as libc::c_long,
                Step::ControllingTty,
            )?;
        }
        ok(libc::chdir(p.cwd.as_ptr()) as libc::c_long, Step::Chdir)?;
        if let Some(n) = p.nice {
            ok(
                libc::setpriority(libc::PRIO_PROCESS, 0, n) as libc::c_long,
                Step::Nice,
            )?;
        }
        if let Some((policy, prio)) = p.rt {
            let param = libc::sched_param {
                sched_priority: prio,
            };
            ok(
                libc::sched_setscheduler(0, policy, &param) as libc::c_long,
                Step::RealTime,
            )?;
        }
        if let Some((uid, gid, groups)) = &p.ids {
            ok(
                libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
                Step::SetGroups,
            )?;
            ok(libc::syscall(libc::SYS_setgid, *gid), Step::SetGid)?;
            ok(libc::syscall(libc::SYS_setuid, *uid), Step::SetUid)?;
        }
        // An agent killed between our clone and exec cannot record us, and until exec our
        // environment carries no tag to be found by: do not become a dyno nobody knows.
        if libc::getppid() != p.parent {
            *libc::__errno_location() = libc::ESRCH;
            return Err(Step::ParentGone);
        }
        // Caught signals back to their default (their handlers are robokud's code, in memory we
        // share), SIGPIPE too (Rust ignores it; a dyno expects the default), then unblock all.
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut cur: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut cur) != 0 {
                continue;
            }
            if (cur.sa_sigaction != libc::SIG_DFL && cur.sa_sigaction != libc::SIG_IGN)
                || sig == libc::SIGPIPE
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        for e in p.try_first.iter().chain(std::iter::once(&p.exec)) {
            libc::execve(e.path.as_ptr(), e.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr());
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "launch_tests.rs"]
mod tests;

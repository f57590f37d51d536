//! A spare: a dyno's next instance, started ahead of need, so that a crash is answered by one
//! write to a pipe instead of a cgroup creation, a fork, the cgroup joins and an exec.
//!
//! A spare is spawned exactly as a dyno is ([`spawn`](super::spawn): its own session, joined to
//! its fresh cgroup between fork and exec with the limits already written, as the dyno user,
//! stdout and stderr on the dyno's spool, tagged with its own instance), but its shell first reads
//! one line from a pipe whose other end only robokud holds (close-on-exec, so no other child
//! inherits it):
//! - robokud writes a newline ([`Spare::release`]): the shell puts `/dev/null` on stdin (as for
//!   any dyno) and runs the usual script (`.profile.d`, then the command);
//! - robokud closes its end ([`Spare::discard`], or robokud died, even by `kill -9`): `read`
//!   sees end of file and the shell exits without running anything of the app.
//!
//! So a spare never runs the app's code before it is released, and never outlives its agent.

use super::spawn::{signal_group, spawn_script, SpawnSpec, Spawned};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What the spare's shell runs before the dyno's own script: wait for the go (or exit on EOF).
const WAIT: &str = "read -r _ || exit 0\nexec 0</dev/null\n";

/// The script of a spare of `command`. Pure.
pub fn script(command: &str) -> String {
    format!("{WAIT}{}", super::script::shell_script(command))
}

/// A started spare, held until it is released or discarded.
pub struct Spare {
    pub spawned: Spawned,
    go: File,
}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spare")
            .field("pid", &self.spawned.pid)
            .finish()
    }
}

/// Starts a spare of `spec` (its `stdin` is replaced by the pipe; a spare has no terminal).
pub fn start(mut spec: SpawnSpec) -> std::io::Result<Spare> {
    let (read, write) = pipe()?;
    spec.stdin = Some(File::from(read));
    spec.controlling_tty = false;
    let script = script(&spec.command);
    let spawned = spawn_script(spec, script)?;
    Ok(Spare {
        spawned,
        go: File::from(write),
    })
}

impl Spare {
    pub fn pid(&self) -> i32 {
        self.spawned.pid
    }

    /// Lets the spare run its command: from here on it is the dyno. `Err`: it cannot be
    /// released (it died, or its pipe has no reader any more); the caller discards it.
    pub fn release(mut self) -> Result<Spawned, (Spare, std::io::Error)> {
        match self.go.write_all(b"\n") {
            Ok(()) => Ok(self.spawned),
            Err(e) => Err((self, e)),
        }
    }

    /// Closes robokud's end of the pipe: a waiting spare exits on its own, running nothing.
    /// Returns the process, still to be reaped.
    pub fn abandon(self) -> Spawned {
        drop(self.go);
        self.spawned
    }

    /// Ends the spare and reaps it: closes the pipe, SIGKILLs its process group, waits for it.
    /// Blocks until it is gone (call it from a blocking context); its cgroup is the caller's.
    pub fn discard(self) {
        let spawned = self.abandon();
        signal_group(spawned.pid, libc::SIGKILL);
        // SAFETY: the spare is our own child, not reaped before (only here); kill has no
        // memory-safety preconditions.
        unsafe { libc::kill(spawned.pid, libc::SIGKILL) };
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None);
    }
}

/// A close-on-exec pipe: (read end, write end), the write end non-blocking. The spare runs as
/// the app's uid, so the app's other dynos can stop it and fill its pipe through
/// `/proc/<pid>/fd/0`: a blocking write of the release would then hang the engine. Non-blocking,
/// a full pipe is an error (`EAGAIN`), and the caller discards the spare and starts afresh.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us these fds; nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Only the write end's open file description: the spare's read end stays blocking.
    // SAFETY: fcntl on an fd we own, with flags the kernel defines.
    let flags = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETFL) };
    if flags < 0
        || unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok((read, write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn spec(dir: &Path, command: &str) -> SpawnSpec {
        let spool = File::create(dir.join("spool")).unwrap();
        SpawnSpec {
            command: command.into(),
            cwd: dir.into(),
            env: [("PATH".to_string(), "/usr/bin:/bin".to_string())].into(),
            run_as: None,
            spool,
            stdin: None,
            controlling_tty: false,
            join: Vec::new(),
            nice: None,
            groups: Vec::new(),
            rt: None,
        }
    }

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "{what}: not within 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The kernel function the process sleeps in (`pipe_read` while it waits for the go).
    fn wchan(pid: i32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
    }

    fn exit_code(pid: i32) -> Option<i32> {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn the_script_waits_first_then_runs_the_dyno_script() {
        let s = script("exec sleep 5");
        assert!(s.starts_with(WAIT), "{s}");
        assert!(s.ends_with(&crate::supervisor::script::shell_script("exec sleep 5")));
    }

    #[test]
    fn a_spare_runs_nothing_until_released_then_its_command_with_stdin_on_dev_null() {
        let dir = tempfile::tempdir().unwrap();
        let spare = start(spec(
            dir.path(),
            "readlink /proc/self/fd/0 > ran.tmp; mv ran.tmp ran",
        ))
        .unwrap();
        let pid = spare.pid();
        until("the spare waits on its pipe", || {
            wchan(pid).contains("pipe")
        });
        assert!(!dir.path().join("ran").exists(), "ran before its release");
        let spawned = spare.release().map_err(|(_, e)| e).unwrap();
        assert_eq!(spawned.pid, pid, "the spare itself becomes the dyno");
        until("the released spare ran its command", || {
            dir.path().join("ran").exists()
        });
        assert_eq!(exit_code(pid), Some(0));
        let stdin = std::fs::read_to_string(dir.path().join("ran")).unwrap();
        assert_eq!(stdin.trim(), "/dev/null");
    }

    #[test]
    fn an_abandoned_spare_exits_on_its_own_without_running_anything() {
        let dir = tempfile::tempdir().unwrap();
        let spare = start(spec(dir.path(), "touch ran")).unwrap();
        let pid = spare.pid();
        until("the spare waits on its pipe", || {
            wchan(pid).contains("pipe")
        });
        let spawned = spare.abandon();
        assert_eq!(exit_code(spawned.pid), Some(0), "a clean exit on EOF");
        assert!(!dir.path().join("ran").exists());
    }

    #[test]
    fn a_dead_spare_cannot_be_released_and_discarding_it_reaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let spare = start(spec(dir.path(), "touch ran")).unwrap();
        let pid = spare.pid();
        until("the spare waits on its pipe", || {
            wchan(pid).contains("pipe")
        });
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        until("the killed spare is a zombie", || {
            crate::supervisor::procfs::is_zombie(pid)
        });
        let Err((spare, e)) = spare.release() else {
            panic!("a dead spare has no reader, yet it was released");
        };
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e}");
        spare.discard();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
        assert!(!dir.path().join("ran").exists());
    }

    #[test]
    fn a_stopped_spare_with_a_full_pipe_fails_its_release_at_once_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let spare = start(spec(dir.path(), "touch ran")).unwrap();
        let pid = spare.pid();
        until("the spare waits on its pipe", || {
            wchan(pid).contains("pipe")
        });
        // What a hostile dyno of the same uid can do: stop the spare, fill its pipe through
        // /proc/<pid>/fd/0.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let mut fill = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{pid}/fd/0"))
            .unwrap();
        // SAFETY: fcntl on an fd we own.
        unsafe {
            libc::fcntl(fill.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        }
        let chunk = [b'x'; 4096];
        while fill.write(&chunk).is_ok() {}
        // A blocking write would hang here; this one says the pipe is full.
        let Err((spare, e)) = spare.release() else {
            panic!("released into a full pipe");
        };
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        spare.discard();
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
        assert!(!dir.path().join("ran").exists());
    }
}

//! Running one buildpack phase as a child process: in its own session (so its process group is
//! everything it started), optionally as the build user, with output streamed to the caller
//! line by line while it runs, and a deadline after which the whole group is killed.
//!
//! One `poll` loop watches the output pipes and a pidfd of the child, so nothing ticks and
//! nothing is buffered beyond the current partial line. When the child exits, whatever it left
//! running in its group is killed too: a build leaves no processes behind (as on Heroku, where
//! the build container goes away).

use crate::supervisor::spawn::pidfd_open;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of output kept for error messages.
pub(super) const TAIL_LINES: usize = 20;
/// A line longer than this is passed on in pieces (a progress bar without newlines must not
/// grow a buffer without bound).
const MAX_LINE: usize = 16 * 1024;
/// Captured stdout (detect's name, release's YAML) is cut here.
const MAX_CAPTURE: usize = 1 << 20;
/// After the child exits and its group is killed, how long we still read pipes held open by a
/// process that escaped the group (called setsid itself).
const LINGER: Duration = Duration::from_secs(2);

/// How a phase ended when it ran to completion (successfully or not).
pub(super) struct Finished {
    pub status: ExitStatus,
    /// Stdout when it was captured (otherwise it was streamed with stderr).
    pub stdout: Vec<u8>,
    /// The last lines of streamed output, for error messages.
    pub tail: VecDeque<String>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ExecError {
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
    /// The deadline passed; the process group was killed. Carries the output tail.
    #[error("timed out")]
    TimedOut { tail: VecDeque<String> },
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ExecError {
    move |source| ExecError::Io { op, source }
}

/// Runs `cmd` (program, args, env and cwd already set) to completion or until `deadline`.
/// With `capture_stdout`, stdout is collected and only stderr is streamed; otherwise both go
/// through one pipe, so their lines reach `output` in the order they were written.
pub(super) fn run(
    mut cmd: Command,
    run_as: Option<(u32, u32)>,
    join: &[File],
    capture_stdout: bool,
    deadline: Instant,
    output: &mut dyn FnMut(&str),
) -> Result<Finished, ExecError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (stream_r, stream_w) = io::pipe().map_err(io_err("create pipe"))?;
    let capture = if capture_stdout {
        let (r, w) = io::pipe().map_err(io_err("create pipe"))?;
        cmd.stdout(w);
        Some(r)
    } else {
        cmd.stdout(stream_w.try_clone().map_err(io_err("dup pipe"))?);
        None
    };
    cmd.stdin(Stdio::null()).stderr(stream_w);
    let join: Vec<i32> = join.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls
    // (write, setsid, setgroups, setgid, setuid, prctl) on values copied in before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &join {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // robokud's own umask (0077) is not the app's: files it makes are as usual.
            libc::umask(0o022);
            if let Some((uid, gid)) = run_as {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) < 0
                    || libc::setgid(gid) < 0
                    || libc::setuid(uid) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            // Builds die with the agent (unlike dynos): an agent killed mid-build must not leave
            // a compile running. Set after the uid change, which would clear it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|source| ExecError::Spawn { program, source })?;
    // The Command holds our copies of the pipes' write ends: drop them, or EOF never comes.
    drop(cmd);
    let pid = child.id() as i32;
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            kill_group(pid);
            let _ = child.wait();
            return Err(io_err("pidfd_open")(e));
        }
    };

    let mut pump = Pump {
        streamed: Some(File::from(OwnedFd::from(stream_r))),
        captured: capture.map(|r| File::from(OwnedFd::from(r))),
        line: Vec::new(),
        stdout: Vec::new(),
        tail: VecDeque::new(),
    };
    let result = pump.pump(&pidfd, pid, deadline, output);
    // Whatever happened, nothing of the group may outlive the phase.
    kill_group(pid);
    let status = child.wait().map_err(io_err("wait for child"));
    pump.flush(output);
    match result {
        Ok(()) => Ok(Finished {
            status: status?,
            stdout: pump.stdout,
            tail: pump.tail,
        }),
        Err(PumpEnd::TimedOut) => Err(ExecError::TimedOut { tail: pump.tail }),
        Err(PumpEnd::Io(e)) => Err(e),
    }
}

/// SIGKILL to the process group led by `pid`. The leader is not reaped yet when this is
/// called, so the group id cannot have been reused.
fn kill_group(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions; ESRCH (group gone) is fine.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

enum PumpEnd {
    TimedOut,
    Io(ExecError),
}

struct Pump {
    streamed: Option<File>,
    captured: Option<File>,
    line: Vec<u8>,
    stdout: Vec<u8>,
    tail: VecDeque<String>,
}

impl Pump {
    /// Reads the pipes until the child has exited and the pipes are closed (or have lingered
    /// long enough), or until the deadline.
    fn pump(
        &mut self,
        pidfd: &OwnedFd,
        pid: i32,
        deadline: Instant,
        output: &mut dyn FnMut(&str),
    ) -> Result<(), PumpEnd> {
        let mut exited_at: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            let pipes_open = self.streamed.is_some() || self.captured.is_some();
            if let Some(at) = exited_at {
                if !pipes_open || now >= at + LINGER {
                    return Ok(());
                }
            }
            if now >= deadline {
                return Err(PumpEnd::TimedOut);
            }
            let mut until = deadline;
            if let Some(at) = exited_at {
                until = until.min(at + LINGER);
            }
            let timeout_ms = until
                .saturating_duration_since(now)
                .as_millis()
                .clamp(1, i32::MAX as u128) as i32;

            let mut fds = vec![libc::pollfd {
                fd: if exited_at.is_none() {
                    pidfd.as_raw_fd()
                } else {
                    -1 // poll ignores negative fds
                },
                events: libc::POLLIN,
                revents: 0,
            }];
            for f in [&self.streamed, &self.captured] {
                fds.push(libc::pollfd {
                    fd: f.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            // SAFETY: fds is a valid array of pollfd of the given length for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(PumpEnd::Io(io_err("poll")(e)));
            }
            if fds[0].revents != 0 {
                // The leader exited: kill what it left behind so the pipes close.
                kill_group(pid);
                exited_at = Some(Instant::now());
            }
            if fds[1].revents != 0 {
                self.read_streamed(&mut buf, output).map_err(PumpEnd::Io)?;
            }
            if fds[2].revents != 0 {
                self.read_captured(&mut buf).map_err(PumpEnd::Io)?;
            }
        }
    }

    fn read_streamed(
        &mut self,
        buf: &mut [u8],
        output: &mut dyn FnMut(&str),
    ) -> Result<(), ExecError> {
        let Some(file) = self.streamed.as_mut() else {
            return Ok(());
        };
        let n = read_some(file, buf)?;
        if n == 0 {
            self.streamed = None;
            return Ok(());
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                self.emit(output);
            } else {
                self.line.push(b);
                if self.line.len() >= MAX_LINE {
                    self.emit(output);
                }
            }
        }
        Ok(())
    }

    fn read_captured(&mut self, buf: &mut [u8]) -> Result<(), ExecError> {
        let Some(file) = self.captured.as_mut() else {
            return Ok(());
        };
        let n = read_some(file, buf)?;
        if n == 0 {
            self.captured = None;
        } else {
            let room = MAX_CAPTURE.saturating_sub(self.stdout.len());
            self.stdout.extend_from_slice(&buf[..n.min(room)]);
        }
        Ok(())
    }

    /// Passes on a last line that had no newline.
    fn flush(&mut self, output: &mut dyn FnMut(&str)) {
        if !self.line.is_empty() {
            self.emit(output);
        }
    }

    fn emit(&mut self, output: &mut dyn FnMut(&str)) {
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if text.ends_with('\r') {
            text.pop();
        }
        output(&text);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }
}

fn read_some(file: &mut File, buf: &mut [u8]) -> Result<usize, ExecError> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read build output")(e)),
        }
    }
}

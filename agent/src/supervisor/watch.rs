//! Noticing that a dyno's main process ended, through its pidfd: this works for our own
//! children and for dynos re-adopted after an agent restart (whose exit status we cannot know).

use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

/// How the main process ended, as far as we can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Not our child (re-adopted): it is gone, but its status went to its real parent.
    Unknown,
}

impl Exit {
    pub fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exited with status {c}"),
            Exit::Signal(s) => format!("killed by {}", signal_name(s)),
            Exit::Unknown => "exited (status unknown: started by an earlier robokud)".into(),
        }
    }
}

pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

/// Waits until `pid` has exited; reaps it if it is our child.
pub async fn wait_exit(pid: i32, pidfd: OwnedFd) -> Exit {
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open for as long as it is registered.
    match unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) } {
        Ok(fd) => {
            let _ = fd.readable().await;
        }
        Err(e) => {
            tracing::warn!(pid, error = %e, "cannot watch pidfd; waiting on /proc instead");
            while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    reap(pid)
}

fn reap(pid: i32) -> Exit {
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r == pid {
        if libc::WIFEXITED(status) {
            return Exit::Code(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            return Exit::Signal(libc::WTERMSIG(status));
        }
    }
    Exit::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::spawn::pidfd_open;

    // The children are reaped by wait_exit's waitpid, which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    #[tokio::test]
    async fn sees_exit_code_and_signal() {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let fd = pidfd_open(pid).unwrap();
        assert_eq!(wait_exit(pid, fd).await, Exit::Code(7));

        let child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let fd = pidfd_open(pid).unwrap();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let e = wait_exit(pid, fd).await;
        assert_eq!(e, Exit::Signal(libc::SIGKILL));
        assert_eq!(e.describe(), "killed by SIGKILL");
    }
}

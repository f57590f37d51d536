//! Running the system `git` for buildpack fetches, hardened: a command line and environment
//! that no user or system gitconfig, hook, credential helper, prompt or unexpected transport
//! can reach into, and a wall-clock budget after which git and everything it started
//! (`git-remote-https`, `ssh`, `upload-pack`) is killed.
//!
//! This module only runs git; what to fetch and where is `git_cache`'s business.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Settings every git command gets on its command line (they win over any config file, and
/// there is none: see [`GitCmd::command`]).
const HARDENED: &[&str] = &[
    // No hooks, no fsmonitor daemon, no credential helpers, no automatic gc while we hold the
    // cache's lock.
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "credential.helper=",
    "gc.auto=0",
    "maintenance.auto=false",
    // Every object received is checked (malformed trees, `.git` path tricks, bad modes).
    "transfer.fsckObjects=true",
    // A slow or stalled https transfer ends instead of hanging until the wall clock does.
    "http.lowSpeedLimit=1000",
    "http.lowSpeedTime=30",
    "http.followRedirects=initial",
    "protocol.version=2",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "core.protectNTFS=true",
    "core.protectHFS=true",
    "core.symlinks=true",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
];

/// ssh for `ssh://` packs: never asks anything (no passphrase, no unknown host key prompt),
/// gives up on a dead connection.
const SSH_COMMAND: &str =
    "ssh -o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=2";

/// How one git command ended.
#[derive(Debug)]
pub struct GitOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl GitOutput {
    /// git's own explanation: its `fatal:`/`error:` lines, else its last line.
    pub fn reason(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        // "Could not read from remote repository." follows every transport failure and says
        // nothing the line before it did not.
        let fatal: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("fatal:") || l.starts_with("error:"))
            .filter(|l| !l.ends_with("Could not read from remote repository."))
            .collect();
        let picked = if fatal.is_empty() {
            lines.last().copied().map(|l| vec![l]).unwrap_or_default()
        } else {
            fatal
        };
        match picked.is_empty() {
            true => format!("git ended with {}", self.status),
            false => picked.join("; "),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitCmdError {
    #[error("cannot run git ({0}): install it with `apt-get install git`")]
    Spawn(std::io::Error),
    #[error("git {what} took longer than {}s and was killed", limit.as_secs())]
    TimedOut { what: String, limit: Duration },
    #[error("waiting for git {what}: {source}")]
    Wait {
        what: String,
        source: std::io::Error,
    },
}

/// One repository's git, with its budget and the only transport it may use.
pub struct GitCmd<'a> {
    pub git_dir: &'a Path,
    /// git's transport name (`https`, `ssh`, `file`): the whole protocol allow-list.
    pub protocol: &'a str,
    pub timeout: Duration,
    /// `ROBOKU_BUILD` of the build this fetch is for (see [`crate::build::BUILD_TAG`]).
    pub build_tag: Option<&'a Path>,
}

impl GitCmd<'_> {
    /// `git --git-dir=<dir> <args>` with the hardened environment. `what` names the operation in
    /// errors ("fetch https://...#main").
    pub fn run<S: AsRef<OsStr>>(
        &self,
        what: &str,
        args: &[S],
        env: &[(&str, &Path)],
    ) -> Result<GitOutput, GitCmdError> {
        self.run_in(what, args, env, Path::new("/"))
    }

    /// [`GitCmd::run`] in `cwd` (a work tree's top, for `checkout-index`).
    pub fn run_in<S: AsRef<OsStr>>(
        &self,
        what: &str,
        args: &[S],
        env: &[(&str, &Path)],
        cwd: &Path,
    ) -> Result<GitOutput, GitCmdError> {
        let mut cmd = self.command();
        cmd.args(args).current_dir(cwd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_deadline(cmd, what, self.timeout)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.env_clear()
            .env("PATH", super::BUILD_PATH)
            // No ~/.gitconfig, no /etc/gitconfig, no XDG config: only what we pass.
            .env("HOME", "/nonexistent")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env("GIT_SSH_COMMAND", SSH_COMMAND)
            // Only the URL's own transport: no redirect or submodule onto another one
            // (`ext::`, `fd::`, plain http).
            .env("GIT_ALLOW_PROTOCOL", self.protocol)
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_LFS_SKIP_SMUDGE", "1")
            .env("LC_ALL", "C")
            .arg(format!("--git-dir={}", self.git_dir.display()));
        for setting in HARDENED {
            cmd.arg("-c").arg(setting);
        }
        if let Some(tag) = self.build_tag {
            cmd.env(crate::build::BUILD_TAG, tag);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills ssh and the remote helpers too.
            .process_group(0);
        cmd
    }
}

/// Runs `cmd`, collecting its output, killing its process group at `limit`.
fn run_with_deadline(
    mut cmd: Command,
    what: &str,
    limit: Duration,
) -> Result<GitOutput, GitCmdError> {
    let mut child = cmd.spawn().map_err(GitCmdError::Spawn)?;
    let pgid = child.id() as i32;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let deadline = Instant::now() + limit;
    let wait_err = |source| GitCmdError::Wait {
        what: what.to_string(),
        source,
    };
    let status = loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            break status;
        }
        if Instant::now() >= deadline {
            // SAFETY: killpg has no memory-safety preconditions; the group is git's own.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(GitCmdError::TimedOut {
                what: what.to_string(),
                limit,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Whatever git left running in its group (a helper that outlived it) goes too.
    // SAFETY: as above.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Ok(GitOutput {
        status,
        stdout: join(out),
        stderr: join(err),
    })
}

/// Most output kept of one git command (it is only ever a few lines).
const MAX_OUTPUT: u64 = 64 * 1024;

fn reader<R: Read + Send + 'static>(r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = r.take(MAX_OUTPUT);
        let _ = limited.read_to_end(&mut buf);
        // Drain the rest, so git never blocks on a full pipe.
        let mut rest = limited.into_inner();
        let _ = std::io::copy(&mut rest, &mut std::io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    })
}

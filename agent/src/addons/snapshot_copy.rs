//! The copying half of data snapshots: walks one tree and copies it into a dir given as an open
//! fd, counting every byte against a budget. It runs in `robokud snapshot:copy` (hidden), a child
//! robokud starts as the app's uid and gid with no supplementary groups ([`spawn`]), so the walk
//! through a tree the app controls can reach nothing the app could not reach itself: a symlink
//! swapped in for a dir, a `-wal` link planted beside a database, a fifo or a device leads the
//! child only where the app may go already. Root never opens a path inside the app's data dir;
//! it makes the destination dir (in its own 0700 dirs), hands it over as an fd and, once the
//! child is done, renames it.
//!
//! The child writes through `/proc/self/fd/N/...`, so it needs no path through root's dirs; it
//! makes itself undumpable first (no ptrace by the app's other processes), dies with the thread
//! that started it, and has `RLIMIT_FSIZE` set to the budget as a backstop to the count.

use super::snapshot::Copied;
use crate::util::{IoContext, PathError};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
#[cfg(not(test))]
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The fds the child finds its source (a restore's snapshot) and destination dirs at.
const SRC_FD: i32 = 3;
const DST_FD: i32 = 4;
use super::sqlite_copy::SCRATCH;
/// A database the app keeps locked is copied as a file after this long, not waited for.
const BUSY: std::time::Duration = std::time::Duration::from_millis(200);

/// What to copy, sent to the child as its one argument (JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The tree to copy: a path (the app's data dir), or None for the dir at fd 3.
    pub src: Option<PathBuf>,
    /// Over this many bytes the copy stops: [`Outcome::TooBig`].
    pub max_bytes: u64,
    /// What fits above the disk reserve: a tree measured bigger is [`Outcome::NoRoom`].
    pub room: u64,
    /// Only entries of this uid are copied.
    pub owner: Option<u32>,
    /// SQLite databases are copied through SQLite (`VACUUM INTO`).
    pub consistent: bool,
    /// Only this file in the top of `src`, a SQLite database copied through SQLite or not at
    /// all (`addons:backup`, [`sqlite_copy::one`](super::sqlite_copy::one)).
    #[serde(default)]
    pub only: Option<String>,
}

/// How a copy ended (the child's stdout, JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Copied(Copied),
    /// Measured, or counted while copying (a file grew), over `max_bytes`: nothing kept.
    TooBig {
        bytes: u64,
    },
    /// Measured bigger than the room above the disk reserve: nothing copied.
    NoRoom {
        bytes: u64,
    },
}

/// Runs `job` in a child robokud as `run_as` (uid, gid; None: as robokud), copying into `dst`
/// (an open dir the child's uid may write; its mode becomes the source's). `src` is the open
/// source dir when `job.src` is None.
pub fn spawn(
    job: &Job,
    src: Option<&File>,
    dst: &File,
    dst_path: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<Outcome, PathError> {
    #[cfg(test)]
    {
        let _ = run_as;
        in_process(job, src, dst, dst_path)
    }
    #[cfg(not(test))]
    exec(job, src, dst, dst_path, run_as)
}

/// Unit tests have no robokud binary: the same walk, in the test's process.
#[cfg(test)]
fn in_process(
    job: &Job,
    src: Option<&File>,
    dst: &File,
    dst_path: &Path,
) -> Result<Outcome, PathError> {
    let src = match (&job.src, src) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => fd_path(f.as_raw_fd()),
        (None, None) => return Err(std::io::Error::other("no source")).at("copy", dst_path),
    };
    run(job, &src, &fd_path(dst.as_raw_fd()))
}

#[cfg(not(test))]
fn exec(
    job: &Job,
    src: Option<&File>,
    dst: &File,
    dst_path: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<Outcome, PathError> {
    use std::os::unix::process::CommandExt;
    let fail = |op: &'static str| {
        move |e: std::io::Error| PathError {
            op,
            path: dst_path.to_path_buf(),
            source: e,
        }
    };
    let arg = serde_json::to_string(job).map_err(|e| fail("encode the copy job")(e.into()))?;
    // Copies above every fd the child could clash with; dup2 below puts them at 3 and 4.
    let high = |f: &File| -> std::io::Result<OwnedFd> {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an open fd returns a new fd or -1.
        let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by fcntl and is owned by nobody else.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    };
    let dst_hi = high(dst).map_err(fail("dup"))?;
    let src_hi = src.map(high).transpose().map_err(fail("dup"))?;
    let (d, s) = (dst_hi.as_raw_fd(), src_hi.as_ref().map(AsRawFd::as_raw_fd));
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("snapshot:copy")
        .arg(arg)
        .env_clear()
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some((uid, gid)) = run_as {
        // As root, std drops the supplementary groups (setgroups(0)) before setgid/setuid.
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe syscalls
    // (dup2, prctl) on fds copied in before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(d, DST_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(s) = s {
                if libc::dup2(s, SRC_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the uid change (which clears it): the copy dies with robokud.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .map_err(fail("run robokud snapshot:copy for"))?;
    drop((dst_hi, src_hi));
    let said = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !said.trim().is_empty() {
        tracing::warn!(path = %dst_path.display(), "robokud snapshot:copy: {}", said.trim());
    }
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let e = std::io::Error::other(format!("robokud snapshot:copy {}: {why}", out.status));
        return Err(e).at("copy into", dst_path);
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| fail("read the copy's outcome for")(std::io::Error::other(e)))
}

/// `robokud snapshot:copy JOB` (hidden): the child's whole life. Prints the [`Outcome`].
pub fn child_main(arg: &str) -> Result<String, String> {
    // SAFETY: prctl/setrlimit/signal take plain values; nothing else runs in this process yet.
    unsafe {
        // Not ptrace-able by the app's other processes (the exec made it dumpable again).
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let job: Job = serde_json::from_str(arg).map_err(|e| format!("bad job: {e}"))?;
    if job.only.is_some() {
        // SAFETY: alarm takes a plain value; SIGALRM's default action ends this process.
        unsafe { libc::alarm(super::sqlite_copy::BACKUP_DEADLINE_SECS) };
    }
    let limit = libc::rlimit {
        rlim_cur: job.max_bytes.saturating_add(1),
        rlim_max: job.max_bytes.saturating_add(1),
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) } != 0 {
        return Err(format!(
            "setrlimit(RLIMIT_FSIZE): {}",
            std::io::Error::last_os_error()
        ));
    }
    let src = job.src.clone().unwrap_or_else(|| fd_path(SRC_FD));
    let outcome = run(&job, &src, &fd_path(DST_FD)).map_err(|e| e.to_string())?;
    serde_json::to_string(&outcome).map_err(|e| e.to_string())
}

fn fd_path(fd: i32) -> PathBuf {
    // `/.`: lstat then sees the dir, not the magic link.
    PathBuf::from(format!("/proc/self/fd/{fd}/."))
}

/// Measures `src`, then copies it into the (empty) dir `dst` within the budget.
pub fn run(job: &Job, src: &Path, dst: &Path) -> Result<Outcome, PathError> {
    if let Some(name) = &job.only {
        return super::sqlite_copy::one(job, name, dst);
    }
    run_measured(job, src, dst, crate::deploy::tree_size(src))
}

/// [`run`] with `src` measured at `bytes` already (what it held before the app grew a file).
pub fn run_measured(job: &Job, src: &Path, dst: &Path, bytes: u64) -> Result<Outcome, PathError> {
    if bytes > job.max_bytes {
        return Ok(Outcome::TooBig { bytes });
    }
    if bytes > job.room {
        return Ok(Outcome::NoRoom { bytes });
    }
    let mut walk = Walk {
        job,
        budget: job.max_bytes.min(job.room),
        out: Copied::default(),
    };
    match walk.tree(src, dst, Path::new(""), true) {
        Ok(()) => Ok(Outcome::Copied(walk.out)),
        Err(Stop::Over) if walk.out.bytes > job.max_bytes => Ok(Outcome::TooBig {
            bytes: walk.out.bytes,
        }),
        Err(Stop::Over) => Ok(Outcome::NoRoom {
            bytes: walk.out.bytes,
        }),
        Err(Stop::Io(e)) => Err(e),
    }
}

enum Stop {
    /// The budget is spent: the copy is dropped.
    Over,
    Io(PathError),
}

impl From<PathError> for Stop {
    fn from(e: PathError) -> Self {
        Stop::Io(e)
    }
}

struct Walk<'a> {
    job: &'a Job,
    budget: u64,
    out: Copied,
}

impl Walk<'_> {
    fn left(&self) -> u64 {
        self.budget.saturating_sub(self.out.bytes)
    }

    /// Counts `n` more bytes written; past the budget the copy stops.
    fn count(&mut self, n: u64) -> Result<(), Stop> {
        self.out.bytes = self.out.bytes.saturating_add(n);
        if self.out.bytes > self.budget {
            return Err(Stop::Over);
        }
        Ok(())
    }

    /// Copies the dir `src` to `dst` (made here, unless `top`: then it exists). `rel` is `src`'s
    /// path inside the top (for what is left out). The dir is opened once (`O_NOFOLLOW`) and its
    /// entries reached through that fd, so a dir swapped for a link meanwhile changes nothing.
    fn tree(&mut self, src: &Path, dst: &Path, rel: &Path, top: bool) -> Result<(), Stop> {
        let opened = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(src);
        let dir = match opened {
            Ok(d) => d,
            Err(e) if top => {
                return Err(Stop::Io(PathError {
                    op: "open",
                    path: src.to_path_buf(),
                    source: e,
                }))
            }
            Err(_) => {
                self.out
                    .skipped
                    .push(format!("{} (changed while being copied)", rel.display()));
                return Ok(());
            }
        };
        let meta = dir.metadata().at("stat", src)?;
        let here = fd_path(dir.as_raw_fd());
        if !top {
            fs::create_dir(dst).at("create dir", dst)?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(0o700)).at("chmod", dst)?;
        let mut names: Vec<_> = fs::read_dir(&here)
            .at("list", src)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        // SQLite databases first, so their -wal/-shm/-journal files are known to leave out.
        let mut databases = BTreeSet::new();
        if self.job.consistent {
            for n in &names {
                if is_sqlite(&here.join(n)) {
                    databases.insert(n.to_string_lossy().to_string());
                }
            }
        }
        for n in &names {
            let (s, d, r) = (here.join(n), dst.join(n), rel.join(n));
            let name = n.to_string_lossy();
            let sidecar = ["-wal", "-shm", "-journal"]
                .iter()
                .any(|x| name.strip_suffix(x).is_some_and(|b| databases.contains(b)));
            if sidecar || (top && name.starts_with(SCRATCH)) {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(&s) else {
                continue; // gone meanwhile: the app is running
            };
            if self.job.owner.is_some_and(|uid| m.uid() != uid) {
                self.out
                    .skipped
                    .push(format!("{} (not the app's own)", r.display()));
                continue;
            }
            let ft = m.file_type();
            if ft.is_dir() {
                self.tree(&s, &d, &r, false)?;
            } else if ft.is_symlink() {
                let Ok(target) = fs::read_link(&s) else {
                    continue; // gone meanwhile
                };
                std::os::unix::fs::symlink(&target, &d).at("create link", &d)?;
            } else if ft.is_file() {
                // SQLite wants a path it can resolve: the app's own, as the app sees it.
                let logical = self.job.src.as_ref().map(|t| t.join(&r));
                let through_sqlite = match &logical {
                    Some(l) if databases.contains(name.as_ref()) => self.database(l, &d, &m)?,
                    _ => false,
                };
                if through_sqlite {
                    self.out.databases += 1;
                } else if !self.file(&s, &d)? {
                    self.out
                        .skipped
                        .push(format!("{} (changed while being copied)", r.display()));
                    continue;
                }
                self.out.files += 1;
            } else {
                self.out
                    .skipped
                    .push(format!("{} (not a file, dir or link)", r.display()));
            }
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .at("chmod", dst)?;
        Ok(())
    }

    /// One regular file, never through a link, mode kept, at most the size seen at open and never
    /// past the budget; a reflink where the filesystem has them. False: it is not a regular file
    /// of the owner any more (swapped meanwhile).
    fn file(&mut self, src: &Path, dst: &Path) -> Result<bool, Stop> {
        let Ok(from) = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(src)
        else {
            return Ok(false);
        };
        let m = from.metadata().at("stat", src)?;
        if !m.is_file() || self.job.owner.is_some_and(|uid| m.uid() != uid) {
            return Ok(false);
        }
        if m.len() > self.left() {
            return self.count(m.len()).map(|()| true);
        }
        let mut to = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .at("create", dst)?;
        // SAFETY: FICLONE takes the source fd as its argument; both fds are open for the call.
        let cloned = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } == 0;
        let written = if cloned {
            to.metadata().at("stat", dst)?.len()
        } else {
            match std::io::copy(&mut (&from).take(m.len()), &mut to) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::EFBIG) => u64::MAX,
                Err(e) => {
                    return Err(Stop::Io(PathError {
                        op: "copy to",
                        path: dst.to_path_buf(),
                        source: e,
                    }))
                }
            }
        };
        self.count(written)?;
        to.set_permissions(fs::Permissions::from_mode(m.mode() & 0o7777))
            .at("chmod", dst)?;
        if let Ok(t) = m.modified() {
            let _ = to.set_modified(t);
        }
        Ok(true)
    }

    /// A database through SQLite: one consistent state, whatever the app is writing. False: it
    /// could not be (locked past [`BUSY`], not a database after all): copied as a file instead.
    fn database(&mut self, src: &Path, dst: &Path, m: &fs::Metadata) -> Result<bool, Stop> {
        let Some(top) = &self.job.src else {
            return Ok(false);
        };
        if let Some(side) = super::sqlite_copy::odd_sidecar(src) {
            eprintln!(
                "{} is not a regular file (SQLite could hang on it); copying {} as a file",
                side.display(),
                src.display()
            );
            return Ok(false);
        }
        let result = super::sqlite_copy::vacuum(src, top, dst, BUSY);
        if let Err(e) = result {
            eprintln!(
                "copying the database {} through SQLite failed ({e}); copying the file",
                src.display()
            );
            return Ok(false);
        }
        let len = fs::symlink_metadata(dst).at("stat", dst)?.len();
        self.count(len)?;
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777)).at("chmod", dst)?;
        Ok(true)
    }
}

fn is_sqlite(path: &Path) -> bool {
    let Ok(mut f) = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    let mut head = [0u8; 16];
    f.metadata().is_ok_and(|m| m.is_file())
        && f.read_exact(&mut head).is_ok()
        && &head == SQLITE_MAGIC
}

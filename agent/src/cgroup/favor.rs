//! favordynmods: cgroup joins without an RCU grace period.
//!
//! Every `cgroup.procs` write (a dyno joining its cgroup between fork and exec) takes the
//! kernel's global `cgroup_threadgroup_rwsem` for writing. That is a percpu rwsem: its writer
//! waits one RCU grace period (`rcu_sync_enter`) whenever no writer came recently, so the first
//! join after an idle spell costs ~5-20 ms, which is most of a crash replacement at N=500. Since
//! Linux 6.1 the cgroup mount option `favordynmods` keeps that rwsem in its slow-reader mode for
//! as long as any hierarchy carrying the option exists: joins stop waiting, forks and exits pay a
//! little on the reader side. The flag is global (one hierarchy with it is enough), so robokud
//! mounts an empty named v1 hierarchy with it at [`MOUNT_DIR`] and never unmounts it: other
//! robokuds may rely on it, and it holds nothing.
//!
//! [`ensure`] decides once per process (kept in a `OnceLock`) and [`current`] tells `roboku
//! status` the outcome. The mountinfo parsing and the decision are pure ([`parse_mountinfo`],
//! [`plan`], [`after_mount_error`]); the shell around them only reads `/proc/self/mountinfo`,
//! takes [`LOCK_FILE`] and calls mount(2).
//!
//! Fallback on kernels without v1 named hierarchies (`CONFIG_CGROUP_V1=n`): the cgroup2 mount is
//! remounted with its own options plus `favordynmods` (its per-mount flags and superblock options
//! kept as they are: a bare `remount,favordynmods` would drop systemd's `nsdelegate`).
//! This module never unmounts anything and never touches a mount that has the option already.
//!
//! Linux 6.18+ latches it: the first favordynmods mount since boot moves `cgroup.procs` writes to
//! a per-threadgroup rwsem until reboot, whatever is unmounted later (docs/supervision.md).

use crate::util::{IoContext, PathError};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where robokud mounts its empty named hierarchy.
pub const MOUNT_DIR: &str = "/run/roboku-favordynmods";
/// Taken (flock) while deciding and mounting, so robokuds starting together mount once.
pub const LOCK_FILE: &str = "/run/roboku-favordynmods.lock";
/// The v1 hierarchy's name (`none,name=roboku-favor`): no controllers, no cgroups in it.
pub const HIERARCHY: &str = "roboku-favor";
/// The mount option.
pub const OPTION: &str = "favordynmods";

/// How this robokud's cgroup joins go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joins {
    /// favordynmods is on; `mount` carries it, `how` says who put it there.
    Fast { mount: PathBuf, how: How },
    /// Joins wait a grace period after an idle spell, and why.
    Slow { why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// A mount with the option was there already (ours from an earlier robokud, or another's).
    Found,
    /// This robokud mounted the named hierarchy.
    Mounted,
    /// This robokud remounted the cgroup2 mount with the option.
    Remounted,
}

impl Joins {
    /// What `roboku status` shows after "joins ": `fast (favordynmods, /run/...)` or `slow: why`.
    pub fn line(&self) -> String {
        match self {
            Joins::Fast { mount, .. } => format!("fast (favordynmods, {})", mount.display()),
            Joins::Slow { why } => format!("slow: {why}"),
        }
    }
}

/// One cgroup or cgroup2 mount of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub point: PathBuf,
    /// `cgroup` or `cgroup2`.
    pub fstype: String,
    /// Per-mount options (`rw,nosuid,nodev,noexec,relatime`).
    pub mount_opts: Vec<String>,
    /// Superblock options (`rw,nsdelegate,favordynmods`, `rw,none,name=x`).
    pub super_opts: Vec<String>,
}

impl CgroupMount {
    pub fn favors(&self) -> bool {
        self.super_opts.iter().any(|o| o == OPTION)
    }
}

/// The cgroup mounts of a mountinfo text; other lines (and malformed ones) are skipped.
/// Format (proc(5)): `id parent maj:min root point opts [optional...] - fstype source superopts`.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
            let fstype = *fields.get(sep + 1)?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
            Some(CgroupMount {
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype: fstype.to_string(),
                mount_opts: split(fields.get(5)?),
                super_opts: split(fields.get(sep + 3).copied().unwrap_or("")),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')),
                );
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to do at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A mount has the option already.
    Use(PathBuf),
    /// Mount the empty named hierarchy at [`MOUNT_DIR`].
    MountNamed,
    /// Nothing to do; joins stay slow.
    Slow(String),
}

/// The decision, from the setting, whether we are root, and the cgroup mounts. A mount with the
/// option is used even when the setting is off: joins are fast then whoever mounted it (the
/// setting only stops robokud mounting one), and status must say so.
pub fn plan(enabled: bool, root: bool, mounts: &[CgroupMount]) -> Plan {
    let ours = Path::new(MOUNT_DIR);
    let found = mounts
        .iter()
        .filter(|m| m.favors())
        .min_by_key(|m| m.point != ours)
        .map(|m| m.point.clone());
    match (found, enabled, root) {
        (Some(point), _, _) => Plan::Use(point),
        (None, false, _) => Plan::Slow(
            "favordynmods turned off (setting favordynmods = false, --no-favordynmods or \
             ROBOKU_NO_FAVORDYNMODS)"
                .into(),
        ),
        (None, true, false) => Plan::Slow(
            "robokud is not root: it cannot mount a cgroup hierarchy with favordynmods".into(),
        ),
        (None, true, true) => Plan::MountNamed,
    }
}

/// After the named mount failed with `errno`: remount the cgroup2 mount (when there is one and
/// the kernel knows the option) or give up, saying why.
pub fn after_mount_error(errno: i32, mounts: &[CgroupMount]) -> Result<CgroupMount, String> {
    let named = format!(
        "mounting the named v1 hierarchy {HIERARCHY} at {MOUNT_DIR} failed: {}",
        std::io::Error::from_raw_os_error(errno)
    );
    if errno == libc::EINVAL {
        return Err(format!(
            "{named} (the kernel does not know favordynmods: it needs Linux 6.1 or later)"
        ));
    }
    match mounts.iter().find(|m| m.fstype == "cgroup2") {
        Some(m) => Ok(m.clone()),
        None => Err(format!(
            "{named}, and there is no cgroup2 mount to remount with it"
        )),
    }
}

/// The per-mount flags a remount must pass again (or the kernel clears them) and the superblock
/// options with `favordynmods` added (`rw`/`ro` are flags, not data).
pub fn remount_args(m: &CgroupMount) -> (libc::c_ulong, String) {
    let mut flags = libc::MS_REMOUNT;
    for o in &m.mount_opts {
        flags |= match o.as_str() {
            "ro" => libc::MS_RDONLY,
            "nosuid" => libc::MS_NOSUID,
            "nodev" => libc::MS_NODEV,
            "noexec" => libc::MS_NOEXEC,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "relatime" => libc::MS_RELATIME,
            "strictatime" => libc::MS_STRICTATIME,
            _ => 0,
        };
    }
    let mut data: Vec<&str> = m
        .super_opts
        .iter()
        .map(String::as_str)
        .filter(|o| !matches!(*o, "rw" | "ro" | "") && *o != OPTION)
        .collect();
    data.push(OPTION);
    (flags, data.join(","))
}

static STATE: OnceLock<Joins> = OnceLock::new();

/// Makes sure favordynmods is on (once per process; later calls return the first outcome).
/// Never fails: joins that cannot be made fast stay slow, and the reason is kept.
pub fn ensure(enabled: bool) -> &'static Joins {
    STATE.get_or_init(|| {
        let joins = establish(enabled, nix::unistd::geteuid().is_root());
        match &joins {
            Joins::Fast { mount, how } => {
                tracing::info!(mount = %mount.display(), how = ?how, "cgroup joins fast: favordynmods")
            }
            Joins::Slow { why } => tracing::warn!(why, "cgroup joins slow (no favordynmods)"),
        }
        joins
    })
}

/// The outcome of [`ensure`], if it ran.
pub fn current() -> Option<&'static Joins> {
    STATE.get()
}

fn read_mounts() -> Result<Vec<CgroupMount>, PathError> {
    let path = Path::new("/proc/self/mountinfo");
    Ok(parse_mountinfo(
        &std::fs::read_to_string(path).at("read", path)?,
    ))
}

fn establish(enabled: bool, root: bool) -> Joins {
    let slow = |why: String| Joins::Slow { why };
    let mounts = match read_mounts() {
        Ok(m) => m,
        Err(e) => return slow(e.to_string()),
    };
    match plan(enabled, root, &mounts) {
        Plan::Use(mount) => {
            return Joins::Fast {
                mount,
                how: How::Found,
            }
        }
        Plan::Slow(why) => return slow(why),
        Plan::MountNamed => {}
    }
    // Under the lock, look again: another robokud may have mounted it while we read.
    let _lock = match Lock::take(Path::new(LOCK_FILE)) {
        Ok(l) => l,
        Err(e) => return slow(e.to_string()),
    };
    let mounts = match read_mounts() {
        Ok(m) => m,
        Err(e) => return slow(e.to_string()),
    };
    if let Plan::Use(mount) = plan(enabled, root, &mounts) {
        return Joins::Fast {
            mount,
            how: How::Found,
        };
    }
    let dir = Path::new(MOUNT_DIR);
    if let Err(e) = make_dir(dir) {
        return slow(e.to_string());
    }
    let data = format!("none,name={HIERARCHY},{OPTION}");
    let errno = match mount(dir, "cgroup", 0, &data) {
        Ok(()) => {
            return Joins::Fast {
                mount: dir.to_path_buf(),
                how: How::Mounted,
            }
        }
        Err(errno) => errno,
    };
    let target = match after_mount_error(errno, &mounts) {
        Ok(m) => m,
        Err(why) => return slow(why),
    };
    let (flags, data) = remount_args(&target);
    match mount(&target.point, "cgroup2", flags, &data) {
        Ok(()) => Joins::Fast {
            mount: target.point,
            how: How::Remounted,
        },
        Err(e) => slow(format!(
            "mounting {HIERARCHY} at {MOUNT_DIR} failed ({}), and remounting {} with -o {data} \
             failed too ({})",
            std::io::Error::from_raw_os_error(errno),
            target.point.display(),
            std::io::Error::from_raw_os_error(e)
        )),
    }
}

fn make_dir(dir: &Path) -> Result<(), PathError> {
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e).at("create dir", dir),
        _ => Ok(()),
    }
}

/// mount(2) of a cgroup filesystem; the errno on failure.
fn mount(target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<(), i32> {
    let c = |b: &[u8]| CString::new(b).map_err(|_| libc::EINVAL);
    let (source, target, fstype, data) = (
        c(b"cgroup")?,
        c(target.as_os_str().as_bytes())?,
        c(fstype.as_bytes())?,
        c(data.as_bytes())?,
    );
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// An exclusive flock on [`LOCK_FILE`], released when dropped.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(path: &Path) -> Result<Lock, PathError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .at("open lock", path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).at("lock", path);
        }
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
#[path = "favor_tests.rs"]
mod tests;

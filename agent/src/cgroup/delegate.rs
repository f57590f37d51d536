//! Moving a process into a leaf of its delegated unit cgroup (cgroup v2), and reading
//! systemd's delegation mark.
//!
//! The packaged units keep dynos in `roboku-dynos.service` (see [`super::holder`]), whose holder
//! process moves into a `holder` leaf. Without that unit (robokud run by another delegated unit),
//! the v2 driver puts roboku's subtree beside the agent's own cgroup (see [`super::v2`]), which
//! needs the agent in a leaf *below* its unit's delegated cgroup: robokud then moves itself into
//! `supervisor` at startup, before cgroups are detected. (That fallback has the systemd < 254
//! restart problem the holder unit exists to avoid.) It moves only when its own cgroup carries
//! systemd's delegation mark (`trusted.delegate` or `user.delegate` = `1`, set by systemd 251+ for
//! `Delegate=yes`), so a robokud started by hand or by a unit without delegation stays where it is.

use super::files;
use super::CgroupError;
use std::path::{Path, PathBuf};

/// Name of the leaf the agent moves into (the same name `DelegateSubgroup=` would use).
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// If this process sits directly in a delegated cgroup v2 unit cgroup, moves it (all threads)
/// into `<unit cgroup>/supervisor` and returns that leaf; otherwise does nothing.
pub fn enter_supervisor_leaf(mount: &Path) -> Result<Option<PathBuf>, CgroupError> {
    if !mount.join("cgroup.controllers").exists() {
        return Ok(None); // v1 or hybrid: v1 hierarchies have no such rule.
    }
    let proc_self = files::read(Path::new("/proc/self/cgroup"))?;
    match own_cgroup_dir(mount, &proc_self) {
        Some(dir) if is_delegated(&dir) => {
            move_into_leaf(&dir, SUPERVISOR_LEAF, std::process::id()).map(Some)
        }
        _ => Ok(None),
    }
}

/// The directory of this process's v2 cgroup, from the text of `/proc/self/cgroup`; `None` at
/// the root (nothing to move out of).
pub(super) fn own_cgroup_dir(mount: &Path, proc_self_cgroup: &str) -> Option<PathBuf> {
    let own = proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?
        .trim();
    let rel = own.strip_prefix('/')?;
    if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    Some(mount.join(rel))
}

/// Whether systemd marked `dir` as delegated.
pub(super) fn is_delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| xattr(dir, name).as_deref() == Some(b"1".as_slice()))
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and live across the call; the buffer length passed
    // is the buffer's own.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

/// Creates `<dir>/<name>` and writes `pid` to its `cgroup.procs`.
pub(super) fn move_into_leaf(dir: &Path, name: &str, pid: u32) -> Result<PathBuf, CgroupError> {
    let leaf = dir.join(name);
    files::mkdir(&leaf)?;
    files::write(&leaf.join("cgroup.procs"), &pid.to_string())?;
    Ok(leaf)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Sets `user.delegate=1` on a plain dir (tmpfs and ext4 allow user xattrs).
    pub(in crate::cgroup) fn mark_delegated(dir: &Path) {
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let name = std::ffi::CString::new("user.delegate").unwrap();
        // SAFETY: NUL-terminated strings and a 1-byte value that outlive the call.
        let rc =
            unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    }

    #[test]
    fn own_cgroup_dir_is_under_the_mount() {
        let m = Path::new("/sys/fs/cgroup");
        assert_eq!(
            own_cgroup_dir(m, "0::/system.slice/robokud.service\n"),
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/robokud.service"))
        );
        assert_eq!(own_cgroup_dir(m, "0::/\n"), None);
        assert_eq!(own_cgroup_dir(m, "12:memory:/x\n1:name=systemd:/y\n"), None);
        assert_eq!(own_cgroup_dir(m, "0::/a/../b\n"), None);
    }

    #[test]
    fn delegation_mark_is_read_from_the_xattr() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_delegated(dir.path()));
        mark_delegated(dir.path());
        assert!(is_delegated(dir.path()));
    }

    #[test]
    fn moving_creates_the_leaf_and_writes_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        // cgroupfs creates the interface files of a new cgroup itself; a plain dir does not.
        std::fs::create_dir(dir.path().join("supervisor")).unwrap();
        std::fs::write(dir.path().join("supervisor/cgroup.procs"), "").unwrap();
        let leaf = move_into_leaf(dir.path(), SUPERVISOR_LEAF, 4242).unwrap();
        assert_eq!(leaf, dir.path().join("supervisor"));
        assert_eq!(
            std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap(),
            "4242"
        );
    }

    #[test]
    fn nothing_moves_on_a_mount_without_cgroup_v2() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(enter_supervisor_leaf(dir.path()).unwrap(), None);
    }
}

//! The dyno cgroup holder (cgroup v2 under systemd): a delegated unit of its own whose cgroup
//! holds roboku's dyno subtree, so that dynos never live inside `robokud.service`.
//!
//! Why: on systemd < 254, a unit whose cgroup still holds processes in a subtree with controllers
//! enabled cannot be started again (the kernel refuses to put the new main process into an inner
//! cgroup: `status=219/CGROUP`). With the dynos in `roboku-dynos.service` instead, robokud's own
//! unit cgroup holds robokud alone and restarts like any other service, on 252 and on 254+.
//!
//! Two halves: [`hold`] is what `robokud cgroup:hold` (the holder unit's `ExecStart=`) does: it
//! moves itself into the `holder` leaf of its delegated unit cgroup, leaving the unit cgroup free
//! to become the parent of roboku's subtree. [`find`] is what robokud does at start: it checks that
//! the configured holder cgroup (`cgroup_parent`) exists and is delegated, and roots its v2
//! subtree there.

use super::delegate::{is_delegated, move_into_leaf, own_cgroup_dir};
use super::{files, CgroupError};
use std::path::{Path, PathBuf};

/// Name of the leaf the holder process moves into.
pub const HOLDER_LEAF: &str = "holder";

/// Moves this process into `<own delegated cgroup>/holder`; the unit cgroup (which roboku's
/// subtree will live in). On a host without cgroup v2 there is nothing to hold (v1 has no rule
/// against inner processes): `None`, and the holder just waits, so robokud.service, which
/// requires it, still starts. Refuses a v2 cgroup that is not delegated: there it would hold
/// nothing robokud could use.
pub fn hold(mount: &Path) -> Result<Option<PathBuf>, CgroupError> {
    if !mount.join("cgroup.controllers").exists() {
        return Ok(None);
    }
    let proc_self = files::read(Path::new("/proc/self/cgroup"))?;
    let dir = own_cgroup_dir(mount, &proc_self).ok_or_else(|| {
        CgroupError::Invalid("the holder runs in the root cgroup, not in a unit".into())
    })?;
    if dir.file_name().and_then(|n| n.to_str()) == Some(HOLDER_LEAF) {
        return Ok(dir.parent().map(Path::to_path_buf));
    }
    if !is_delegated(&dir) {
        return Err(CgroupError::Invalid(format!(
            "{} is not delegated (the holder unit needs Delegate=yes)",
            dir.display()
        )));
    }
    move_into_leaf(&dir, HOLDER_LEAF, std::process::id())?;
    Ok(Some(dir))
}

/// The holder cgroup robokud roots its v2 subtree in: `<mount><parent>`, when `parent` is set,
/// the mount is cgroup v2, and that cgroup exists and is delegated. `Err` says why not (robokud
/// then falls back to its own unit cgroup and logs the reason).
pub fn find(mount: &Path, parent: &str) -> Result<PathBuf, String> {
    if parent.is_empty() {
        return Err("cgroup_parent is empty".into());
    }
    let rel = parent.strip_prefix('/').unwrap_or(parent);
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "cgroup_parent {parent:?} is not a cgroup path like /system.slice/roboku-dynos.service"
        ));
    }
    if !mount.join("cgroup.controllers").exists() {
        return Err(format!("{} is not a cgroup v2 mount", mount.display()));
    }
    let dir = mount.join(rel);
    if !dir.join("cgroup.procs").exists() {
        return Err(format!(
            "{} does not exist (is roboku-dynos.service running?)",
            dir.display()
        ));
    }
    if !is_delegated(&dir) {
        return Err(format!("{} is not a delegated cgroup", dir.display()));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_rejects_paths_that_are_not_plain_cgroup_paths() {
        let m = Path::new("/sys/fs/cgroup");
        for bad in ["", "/", "/a/../b", "a//b", "/./a"] {
            assert!(find(m, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn find_needs_a_v2_mount_an_existing_cgroup_and_the_delegation_mark() {
        let mount = tempfile::tempdir().unwrap();
        let p = "/system.slice/roboku-dynos.service";
        let err = find(mount.path(), p).unwrap_err();
        assert!(err.contains("not a cgroup v2 mount"), "{err}");
        std::fs::write(mount.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        let err = find(mount.path(), p).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let dir = mount.path().join("system.slice/roboku-dynos.service");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        let err = find(mount.path(), p).unwrap_err();
        assert!(err.contains("not a delegated cgroup"), "{err}");
        super::super::delegate::tests::mark_delegated(&dir);
        assert_eq!(find(mount.path(), p).unwrap(), dir);
    }

    #[test]
    fn hold_holds_nothing_without_cgroup_v2() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(hold(dir.path()).unwrap(), None);
    }
}

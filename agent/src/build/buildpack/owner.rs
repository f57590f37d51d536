//! Handing a tree to the build user (and back) without ever following a symlink.
//!
//! The cache dir outlives builds and is writable by the build user, who may share its uid with
//! running dynos: a path-based walk could be raced (a directory swapped for a link to `/etc`
//! between the stat and the chown). So the walk goes through directory file descriptors opened
//! with `O_NOFOLLOW` and changes owners relative to them.

use crate::util::{IoContext, PathError};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{fchown, fchownat, Gid, Uid};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Sets owner `uid:gid` on `root` and everything below it. Symlinks get the new owner
/// themselves; their targets are never touched.
pub(super) fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<(), PathError> {
    let dir = open_dir(None, root).at("open dir", root)?;
    chown_dir(&dir, root, Uid::from_raw(uid), Gid::from_raw(gid))
}

/// Opens a directory (relative to `at` when given) without following a symlink.
fn open_dir(at: Option<&OwnedFd>, name: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    let fd = openat(at.map(|d| d.as_raw_fd()), name, flags, Mode::empty())?;
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn chown_dir(dir: &OwnedFd, path: &Path, uid: Uid, gid: Gid) -> Result<(), PathError> {
    let fd = dir.as_raw_fd();
    fchown(fd, Some(uid), Some(gid))
        .map_err(io::Error::from)
        .at("chown", path)?;
    // Listing through /proc/self/fd lists exactly the directory we hold open, whatever
    // happens to `path` meanwhile.
    let listing = Path::new("/proc/self/fd").join(fd.to_string());
    let mut entries = Vec::new();
    for entry in fs::read_dir(&listing).at("read dir", path)? {
        let entry = entry.at("read dir", path)?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(true);
        entries.push((entry.file_name(), is_dir));
    }
    for (name, is_dir) in entries {
        let child = path.join(&name);
        if is_dir {
            match open_dir(Some(dir), Path::new(&name)) {
                Ok(sub) => {
                    chown_dir(&sub, &child, uid, gid)?;
                    continue;
                }
                // Not a directory (any more), or a symlink now: chown it as a leaf below.
                Err(e)
                    if matches!(
                        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                        Errno::ENOTDIR | Errno::ELOOP
                    ) => {}
                Err(e) => return Err(e).at("open dir", &child),
            }
        }
        fchownat(
            Some(fd),
            Path::new(&name),
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)
        .at("chown", &child)?;
    }
    Ok(())
}

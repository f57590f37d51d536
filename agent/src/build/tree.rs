//! Operations on a slug tree on disk: copying a source directory into a fresh tree, hashing a
//! tree deterministically, freezing it read-only, and removing it again.
//!
//! The copy only ever creates regular files, directories and relative symlinks that cannot
//! leave the tree; anything else in the source is refused with an error naming it, because a
//! slug is handed to an unprivileged dyno and must not point it at the rest of the robot.

use super::BuildError;
use crate::util::{IoContext, PathError};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Mode of files and directories while a tree is being built (made read-only afterwards).
pub(crate) const WORK_DIR_MODE: u32 = 0o755;

/// Creates a directory that is writable while we fill it.
pub(crate) fn create_work_dir(path: &Path) -> Result<(), PathError> {
    fs::DirBuilder::new()
        .mode(WORK_DIR_MODE)
        .create(path)
        .at("create dir", path)
}

/// Writes `data` to a new file at `path` (never following a symlink there), with mode 0644 or
/// 0755. Returns the number of bytes written.
pub(crate) fn write_file(path: &Path, data: &mut dyn Read, exec: bool) -> Result<u64, PathError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .at("create file", path)?;
    let written = io::copy(data, &mut file).at("write file", path)?;
    file.flush().at("write file", path)?;
    // Explicit chmod: the mode given at open is filtered by the umask and ignored on overwrite.
    let mode = if exec { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(mode))
        .at("chmod", path)?;
    Ok(written)
}

/// Copies the directory `src` into the existing empty directory `dst`. Skips `.git`; refuses
/// absolute or escaping symlinks, device nodes, fifos and sockets. Setuid/setgid/sticky bits
/// and ownership are dropped; only the executable bit of files survives.
pub fn copy_dir(src: &Path, dst: &Path) -> Result<(), BuildError> {
    copy_dir_at(src, dst, Path::new(""), src)
}

fn copy_dir_at(root: &Path, dst_root: &Path, rel: &Path, dir: &Path) -> Result<(), BuildError> {
    let refuse = |entry: &Path, reason: String| BuildError::UnsafeEntry {
        archive: root.display().to_string(),
        entry: entry.display().to_string(),
        reason,
    };
    let mut names: Vec<_> = Vec::new();
    for entry in fs::read_dir(dir).at("read dir", dir)? {
        names.push(entry.at("read dir", dir)?.file_name());
    }
    names.sort();
    for name in names {
        if name == ".git" {
            continue;
        }
        let src = dir.join(&name);
        let rel = rel.join(&name);
        let dst = dst_root.join(&rel);
        let meta = fs::symlink_metadata(&src).at("stat", &src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            create_work_dir(&dst)?;
            copy_dir_at(root, dst_root, &rel, &src)?;
        } else if ft.is_file() {
            // O_NOFOLLOW: the entry was a file when we looked; never follow a link swapped in.
            let mut file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&src)
                .at("open", &src)?;
            write_file(&dst, &mut file, meta.permissions().mode() & 0o111 != 0)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).at("read link", &src)?;
            check_link_target(&rel, &target).map_err(|reason| refuse(&rel, reason))?;
            std::os::unix::fs::symlink(&target, &dst).at("create symlink", &dst)?;
        } else {
            let kind = if ft.is_fifo() {
                "a fifo"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_char_device() || ft.is_block_device() {
                "a device node"
            } else {
                "of an unknown file type"
            };
            return Err(refuse(
                &rel,
                format!("is {kind}; only files, directories and symlinks can be deployed"),
            ));
        }
    }
    Ok(())
}

/// Accepts a symlink at `link` (relative to the tree root) only if its target is relative,
/// made of some leading `..` that stay within the tree followed by plain names. A `..` after a
/// name is refused even when it looks harmless, because the name may itself be a symlink and
/// make the `..` climb somewhere else than it appears to.
fn check_link_target(link: &Path, target: &Path) -> Result<(), String> {
    let shown = target.display();
    if target.is_absolute() {
        return Err(format!(
            "symlink to absolute path {shown}; only relative links inside the app are allowed"
        ));
    }
    let depth = link.components().count().saturating_sub(1);
    let mut ups = 0usize;
    let mut seen_name = false;
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if seen_name => {
                return Err(format!(
                    "symlink target {shown} has `..` after a name; use leading `..` only"
                ));
            }
            Component::ParentDir => {
                ups += 1;
                if ups > depth {
                    return Err(format!("symlink to {shown} points outside the app"));
                }
            }
            Component::Normal(_) => seen_name = true,
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink to absolute path {shown}; only relative links inside the app are allowed"));
            }
        }
    }
    if target.as_os_str().is_empty() {
        return Err("symlink with an empty target".to_string());
    }
    Ok(())
}

/// One entry of a tree as the hash sees it.
enum Kind {
    Dir,
    File { exec: bool },
    Link,
}

/// Lists every entry under `root` (not `root` itself) as (relative path, kind), unsorted.
fn list_tree(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Kind)>) -> Result<(), PathError> {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).at("read dir", &dir)? {
        let entry = entry.at("read dir", &dir)?;
        let rel = rel.join(entry.file_name());
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).at("stat", &path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push((rel.clone(), Kind::Dir));
            list_tree(root, &rel, out)?;
        } else if ft.is_symlink() {
            out.push((rel, Kind::Link));
        } else {
            // Only files are left in a tree we built ourselves.
            out.push((
                rel,
                Kind::File {
                    exec: meta.permissions().mode() & 0o111 != 0,
                },
            ));
        }
    }
    Ok(())
}

/// Lowercase hex sha256 over the tree: for every entry in byte order of its relative path, its
/// type, path, executable bit and contents (or link target), each length-prefixed so that no
/// two different trees produce the same byte stream. Timestamps and owners are left out so the
/// same app copied twice hashes the same.
pub fn hash_tree(root: &Path) -> Result<String, PathError> {
    let mut entries = Vec::new();
    list_tree(root, Path::new(""), &mut entries)?;
    entries.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    let mut h = Sha256::new();
    h.update(b"roboku-slug-v1\0");
    for (rel, kind) in &entries {
        let path = root.join(rel);
        let (tag, exec) = match kind {
            Kind::Dir => (b'd', false),
            Kind::File { exec } => (b'f', *exec),
            Kind::Link => (b'l', false),
        };
        h.update([tag, exec as u8]);
        put_bytes(&mut h, rel.as_os_str().as_bytes());
        match kind {
            Kind::Dir => {}
            Kind::Link => {
                let target = fs::read_link(&path).at("read link", &path)?;
                put_bytes(&mut h, target.as_os_str().as_bytes());
            }
            Kind::File { .. } => {
                let mut file = File::open(&path).at("open", &path)?;
                let len = file.metadata().at("stat", &path)?.len();
                h.update(len.to_le_bytes());
                let copied = io::copy(&mut file, &mut h).at("read", &path)?;
                if copied != len {
                    let err = io::Error::other(format!(
                        "file changed while hashing ({copied} of {len} bytes)"
                    ));
                    return Err(err).at("hash", &path);
                }
            }
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Makes the tree read-only for everybody but readable by all: files 0444 (0555 when
/// executable), directories 0555. Children first, so we can still write into each directory
/// while working on it. Symlinks have no mode of their own and are left alone.
pub fn make_read_only(dir: &Path) -> Result<(), PathError> {
    for entry in fs::read_dir(dir).at("read dir", dir)? {
        let path = entry.at("read dir", dir)?.path();
        let meta = fs::symlink_metadata(&path).at("stat", &path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            make_read_only(&path)?;
        } else if ft.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o555
            } else {
                0o444
            };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).at("chmod", &path)?;
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).at("chmod", dir)
}

/// Flushes everything written to the filesystem holding `path` (one syncfs instead of an
/// fsync per file: slugs can have tens of thousands of files on a slow SD card).
pub fn sync_filesystem(path: &Path) -> Result<(), PathError> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path).at("open", path)?;
    nix::unistd::syncfs(dir.as_raw_fd())
        .map_err(io::Error::from)
        .at("syncfs", path)
}

/// Fsyncs a directory so that a rename into it survives power loss.
pub fn sync_dir(path: &Path) -> Result<(), PathError> {
    File::open(path)
        .at("open", path)?
        .sync_all()
        .at("fsync", path)
}

/// Removes a file or a whole tree, including read-only slug trees (directories are made
/// writable again first: without root, a 0555 directory cannot be emptied). A path that is
/// already gone is fine.
pub fn remove_tree(path: &Path) -> Result<(), PathError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at("stat", path),
    };
    if !meta.is_dir() {
        return fs::remove_file(path).at("remove", path);
    }
    make_writable(path)?;
    fs::remove_dir_all(path).at("remove dir", path)
}

/// Gives the owner rwx on every directory of the tree (top-down, so each can be listed).
pub(crate) fn make_writable(dir: &Path) -> Result<(), PathError> {
    let mode = fs::symlink_metadata(dir)
        .at("stat", dir)?
        .permissions()
        .mode();
    fs::set_permissions(dir, fs::Permissions::from_mode((mode | 0o700) & 0o7777))
        .at("chmod", dir)?;
    for entry in fs::read_dir(dir).at("read dir", dir)? {
        let entry = entry.at("read dir", dir)?;
        if entry.file_type().at("stat", &entry.path())?.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

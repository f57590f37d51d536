//! Data snapshots: a copy of an app's persistent data dir (`data/<app>/`) per release, taken
//! when a new release is about to replace it, so `rollback vN --with-data` can bring vN's data
//! back (snapd and Mender do the same).
//!
//! Layout: `snapshots/` (root, 0700) / `<app>/` (root, 0700) / `vN/` (the data dir as it was when
//! vN was replaced: the app's own files, modes kept, so it can be put back as it is). No app can
//! reach a snapshot, its own included.
//!
//! Why copies and not hard links: a hard link shares the file's content, so an app writing a
//! file in place (a log appended to, a database page rewritten) would change the snapshot too.
//! Each regular file is cloned (`FICLONE`: a reflink, free on btrfs and XFS) or else copied
//! (`copy_file_range`); the cost is the data's size on ext4, which is why `data_snapshot_max_bytes`
//! caps it. SQLite databases (any file that starts with SQLite's header) are copied through
//! SQLite (`VACUUM INTO`), which reads one consistent state even while the app writes; their
//! `-wal`, `-shm` and `-journal` files are left out (the copy is whole without them). Other files
//! are copied as they are at that moment, like a power cut would leave them.
//!
//! Root never walks a tree the app controls: the copy is made by a child robokud running as the
//! app's uid and gid (`snapshot_copy.rs`), into a dir root made in its own 0700 dirs and hands it
//! as an fd; root then only renames within its own dirs. The walk follows nothing (symlinks are
//! copied as symlinks, files opened `O_NOFOLLOW`), takes only what the app's uid owns (a file of
//! another owner linked in is left out and named), leaves sockets, fifos and devices out, and
//! counts every byte it writes against `data_snapshot_max_bytes`: a file grown past it during
//! the copy drops the snapshot. A kill at any step leaves a whole `vN` or none ([`recover`]).
//!
//! A restore never mixes two states: vN is copied into `<app>/.restore`, then one
//! `renameat2(RENAME_EXCHANGE)` swaps it with the live dir, and the data swapped out becomes the
//! snapshot of the release that was current (so the restore can be undone). A journal written
//! before the swap tells [`recover`] at the next start which side of the swap a killed agent
//! stopped at. Nothing here touches the store or the dynos: the engine does
//! (`engine/data_restore.rs`).

pub use super::snapshot_copy::Outcome;
use super::snapshot_copy::{self, Job};
use crate::util::{sync_parent, IoContext, PathError};
use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The restore journal, in `snapshots/<app>/`.
const JOURNAL: &str = "restore.json";
/// vN being copied for a restore, then (complete) waiting for the swap.
const STAGE_TMP: &str = ".restore.tmp";
const STAGE: &str = ".restore";
const PRIVATE: u32 = 0o700;

/// A snapshot's dir name.
pub fn name(version: u32) -> String {
    format!("v{version}")
}

/// What one copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
    /// SQLite databases copied through SQLite.
    pub databases: u64,
    /// What was left out, with why (relative paths).
    pub skipped: Vec<String>,
}

impl Copied {
    /// `3 files, 12K (1 SQLite database); left out: sock (a socket)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} files, {}",
            self.files,
            roboku_wire::human_bytes(self.bytes)
        );
        if self.databases > 0 {
            s.push_str(&format!(" ({} SQLite databases)", self.databases));
        }
        if !self.skipped.is_empty() {
            s.push_str(&format!("; left out: {}", self.skipped.join(", ")));
        }
        s
    }
}

/// Makes `dir` (and its parents) exist, root's 0700.
pub fn ensure_private(dir: &Path) -> Result<(), PathError> {
    fs::create_dir_all(dir).at("create dir", dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE)).at("chmod", dir)
}

/// Bytes the regular files under `dir` hold (what a snapshot of it takes on ext4).
pub fn size(dir: &Path) -> u64 {
    crate::deploy::tree_size(dir)
}

/// The versions `snaps` (`snapshots/<app>/`) holds a snapshot of, newest first.
pub fn versions(snaps: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir(snaps)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse().ok())
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// Snapshots `data` as release `version`'s into `snaps`: copied into `.vN.tmp` by a child
/// running as `run_as` (uid, gid; only that uid's files are taken), then renamed to `vN` (an
/// older snapshot of that version, from before a failed release, is replaced). A tree over
/// `max_bytes`, measured or while being copied, or over `room` leaves nothing behind.
pub fn take(
    data: &Path,
    snaps: &Path,
    version: u32,
    run_as: Option<(u32, u32)>,
    max_bytes: u64,
    room: u64,
) -> Result<Outcome, PathError> {
    ensure_private(snaps)?;
    let tmp = snaps.join(format!(".{}.tmp", name(version)));
    remove_if_there(&tmp)?;
    let job = Job {
        src: Some(data.to_path_buf()),
        max_bytes,
        room,
        owner: run_as.map(|(uid, _)| uid),
        consistent: true,
        only: None,
    };
    match copy_into(&tmp, &job, None, run_as) {
        Ok(Outcome::Copied(c)) => {
            sync_fs(&tmp)?;
            crate::fault::point("snapshot.copied");
            put_in_place(&tmp, &snaps.join(name(version)))?;
            Ok(Outcome::Copied(c))
        }
        other => {
            remove_if_there(&tmp)?;
            other
        }
    }
}

/// Makes `dst` (root's 0700 parent, so no app reaches it; given to `run_as`) and has
/// [`snapshot_copy::spawn`] fill it.
pub(super) fn copy_into(
    dst: &Path,
    job: &Job,
    src: Option<&File>,
    run_as: Option<(u32, u32)>,
) -> Result<Outcome, PathError> {
    fs::create_dir(dst).at("create dir", dst)?;
    fs::set_permissions(dst, fs::Permissions::from_mode(PRIVATE)).at("chmod", dst)?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dst, Some(uid), Some(gid)).at("chown", dst)?;
    }
    let dir = open_dir(dst)?;
    snapshot_copy::spawn(job, src, &dir, dst, run_as)
}

fn open_dir(dir: &Path) -> Result<File, PathError> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .at("open", dir)
}

/// Removes every snapshot whose version is not in `keep`; the versions removed.
pub fn prune(snaps: &Path, keep: &BTreeSet<u32>) -> Vec<u32> {
    let mut gone = Vec::new();
    for v in versions(snaps) {
        if keep.contains(&v) {
            continue;
        }
        let dir = snaps.join(name(v));
        match crate::build::remove_tree(&dir) {
            Ok(()) => gone.push(v),
            Err(e) => tracing::warn!(error = %e, "cannot remove a data snapshot"),
        }
    }
    gone
}

/// Copies snapshot `version` into `snaps/.restore` (whole, or not there), as `run_as` (the
/// app's uid and gid, who owns what the snapshot holds). The live data is not touched.
pub fn stage(snaps: &Path, version: u32, run_as: Option<(u32, u32)>) -> Result<Copied, PathError> {
    let src = snaps.join(name(version));
    let from = open_dir(&src)?;
    let (tmp, staged) = (snaps.join(STAGE_TMP), snaps.join(STAGE));
    remove_if_there(&tmp)?;
    remove_if_there(&staged)?;
    // The snapshot is robokud's own copy, consistent already: copied as it is.
    let job = Job {
        src: None,
        max_bytes: u64::MAX,
        room: u64::MAX,
        owner: None,
        consistent: false,
        only: None,
    };
    let copied = match copy_into(&tmp, &job, Some(&from), run_as) {
        Ok(Outcome::Copied(c)) => c,
        Ok(other) => {
            remove_if_there(&tmp)?;
            let e = std::io::Error::other(format!("unexpected {other:?}"));
            return Err(e).at("copy", &src);
        }
        Err(e) => {
            let _ = remove_if_there(&tmp);
            return Err(e);
        }
    };
    sync_fs(&tmp)?;
    fs::rename(&tmp, &staged).at("rename to", &staged)?;
    sync_parent(&staged)?;
    Ok(copied)
}

/// Drops a staged copy (a restore given up before its swap).
pub fn unstage(snaps: &Path) -> Result<(), PathError> {
    remove_if_there(&snaps.join(STAGE_TMP))?;
    remove_if_there(&snaps.join(STAGE))
}

/// What the journal records before the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    /// The release whose data is being brought back.
    pub target: u32,
    /// The release current before the restore: the swapped-out data becomes its snapshot.
    pub current: u32,
    /// The staged dir's inode: the live dir has it once the swap is done.
    pub staged_ino: u64,
}

/// Swaps the staged copy with the live `data` dir in one step (after writing the journal), then
/// keeps the data swapped out as the snapshot of `current`. Every dyno of the app must be down.
pub fn swap(data: &Path, snaps: &Path, target: u32, current: u32) -> Result<(), PathError> {
    let staged = snaps.join(STAGE);
    let staged_ino = fs::symlink_metadata(&staged).at("stat", &staged)?.ino();
    let journal = Journal {
        target,
        current,
        staged_ino,
    };
    write_journal(snaps, &journal)?;
    crate::fault::point("restore.journaled");
    exchange(&staged, data)?;
    crate::fault::point("restore.swapped");
    put_in_place(&staged, &snaps.join(name(current)))
}

fn write_journal(snaps: &Path, journal: &Journal) -> Result<(), PathError> {
    let path = snaps.join(JOURNAL);
    let text = serde_json::to_vec(journal).map_err(|e| PathError {
        op: "encode",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::util::write_atomic(&path, &text)
}

/// The restore is committed (its release is in the store): the journal goes.
pub fn finish(snaps: &Path) -> Result<(), PathError> {
    let path = snaps.join(JOURNAL);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("remove", &path),
        _ => sync_parent(&path),
    }
}

/// At start, before any dyno runs: drops what an agent killed mid-snapshot or mid-restore left,
/// and settles an interrupted swap. `committed` says whether the restore's release was made
/// (the app's current release is newer than the journal's `current`): then the restored data
/// stays; else the data that was live before comes back. Returns what it did, if anything.
pub fn recover(
    data: &Path,
    snaps: &Path,
    committed: &dyn Fn(&Journal) -> bool,
) -> Result<Option<String>, PathError> {
    settle_replacements(snaps)?;
    remove_if_there(&snaps.join(STAGE_TMP))?;
    let path = snaps.join(JOURNAL);
    let journal: Journal = match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(j) => j,
            Err(e) => {
                // Written atomically, so only a hand edit gets here: the data is whole either way.
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable restore journal");
                unstage(snaps)?;
                finish(snaps)?;
                return Ok(None);
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            remove_if_there(&snaps.join(STAGE))?;
            return Ok(None);
        }
        Err(e) => return Err(e).at("read", &path),
    };
    let live_ino = fs::symlink_metadata(data).at("stat", data)?.ino();
    let swapped = live_ino == journal.staged_ino;
    let (staged, aside) = (snaps.join(STAGE), snaps.join(name(journal.current)));
    let what = match (swapped, committed(&journal)) {
        (false, _) => {
            unstage(snaps)?;
            format!(
                "a data restore of v{} was interrupted before its swap: the data is as it was",
                journal.target
            )
        }
        (true, true) => {
            if fs::symlink_metadata(&staged).is_ok() {
                put_in_place(&staged, &aside)?;
            }
            format!(
                "finished an interrupted data restore: v{}'s data is live",
                journal.target
            )
        }
        (true, false) => {
            // The release was never made: the data live before comes back.
            let other = if fs::symlink_metadata(&staged).is_ok() {
                staged
            } else {
                aside
            };
            exchange(&other, data)?;
            remove_if_there(&other)?;
            format!(
                "undid an interrupted data restore of v{} (its release was not made): the data is as it was",
                journal.target
            )
        }
    };
    finish(snaps)?;
    Ok(Some(what))
}

/// Settles what a kill inside [`put_in_place`] left: a `.vN.tmp` beside a `vN.old` with no `vN`
/// was whole (synced before the first rename) and goes in place; any other `.vN.tmp` was being
/// copied and goes; a `vN.old` goes back to `vN` when there is none, else it goes.
fn settle_replacements(snaps: &Path) -> Result<(), PathError> {
    let names: Vec<String> = fs::read_dir(snaps)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    for n in &names {
        let Some(v) = n.strip_prefix(".v").and_then(|x| x.strip_suffix(".tmp")) else {
            continue;
        };
        let (tmp, dir) = (snaps.join(n), snaps.join(format!("v{v}")));
        let old = snaps.join(format!("v{v}.old"));
        if fs::symlink_metadata(&old).is_ok() && fs::symlink_metadata(&dir).is_err() {
            fs::rename(&tmp, &dir).at("rename to", &dir)?;
            sync_parent(&dir)?;
        } else {
            remove_if_there(&tmp)?;
        }
    }
    for n in &names {
        let Some(v) = n.strip_suffix(".old").filter(|v| v.starts_with('v')) else {
            continue;
        };
        let (old, dir) = (snaps.join(n), snaps.join(v));
        if fs::symlink_metadata(&dir).is_ok() {
            remove_if_there(&old)?;
        } else {
            fs::rename(&old, &dir).at("rename to", &dir)?;
            sync_parent(&dir)?;
        }
    }
    Ok(())
}

/// Makes a whole copied tree durable with one `syncfs(2)` (one fsync per file costs far more on
/// a small board's flash), before it is renamed into place.
fn sync_fs(dir: &Path) -> Result<(), PathError> {
    let d = File::open(dir).at("open", dir)?;
    // SAFETY: syncfs takes an open fd and nothing else.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(std::io::Error::last_os_error()).at("syncfs", dir);
    }
    Ok(())
}

/// Renames `from` onto `to`, replacing what is there (one rename when `to` is absent).
fn put_in_place(from: &Path, to: &Path) -> Result<(), PathError> {
    if fs::symlink_metadata(to).is_ok() {
        let old = PathBuf::from(format!("{}.old", to.display()));
        remove_if_there(&old)?;
        fs::rename(to, &old).at("rename to", &old)?;
        crate::fault::point("snapshot.replacing");
        fs::rename(from, to).at("rename to", to)?;
        sync_parent(to)?;
        return remove_if_there(&old);
    }
    fs::rename(from, to).at("rename to", to)?;
    sync_parent(to)
}

fn remove_if_there(path: &Path) -> Result<(), PathError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => crate::build::remove_tree(path),
        Ok(_) => fs::remove_file(path).at("remove", path),
        Err(_) => Ok(()),
    }
}

/// Swaps two paths on one filesystem in one step (`renameat2(RENAME_EXCHANGE)`, Linux 3.15+).
fn exchange(a: &Path, b: &Path) -> Result<(), PathError> {
    use std::os::unix::ffi::OsStrExt;
    const RENAME_EXCHANGE: libc::c_uint = 1 << 1;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes()).map_err(|e| PathError {
        op: "swap",
        path: a.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes()).map_err(|e| PathError {
        op: "swap",
        path: b.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).at("swap with", b);
    }
    sync_parent(a)?;
    sync_parent(b)
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;

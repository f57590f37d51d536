//! Copying a SQLite database through SQLite (`VACUUM INTO`), in the `robokud snapshot:copy`
//! child only (it runs as the app's uid and gid, see `snapshot_copy.rs`): SQLite opens the
//! database's `-wal`, `-shm` and `-journal` files by name (`O_NOFOLLOW`, but a hard link, a
//! fifo or a shared-memory file the app rewrites is still whatever the app made it), so it must
//! never do that as root in a dir the app controls. Two users: the snapshot walk (one database among the
//! app's files, copied as a file if SQLite cannot) and `addons:backup` ([`one`]: the add-on's
//! database alone, through SQLite or not at all).

use super::snapshot::Copied;
use super::snapshot_copy::{Job, Outcome};
use crate::util::{IoContext, PathError};
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Where a database is copied through SQLite first, in the top of the app's data dir (the
/// snapshot walk leaves it out).
pub const SCRATCH: &str = ".roboku-snapshot-";
/// How long a backup waits for a database the app keeps locked (a snapshot waits less).
const BACKUP_BUSY: Duration = Duration::from_secs(5);
/// A backup's child is killed (`SIGALRM`) after this long: SQLite blocks for good opening a
/// fifo the app swapped in for a `-journal` after [`one`] looked.
pub const BACKUP_DEADLINE_SECS: u32 = 600;

/// Copies the database `src` (the app's own path, as the app sees it) into the new file `dst`
/// through SQLite: one consistent state, whatever the app is writing. SQLite needs a path to
/// write to and resolves `/proc/self/fd/N` to root's dirs, so the copy is made in `top` (the
/// app's own data dir, where the app can touch only its own data) first, then copied in.
pub fn vacuum(src: &Path, top: &Path, dst: &Path, busy: Duration) -> Result<(), String> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NOFOLLOW
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let scratch = top.join(format!("{SCRATCH}{}", std::process::id()));
    let _ = fs::remove_file(&scratch);
    let result = (|| {
        let db = rusqlite::Connection::open_with_flags(src, flags).map_err(|e| e.to_string())?;
        db.busy_timeout(busy).map_err(|e| e.to_string())?;
        // A database is the app's input: no schema tricks against the process reading it.
        db.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(|e| e.to_string())?;
        db.execute("VACUUM INTO ?1", [scratch.to_string_lossy().as_ref()])
            .map_err(|e| e.to_string())?;
        db.close().map_err(|(_, e)| e.to_string())?;
        let mut from = File::open(&scratch).map_err(|e| e.to_string())?;
        let mut to = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .map_err(|e| e.to_string())?;
        std::io::copy(&mut from, &mut to).map_err(|e| e.to_string())
    })();
    let _ = fs::remove_file(&scratch);
    if result.is_err() {
        let _ = fs::remove_file(dst);
    }
    result.map(drop)
}

/// A `-wal`, `-shm` or `-journal` beside `db` that is there and not a regular file. SQLite opens
/// them by name: a link it refuses (`O_NOFOLLOW`), but opening a fifo blocks it for good.
pub fn odd_sidecar(db: &Path) -> Option<std::path::PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|x| std::path::PathBuf::from(format!("{}{x}", db.display())))
        .find(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_file()))
}

/// A backup's copy: the database `name` in the top of `job.src` alone, into `dst/name`, through
/// SQLite (a database SQLite cannot read, a link, a file not the app's own: an error naming it).
pub fn one(job: &Job, name: &str, dst: &Path) -> Result<Outcome, PathError> {
    let Some(top) = &job.src else {
        let e = std::io::Error::other("a database is copied from a path, not an fd");
        return Err(e).at("copy", dst);
    };
    let src = top.join(name);
    let m = fs::symlink_metadata(&src).at("stat", &src)?;
    let refuse = |why: &str| Err(std::io::Error::other(why.to_string())).at("back up", &src);
    if !m.file_type().is_file() {
        return refuse("not a regular file (a link or something else was put there)");
    }
    if job.owner.is_some_and(|uid| m.uid() != uid) {
        return refuse("not the app's own file");
    }
    if let Some(side) = odd_sidecar(&src) {
        let e = std::io::Error::other(format!(
            "not a regular file (a link, fifo or other put beside {name}): remove it"
        ));
        return Err(e).at("back up", &side);
    }
    let budget = job.max_bytes.min(job.room);
    if m.len() > job.max_bytes {
        return Ok(Outcome::TooBig { bytes: m.len() });
    }
    if m.len() > job.room {
        return Ok(Outcome::NoRoom { bytes: m.len() });
    }
    let to = dst.join(name);
    vacuum(&src, top, &to, BACKUP_BUSY)
        .map_err(|e| {
            std::io::Error::other(format!(
                "{e} (read as the app's uid: a -wal, -shm or -journal beside it that the app                  cannot open itself stops it; remove those)"
            ))
        })
        .at("copy through SQLite", &src)?;
    let bytes = fs::symlink_metadata(&to).at("stat", &to)?.len();
    if bytes > budget {
        let _ = fs::remove_file(&to);
        return Ok(if bytes > job.max_bytes {
            Outcome::TooBig { bytes }
        } else {
            Outcome::NoRoom { bytes }
        });
    }
    fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).at("chmod", &to)?;
    Ok(Outcome::Copied(Copied {
        files: 1,
        bytes,
        databases: 1,
        skipped: Vec::new(),
    }))
}

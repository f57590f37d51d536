//! `roboku addons:backup`: one consistent copy of an add-on's data in one file, written to
//! `<data_dir>/backups/<app>/<addon>-<UTC time>.<ext>` (dirs root's 0700, the file root's 0600:
//! an add-on's data holds other apps' rows and credentials, so no app reads a backup, not even
//! its owner; `roboku disk` counts them per app).
//!
//! A [`Job`] is made on the engine (which resolves the add-on, its program and credentials) and
//! run off it, on a blocking thread: a backup never holds up the engine loop or supervision.
//! The file is written under a dot-name and renamed into place once whole, so a robokud killed
//! mid-way leaves no half backup under a backup's name (the dot-file is removed at the next
//! backup of that app).

use super::provider::{Addon, BackupFrom, Credential};
use super::snapshot_copy::{self, Outcome};
use crate::util::IoContext;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A backup to make, with everything resolved (no store, no engine).
pub struct Job {
    pub addon: Addon,
    pub program: Option<PathBuf>,
    pub creds: Vec<Credential>,
    /// The uid and gid the owner app's data is read as (its dynos'); None when robokud is not
    /// root (the engine refuses a sqlite backup as root without one).
    pub run_as: Option<(u32, u32)>,
    /// `<data_dir>/backups/<app>`.
    pub dir: PathBuf,
    pub now_ms: u64,
    /// The disk reserve a backup must not cross (`disk_reserve`).
    pub reserve: crate::disk::Reserve,
}

/// The backup's file name: `nav-postgres-20261203T142210Z.sql`.
pub fn file_name(addon: &str, now_ms: u64, ext: &str) -> String {
    let iso = roboku_wire::iso8601(now_ms);
    let stamp: String = iso
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{addon}-{stamp}Z.{ext}")
}

impl std::fmt::Debug for Job {
    // Without the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("addon", &self.addon.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// Makes the backup; its path and size.
    pub fn run(self) -> Result<(PathBuf, u64), String> {
        let provider = super::provider(self.addon.kind);
        let ext = provider.backup_ext(&self.addon)?;
        let parent = self.dir.parent().unwrap_or(&self.dir).to_path_buf();
        for d in [&parent, &self.dir] {
            std::fs::create_dir_all(d)
                .at("create dir", d)
                .map_err(|e| e.to_string())?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .at("chmod", d)
                .map_err(|e| e.to_string())?;
        }
        clear_partial(&self.dir);
        // About what it will take: the data as it is on disk (a dump is rarely bigger).
        let need = match self.addon.kind {
            // lstat: nothing in the app's dir is followed as root, not even to measure it.
            super::Kind::Sqlite => {
                std::fs::symlink_metadata(super::provider::sqlite_path(&self.addon))
                    .map(|m| m.len())
                    .unwrap_or(0)
            }
            _ => crate::deploy::tree_size(&self.addon.dir.join("data")),
        };
        crate::disk::check(
            &self.dir,
            self.reserve,
            need,
            &format!("a backup of {}", self.addon.name),
        )
        .map_err(|e| e.to_string())?;
        let name = file_name(&self.addon.name, self.now_ms, ext);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.part"));
        let room = crate::disk::room(&self.dir, self.reserve).map_err(|e| e.to_string())?;
        let from = BackupFrom {
            program: self.program.as_deref(),
            creds: &self.creds,
            run_as: self.run_as,
            room,
        };
        let made = provider.backup(&self.addon, &from, &tmp).and_then(|()| {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .at("chmod", &tmp)
                .map_err(|e| e.to_string())?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .at("sync", &tmp)
                .map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, &path)
                .at("rename to", &path)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("backing up {}: {e}", self.addon.name));
        }
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok((path, bytes))
    }
}

/// Removes half-written backups (and a sqlite copy's work dir) a killed robokud left.
fn clear_partial(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with('.') && n.ends_with(".part") {
            let _ = match e.file_type() {
                Ok(t) if t.is_dir() => crate::build::remove_tree(&e.path()).map_err(drop),
                _ => std::fs::remove_file(e.path()).map_err(drop),
            };
        }
    }
}

/// A new file for a backup: root's, 0600, never an existing one (nor a symlink).
pub fn create(to: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .at("create", to)
        .map_err(|e| e.to_string())
}

/// A SQLite database through SQLite's `VACUUM INTO` (one consistent state while the app writes),
/// never opened by root: SQLite opens the `-wal`, `-shm` and `-journal` files beside it by name
/// in a dir the app owns (a hard link there to a root-only file is truncated and rewritten as
/// the `-shm`; the app rewrites a wal-index while it is mapped), so only the app's uid may. The copy is made by the `robokud snapshot:copy`
/// child as `run_as` (the app's uid and gid) into a fresh dir root makes beside `to` (in root's
/// 0700 dirs) and hands over as an fd; root then takes the one file it asked for from there
/// ([`take_database`]) and moves it to `to`. The work dir goes either way.
pub fn sqlite(
    addon: &Addon,
    run_as: Option<(u32, u32)>,
    room: u64,
    to: &Path,
) -> Result<(), String> {
    let src = super::provider::sqlite_path(addon);
    // The child copies a name in the top of the data dir: nothing with a path in it.
    let name = addon.file.as_deref().unwrap_or("db.sqlite3").to_string();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!(
            "{}: not a file name in the data dir",
            src.display()
        ));
    }
    let work = PathBuf::from(format!("{}.dir.part", to.display()));
    remove_work(&work)?;
    let job = snapshot_copy::Job {
        src: Some(addon.dir.clone()),
        max_bytes: room,
        room,
        owner: run_as.map(|(uid, _)| uid),
        consistent: true,
        only: Some(name.clone()),
    };
    let taken = match super::snapshot::copy_into(&work, &job, None, run_as) {
        Ok(Outcome::Copied(_)) => take_database(&work.join(&name), room, run_as.is_some(), to),
        Ok(Outcome::TooBig { bytes } | Outcome::NoRoom { bytes }) => Err(format!(
            "{}: its copy takes {}, more than the {} free above the disk reserve",
            src.display(),
            roboku_wire::human_bytes(bytes),
            roboku_wire::human_bytes(room)
        )),
        Err(e) => Err(e.to_string()),
    };
    let removed = remove_work(&work);
    taken.and(removed)
}

fn remove_work(work: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(work) {
        Ok(_) => crate::build::remove_tree(work).map_err(|e| e.to_string()),
        Err(_) => Ok(()),
    }
}

/// Takes the copy the child left at `copy` (in a dir only root and that child could reach):
/// opened once, never through a link, checked by its fd (a regular file with one name, within
/// `budget`, a SQLite database), made root's 0600 (`chown` when the child ran as another uid)
/// and renamed to `to`, which must then be that same file.
pub fn take_database(copy: &Path, budget: u64, chown: bool, to: &Path) -> Result<(), String> {
    let refuse = |why: String| Err(format!("the copy {}: {why}", copy.display()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(copy)
        .at("open", copy)
        .map_err(|e| e.to_string())?;
    let m = f.metadata().at("stat", copy).map_err(|e| e.to_string())?;
    if !m.is_file() || m.nlink() != 1 {
        return refuse("not one regular file".into());
    }
    if m.len() > budget {
        return refuse(format!(
            "{} is over the budget of {}",
            roboku_wire::human_bytes(m.len()),
            roboku_wire::human_bytes(budget)
        ));
    }
    let mut head = [0u8; 16];
    if f.read_exact(&mut head).is_err() || &head != snapshot_copy::SQLITE_MAGIC {
        return refuse("not a SQLite database".into());
    }
    if chown {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        std::os::unix::fs::fchown(&f, Some(uid.as_raw()), Some(gid.as_raw()))
            .at("chown", copy)
            .map_err(|e| e.to_string())?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .at("chmod", copy)
        .map_err(|e| e.to_string())?;
    std::fs::rename(copy, to)
        .at("rename to", to)
        .map_err(|e| e.to_string())?;
    let there = std::fs::symlink_metadata(to)
        .at("stat", to)
        .map_err(|e| e.to_string())?;
    if (there.dev(), there.ino()) != (m.dev(), m.ino()) {
        return Err(format!("{}: not the file checked", to.display()));
    }
    Ok(())
}

/// A file copied as it is (Mosquitto's persistence file, written whole by the broker).
pub fn copy_file(src: &Path, to: &Path) -> Result<(), String> {
    let mut from = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .at("open", src)
        .map_err(|e| e.to_string())?;
    let mut out = create(to)?;
    std::io::copy(&mut from, &mut out)
        .at("copy to", to)
        .map_err(|e| e.to_string())
        .map(drop)
}

/// Redis: `SAVE` (as one of its users) makes `dump.rdb` one consistent state; then it is copied.
pub fn redis(addon: &Addon, creds: &[Credential], to: &Path) -> Result<(), String> {
    let cred = creds
        .first()
        .ok_or_else(|| format!("{} has no user to log in as", addon.name))?;
    let port = addon.port.unwrap_or(6379);
    let addr = format!("127.0.0.1:{port}");
    let mut s = std::net::TcpStream::connect(&addr)
        .map_err(|e| format!("connect to redis at {addr}: {e} (is {} up?)", addon.name))?;
    let timeout = Some(std::time::Duration::from_secs(120));
    let _ = s.set_read_timeout(timeout);
    for cmd in [
        vec!["AUTH", cred.user.as_str(), cred.password.as_str()],
        vec!["SAVE"],
    ] {
        s.write_all(&resp_command(&cmd))
            .map_err(|e| format!("send {} to redis at {addr}: {e}", cmd[0]))?;
        let answer = read_line(&mut s).map_err(|e| format!("redis at {addr}: {e}"))?;
        if !answer.starts_with('+') {
            return Err(format!("redis at {addr} answered {} with {answer}", cmd[0]));
        }
    }
    copy_file(&addon.dir.join("data").join("dump.rdb"), to)
}

/// One command in Redis's protocol (RESP): an array of bulk strings.
pub fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

fn read_line(s: &mut impl Read) -> Result<String, String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut b) {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) => line.push(b[0]),
            Err(e) => return Err(e.to_string()),
        }
        if line.len() > 4096 {
            return Err("answer too long".into());
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_carry_the_addon_and_the_utc_time() {
        // 2026-12-03T14:22:10.123Z
        let ms = 1_796_307_730_123;
        assert_eq!(
            file_name("nav-postgres", ms, "sql"),
            format!(
                "nav-postgres-{}Z.sql",
                roboku_wire::iso8601(ms)[..19].replace(['-', ':'], "")
            )
        );
        assert!(file_name("a", 0, "db").starts_with("a-19700101T000000Z"));
    }

    #[test]
    fn redis_commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            resp_command(&["AUTH", "u", "pw"]),
            b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n".to_vec()
        );
        let mut r: &[u8] = b"+OK\r\nrest";
        assert_eq!(read_line(&mut r).unwrap(), "+OK");
    }

    #[test]
    fn root_takes_only_one_regular_sqlite_file_from_the_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let (copy, to) = (tmp.path().join("db.sqlite3"), tmp.path().join("to"));
        std::fs::write(tmp.path().join("other"), "not this").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("other"), &copy).unwrap();
        let e = take_database(&copy, 1 << 20, false, &to).unwrap_err();
        assert!(e.contains("db.sqlite3"), "{e}");
        std::fs::remove_file(&copy).unwrap();
        std::fs::write(&copy, "not a database at all").unwrap();
        let e = take_database(&copy, 1 << 20, false, &to).unwrap_err();
        assert!(e.contains("not a SQLite database"), "{e}");
        let c = rusqlite::Connection::open(tmp.path().join("real")).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        std::fs::rename(tmp.path().join("real"), &copy).unwrap();
        let e = take_database(&copy, 100, false, &to).unwrap_err();
        assert!(e.contains("over the budget"), "{e}");
        assert!(!to.exists());
        take_database(&copy, 1 << 20, false, &to).unwrap();
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!copy.exists());
    }

    #[test]
    fn a_sqlite_backup_is_one_whole_database_and_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db.sqlite3");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('kept');",
        )
        .unwrap();
        let addon = Addon {
            name: "nav-sqlite".into(),
            kind: super::super::Kind::Sqlite,
            app: "nav".into(),
            uid: None,
            port: None,
            dir: tmp.path().to_path_buf(),
            file: None,
        };
        let job = Job {
            addon,
            program: None,
            creds: Vec::new(),
            run_as: None,
            dir: tmp.path().join("backups").join("nav"),
            now_ms: 0,
            reserve: crate::disk::Reserve::default(),
        };
        // A half backup a killed robokud left goes.
        std::fs::create_dir_all(&job.dir).unwrap();
        std::fs::write(job.dir.join(".x.part"), "half").unwrap();
        let (path, bytes) = job.run().unwrap();
        assert!(bytes > 0);
        assert!(!tmp.path().join("backups/nav/.x.part").exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("backups/nav"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, [path.file_name().unwrap()], "only the backup is left");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(tmp.path().join("backups"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let copy = rusqlite::Connection::open(&path).unwrap();
        let x: String = copy.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, "kept");
        drop(c);
    }
}

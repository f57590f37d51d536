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

use super::provider::{Addon, Credential};
use crate::util::IoContext;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A backup to make, with everything resolved (no store, no engine).
pub struct Job {
    pub addon: Addon,
    pub program: Option<PathBuf>,
    pub creds: Vec<Credential>,
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
            super::Kind::Sqlite => std::fs::metadata(super::provider::sqlite_path(&self.addon))
                .map(|m| m.len())
                .unwrap_or(0),
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
        let made = provider
            .backup(&self.addon, self.program.as_deref(), &self.creds, &tmp)
            .and_then(|()| {
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

/// Removes half-written backups a killed robokud left.
fn clear_partial(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with('.') && n.ends_with(".part") {
            let _ = std::fs::remove_file(e.path());
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

/// A SQLite database through SQLite's `VACUUM INTO` (one consistent state while the app writes).
pub fn sqlite(src: &Path, to: &Path) -> Result<(), String> {
    super::snapshot::vacuum_into(src, to).map_err(|e| format!("{}: {e}", src.display()))
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

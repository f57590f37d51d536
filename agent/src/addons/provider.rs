//! The provider interface: what each kind of add-on does to provision itself, which config var
//! value an attached app gets, how its server (if any) runs, its health, a backup and its removal.
//! Providers are stateless: everything they need is the [`Addon`] record and its credentials.

use super::Kind;
use crate::util::{IoContext, PathError};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One add-on as the store keeps it, with the paths the engine resolved for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Addon {
    pub name: String,
    pub kind: Kind,
    /// The app that created it (and whose data dir holds a sqlite file).
    pub app: String,
    /// The uid (and gid) its server runs as; for sqlite the owner app's.
    pub uid: Option<u32>,
    pub port: Option<u16>,
    /// Where its files live: the owner's data dir (sqlite) or `addons/<name>/` (servers).
    pub dir: PathBuf,
    /// A file name inside `dir` (sqlite's database).
    pub file: Option<String>,
}

/// An attached app's credentials (servers give each app its own user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub app: String,
    pub user: String,
    pub password: String,
}

/// A server process to supervise: its command line (run by `/bin/sh -c`, `exec`ed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCommand {
    pub command: String,
}

/// A server's health as its files tell it: its config file is there.
pub fn file_present(path: &Path) -> Result<(), String> {
    path.is_file()
        .then_some(())
        .ok_or_else(|| format!("{} is missing", path.display()))
}

pub trait Provider: Send + Sync {
    fn kind(&self) -> Kind;
    /// The program it needs and the Debian package that has it.
    fn needs(&self) -> Option<(&'static str, &'static str)>;
    /// Whether another app may attach it; `Err` says why not and what to do instead.
    fn can_share(&self, addon: &Addon) -> Result<(), String>;
    /// Writes what the add-on needs (its files, its server's config with every credential).
    /// Called at create and again after each attach or detach; idempotent.
    fn provision(&self, addon: &Addon, creds: &[Credential]) -> Result<(), PathError>;
    /// The config var's value for one attached app.
    fn url(&self, addon: &Addon, cred: &Credential) -> String;
    /// The server to supervise, `None` for a file-only add-on.
    fn server(&self, addon: &Addon, program: &Path) -> Option<ServerCommand>;
    /// What is wrong with the add-on's files, if anything (a server's liveness is its service's).
    fn health(&self, addon: &Addon) -> Result<(), String>;
    /// Removes what `provision` made.
    fn destroy(&self, addon: &Addon) -> Result<(), PathError>;

    /// Where its server program is, or the sentence naming the package to install.
    fn locate(&self) -> Result<Option<PathBuf>, String> {
        self.needs()
            .map(|(program, package)| find_program(program, package))
            .transpose()
    }
    /// Blocking work before each start of the server (off the engine, in the server's task):
    /// postgres's `initdb` the first time.
    fn prepare(&self, _addon: &Addon, _program: &Path) -> Result<(), String> {
        Ok(())
    }
    /// Blocking work once the server runs (off the engine): postgres's roles, after each start
    /// and each attach or detach. Idempotent.
    fn after_start(&self, _addon: &Addon, _program: &Path) -> Result<(), String> {
        Ok(())
    }
    /// Why the running server is not ready for its apps yet, if it is not.
    fn ready(&self, _addon: &Addon) -> Result<(), String> {
        Ok(())
    }
    /// The signal that stops the server cleanly (SIGKILL follows after a grace).
    fn stop_signal(&self) -> i32 {
        libc::SIGTERM
    }
    /// The backup file's extension, or why this kind has nothing to back up.
    fn backup_ext(&self, addon: &Addon) -> Result<&'static str, String>;
    /// Writes one consistent copy of the add-on's data to the new file `to` (in a dir only
    /// root can enter), blocking; never called on the engine.
    fn backup(&self, addon: &Addon, from: &BackupFrom, to: &Path) -> Result<(), String>;
}

/// What a backup has besides the add-on: its program, credentials, who the data is read as.
pub struct BackupFrom<'a> {
    pub program: Option<&'a Path>,
    pub creds: &'a [Credential],
    /// The uid and gid the owner app's data is read as (sqlite; None: not root).
    pub run_as: Option<(u32, u32)>,
    /// Bytes the copy may take above the disk reserve.
    pub room: u64,
}

/// The provider of `kind`.
pub fn provider(kind: Kind) -> &'static dyn Provider {
    match kind {
        Kind::Sqlite => &Sqlite,
        Kind::Mqtt => &super::mqtt::Mqtt,
        Kind::Redis => &super::redis::Redis,
        Kind::Postgres => &super::postgres::Postgres,
    }
}

/// Where `program` is installed (robokud's PATH may lack the sbin dirs), or the sentence that
/// names the package to install.
pub fn find_program(program: &str, package: &str) -> Result<PathBuf, String> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!("{program} is not installed on this robot: install the Debian package {package} (apt-get install {package})")
        })
}

/// The sqlite database file of an add-on.
pub fn sqlite_path(addon: &Addon) -> PathBuf {
    addon
        .dir
        .join(addon.file.as_deref().unwrap_or("db.sqlite3"))
}

/// `sqlite:////abs/path` (Heroku style: `sqlite://` then the absolute path).
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite:///{}", path.display())
}

/// The file-only add-on: a database file in the owning app's persistent data dir.
pub struct Sqlite;

impl Provider for Sqlite {
    fn kind(&self) -> Kind {
        Kind::Sqlite
    }
    fn needs(&self) -> Option<(&'static str, &'static str)> {
        None
    }
    fn can_share(&self, addon: &Addon) -> Result<(), String> {
        Err(format!(
            "{} is a file in {}'s data dir, which only {}'s uid can open; sharing it would open \
             that dir to the other app. Give the other app its own sqlite add-on, or share data \
             through an mqtt or redis add-on",
            addon.name, addon.app, addon.app
        ))
    }
    fn provision(&self, addon: &Addon, _creds: &[Credential]) -> Result<(), PathError> {
        provision_sqlite(&sqlite_path(addon), addon.uid)
    }
    fn url(&self, addon: &Addon, _cred: &Credential) -> String {
        sqlite_url(&sqlite_path(addon))
    }
    fn server(&self, _addon: &Addon, _program: &Path) -> Option<ServerCommand> {
        None
    }
    fn health(&self, addon: &Addon) -> Result<(), String> {
        let path = sqlite_path(addon);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("{} is not a file", path.display())),
            Err(e) => Err(format!(
                "{}: {}",
                path.display(),
                roboku_wire::in_words(&e.to_string())
            )),
        }
    }
    fn backup_ext(&self, _addon: &Addon) -> Result<&'static str, String> {
        Ok("sqlite3")
    }
    fn backup(&self, addon: &Addon, from: &BackupFrom, to: &Path) -> Result<(), String> {
        super::backup::sqlite(addon, from.run_as, from.room, to)
    }
    fn destroy(&self, addon: &Addon) -> Result<(), PathError> {
        let path = sqlite_path(addon);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).at("remove", &p)
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Makes the database file `path` (in the owner app's data dir, which the app controls) exist,
/// `uid`'s: created new (`O_EXCL`, 0600) or opened as it is, never through a link
/// (`O_NOFOLLOW`), and given to `uid` by its fd, so a link or a hard link the app planted
/// there gets root to neither create, chmod nor chown anything else.
pub fn provision_sqlite(path: &Path, uid: Option<u32>) -> Result<(), PathError> {
    let open = |create: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(create)
            .create_new(create)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    let f = match open(true) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(false).at("open", path)?,
        other => other.at("create", path)?,
    };
    let m = f.metadata().at("stat", path)?;
    let refuse =
        |why: &str| Err(std::io::Error::other(why.to_string())).at("use as a database", path);
    if !m.is_file() {
        return refuse("not a regular file (something else was put there)");
    }
    match uid {
        Some(uid) if (m.uid(), m.gid()) != (uid, uid) => {
            // Given away only when it has no other name: a hard link to another file is not.
            if m.nlink() != 1 {
                return refuse("not one regular file (a hard link to another file was put there)");
            }
            std::os::unix::fs::fchown(&f, Some(uid), Some(uid)).at("chown", path)
        }
        _ => Ok(()),
    }
}

/// Makes a server add-on's dir `uid:uid 0700` and writes `files` in it `0600`, theirs.
pub fn write_server_files(
    dir: &Path,
    uid: Option<u32>,
    files: &[(&str, String)],
) -> Result<(), PathError> {
    std::fs::create_dir_all(dir.join("data")).at("create dir", dir)?;
    for d in [dir.to_path_buf(), dir.join("data")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).at("chmod", &d)?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&d, Some(uid), Some(uid)).at("chown", &d)?;
        }
    }
    for (name, text) in files {
        let path = dir.join(name);
        write_private(&path, text.as_bytes(), 0o600)?;
        if let Some(uid) = uid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).at("chown", &path)?;
        }
    }
    Ok(())
}

/// Writes `path` whole (a temp file renamed over it) with `mode`, root's. The dir is the
/// server's uid's: the temp file is made new (`O_EXCL`, so a link planted there is never
/// followed) and a stale one removed first.
pub fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PathError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at("remove", &tmp),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .at("create", &tmp)?;
    std::io::Write::write_all(&mut f, bytes).at("write", &tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .at("chmod", &tmp)?;
    drop(f);
    std::fs::rename(&tmp, path).at("rename to", path)
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_have_four_slashes_before_an_absolute_path() {
        assert_eq!(
            sqlite_url(Path::new("/var/lib/roboku/data/nav/db.sqlite3")),
            "sqlite:////var/lib/roboku/data/nav/db.sqlite3"
        );
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let e = find_program("no-such-server-xyz", "xyz-server").unwrap_err();
        assert!(e.contains("apt-get install xyz-server"), "{e}");
        assert!(find_program("sh", "dash").is_ok());
    }

    #[test]
    fn sqlite_provisions_a_private_file_and_destroys_it() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Addon {
            name: "nav-sqlite".into(),
            kind: Kind::Sqlite,
            app: "nav".into(),
            uid: None,
            port: None,
            dir: tmp.path().to_path_buf(),
            file: None,
        };
        assert!(Sqlite.health(&a).is_err());
        Sqlite.provision(&a, &[]).unwrap();
        Sqlite.health(&a).unwrap();
        let mode = std::fs::metadata(sqlite_path(&a))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(Sqlite.can_share(&a).unwrap_err().contains("nav's data dir"));
        Sqlite.provision(&a, &[]).unwrap(); // again: idempotent
        Sqlite.destroy(&a).unwrap();
        // A link the app planted is neither followed nor chmodded through.
        let target = tmp.path().join("root-only");
        std::fs::write(&target, "secret").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink(&target, sqlite_path(&a)).unwrap();
        let e = Sqlite.provision(&a, &[]).unwrap_err().to_string();
        assert!(e.contains("db.sqlite3"), "{e}");
        let m = std::fs::metadata(&target).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
        std::fs::remove_file(sqlite_path(&a)).unwrap();
        // A hard link to another file is not given away (to a uid that is not its owner).
        std::fs::hard_link(&target, sqlite_path(&a)).unwrap();
        let other = Addon {
            uid: Some(nix::unistd::getuid().as_raw() + 1),
            ..a.clone()
        };
        let e = Sqlite.provision(&other, &[]).unwrap_err().to_string();
        assert!(e.contains("hard link"), "{e}");
        let m = std::fs::metadata(&target).unwrap();
        assert_eq!(m.uid(), nix::unistd::getuid().as_raw(), "not chowned");
        std::fs::remove_file(sqlite_path(&a)).unwrap();
        Sqlite.provision(&a, &[]).unwrap();
        Sqlite.destroy(&a).unwrap();
        assert!(!sqlite_path(&a).exists());
    }
}

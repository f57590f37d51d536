//! The SQLite store: the only code that writes SQL. One connection, owned by the engine.
//!
//! It owns the durable state that must survive an agent restart: apps, their immutable releases,
//! config vars, formation, the port each dyno was given, what the agent knew about each running
//! dyno, and the append-only event log. WAL with `synchronous=FULL`, because a release that was
//! reported as committed must still be there after a power cut; migrations are keyed on
//! `PRAGMA user_version` (see `schema.rs`).
//!
//! Nothing here decides policy (which release runs, how many dynos); callers pass in the facts,
//! including the time, so the store stays deterministic under test.

mod addons;
mod apps;
mod drains;
mod dynos;
pub use addons::{AddonRow, AttachmentRow};
mod events;
mod formation;
mod gates;
mod releases;
mod rename;
mod schema;
mod snapshot_opt;

use crate::util::{IoContext, PathError};
pub use drains::DrainRow;
pub use gates::{GateRow, HealthRow, HoldRow};
use roboku_wire::fleet::Artifact;
use roboku_wire::{ExitInfo, Limits, ReleaseBuildpack};
use rusqlite::types::Type;
use rusqlite::{Connection, Row};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {op}: {source}")]
    Sqlite {
        path: String,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The database's directory could not be created.
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("no app {0:?}")]
    NoApp(String),
    #[error("app {0:?} already exists")]
    AppExists(String),
    #[error("no release v{version} of app {app:?}")]
    NoRelease { app: String, version: u32 },
    #[error("no free port in {min}-{max}")]
    NoPort { min: u16, max: u16 },
    #[error("no free app uid in {min}-{max} (widen app_uids in robokud.toml)")]
    NoUid { min: u32, max: u32 },
    #[error(
        "store {path}: database is from a newer robokud (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppRow {
    pub name: String,
    pub created_at: u64,
    pub user: Option<String>,
    pub grace_secs: Option<u64>,
    pub current_release: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseRow {
    pub app: String,
    pub version: u32,
    pub created_at: u64,
    pub description: String,
    pub slug: String,
    pub process_types: BTreeMap<String, String>,
    pub config: BTreeMap<String, String>,
    /// `succeeded` or `failed`.
    pub status: String,
    pub door: String,
    /// The fleet artifact the slug came from (releases from before schema 5 know only its
    /// sha256: url empty, size 0).
    pub artifact: Option<Artifact>,
    /// Where it stands in its probation (`None`: it had none).
    pub probation: Option<String>,
    /// The buildpacks its slug was built with (`None`: not known).
    pub buildpacks: Option<Vec<ReleaseBuildpack>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRelease {
    pub slug: String,
    pub process_types: BTreeMap<String, String>,
    pub config: BTreeMap<String, String>,
    pub description: String,
    pub door: String,
    pub now: u64,
    pub artifact: Option<Artifact>,
    pub buildpacks: Option<Vec<ReleaseBuildpack>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FormationRow {
    pub ptype: String,
    pub count: u32,
    pub limits: Limits,
}

/// What survives an agent restart about one dyno.
#[derive(Debug, Clone, PartialEq)]
pub struct DynoRow {
    pub app: String,
    pub name: String,
    pub pid: Option<i32>,
    /// Process start time (clock ticks since boot, /proc/pid/stat field 22): guards pid reuse.
    pub pid_start: Option<u64>,
    /// Relative cgroup path of the running instance (`demo/web.1@17`), to find it again.
    pub cgroup: Option<String>,
    /// Tag of the instance being spawned or running (`demo/web.1@17`, in its environment as
    /// `ROBOKU_INSTANCE`), recorded before the fork.
    pub instance: Option<String>,
    pub release: u32,
    pub port: u16,
    pub restarts: u32,
    pub started_at: u64,
    pub last_exit: Option<ExitInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub ts: u64,
    pub app: Option<String>,
    pub door: String,
    pub action: String,
    pub result: String,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// How long a statement waits on a lock held by another connection (e.g. `sqlite3` run by an
/// operator) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

impl Store {
    /// Opens (creating if needed) the database and runs migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).at("create dir", dir)?;
        }
        let conn = Connection::open(path).at("open", path)?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .at("set busy_timeout", path)?;
        // `journal_mode` answers with the mode it ended up in; anything but WAL (e.g. a
        // filesystem without shared memory) would silently lose the durability we rely on.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .at("set journal_mode", path)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite {
                path: path.display().to_string(),
                op: "set journal_mode",
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("journal_mode is {mode}, not wal")),
                ),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .at("set synchronous", path)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .at("set foreign_keys", path)?;
        // Every statement the store runs is cached; keep them all.
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        schema::migrate(&mut store.conn, &store.path, schema::MIGRATIONS)?;
        store.make_private()?;
        Ok(store)
    }

    /// The database, its WAL and shared-memory file: root's alone (config vars are secrets).
    /// New files get that from robokud's umask; this fixes stores made by older versions.
    fn make_private(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let path = PathBuf::from(name);
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).at("chmod", &path).map_err(StoreError::from)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `NoApp` unless the app exists. Works on a transaction too (it derefs to a connection).
    fn require_app(conn: &Connection, path: &Path, app: &str) -> Result<(), StoreError> {
        let found: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM apps WHERE name = ?1")
            .and_then(|mut st| optional(st.query_row([app], |r| r.get(0))))
            .at("look up app", path)?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::NoApp(app.to_string())),
        }
    }
}

/// Wraps a rusqlite error with the database path and the operation, as `IoContext` does for IO.
trait SqlContext<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            path: path.display().to_string(),
            op,
            source,
        })
    }
}

/// `query_row` that treats "no row" as `None`.
fn optional<T>(r: rusqlite::Result<T>) -> rusqlite::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Serializes a value for a JSON text column.
fn to_json<T: Serialize>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Reads a JSON text column; a column that does not parse is a conversion error naming the column.
fn json_col<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// Reads a nullable JSON text column.
fn json_col_opt<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::Store;

    /// A store in a fresh temp dir; keep the dir alive as long as the store.
    pub fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("roboku.db")).expect("open store");
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_parent_dirs_and_sets_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/roboku.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert!(path.exists());
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        let fk: i64 = store
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::MIGRATIONS.len() as i64);
    }

    #[test]
    fn open_names_the_dir_it_could_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file.join("sub/roboku.db"))
            .err()
            .expect("open must fail");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Io(_)), "{msg}");
        assert!(
            msg.contains("create dir") && msg.contains(&*file.to_string_lossy()),
            "{msg}"
        );
    }

    #[test]
    fn sqlite_errors_name_path_and_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        std::fs::write(&path, b"this is not a sqlite database, not at all, no").unwrap();
        let err = Store::open(&path).err().expect("open must fail");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Sqlite { .. }), "{msg}");
        assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
    }

    #[test]
    fn reopen_finds_everything_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        let config: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        let limits = Limits {
            memory_max: Some(64 << 20),
            cpu: Some(0.5),
            ..Limits::default()
        };
        let dyno = DynoRow {
            app: "demo".into(),
            name: "web.1".into(),
            pid: Some(42),
            pid_start: Some(123456),
            cgroup: Some("demo/web.1@1".into()),
            instance: Some("demo/web.1@1".into()),
            release: 1,
            port: 5000,
            restarts: 2,
            started_at: 10,
            last_exit: Some(ExitInfo {
                at: 9,
                code: Some(1),
                signal: None,
                oom: false,
                reason: "exit 1".into(),
            }),
        };
        let (app, release, formation) = {
            let mut s = Store::open(&path).unwrap();
            s.create_app("demo", 1).unwrap();
            s.update_app("demo", Some("robot"), Some(7)).unwrap();
            s.replace_config("demo", &config).unwrap();
            let release = s
                .create_release(
                    "demo",
                    NewRelease {
                        slug: "abc".into(),
                        process_types: [("web".to_string(), "./run".to_string())].into(),
                        config: config.clone(),
                        description: "Deploy abc".into(),
                        door: "git".into(),
                        now: 5,
                        artifact: None,
                        buildpacks: None,
                    },
                )
                .unwrap();
            let formation = vec![FormationRow {
                ptype: "web".into(),
                count: 2,
                limits: limits.clone(),
            }];
            s.save_formation("demo", &formation).unwrap();
            assert_eq!(s.port_for("demo", "web.1", 5000, 5010).unwrap(), 5000);
            s.save_dynos(std::slice::from_ref(&dyno), &[]).unwrap();
            s.add_event(11, Some("demo"), "cli", "deploy", "ok")
                .unwrap();
            (s.app("demo").unwrap().unwrap(), release, formation)
        };
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.app("demo").unwrap(), Some(app));
        assert_eq!(s.releases("demo").unwrap(), vec![release]);
        assert_eq!(s.config("demo").unwrap(), config);
        assert_eq!(s.formation("demo").unwrap(), formation);
        assert_eq!(s.dynos().unwrap(), vec![dyno]);
        assert_eq!(s.port_for("demo", "web.2", 5000, 5010).unwrap(), 5001);
        let events = s.events(Some("demo"), 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "deploy");
    }
}

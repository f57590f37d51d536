//! The SQLite store: the only code that writes SQL. One connection, owned by the engine.
//! WAL, `synchronous=FULL`, migrations keyed on `user_version`.
//! (Stub: the contract below is fixed; the implementation lands with its tests.)

use roboku_wire::{ExitInfo, Limits};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {op}: {source}")]
    Sqlite { path: String, op: &'static str, #[source] source: rusqlite::Error },
    #[error("no app {0:?}")]
    NoApp(String),
    #[error("app {0:?} already exists")]
    AppExists(String),
    #[error("no release v{version} of app {app:?}")]
    NoRelease { app: String, version: u32 },
    #[error("no free port in {min}-{max}")]
    NoPort { min: u16, max: u16 },
    #[error("store {path}: database is from a newer robokud (schema {found}, this one knows {known})")]
    TooNew { path: String, found: i64, known: i64 },
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRelease {
    pub slug: String,
    pub process_types: BTreeMap<String, String>,
    pub config: BTreeMap<String, String>,
    pub description: String,
    pub door: String,
    pub now: u64,
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
    _private: (),
}

impl Store {
    /// Opens (creating if needed) the database and runs migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> { let _ = path; todo!() }
    pub fn create_app(&mut self, name: &str, now: u64) -> Result<AppRow, StoreError> { let _ = (name, now); todo!() }
    pub fn app(&self, name: &str) -> Result<Option<AppRow>, StoreError> { let _ = name; todo!() }
    pub fn apps(&self) -> Result<Vec<AppRow>, StoreError> { todo!() }
    pub fn update_app(&mut self, name: &str, user: Option<&str>, grace_secs: Option<u64>) -> Result<AppRow, StoreError> { let _ = (name, user, grace_secs); todo!() }
    /// Deletes the app and everything of it (releases, config, formation, ports, dynos; events stay).
    pub fn delete_app(&mut self, name: &str) -> Result<(), StoreError> { let _ = name; todo!() }
    /// Creates release v(max+1) and makes it current, in one transaction.
    pub fn create_release(&mut self, app: &str, new: NewRelease) -> Result<ReleaseRow, StoreError> { let _ = (app, new); todo!() }
    /// Newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<ReleaseRow>, StoreError> { let _ = app; todo!() }
    pub fn release(&self, app: &str, version: u32) -> Result<Option<ReleaseRow>, StoreError> { let _ = (app, version); todo!() }
    pub fn set_current_release(&mut self, app: &str, version: u32) -> Result<(), StoreError> { let _ = (app, version); todo!() }
    pub fn set_release_status(&mut self, app: &str, version: u32, status: &str) -> Result<(), StoreError> { let _ = (app, version, status); todo!() }
    /// Config vars that the next release will snapshot.
    pub fn config(&self, app: &str) -> Result<BTreeMap<String, String>, StoreError> { let _ = app; todo!() }
    pub fn replace_config(&mut self, app: &str, config: &BTreeMap<String, String>) -> Result<(), StoreError> { let _ = (app, config); todo!() }
    pub fn formation(&self, app: &str) -> Result<Vec<FormationRow>, StoreError> { let _ = app; todo!() }
    /// Upserts each row (count and limits), in one transaction.
    pub fn save_formation(&mut self, app: &str, rows: &[FormationRow]) -> Result<(), StoreError> { let _ = (app, rows); todo!() }
    /// The dyno's recorded port, or the lowest port in range not recorded for any dyno of any app.
    pub fn port_for(&mut self, app: &str, dyno: &str, min: u16, max: u16) -> Result<u16, StoreError> { let _ = (app, dyno, min, max); todo!() }
    pub fn dynos(&self) -> Result<Vec<DynoRow>, StoreError> { todo!() }
    /// Upserts rows and deletes `(app, name)` pairs in `gone`, in one transaction.
    pub fn save_dynos(&mut self, rows: &[DynoRow], gone: &[(String, String)]) -> Result<(), StoreError> { let _ = (rows, gone); todo!() }
    pub fn add_event(&mut self, ts: u64, app: Option<&str>, door: &str, action: &str, result: &str) -> Result<(), StoreError> { let _ = (ts, app, door, action, result); todo!() }
    /// Newest last, at most `n`.
    pub fn events(&self, app: Option<&str>, n: usize) -> Result<Vec<EventRow>, StoreError> { let _ = (app, n); todo!() }
}

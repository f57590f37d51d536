//! Per-app data snapshot opt-out (`roboku data:snapshots off|on -a APP`) and which releases
//! were replaced while it was off.

use super::{optional, SqlContext, Store, StoreError};

impl Store {
    /// Whether the app's data is snapshotted when a release replaces another (default yes).
    pub fn data_snapshots(&self, app: &str) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT data_snapshots FROM apps WHERE name = ?1")
            .and_then(|mut st| optional(st.query_row([app], |r| r.get::<_, i64>(0))))
            .at("select app data_snapshots", &self.path)?
            .map(|v| v != 0)
            .ok_or_else(|| StoreError::NoApp(app.to_string()))
    }

    pub fn set_data_snapshots(&mut self, app: &str, on: bool) -> Result<(), StoreError> {
        let n = self
            .conn
            .prepare_cached("UPDATE apps SET data_snapshots = ?2 WHERE name = ?1")
            .and_then(|mut st| st.execute(rusqlite::params![app, i64::from(on)]))
            .at("update app data_snapshots", &self.path)?;
        if n == 0 {
            return Err(StoreError::NoApp(app.to_string()));
        }
        Ok(())
    }

    /// Records that release `version` was replaced without a snapshot because the app opted out.
    pub fn mark_snapshot_off(&mut self, app: &str, version: u32) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE releases SET data_snapshot = 'off' WHERE app = ?1 AND version = ?2",
            )
            .and_then(|mut st| st.execute(rusqlite::params![app, version]))
            .at("mark release data_snapshot off", &self.path)?;
        Ok(())
    }

    /// Whether release `version` was replaced while the app had opted out of snapshots.
    pub fn snapshot_was_off(&self, app: &str, version: u32) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT data_snapshot FROM releases WHERE app = ?1 AND version = ?2")
            .and_then(|mut st| {
                optional(st.query_row(rusqlite::params![app, version], |r| {
                    r.get::<_, Option<String>>(0)
                }))
            })
            .at("select release data_snapshot", &self.path)
            .map(|v| v.flatten().as_deref() == Some("off"))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn opt_out_is_per_app_and_marks_releases() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("roboku.db")).unwrap();
        s.create_app("nav", 1).unwrap();
        s.create_app("ui", 1).unwrap();
        assert!(s.data_snapshots("nav").unwrap());
        s.set_data_snapshots("nav", false).unwrap();
        assert!(!s.data_snapshots("nav").unwrap());
        assert!(s.data_snapshots("ui").unwrap(), "others keep snapshots");
        assert!(s.set_data_snapshots("nope", false).is_err());
        assert!(!s.snapshot_was_off("nav", 1).unwrap());
        s.set_data_snapshots("nav", true).unwrap();
        assert!(s.data_snapshots("nav").unwrap());
    }
}

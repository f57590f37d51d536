//! Log drains (schema 10): where an app's logs are also sent. Rows only; the drains' cursors and
//! counters are their tasks' (see `crate::drains`).

use super::{SqlContext, Store, StoreError};
use rusqlite::params;

#[derive(Debug, Clone, PartialEq)]
pub struct DrainRow {
    pub id: String,
    pub app: String,
    pub url: String,
    pub token: String,
    pub created_at: u64,
    pub door: String,
}

impl Store {
    /// Adds a drain; `Ok(false)` if the app has one with that URL already.
    pub fn add_drain(&mut self, row: &DrainRow) -> Result<bool, StoreError> {
        Store::require_app(&self.conn, &self.path, &row.app)?;
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO drains (id, app, url, token, created_at, door)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (app, url) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    row.id,
                    row.app,
                    row.url,
                    row.token,
                    row.created_at,
                    row.door
                ])
            })
            .at("save drain", &self.path)?;
        Ok(n > 0)
    }

    /// Removes drain `id` of `app`; false if it has none of that id.
    pub fn remove_drain(&mut self, app: &str, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM drains WHERE app = ?1 AND id = ?2")
            .and_then(|mut st| st.execute([app, id]))
            .at("delete drain", &self.path)?;
        Ok(n > 0)
    }

    /// The drains of `app`, or of every app, oldest first.
    pub fn drains(&self, app: Option<&str>) -> Result<Vec<DrainRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, app, url, token, created_at, door FROM drains
                 WHERE ?1 IS NULL OR app = ?1 ORDER BY created_at, id",
            )
            .and_then(|mut st| {
                st.query_map([app], |r| {
                    Ok(DrainRow {
                        id: r.get(0)?,
                        app: r.get(1)?,
                        url: r.get(2)?,
                        token: r.get(3)?,
                        created_at: r.get(4)?,
                        door: r.get(5)?,
                    })
                })?
                .collect()
            })
            .at("list drains", &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_are_per_app_unique_by_url_and_go_with_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("roboku.db")).unwrap();
        s.create_app("nav", 1).unwrap();
        s.create_app("ui", 1).unwrap();
        let row = |id: &str, app: &str, url: &str| DrainRow {
            id: id.into(),
            app: app.into(),
            url: url.into(),
            token: format!("d.{id}"),
            created_at: 1,
            door: "cli".into(),
        };
        assert!(s.add_drain(&row("d-1", "nav", "syslog://h:1")).unwrap());
        assert!(!s.add_drain(&row("d-2", "nav", "syslog://h:1")).unwrap());
        assert!(s.add_drain(&row("d-3", "ui", "syslog://h:1")).unwrap());
        assert!(matches!(
            s.add_drain(&row("d-4", "gone", "syslog://h:1")),
            Err(StoreError::NoApp(_))
        ));
        assert_eq!(
            s.drains(Some("nav")).unwrap(),
            [row("d-1", "nav", "syslog://h:1")]
        );
        assert_eq!(s.drains(None).unwrap().len(), 2);
        assert!(
            !s.remove_drain("ui", "d-1").unwrap(),
            "not another app's drain"
        );
        assert!(s.remove_drain("nav", "d-1").unwrap());
        s.delete_app("ui").unwrap();
        assert!(s.drains(None).unwrap().is_empty());
    }
}

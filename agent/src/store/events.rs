//! The append-only audit log: who (which door) did what to which app, and how it ended.
//! Rows keep the app name as plain text and are not deleted with the app.

use super::{EventRow, SqlContext, Store, StoreError};
use rusqlite::params;

impl Store {
    pub fn add_event(
        &mut self,
        ts: u64,
        app: Option<&str>,
        door: &str,
        action: &str,
        result: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (ts, app, door, action, result) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| st.execute(params![ts, app, door, action, result]))
            .at("insert event", &self.path)?;
        Ok(())
    }

    /// The newest `n` events, returned oldest first (newest last). `app: None` means every event,
    /// including those of agent-wide actions.
    pub fn events(&self, app: Option<&str>, n: usize) -> Result<Vec<EventRow>, StoreError> {
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "SELECT id, ts, app, door, action, result FROM (
                    SELECT * FROM events WHERE ?1 IS NULL OR app = ?1 ORDER BY id DESC LIMIT ?2
                 ) ORDER BY id",
            )
            .and_then(|mut st| {
                st.query_map(params![app, limit], |r| {
                    Ok(EventRow {
                        id: r.get(0)?,
                        ts: r.get(1)?,
                        app: r.get(2)?,
                        door: r.get(3)?,
                        action: r.get(4)?,
                        result: r.get(5)?,
                    })
                })?
                .collect()
            })
            .at("select events", &self.path)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;

    #[test]
    fn events_are_the_newest_n_oldest_first() {
        let (_dir, mut s) = store();
        assert!(s.events(None, 10).unwrap().is_empty());
        for i in 0..5u64 {
            s.add_event(100 + i, Some("a"), "cli", &format!("act{i}"), "ok")
                .unwrap();
        }
        s.add_event(200, Some("b"), "mqtt", "scale", "error: nope")
            .unwrap();
        s.add_event(201, None, "api", "settings", "ok").unwrap();

        let a: Vec<_> = s
            .events(Some("a"), 3)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(a, ["act2", "act3", "act4"]);
        let all = s.events(None, 2).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (
                all[0].app.as_deref(),
                all[0].door.as_str(),
                all[0].result.as_str()
            ),
            (Some("b"), "mqtt", "error: nope")
        );
        assert_eq!((all[1].app.as_deref(), all[1].ts), (None, 201));
        assert!(all[0].id < all[1].id);
        assert_eq!(s.events(None, usize::MAX).unwrap().len(), 7);
        assert!(s.events(Some("a"), 0).unwrap().is_empty());
        assert!(s.events(Some("zzz"), 5).unwrap().is_empty());
    }
}

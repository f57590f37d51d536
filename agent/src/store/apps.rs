//! Apps: the root every other row hangs off (and cascades away with).

use super::{optional, AppRow, SqlContext, Store, StoreError};
use rusqlite::Row;

const APP_COLUMNS: &str = "name, created_at, user, grace_secs, current_release";

fn app_row(r: &Row<'_>) -> rusqlite::Result<AppRow> {
    Ok(AppRow {
        name: r.get(0)?,
        created_at: r.get(1)?,
        user: r.get(2)?,
        grace_secs: r.get(3)?,
        current_release: r.get(4)?,
    })
}

impl Store {
    pub fn create_app(&mut self, name: &str, now: u64) -> Result<AppRow, StoreError> {
        let added = self
            .conn
            .prepare_cached(
                "INSERT INTO apps (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            )
            .and_then(|mut st| st.execute(rusqlite::params![name, now]))
            .at("insert app", &self.path)?;
        if added == 0 {
            return Err(StoreError::AppExists(name.to_string()));
        }
        Ok(AppRow {
            name: name.to_string(),
            created_at: now,
            user: None,
            grace_secs: None,
            current_release: None,
        })
    }

    pub fn app(&self, name: &str) -> Result<Option<AppRow>, StoreError> {
        self.conn
            .prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE name = ?1"))
            .and_then(|mut st| optional(st.query_row([name], app_row)))
            .at("select app", &self.path)
    }

    /// All apps, by name.
    pub fn apps(&self) -> Result<Vec<AppRow>, StoreError> {
        self.conn
            .prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY name"))
            .and_then(|mut st| st.query_map([], app_row)?.collect())
            .at("select apps", &self.path)
    }

    /// Sets both settings (`None` clears one back to the agent default).
    pub fn update_app(
        &mut self,
        name: &str,
        user: Option<&str>,
        grace_secs: Option<u64>,
    ) -> Result<AppRow, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "UPDATE apps SET user = ?2, grace_secs = ?3 WHERE name = ?1 RETURNING {APP_COLUMNS}"
            ))
            .and_then(|mut st| {
                optional(st.query_row(rusqlite::params![name, user, grace_secs], app_row))
            })
            .at("update app", &self.path)?
            .ok_or_else(|| StoreError::NoApp(name.to_string()))
    }

    /// The app's buildpacks, in order (empty: detect among the built-ins).
    pub fn buildpacks(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT buildpacks FROM apps WHERE name = ?1")
            .and_then(|mut st| optional(st.query_row([name], |r| r.get(0))))
            .at("select buildpacks", &self.path)?;
        let text = text.ok_or_else(|| StoreError::NoApp(name.to_string()))?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Sets the app's buildpacks (an empty list goes back to detection).
    pub fn set_buildpacks(&mut self, name: &str, packs: &[String]) -> Result<(), StoreError> {
        let text = (!packs.is_empty()).then(|| serde_json::to_string(packs).unwrap_or_default());
        let n = self
            .conn
            .prepare_cached("UPDATE apps SET buildpacks = ?2 WHERE name = ?1")
            .and_then(|mut st| st.execute(rusqlite::params![name, text]))
            .at("update buildpacks", &self.path)?;
        if n == 0 {
            return Err(StoreError::NoApp(name.to_string()));
        }
        Ok(())
    }

    /// The app's own uid, if one was allocated.
    pub fn app_uid(&self, name: &str) -> Result<Option<u32>, StoreError> {
        let uid: Option<Option<u32>> = self
            .conn
            .prepare_cached("SELECT uid FROM apps WHERE name = ?1")
            .and_then(|mut st| optional(st.query_row([name], |r| r.get(0))))
            .at("select app uid", &self.path)?;
        uid.ok_or_else(|| StoreError::NoApp(name.to_string()))
    }

    /// The app's uid, allocated now if it has none: the lowest in `min..=max` that no other app
    /// holds and `taken` (the host's users and groups) does not refuse.
    pub fn allocate_uid(
        &mut self,
        name: &str,
        (min, max): (u32, u32),
        taken: &dyn Fn(u32) -> bool,
    ) -> Result<u32, StoreError> {
        if let Some(uid) = self.app_uid(name)? {
            return Ok(uid);
        }
        let used: std::collections::BTreeSet<u32> = self
            .conn
            .prepare_cached(
                "SELECT uid FROM apps WHERE uid IS NOT NULL
                 UNION SELECT uid FROM addons WHERE uid IS NOT NULL",
            )
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .at("select app uids", &self.path)?;
        let uid = (min..=max)
            .find(|u| !used.contains(u) && !taken(*u))
            .ok_or(StoreError::NoUid { min, max })?;
        self.conn
            .prepare_cached("UPDATE apps SET uid = ?2 WHERE name = ?1")
            .and_then(|mut st| st.execute(rusqlite::params![name, uid]))
            .at("update app uid", &self.path)?;
        Ok(uid)
    }

    /// Deletes the app and everything of it (releases, config, formation, ports, dynos; events stay).
    pub fn delete_app(&mut self, name: &str) -> Result<(), StoreError> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM apps WHERE name = ?1")
            .and_then(|mut st| st.execute([name]))
            .at("delete app", &self.path)?;
        if deleted == 0 {
            return Err(StoreError::NoApp(name.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;
    use crate::store::*;

    #[test]
    fn create_get_list_update() {
        let (_dir, mut s) = store();
        assert_eq!(s.app("demo").unwrap(), None);
        let created = s.create_app("demo", 100).unwrap();
        assert_eq!(
            created,
            AppRow {
                name: "demo".into(),
                created_at: 100,
                user: None,
                grace_secs: None,
                current_release: None
            }
        );
        assert_eq!(s.app("demo").unwrap(), Some(created.clone()));
        s.create_app("alpha", 101).unwrap();
        let names: Vec<_> = s.apps().unwrap().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["alpha", "demo"]);

        let updated = s.update_app("demo", Some("robot"), Some(30)).unwrap();
        assert_eq!(updated.user.as_deref(), Some("robot"));
        assert_eq!(updated.grace_secs, Some(30));
        assert_eq!(updated.created_at, 100);
        assert_eq!(s.app("demo").unwrap(), Some(updated));
        let cleared = s.update_app("demo", None, None).unwrap();
        assert_eq!(cleared, created);
    }

    #[test]
    fn uids_are_allocated_once_skipping_taken_ones_and_freed_with_the_app() {
        let (_dir, mut s) = store();
        for app in ["a", "b", "c"] {
            s.create_app(app, 1).unwrap();
        }
        let host_has = |u: u32| u == 100;
        assert_eq!(s.app_uid("a").unwrap(), None);
        assert_eq!(s.allocate_uid("a", (100, 102), &host_has).unwrap(), 101);
        assert_eq!(
            s.allocate_uid("a", (100, 102), &host_has).unwrap(),
            101,
            "kept"
        );
        assert_eq!(s.allocate_uid("b", (100, 102), &host_has).unwrap(), 102);
        assert!(matches!(
            s.allocate_uid("c", (100, 102), &host_has),
            Err(StoreError::NoUid { min: 100, max: 102 })
        ));
        assert_eq!(s.app_uid("a").unwrap(), Some(101));
        s.delete_app("a").unwrap();
        assert_eq!(s.allocate_uid("c", (100, 102), &host_has).unwrap(), 101);
        assert!(matches!(s.app_uid("a"), Err(StoreError::NoApp(_))));
    }

    #[test]
    fn duplicate_and_missing_apps_are_errors() {
        let (_dir, mut s) = store();
        s.create_app("demo", 1).unwrap();
        assert!(matches!(s.create_app("demo", 2), Err(StoreError::AppExists(n)) if n == "demo"));
        assert_eq!(
            s.app("demo").unwrap().unwrap().created_at,
            1,
            "duplicate must not overwrite"
        );
        assert!(
            matches!(s.update_app("nope", None, None), Err(StoreError::NoApp(n)) if n == "nope")
        );
        assert!(matches!(s.delete_app("nope"), Err(StoreError::NoApp(_))));
    }

    #[test]
    fn delete_cascades_to_everything_but_events() {
        let (_dir, mut s) = store();
        for app in ["demo", "other"] {
            s.create_app(app, 1).unwrap();
            s.replace_config(app, &[("K".to_string(), "v".to_string())].into())
                .unwrap();
            s.create_release(
                app,
                NewRelease {
                    slug: "s".into(),
                    process_types: Default::default(),
                    config: Default::default(),
                    description: "d".into(),
                    door: "cli".into(),
                    now: 2,
                    artifact: None,
                    buildpacks: None,
                },
            )
            .unwrap();
            s.save_formation(
                app,
                &[FormationRow {
                    ptype: "web".into(),
                    count: 1,
                    limits: Default::default(),
                }],
            )
            .unwrap();
            let port = s.port_for(app, "web.1", 5000, 5100).unwrap();
            let dyno = DynoRow {
                app: app.into(),
                name: "web.1".into(),
                pid: None,
                pid_start: None,
                cgroup: None,
                instance: None,
                release: 1,
                port,
                restarts: 0,
                started_at: 3,
                last_exit: None,
            };
            s.save_dynos(&[dyno], &[]).unwrap();
            s.add_event(4, Some(app), "cli", "create", "ok").unwrap();
        }
        s.delete_app("demo").unwrap();
        assert_eq!(s.app("demo").unwrap(), None);
        assert!(s.releases("demo").unwrap().is_empty());
        assert!(s.config("demo").unwrap().is_empty());
        assert!(s.formation("demo").unwrap().is_empty());
        let dynos: Vec<_> = s.dynos().unwrap().into_iter().map(|d| d.app).collect();
        assert_eq!(dynos, ["other"]);
        assert_eq!(
            s.events(Some("demo"), 10).unwrap().len(),
            1,
            "events outlive the app"
        );
        // The other app is untouched.
        assert_eq!(s.releases("other").unwrap().len(), 1);
        assert_eq!(s.config("other").unwrap().len(), 1);
        assert_eq!(s.formation("other").unwrap().len(), 1);
        // A recreated app starts from nothing.
        s.create_app("demo", 9).unwrap();
        assert!(s.releases("demo").unwrap().is_empty());
        assert_eq!(s.app("demo").unwrap().unwrap().current_release, None);
    }
}

//! Releases (immutable, numbered per app) and the config vars the next release will snapshot.

use super::{
    json_col, json_col_opt, optional, to_json, NewRelease, ReleaseRow, SqlContext, Store,
    StoreError,
};
use roboku_wire::fleet::Artifact;
use rusqlite::{params, Row};
use std::collections::BTreeMap;

const RELEASE_COLUMNS: &str = "app, version, created_at, description, slug, process_types, \
     config, status, door, artifact_url, artifact_sha256, artifact_size, probation, buildpacks";

fn release_row(r: &Row<'_>) -> rusqlite::Result<ReleaseRow> {
    Ok(ReleaseRow {
        app: r.get(0)?,
        version: r.get(1)?,
        created_at: r.get(2)?,
        description: r.get(3)?,
        slug: r.get(4)?,
        process_types: json_col(r, 5)?,
        config: json_col(r, 6)?,
        status: r.get(7)?,
        door: r.get(8)?,
        artifact: match r.get::<_, Option<String>>(10)? {
            Some(sha256) => Some(Artifact {
                url: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                sha256,
                size: r.get::<_, Option<u64>>(11)?.unwrap_or(0),
                delta: None,
            }),
            None => None,
        },
        probation: r.get(12)?,
        buildpacks: json_col_opt(r, 13)?,
    })
}

impl Store {
    /// Creates release v(max+1) and makes it current, in one transaction. It starts `deploying`:
    /// only its rollout's health gate marks it `succeeded` (or `failed`).
    pub fn create_release(&mut self, app: &str, new: NewRelease) -> Result<ReleaseRow, StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().at("begin create release", path)?;
        Store::require_app(&tx, path, app)?;
        let version: u32 = tx
            .prepare_cached("SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?1")
            .and_then(|mut st| st.query_row([app], |r| r.get(0)))
            .at("next release version", path)?;
        let row = ReleaseRow {
            app: app.to_string(),
            version,
            created_at: new.now,
            description: new.description,
            slug: new.slug,
            process_types: new.process_types,
            config: new.config,
            status: "deploying".to_string(),
            door: new.door,
            artifact: new.artifact,
            probation: None,
            buildpacks: new.buildpacks,
        };
        tx.prepare_cached(&format!(
            "INSERT INTO releases ({RELEASE_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))
        .and_then(|mut st| {
            st.execute(params![
                row.app,
                row.version,
                row.created_at,
                row.description,
                row.slug,
                to_json(&row.process_types)?,
                to_json(&row.config)?,
                row.status,
                row.door,
                row.artifact.as_ref().map(|a| &a.url),
                row.artifact.as_ref().map(|a| &a.sha256),
                row.artifact.as_ref().map(|a| a.size),
                row.probation,
                row.buildpacks.as_ref().map(to_json).transpose()?,
            ])
        })
        .at("insert release", path)?;
        tx.prepare_cached("UPDATE apps SET current_release = ?2 WHERE name = ?1")
            .and_then(|mut st| st.execute(params![app, version]))
            .at("set current release", path)?;
        tx.commit().at("commit release", path)?;
        Ok(row)
    }

    /// Newest first.
    pub fn releases(&self, app: &str) -> Result<Vec<ReleaseRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {RELEASE_COLUMNS} FROM releases WHERE app = ?1 ORDER BY version DESC"
            ))
            .and_then(|mut st| st.query_map([app], release_row)?.collect())
            .at("select releases", &self.path)
    }

    pub fn release(&self, app: &str, version: u32) -> Result<Option<ReleaseRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {RELEASE_COLUMNS} FROM releases WHERE app = ?1 AND version = ?2"
            ))
            .and_then(|mut st| optional(st.query_row(params![app, version], release_row)))
            .at("select release", &self.path)
    }

    /// Points the app at an existing release (rollback, or restoring after a failed deploy).
    pub fn set_current_release(&mut self, app: &str, version: u32) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction()
            .at("begin set current release", path)?;
        Store::require_app(&tx, path, app)?;
        let updated = tx
            .prepare_cached(
                "UPDATE apps SET current_release = ?2 WHERE name = ?1
                 AND EXISTS (SELECT 1 FROM releases WHERE app = ?1 AND version = ?2)",
            )
            .and_then(|mut st| st.execute(params![app, version]))
            .at("set current release", path)?;
        if updated == 0 {
            return Err(StoreError::NoRelease {
                app: app.to_string(),
                version,
            });
        }
        tx.commit().at("commit current release", path)
    }

    /// The only change a release allows after it is written.
    pub fn set_release_status(
        &mut self,
        app: &str,
        version: u32,
        status: &str,
    ) -> Result<(), StoreError> {
        let updated = self
            .conn
            .prepare_cached("UPDATE releases SET status = ?3 WHERE app = ?1 AND version = ?2")
            .and_then(|mut st| st.execute(params![app, version, status]))
            .at("set release status", &self.path)?;
        if updated == 0 {
            return Err(StoreError::NoRelease {
                app: app.to_string(),
                version,
            });
        }
        Ok(())
    }

    /// Records where release `version` stands in its probation.
    pub fn set_release_probation(
        &mut self,
        app: &str,
        version: u32,
        probation: &str,
    ) -> Result<(), StoreError> {
        let updated = self
            .conn
            .prepare_cached("UPDATE releases SET probation = ?3 WHERE app = ?1 AND version = ?2")
            .and_then(|mut st| st.execute(params![app, version, probation]))
            .at("set release probation", &self.path)?;
        if updated == 0 {
            return Err(StoreError::NoRelease {
                app: app.to_string(),
                version,
            });
        }
        Ok(())
    }

    /// Config vars that the next release will snapshot.
    pub fn config(&self, app: &str) -> Result<BTreeMap<String, String>, StoreError> {
        self.conn
            .prepare_cached("SELECT key, value FROM config WHERE app = ?1")
            .and_then(|mut st| {
                st.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .at("select config", &self.path)
    }

    /// Replaces the whole set of config vars, in one transaction.
    pub fn replace_config(
        &mut self,
        app: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().at("begin replace config", path)?;
        Store::require_app(&tx, path, app)?;
        tx.prepare_cached("DELETE FROM config WHERE app = ?1")
            .and_then(|mut st| st.execute([app]))
            .at("clear config", path)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO config (app, key, value) VALUES (?1, ?2, ?3)")
                .at("insert config", path)?;
            for (key, value) in config {
                insert
                    .execute(params![app, key, value])
                    .at("insert config", path)?;
            }
        }
        tx.commit().at("commit config", path)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;
    use crate::store::*;
    use std::collections::BTreeMap;

    fn new(slug: &str, now: u64) -> NewRelease {
        NewRelease {
            slug: slug.into(),
            process_types: [
                ("web".to_string(), "./server".to_string()),
                ("worker".to_string(), "./w".to_string()),
            ]
            .into(),
            config: [("PORT_HINT".to_string(), "x y \"z\"".to_string())].into(),
            description: format!("Deploy {slug}"),
            door: "git".into(),
            now,
            artifact: None,
            buildpacks: None,
        }
    }

    #[test]
    fn a_release_keeps_its_artifact() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        let artifact = Artifact {
            url: "https://fleet.example/a.tar.gz".into(),
            sha256: "ab".repeat(32),
            size: 4096,
            delta: None,
        };
        let r = NewRelease {
            artifact: Some(artifact.clone()),
            ..new("s1", 10)
        };
        assert_eq!(
            s.create_release("a", r).unwrap().artifact.as_ref(),
            Some(&artifact)
        );
        assert_eq!(s.release("a", 1).unwrap().unwrap().artifact, Some(artifact));
        assert_eq!(s.create_release("a", new("s2", 11)).unwrap().artifact, None);
        assert_eq!(s.release("a", 2).unwrap().unwrap().artifact, None);
    }

    #[test]
    fn releases_number_per_app_and_move_the_current_pointer() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        s.create_app("b", 1).unwrap();
        let a1 = s.create_release("a", new("s1", 10)).unwrap();
        let a2 = s.create_release("a", new("s2", 11)).unwrap();
        let b1 = s.create_release("b", new("s3", 12)).unwrap();
        assert_eq!((a1.version, a2.version, b1.version), (1, 2, 1));
        assert_eq!(
            a2.status, "deploying",
            "no release is succeeded before its gate"
        );
        assert_eq!(a2.created_at, 11);
        assert_eq!(s.app("a").unwrap().unwrap().current_release, Some(2));
        assert_eq!(s.app("b").unwrap().unwrap().current_release, Some(1));

        assert_eq!(
            s.releases("a").unwrap(),
            vec![a2.clone(), a1.clone()],
            "newest first"
        );
        assert_eq!(s.release("a", 1).unwrap(), Some(a1));
        assert_eq!(s.release("a", 3).unwrap(), None);
        assert_eq!(s.release("nope", 1).unwrap(), None);

        s.set_current_release("a", 1).unwrap();
        assert_eq!(s.app("a").unwrap().unwrap().current_release, Some(1));
        // A new release after a rollback still numbers past the highest.
        assert_eq!(s.create_release("a", new("s4", 13)).unwrap().version, 3);
        assert_eq!(s.app("a").unwrap().unwrap().current_release, Some(3));
    }

    #[test]
    fn missing_apps_and_releases_are_errors() {
        let (_dir, mut s) = store();
        assert!(matches!(
            s.create_release("nope", new("s", 1)),
            Err(StoreError::NoApp(_))
        ));
        s.create_app("a", 1).unwrap();
        s.create_release("a", new("s", 1)).unwrap();
        assert!(matches!(
            s.set_current_release("nope", 1),
            Err(StoreError::NoApp(_))
        ));
        assert!(matches!(
            s.set_current_release("a", 5),
            Err(StoreError::NoRelease { version: 5, .. })
        ));
        assert_eq!(s.app("a").unwrap().unwrap().current_release, Some(1));
        assert!(matches!(
            s.set_release_status("a", 5, "failed"),
            Err(StoreError::NoRelease { .. })
        ));
    }

    #[test]
    fn only_status_changes_after_a_release_is_written() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        s.create_release("a", new("s", 1)).unwrap();
        s.set_release_status("a", 1, "failed").unwrap();
        let r = s.release("a", 1).unwrap().unwrap();
        assert_eq!(r.status, "failed");
        assert_eq!(r.slug, "s");
        let err = s
            .conn
            .execute("UPDATE releases SET slug = 'other' WHERE app = 'a'", [])
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");
        assert_eq!(s.release("a", 1).unwrap().unwrap().slug, "s");
    }

    #[test]
    fn config_replaces_whole_set() {
        let (_dir, mut s) = store();
        assert!(matches!(
            s.replace_config("nope", &BTreeMap::new()),
            Err(StoreError::NoApp(_))
        ));
        s.create_app("a", 1).unwrap();
        assert!(s.config("a").unwrap().is_empty());
        let first: BTreeMap<_, _> = [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two words=\n".to_string()),
        ]
        .into();
        s.replace_config("a", &first).unwrap();
        assert_eq!(s.config("a").unwrap(), first);
        let second: BTreeMap<_, _> = [("C".to_string(), "3".to_string())].into();
        s.replace_config("a", &second).unwrap();
        assert_eq!(s.config("a").unwrap(), second);
    }
}

//! Renaming an app: one transaction that moves every row keyed on the app's name, so a crash
//! leaves the old name or the new one, never half of each.
//!
//! The tables to move are read from the schema itself (every table whose foreign key names
//! `apps(name)`), so a table a later migration adds moves too instead of being left behind. The
//! foreign keys have no `ON UPDATE` action, so they are deferred to the commit
//! (`defer_foreign_keys`, reset by SQLite when the transaction ends) and checked there. Releases
//! are immutable by trigger: they are copied under the new name, every column as it was, and the
//! old rows deleted (nothing references a release). Events are the append-only audit trail:
//! they keep the name they were recorded under, and the rename is recorded under both names.

use super::{SqlContext, Store, StoreError};
use rusqlite::{params, Transaction, TransactionBehavior};
use std::path::Path;

/// The table whose rows are copied rather than updated (its trigger forbids changing `app`).
const IMMUTABLE: &str = "releases";

impl Store {
    /// Renames app `from` to `to` with everything it owns, and records the rename in the audit
    /// trail under both names, all in one transaction.
    pub fn rename_app(
        &mut self,
        from: &str,
        to: &str,
        now: u64,
        door: &str,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at("begin rename", &path)?;
        Store::require_app(&tx, &path, from)?;
        if Store::require_app(&tx, &path, to).is_ok() {
            return Err(StoreError::AppExists(to.to_string()));
        }
        tx.pragma_update(None, "defer_foreign_keys", true)
            .at("defer foreign keys", &path)?;
        tx.execute("UPDATE apps SET name = ?2 WHERE name = ?1", [from, to])
            .at("rename app", &path)?;
        for (table, column) in app_keys(&tx, &path)? {
            if table == IMMUTABLE {
                copy_rows(&tx, &path, &table, &column, from, to)?;
            } else {
                let sql =
                    format!("UPDATE \"{table}\" SET \"{column}\" = ?2 WHERE \"{column}\" = ?1");
                tx.execute(&sql, [from, to]).at("rename app rows", &path)?;
            }
        }
        let mut add = tx
            .prepare_cached(
                "INSERT INTO events (ts, app, door, action, result) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .at("insert event", &path)?;
        add.execute(params![now, from, door, "rename app", format!("to {to}")])
            .at("insert event", &path)?;
        add.execute(params![now, to, door, "rename app", format!("from {from}")])
            .at("insert event", &path)?;
        drop(add);
        tx.commit().at("commit rename", &path)
    }
}

/// `(table, column)` of every foreign key that references `apps(name)`.
fn app_keys(tx: &Transaction<'_>, path: &Path) -> Result<Vec<(String, String)>, StoreError> {
    tx.prepare(
        "SELECT m.name, k.\"from\" FROM sqlite_master AS m, pragma_foreign_key_list(m.name) AS k
         WHERE m.type = 'table' AND k.\"table\" = 'apps' AND k.\"to\" = 'name' ORDER BY m.name",
    )
    .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
    .at("list tables keyed on app", path)
}

/// Copies `table`'s rows of `from` under `to`, every other column as it is, then deletes them.
fn copy_rows(
    tx: &Transaction<'_>,
    path: &Path,
    table: &str,
    column: &str,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let columns: Vec<String> = tx
        .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
        .and_then(|mut st| st.query_map([table], |r| r.get(0))?.collect())
        .at("list columns", path)?;
    let names = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let values = columns
        .iter()
        .map(|c| match c == column {
            true => "?2".to_string(),
            false => format!("\"{c}\""),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let copy = format!(
        "INSERT INTO \"{table}\" ({names}) SELECT {values} FROM \"{table}\" WHERE \"{column}\" = ?1"
    );
    tx.execute(&copy, [from, to]).at("copy rows", path)?;
    let delete = format!("DELETE FROM \"{table}\" WHERE \"{column}\" = ?1");
    tx.execute(&delete, [from]).at("delete copied rows", path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;
    use crate::store::*;

    /// An app with a row in every table keyed on its name.
    fn full_app(s: &mut Store, app: &str, port_min: u16) {
        s.create_app(app, 1).unwrap();
        s.update_app(app, None, Some(7)).unwrap();
        s.set_buildpacks(app, &["python".to_string()]).unwrap();
        s.allocate_uid(app, (60000, 60100), &|_| false).unwrap();
        s.replace_config(app, &[("K".to_string(), app.to_string())].into())
            .unwrap();
        for n in 0..2 {
            s.create_release(
                app,
                NewRelease {
                    slug: format!("slug-{app}-{n}"),
                    process_types: [("web".to_string(), "serve".to_string())].into(),
                    config: [("K".to_string(), app.to_string())].into(),
                    description: format!("Deploy {n}"),
                    door: "cli".into(),
                    now: 10 + n,
                    artifact: (n == 1).then(|| roboku_wire::fleet::Artifact {
                        url: format!("https://fleet.example/{app}.tar.gz"),
                        sha256: "ab".repeat(32),
                        size: 7,
                        delta: None,
                    }),
                    buildpacks: Some(vec![roboku_wire::ReleaseBuildpack {
                        source: "https://github.com/org/pack#main".into(),
                        commit: Some("c0".repeat(20)),
                    }]),
                },
            )
            .unwrap();
        }
        s.save_formation(
            app,
            &[FormationRow {
                ptype: "web".into(),
                count: 2,
                limits: Default::default(),
            }],
        )
        .unwrap();
        let port = s.port_for(app, "web.1", port_min, port_min + 10).unwrap();
        let dyno = DynoRow {
            app: app.into(),
            name: "web.1".into(),
            pid: None,
            pid_start: None,
            cgroup: None,
            instance: None,
            release: 2,
            port,
            restarts: 3,
            started_at: 3,
            last_exit: None,
        };
        s.save_dynos(&[dyno], &[]).unwrap();
        s.add_event(4, Some(app), "cli", "create app", "ok")
            .unwrap();
    }

    #[test]
    fn a_rename_moves_every_row_and_keeps_the_other_app_and_the_audit_trail() {
        let (_dir, mut s) = store();
        full_app(&mut s, "nav", 5000);
        full_app(&mut s, "arm", 5100);
        let before = (
            s.app("nav").unwrap().unwrap(),
            s.releases("nav").unwrap(),
            s.config("nav").unwrap(),
            s.formation("nav").unwrap(),
            s.app_uid("nav").unwrap(),
            s.buildpacks("nav").unwrap(),
            s.port_for("nav", "web.1", 5000, 5010).unwrap(),
        );
        s.rename_app("nav", "nav-two", 99, "cli").unwrap();

        assert_eq!(s.app("nav").unwrap(), None);
        assert!(s.releases("nav").unwrap().is_empty());
        assert!(s.config("nav").unwrap().is_empty());
        let row = s.app("nav-two").unwrap().unwrap();
        assert_eq!(row.name, "nav-two");
        assert_eq!(
            (row.created_at, row.grace_secs, row.current_release),
            (
                before.0.created_at,
                before.0.grace_secs,
                before.0.current_release
            )
        );
        let releases = s.releases("nav-two").unwrap();
        assert_eq!(releases.len(), before.1.len());
        for (new, old) in releases.iter().zip(&before.1) {
            assert_eq!(new.app, "nav-two");
            let mut old = old.clone();
            old.app = "nav-two".into();
            assert_eq!(*new, old, "a release moves unchanged");
        }
        assert_eq!(s.config("nav-two").unwrap(), before.2);
        assert_eq!(s.formation("nav-two").unwrap(), before.3);
        assert_eq!(s.app_uid("nav-two").unwrap(), before.4, "the uid moves");
        assert_eq!(s.buildpacks("nav-two").unwrap(), before.5);
        assert_eq!(
            s.port_for("nav-two", "web.1", 5000, 5010).unwrap(),
            before.6,
            "the dyno keeps its port"
        );
        let dynos: Vec<_> = s.dynos().unwrap().into_iter().map(|d| d.app).collect();
        assert_eq!(dynos, ["arm", "nav-two"]);

        let old_trail = s.events(Some("nav"), 10).unwrap();
        assert_eq!(
            old_trail.len(),
            2,
            "the old name's trail stays: {old_trail:?}"
        );
        assert_eq!(old_trail[1].result, "to nav-two");
        let new_trail = s.events(Some("nav-two"), 10).unwrap();
        assert_eq!(new_trail.len(), 1);
        assert_eq!(
            (new_trail[0].action.as_str(), new_trail[0].result.as_str()),
            ("rename app", "from nav")
        );

        // The other app is untouched, and the freed name can be taken again from nothing.
        assert_eq!(s.releases("arm").unwrap().len(), 2);
        assert_eq!(s.config("arm").unwrap()["K"], "arm");
        s.create_app("nav", 5).unwrap();
        assert!(s.releases("nav").unwrap().is_empty());
        assert_eq!(s.app_uid("nav").unwrap(), None);
    }

    #[test]
    fn a_refused_rename_changes_nothing() {
        let (_dir, mut s) = store();
        full_app(&mut s, "nav", 5000);
        full_app(&mut s, "arm", 5100);
        assert!(matches!(
            s.rename_app("nav", "arm", 9, "cli"),
            Err(StoreError::AppExists(n)) if n == "arm"
        ));
        assert!(matches!(
            s.rename_app("nope", "other", 9, "cli"),
            Err(StoreError::NoApp(n)) if n == "nope"
        ));
        assert_eq!(s.releases("nav").unwrap().len(), 2);
        assert_eq!(s.releases("arm").unwrap().len(), 2);
        assert_eq!(s.events(None, 100).unwrap().len(), 2, "no rename recorded");
    }

    #[test]
    fn a_rename_failing_midway_rolls_back_whole() {
        let (_dir, mut s) = store();
        full_app(&mut s, "nav", 5000);
        // A table keyed on the app that a later migration might add, with a trigger that
        // refuses the move: the rename fails and leaves every row under the old name.
        s.conn
            .execute_batch(
                "CREATE TABLE extra (app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE) STRICT;
                 INSERT INTO extra VALUES ('nav');
                 CREATE TRIGGER extra_fixed BEFORE UPDATE ON extra
                 BEGIN SELECT RAISE(ABORT, 'extra rows are fixed'); END;",
            )
            .unwrap();
        let err = s.rename_app("nav", "nav-two", 9, "cli").unwrap_err();
        assert!(err.to_string().contains("extra rows are fixed"), "{err}");
        assert!(s.app("nav").unwrap().is_some());
        assert_eq!(s.app("nav-two").unwrap(), None);
        assert_eq!(s.releases("nav").unwrap().len(), 2);
        assert_eq!(s.config("nav").unwrap().len(), 1);
        // The deferral ended with the transaction: foreign keys are checked at once again.
        let deferred: i64 = s
            .conn
            .pragma_query_value(None, "defer_foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(deferred, 0);
    }

    #[test]
    fn a_table_added_later_moves_too() {
        let (_dir, mut s) = store();
        full_app(&mut s, "nav", 5000);
        s.conn
            .execute_batch(
                "CREATE TABLE extra (owner TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE) STRICT;
                 INSERT INTO extra VALUES ('nav');",
            )
            .unwrap();
        s.rename_app("nav", "nav-two", 9, "cli").unwrap();
        let owner: String = s
            .conn
            .query_row("SELECT owner FROM extra", [], |r| r.get(0))
            .unwrap();
        assert_eq!(owner, "nav-two");
    }
}

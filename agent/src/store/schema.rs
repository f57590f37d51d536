//! The schema and its migrations, keyed on `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes a database from version `i` to `i + 1`. Each runs in its own transaction
//! together with the `user_version` bump, so an agent killed mid-migration leaves the database at
//! the previous version, never half-migrated. Never edit a migration that has shipped; append one.
//! (`PRAGMA foreign_keys` cannot be changed inside a transaction: a future migration that rebuilds
//! a table must be written so the foreign keys still hold at commit.)

use super::{SqlContext, StoreError};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

pub(super) struct Migration {
    /// The operation name errors carry: `migrate to N`.
    pub op: &'static str,
    pub sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        op: "migrate to 1",
        sql: V1,
    },
    Migration {
        op: "migrate to 2",
        sql: V2,
    },
    Migration {
        op: "migrate to 3",
        sql: V3,
    },
    Migration {
        op: "migrate to 4",
        sql: V4,
    },
    Migration {
        op: "migrate to 5",
        sql: V5,
    },
    Migration {
        op: "migrate to 6",
        sql: V6,
    },
    Migration {
        op: "migrate to 7",
        sql: V7,
    },
    Migration {
        op: "migrate to 8",
        sql: V8,
    },
    Migration {
        op: "migrate to 9",
        sql: V9,
    },
    Migration {
        op: "migrate to 10",
        sql: V10_DRAINS,
    },
    Migration {
        op: "migrate to 11",
        sql: V11_SNAPSHOT_OPT_OUT,
    },
];

/// Version 11: per-app data snapshot opt-out (`data:snapshots off`, issue 17). `apps.data_snapshots`
/// is 0 for an app that opted out; `releases.data_snapshot` is `'off'` for a release that was
/// replaced while its app had opted out (so `rollback --with-data` to it can say why it has none).
const V11_SNAPSHOT_OPT_OUT: &str =
    "ALTER TABLE apps ADD COLUMN data_snapshots INTEGER NOT NULL DEFAULT 1;
ALTER TABLE releases ADD COLUMN data_snapshot TEXT;";

/// Version 9: add-ons (issue 17). An add-on belongs to the app that created it (`app`); its
/// server, if it has one, runs as `uid` on `port` (also recorded in `ports` under the owner, as
/// `addon:<name>`, so no dyno gets it). An attachment gives one app a config var (`var`) and its
/// own credentials for the add-on; the owner's attachment is made with the add-on.
const V9: &str = "
CREATE TABLE addons (
    name       TEXT PRIMARY KEY NOT NULL,
    kind       TEXT NOT NULL,
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    uid        INTEGER UNIQUE,
    port       INTEGER,
    file       TEXT,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE addon_attachments (
    addon    TEXT NOT NULL REFERENCES addons(name) ON DELETE CASCADE,
    app      TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    var      TEXT NOT NULL,
    user     TEXT NOT NULL,
    password TEXT NOT NULL,
    PRIMARY KEY (addon, app),
    UNIQUE (app, var)
) STRICT;";

/// Version 10 (issue 17): log drains. Where each drain has got to (its cursor into the app's
/// log store) and its counters are not here but in `<data>/drains/<id>.json`, written by the
/// drain's own task, so delivery never waits on the engine.
const V10_DRAINS: &str = "
CREATE TABLE drains (
    id         TEXT PRIMARY KEY,
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    url        TEXT NOT NULL,
    token      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    door       TEXT NOT NULL,
    UNIQUE (app, url)
) STRICT;
";

/// Version 8: the buildpacks a release's slug was built with (JSON list of `{source, commit}`,
/// git buildpacks pinned to the commit they were at), so `deploy --buildpacks-of vN` can build
/// with them again. NULL: not known (a prebuilt slug, or a release from before). Covered by the
/// immutability trigger, recreated for it.
const V8: &str = "ALTER TABLE releases ADD COLUMN buildpacks TEXT;
DROP TRIGGER releases_immutable;
CREATE TRIGGER releases_immutable
BEFORE UPDATE OF app, version, created_at, description, slug, process_types, config, door,
                 artifact_url, artifact_sha256, artifact_size, buildpacks ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are immutable except status');
END;";

/// Version 7: apply gates and holds (issue 14), and what each dyno last reported about its own
/// health. A gate's check is JSON (`{"command": "..."}`, see `roboku_wire::gates::GateKind`).
/// A hold is a lease: it counts until `until` (unix ms) and is deleted when it expires. A health
/// report belongs to the instance (`demo/web.1@17`) that made it: a restarted dyno starts
/// without one.
const V7: &str = "
CREATE TABLE gates (
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    spec       TEXT NOT NULL,
    timeout_ms INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    door       TEXT NOT NULL,
    PRIMARY KEY (app, name)
) STRICT;

CREATE TABLE holds (
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    holder     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    until      INTEGER NOT NULL,
    PRIMARY KEY (app, name)
) STRICT;

CREATE TABLE dyno_health (
    app      TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    dyno     TEXT NOT NULL,
    instance TEXT NOT NULL,
    status   TEXT NOT NULL,
    message  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (app, dyno)
) STRICT;
";

/// Version 6: where a committed release stands in its probation (`watching`, `passed`,
/// `rolled back: <why>`, `superseded by vN`); NULL for releases without one. Not covered by the
/// immutability trigger: like the status, it changes after the release is written.
const V6: &str = "ALTER TABLE releases ADD COLUMN probation TEXT;";

/// Version 5: the fleet artifact (url, sha256, size) a release was deployed from, kept with the
/// release instead of parsed back out of its description. Releases written before know only the
/// sha256 (recovered here from "Fleet deploy of artifact <sha256>..."). The immutability trigger
/// is recreated to cover the new columns.
const V5: &str = "ALTER TABLE releases ADD COLUMN artifact_url TEXT;
ALTER TABLE releases ADD COLUMN artifact_sha256 TEXT;
ALTER TABLE releases ADD COLUMN artifact_size INTEGER;
UPDATE releases SET artifact_sha256 = substr(description, 26, 64)
 WHERE description GLOB 'Fleet deploy of artifact *'
   AND length(substr(description, 26, 64)) = 64
   AND substr(description, 26, 64) NOT GLOB '*[^0-9a-fA-F]*';
DROP TRIGGER releases_immutable;
CREATE TRIGGER releases_immutable
BEFORE UPDATE OF app, version, created_at, description, slug, process_types, config, door,
                 artifact_url, artifact_sha256, artifact_size ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are immutable except status');
END;";

/// Version 3: each app's own uid (and gid, the same number), allocated once and kept, so its
/// files and processes stay its own across agent restarts. NULL: not allocated yet.
const V3: &str = "ALTER TABLE apps ADD COLUMN uid INTEGER;
CREATE UNIQUE INDEX apps_by_uid ON apps(uid);";

/// Version 4: the instance tag (`demo/web.1@17`) of the process being spawned or running, written
/// before the fork, so a restarted agent can tell its own dynos from leaks.
const V4: &str = "ALTER TABLE dynos ADD COLUMN instance TEXT;";

/// Version 2: an app may name its buildpacks (JSON list of paths; NULL = detect the built-ins).
const V2: &str = "ALTER TABLE apps ADD COLUMN buildpacks TEXT;";

/// Version 1. Everything an app owns cascades away with it; events keep the app name as plain text
/// because the audit log must outlive the app it talks about.
const V1: &str = "
CREATE TABLE apps (
    name            TEXT PRIMARY KEY NOT NULL,
    created_at      INTEGER NOT NULL,
    user            TEXT,
    grace_secs      INTEGER,
    current_release INTEGER
) STRICT;

CREATE TABLE releases (
    app           TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    description   TEXT NOT NULL,
    slug          TEXT NOT NULL,
    process_types TEXT NOT NULL,
    config        TEXT NOT NULL,
    status        TEXT NOT NULL,
    door          TEXT NOT NULL,
    PRIMARY KEY (app, version)
) STRICT;

-- A release is a historical fact: only its status may change (a deploy that fails after the row
-- was written is marked failed).
CREATE TRIGGER releases_immutable
BEFORE UPDATE OF app, version, created_at, description, slug, process_types, config, door ON releases
BEGIN
    SELECT RAISE(ABORT, 'releases are immutable except status');
END;

CREATE TABLE config (
    app   TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, key)
) STRICT;

CREATE TABLE formation (
    app    TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    ptype  TEXT NOT NULL,
    count  INTEGER NOT NULL,
    limits TEXT NOT NULL,
    PRIMARY KEY (app, ptype)
) STRICT;

CREATE TABLE ports (
    app  TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    dyno TEXT NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (app, dyno)
) STRICT;

CREATE TABLE dynos (
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    pid        INTEGER,
    pid_start  INTEGER,
    cgroup     TEXT,
    release    INTEGER NOT NULL,
    port       INTEGER NOT NULL,
    restarts   INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    last_exit  TEXT,
    PRIMARY KEY (app, name)
) STRICT;

CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     INTEGER NOT NULL,
    app    TEXT,
    door   TEXT NOT NULL,
    action TEXT NOT NULL,
    result TEXT NOT NULL
) STRICT;

CREATE INDEX events_by_app ON events(app, id);
";

/// Brings the database up to `migrations.len()`, one committed step at a time.
pub(super) fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let known = migrations.len() as i64;
    loop {
        // IMMEDIATE takes the write lock before reading the version, so two agents racing on one
        // file cannot both run the same step.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .at("begin migration", path)?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .at("read user_version", path)?;
        if found > known {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found,
                known,
            });
        }
        // A negative version was never written by us; treat it like an unknown newer schema.
        let Ok(idx) = usize::try_from(found) else {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found,
                known,
            });
        };
        let Some(step) = migrations.get(idx) else {
            return Ok(()); // up to date; dropping `tx` ends the empty transaction
        };
        tx.execute_batch(step.sql).at(step.op, path)?;
        tx.pragma_update(None, "user_version", found + 1)
            .at(step.op, path)?;
        tx.commit().at(step.op, path)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn too_new_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 999)
            .unwrap();
        match Store::open(&path) {
            Err(StoreError::TooNew {
                found: 999,
                known,
                path: p,
            }) => {
                assert_eq!(known, MIGRATIONS.len() as i64);
                assert!(p.contains("roboku.db"));
            }
            other => panic!("expected TooNew, got {:?}", other.err()),
        }
    }

    #[test]
    fn v5_recovers_the_artifact_of_fleet_releases_and_keeps_them_immutable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &MIGRATIONS[..4]).unwrap();
        let sha = "0123456789abcdef".repeat(4);
        let insert = |v: u32, description: &str| {
            conn.execute(
                "INSERT INTO releases (app, version, created_at, description, slug, \
                 process_types, config, status, door) VALUES ('demo', ?1, 1, ?2, 's', '{}', \
                 '{}', 'succeeded', 'mqtt')",
                rusqlite::params![v, description],
            )
            .unwrap();
        };
        conn.execute("INSERT INTO apps (name, created_at) VALUES ('demo', 1)", [])
            .unwrap();
        insert(
            1,
            &format!("Fleet deploy of artifact {sha} (fleet version 5)"),
        );
        insert(2, &format!("Fleet deploy of artifact {sha}"));
        insert(3, "Deploy /tmp/x");
        insert(4, "Fleet deploy of artifact zz");
        insert(5, &format!("Fleet deploy of artifact {}", &sha[..63]));
        drop(conn);

        let store = Store::open(&path).unwrap();
        let got: Vec<(u32, Option<String>)> = store
            .releases("demo")
            .unwrap()
            .into_iter()
            .map(|r| (r.version, r.artifact.map(|a| a.sha256)))
            .collect();
        let want = [
            (5, None),
            (4, None),
            (3, None),
            (2, Some(sha.clone())),
            (1, Some(sha)),
        ];
        assert_eq!(got, want.to_vec());
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let err = conn
            .execute(
                "UPDATE releases SET artifact_sha256 = 'x' WHERE version = 1",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");
    }

    #[test]
    fn v8_keeps_old_releases_unknown_and_pins_new_ones_immutably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &MIGRATIONS[..6]).unwrap();
        conn.execute("INSERT INTO apps (name, created_at) VALUES ('demo', 1)", [])
            .unwrap();
        conn.execute(
            "INSERT INTO releases (app, version, created_at, description, slug, process_types, \
             config, status, door) VALUES ('demo', 1, 1, 'Deploy /x', 's', '{}', '{}', \
             'succeeded', 'cli')",
            [],
        )
        .unwrap();
        drop(conn);

        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.release("demo", 1).unwrap().unwrap().buildpacks, None);
        let pinned = vec![roboku_wire::ReleaseBuildpack {
            source: "https://github.com/org/pack#main".into(),
            commit: Some("ab".repeat(20)),
        }];
        let new = crate::store::NewRelease {
            slug: "s2".into(),
            process_types: Default::default(),
            config: Default::default(),
            description: "Deploy /y".into(),
            door: "cli".into(),
            now: 2,
            artifact: None,
            buildpacks: Some(pinned.clone()),
        };
        store.create_release("demo", new).unwrap();
        assert_eq!(
            store.release("demo", 2).unwrap().unwrap().buildpacks,
            Some(pinned)
        );
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let err = conn
            .execute(
                "UPDATE releases SET buildpacks = '[]' WHERE version = 2",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");
        let err = conn
            .execute("UPDATE releases SET slug = 'x' WHERE version = 1", [])
            .unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");
    }

    #[test]
    fn v1_database_migrates_forward_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path, &MIGRATIONS[..1]).unwrap();
        assert_eq!(version(&conn), 1);
        conn.execute("INSERT INTO apps (name, created_at) VALUES ('demo', 1)", [])
            .unwrap();

        const V2: &str = "ALTER TABLE apps ADD COLUMN note TEXT NOT NULL DEFAULT 'none';";
        let list = [
            Migration {
                op: "migrate to 1",
                sql: V1,
            },
            Migration {
                op: "migrate to 2",
                sql: V2,
            },
        ];
        migrate(&mut conn, &path, &list).unwrap();
        assert_eq!(version(&conn), 2);
        let note: String = conn
            .query_row("SELECT note FROM apps WHERE name = 'demo'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(note, "none");
        // Running again is a no-op.
        migrate(&mut conn, &path, &list).unwrap();
        assert_eq!(version(&conn), 2);
    }

    #[test]
    fn failed_migration_leaves_previous_version_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        let mut conn = Connection::open(&path).unwrap();
        let list = [
            Migration {
                op: "migrate to 1",
                sql: V1,
            },
            Migration {
                op: "migrate to 2",
                sql: "CREATE TABLE extra (x INTEGER); THIS IS NOT SQL;",
            },
        ];
        let err = migrate(&mut conn, &path, &list).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Sqlite {
                    op: "migrate to 2",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(version(&conn), 1);
        let extra: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'extra'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(extra, 0, "half of migration 2 must not be committed");
    }
}

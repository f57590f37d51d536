//! Apply gates, holds and the health dynos report about themselves (schema 7).
//!
//! Gates are an app's standing conditions; holds are leases (holder, reason, until) that the
//! engine deletes once they expire; a health report is kept with the dyno instance that made it,
//! so a restarted robokud shows it again for a re-adopted dyno and never for a new process.

use super::{optional, SqlContext, Store, StoreError};
use roboku_wire::gates::{DynoHealth, GateKind, HealthStatus};
use rusqlite::params;

#[derive(Debug, Clone, PartialEq)]
pub struct GateRow {
    pub name: String,
    pub check: GateKind,
    pub timeout_ms: u64,
    pub created_at: u64,
    pub door: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HoldRow {
    pub app: String,
    pub name: String,
    pub holder: String,
    pub reason: String,
    pub created_at: u64,
    pub until: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthRow {
    pub app: String,
    pub dyno: String,
    /// The instance tag (`demo/web.1@17`) of the process that reported.
    pub instance: String,
    pub health: DynoHealth,
}

impl Store {
    /// Adds or replaces gate `name` of `app`.
    pub fn set_gate(&mut self, app: &str, gate: &GateRow) -> Result<(), StoreError> {
        Store::require_app(&self.conn, &self.path, app)?;
        let spec = super::to_json(&gate.check).at("encode gate", &self.path)?;
        self.conn
            .prepare_cached(
                "INSERT INTO gates (app, name, spec, timeout_ms, created_at, door)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (app, name) DO UPDATE SET spec = excluded.spec,
                    timeout_ms = excluded.timeout_ms, created_at = excluded.created_at,
                    door = excluded.door",
            )
            .and_then(|mut st| {
                st.execute(params![
                    app,
                    gate.name,
                    spec,
                    gate.timeout_ms,
                    gate.created_at,
                    gate.door
                ])
            })
            .at("save gate", &self.path)?;
        Ok(())
    }

    /// Removes gate `name`; false if the app had none of that name.
    pub fn unset_gate(&mut self, app: &str, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM gates WHERE app = ?1 AND name = ?2")
            .and_then(|mut st| st.execute([app, name]))
            .at("delete gate", &self.path)?;
        Ok(n > 0)
    }

    pub fn gates(&self, app: &str) -> Result<Vec<GateRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT name, spec, timeout_ms, created_at, door FROM gates
                 WHERE app = ?1 ORDER BY name",
            )
            .and_then(|mut st| {
                st.query_map([app], |r| {
                    Ok(GateRow {
                        name: r.get(0)?,
                        check: super::json_col(r, 1)?,
                        timeout_ms: r.get(2)?,
                        created_at: r.get(3)?,
                        door: r.get(4)?,
                    })
                })?
                .collect()
            })
            .at("select gates", &self.path)
    }

    /// Takes (or renews) a hold.
    pub fn put_hold(&mut self, hold: &HoldRow) -> Result<(), StoreError> {
        Store::require_app(&self.conn, &self.path, &hold.app)?;
        self.conn
            .prepare_cached(
                "INSERT INTO holds (app, name, holder, reason, created_at, until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (app, name) DO UPDATE SET holder = excluded.holder,
                    reason = excluded.reason, created_at = excluded.created_at,
                    until = excluded.until",
            )
            .and_then(|mut st| {
                st.execute(params![
                    hold.app,
                    hold.name,
                    hold.holder,
                    hold.reason,
                    hold.created_at,
                    hold.until
                ])
            })
            .at("save hold", &self.path)?;
        Ok(())
    }

    /// Releases a hold: the row it was, if there was one.
    pub fn delete_hold(&mut self, app: &str, name: &str) -> Result<Option<HoldRow>, StoreError> {
        let found = self.hold(app, name)?;
        self.conn
            .prepare_cached("DELETE FROM holds WHERE app = ?1 AND name = ?2")
            .and_then(|mut st| st.execute([app, name]))
            .at("delete hold", &self.path)?;
        Ok(found)
    }

    fn hold(&self, app: &str, name: &str) -> Result<Option<HoldRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT app, name, holder, reason, created_at, until FROM holds
                 WHERE app = ?1 AND name = ?2",
            )
            .and_then(|mut st| optional(st.query_row([app, name], hold_row)))
            .at("select hold", &self.path)
    }

    /// Every hold of every app (`None`) or of one, soonest to expire first.
    pub fn holds(&self, app: Option<&str>) -> Result<Vec<HoldRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT app, name, holder, reason, created_at, until FROM holds
                 WHERE ?1 IS NULL OR app = ?1 ORDER BY until, app, name",
            )
            .and_then(|mut st| st.query_map([app], hold_row)?.collect())
            .at("select holds", &self.path)
    }

    /// Whether `app` has any gate or hold (the fast path of every change: none, no waiting).
    pub fn has_gates(&self, app: &str) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM gates WHERE app = ?1)
                     OR EXISTS (SELECT 1 FROM holds WHERE app = ?1)",
            )
            .and_then(|mut st| st.query_row([app], |r| r.get(0)))
            .at("look up gates", &self.path)
    }

    pub fn set_health(&mut self, row: &HealthRow) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO dyno_health (app, dyno, instance, status, message, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (app, dyno) DO UPDATE SET instance = excluded.instance,
                    status = excluded.status, message = excluded.message, at = excluded.at",
            )
            .and_then(|mut st| {
                st.execute(params![
                    row.app,
                    row.dyno,
                    row.instance,
                    row.health.status.as_str(),
                    row.health.message,
                    row.health.at
                ])
            })
            .at("save dyno health", &self.path)?;
        Ok(())
    }

    pub fn healths(&self) -> Result<Vec<HealthRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT app, dyno, instance, status, message, at FROM dyno_health
                 ORDER BY app, dyno",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    let status: String = r.get(3)?;
                    Ok(HealthRow {
                        app: r.get(0)?,
                        dyno: r.get(1)?,
                        instance: r.get(2)?,
                        health: DynoHealth {
                            // Written by us from the enum; an unknown word reads as an error.
                            status: HealthStatus::parse(&status).unwrap_or(HealthStatus::Error),
                            message: r.get(4)?,
                            at: r.get(5)?,
                        },
                    })
                })?
                .collect()
            })
            .at("select dyno health", &self.path)
    }
}

fn hold_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok(HoldRow {
        app: r.get(0)?,
        name: r.get(1)?,
        holder: r.get(2)?,
        reason: r.get(3)?,
        created_at: r.get(4)?,
        until: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;
    use crate::store::*;
    use roboku_wire::gates::{DynoHealth, GateKind, HealthStatus};

    fn hold(app: &str, name: &str, until: u64) -> HoldRow {
        HoldRow {
            app: app.into(),
            name: name.into(),
            holder: "cli".into(),
            reason: "mission 42".into(),
            created_at: 1,
            until,
        }
    }

    #[test]
    fn gates_and_holds_survive_a_reopen_and_go_with_their_app() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roboku.db");
        {
            let mut s = Store::open(&path).unwrap();
            s.create_app("nav", 1).unwrap();
            assert!(!s.has_gates("nav").unwrap());
            let gate = GateRow {
                name: "idle".into(),
                check: GateKind::File("/run/robot/idle".into()),
                timeout_ms: 10_000,
                created_at: 2,
                door: "cli".into(),
            };
            s.set_gate("nav", &gate).unwrap();
            s.put_hold(&hold("nav", "mission", 500)).unwrap();
            s.put_hold(&hold("nav", "mission", 900)).unwrap();
            assert!(s.has_gates("nav").unwrap());
            assert!(matches!(
                s.set_gate("ghost", &gate),
                Err(StoreError::NoApp(_))
            ));
        }
        let mut s = Store::open(&path).unwrap();
        let gates = s.gates("nav").unwrap();
        assert_eq!(gates.len(), 1);
        assert_eq!(gates[0].check, GateKind::File("/run/robot/idle".into()));
        let holds = s.holds(Some("nav")).unwrap();
        assert_eq!(
            holds,
            vec![hold("nav", "mission", 900)],
            "renewed, not doubled"
        );
        assert_eq!(
            s.delete_hold("nav", "mission").unwrap().map(|h| h.until),
            Some(900)
        );
        assert_eq!(s.delete_hold("nav", "mission").unwrap(), None);
        assert!(s.unset_gate("nav", "idle").unwrap());
        assert!(!s.unset_gate("nav", "idle").unwrap());
        s.put_hold(&hold("nav", "again", 5)).unwrap();
        s.delete_app("nav").unwrap();
        assert!(s.holds(None).unwrap().is_empty());
    }

    #[test]
    fn a_health_report_is_kept_per_dyno_and_forgotten_with_it() {
        let (_dir, mut s) = store();
        s.create_app("nav", 1).unwrap();
        let row = HealthRow {
            app: "nav".into(),
            dyno: "web.1".into(),
            instance: "nav/web.1@3".into(),
            health: DynoHealth {
                status: HealthStatus::Blocked,
                message: "mission 42".into(),
                at: 7,
            },
        };
        s.set_health(&row).unwrap();
        assert_eq!(s.healths().unwrap(), vec![row]);
        s.save_dynos(&[], &[("nav".into(), "web.1".into())])
            .unwrap();
        assert!(s.healths().unwrap().is_empty());
    }
}

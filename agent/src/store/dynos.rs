//! Dynos as the agent last knew them (so a restarted agent can find and re-adopt them), and the
//! stable port each dyno name was given.
//!
//! Ports are recorded per `(app, dyno name)` and kept when the formation scales down, so `web.2`
//! gets the same port back when it returns; they are released only with the app.

use super::{json_col_opt, optional, to_json, DynoRow, SqlContext, Store, StoreError};
use rusqlite::params;

impl Store {
    /// The dyno's recorded port, or the lowest port in range not recorded for any dyno of any app.
    /// A recorded port is returned even if the configured range has since changed, so a running
    /// dyno's address never moves under it.
    pub fn port_for(
        &mut self,
        app: &str,
        dyno: &str,
        min: u16,
        max: u16,
    ) -> Result<u16, StoreError> {
        let mut ports = self.ports_for(app, &[dyno], min, max)?;
        ports.pop().unwrap_or(Err(StoreError::NoPort { min, max }))
    }

    /// [`Store::port_for`] for several dynos of one app in one transaction: a scale to 500 new
    /// names reads the taken ports once and commits (and fsyncs) once, not 500 times. Each name
    /// gets its answer in order; once the range is full, the names left get `NoPort` and nothing
    /// is recorded for them. `Err` (no such app, a database error) records nothing at all.
    pub fn ports_for(
        &mut self,
        app: &str,
        dynos: &[&str],
        min: u16,
        max: u16,
    ) -> Result<Vec<Result<u16, StoreError>>, StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().at("begin port", path)?;
        Store::require_app(&tx, path, app)?;
        let recorded: std::collections::BTreeMap<String, u16> = tx
            .prepare_cached("SELECT dyno, port FROM ports WHERE app = ?1")
            .and_then(|mut st| {
                st.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .at("select ports", path)?;
        let wanted = dynos.iter().filter(|d| !recorded.contains_key(**d)).count();
        if wanted == 0 {
            let ports = dynos.iter().filter_map(|d| recorded.get(*d).copied());
            return Ok(ports.map(Ok).collect());
        }
        let taken: std::collections::BTreeSet<u16> = tx
            .prepare_cached("SELECT port FROM ports WHERE port BETWEEN ?1 AND ?2")
            .and_then(|mut st| st.query_map([min, max], |r| r.get(0))?.collect())
            .at("select taken ports", path)?;
        let mut fresh = lowest_free(&taken, min, max, wanted).into_iter().flatten();
        let mut answers = Vec::with_capacity(dynos.len());
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO ports (app, dyno, port) VALUES (?1, ?2, ?3)")
                .at("insert port", path)?;
            for dyno in dynos {
                let answer = match recorded.get(*dyno) {
                    Some(&p) => Ok(p),
                    None => match fresh.next() {
                        Some(p) => {
                            insert
                                .execute(params![app, dyno, p])
                                .at("insert port", path)?;
                            Ok(p)
                        }
                        None => Err(StoreError::NoPort { min, max }),
                    },
                };
                answers.push(answer);
            }
        }
        tx.commit().at("commit port", path)?;
        Ok(answers)
    }

    /// Makes `dyno`'s stable port `port`, swapping with the name of the same app that holds it
    /// (a preboot's spare slot), so the name always leads to the port its live process has.
    pub fn assign_port(&mut self, app: &str, dyno: &str, port: u16) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().at("begin assign port", path)?;
        let current: Option<u16> = tx
            .prepare_cached("SELECT port FROM ports WHERE app = ?1 AND dyno = ?2")
            .and_then(|mut st| optional(st.query_row([app, dyno], |r| r.get(0))))
            .at("select port", path)?;
        let holder: Option<String> = tx
            .prepare_cached("SELECT dyno FROM ports WHERE app = ?1 AND port = ?2")
            .and_then(|mut st| optional(st.query_row(params![app, port], |r| r.get(0))))
            .at("select port holder", path)?;
        let (Some(current), Some(holder)) = (current, holder) else {
            return Ok(());
        };
        if current == port {
            return Ok(());
        }
        // Through -1: ports are unique.
        for (name, to) in [
            (&holder, -1i64),
            (&dyno.to_string(), port as i64),
            (&holder, current as i64),
        ] {
            tx.prepare_cached("UPDATE ports SET port = ?3 WHERE app = ?1 AND dyno = ?2")
                .and_then(|mut st| st.execute(params![app, name, to]))
                .at("swap ports", path)?;
        }
        tx.commit().at("commit assign port", path)
    }

    /// Every recorded dyno, by app then name.
    pub fn dynos(&self) -> Result<Vec<DynoRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT app, name, pid, pid_start, release, port, restarts, started_at, last_exit, cgroup,
                        instance
                 FROM dynos ORDER BY app, name",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok(DynoRow {
                        app: r.get(0)?,
                        name: r.get(1)?,
                        pid: r.get(2)?,
                        pid_start: r.get(3)?,
                        release: r.get(4)?,
                        port: r.get(5)?,
                        restarts: r.get(6)?,
                        started_at: r.get(7)?,
                        last_exit: json_col_opt(r, 8)?,
                        cgroup: r.get(9)?,
                        instance: r.get(10)?,
                    })
                })?
                .collect()
            })
            .at("select dynos", &self.path)
    }

    /// Upserts rows and deletes `(app, name)` pairs in `gone`, in one transaction.
    /// Called on every dyno state change, so it is one commit (one fsync) with cached statements.
    pub fn save_dynos(
        &mut self,
        rows: &[DynoRow],
        gone: &[(String, String)],
    ) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().at("begin save dynos", path)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO dynos (app, name, pid, pid_start, release, port, restarts, started_at, last_exit, cgroup, instance)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (app, name) DO UPDATE SET
                        pid = excluded.pid, pid_start = excluded.pid_start, release = excluded.release,
                        port = excluded.port, restarts = excluded.restarts, started_at = excluded.started_at,
                        last_exit = excluded.last_exit, cgroup = excluded.cgroup,
                        instance = excluded.instance",
                )
                .at("upsert dyno", path)?;
            for d in rows {
                let last_exit = d
                    .last_exit
                    .as_ref()
                    .map(to_json)
                    .transpose()
                    .at("encode dyno exit", path)?;
                upsert
                    .execute(params![
                        d.app,
                        d.name,
                        d.pid,
                        d.pid_start,
                        d.release,
                        d.port,
                        d.restarts,
                        d.started_at,
                        last_exit,
                        d.cgroup,
                        d.instance
                    ])
                    .at("upsert dyno", path)?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM dynos WHERE app = ?1 AND name = ?2")
                .at("delete dyno", path)?;
            let mut forget = tx
                .prepare_cached("DELETE FROM dyno_health WHERE app = ?1 AND dyno = ?2")
                .at("delete dyno health", path)?;
            for (app, name) in gone {
                delete.execute([app, name]).at("delete dyno", path)?;
                forget.execute([app, name]).at("delete dyno health", path)?;
            }
        }
        tx.commit().at("commit dynos", path)
    }
}

/// The `count` lowest ports in `min..=max` not in `taken`, in order; `None` for each one the
/// range has no room for (also when `min > max`). Stops at 65535 without overflowing.
fn lowest_free(
    taken: &std::collections::BTreeSet<u16>,
    min: u16,
    max: u16,
    count: usize,
) -> Vec<Option<u16>> {
    let mut free = (min..=max).filter(|p| !taken.contains(p));
    (0..count).map(|_| free.next()).collect()
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;
    use crate::store::*;
    use roboku_wire::ExitInfo;

    fn dyno(app: &str, name: &str, port: u16) -> DynoRow {
        DynoRow {
            app: app.into(),
            name: name.into(),
            pid: Some(1000),
            pid_start: Some(u64::from(port) * 7),
            cgroup: None,
            instance: Some(format!("{app}/{name}@{port}")),
            release: 1,
            port,
            restarts: 0,
            started_at: 50,
            last_exit: None,
        }
    }

    #[test]
    fn assigning_a_port_swaps_it_with_the_spare_slot_that_held_it() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        assert_eq!(s.port_for("a", "web.1", 5000, 5010).unwrap(), 5000);
        assert_eq!(s.port_for("a", "web.1+", 5000, 5010).unwrap(), 5001);
        s.assign_port("a", "web.1", 5001).unwrap();
        assert_eq!(s.port_for("a", "web.1", 5000, 5010).unwrap(), 5001);
        assert_eq!(s.port_for("a", "web.1+", 5000, 5010).unwrap(), 5000);
        s.assign_port("a", "web.1", 5001).unwrap();
        assert_eq!(s.port_for("a", "web.1", 5000, 5010).unwrap(), 5001, "no-op");
        s.assign_port("a", "web.1", 5009).unwrap();
        assert_eq!(
            s.port_for("a", "web.1", 5000, 5010).unwrap(),
            5001,
            "nobody held it"
        );
    }

    #[test]
    fn ports_are_stable_unique_and_reused_lowest_first() {
        let (_dir, mut s) = store();
        assert!(matches!(
            s.port_for("nope", "web.1", 5000, 5010),
            Err(StoreError::NoApp(_))
        ));
        s.create_app("a", 1).unwrap();
        s.create_app("b", 1).unwrap();
        assert_eq!(s.port_for("a", "web.1", 5000, 5010).unwrap(), 5000);
        assert_eq!(s.port_for("a", "web.2", 5000, 5010).unwrap(), 5001);
        assert_eq!(
            s.port_for("b", "web.1", 5000, 5010).unwrap(),
            5002,
            "unique across apps"
        );
        assert_eq!(
            s.port_for("a", "web.1", 5000, 5010).unwrap(),
            5000,
            "stable"
        );
        assert_eq!(
            s.port_for("a", "web.2", 5000, 5010).unwrap(),
            5001,
            "kept after scale down"
        );
        // A recorded port outside a narrower range is still the dyno's port.
        assert_eq!(s.port_for("b", "web.1", 6000, 6010).unwrap(), 5002);

        s.delete_app("a").unwrap();
        assert_eq!(
            s.port_for("b", "web.2", 5000, 5010).unwrap(),
            5000,
            "lowest freed port reused"
        );
        assert_eq!(s.port_for("b", "web.3", 5000, 5010).unwrap(), 5001);
        assert_eq!(
            s.port_for("b", "web.4", 5000, 5010).unwrap(),
            5003,
            "skips the taken 5002"
        );
    }

    #[test]
    fn exhausted_range_is_no_port() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        assert_eq!(s.port_for("a", "web.1", 7000, 7001).unwrap(), 7000);
        assert_eq!(s.port_for("a", "web.2", 7000, 7001).unwrap(), 7001);
        assert!(matches!(
            s.port_for("a", "web.3", 7000, 7001),
            Err(StoreError::NoPort {
                min: 7000,
                max: 7001
            })
        ));
        assert!(matches!(
            s.port_for("a", "web.3", 7001, 7000),
            Err(StoreError::NoPort { .. })
        ));
        // The top of the port space does not overflow.
        assert_eq!(s.port_for("a", "web.4", 65535, 65535).unwrap(), 65535);
        assert!(matches!(
            s.port_for("a", "web.5", 65535, 65535),
            Err(StoreError::NoPort { .. })
        ));
        // A failed allocation records nothing.
        assert_eq!(s.port_for("a", "web.3", 7000, 7002).unwrap(), 7002);
    }

    #[test]
    fn ports_for_many_names_answers_as_one_name_at_a_time_would() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        s.create_app("b", 1).unwrap();
        assert_eq!(s.port_for("b", "web.1", 5000, 5010).unwrap(), 5000);
        assert_eq!(s.port_for("a", "web.2", 5000, 5010).unwrap(), 5001);
        let got = s
            .ports_for("a", &["web.1", "web.2", "web.3"], 5000, 5010)
            .unwrap();
        let got: Vec<u16> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            [5002, 5001, 5003],
            "recorded kept, gaps filled in order"
        );
        // Recorded: the same answers again, and the next name goes above them.
        assert_eq!(s.port_for("a", "web.3", 5000, 5010).unwrap(), 5003);
        assert_eq!(s.port_for("a", "web.4", 5000, 5010).unwrap(), 5004);
    }

    #[test]
    fn ports_for_records_what_fits_and_says_no_port_for_the_rest() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        let got = s
            .ports_for("a", &["web.1", "web.2", "web.3"], 7000, 7001)
            .unwrap();
        assert!(matches!(
            got[..],
            [
                Ok(7000),
                Ok(7001),
                Err(StoreError::NoPort {
                    min: 7000,
                    max: 7001
                })
            ]
        ));
        // Nothing recorded for web.3: a wider range gives it the next port.
        assert_eq!(s.port_for("a", "web.3", 7000, 7002).unwrap(), 7002);
        assert!(matches!(
            s.ports_for("nope", &["web.1"], 7000, 7010),
            Err(StoreError::NoApp(_))
        ));
    }

    #[test]
    fn lowest_free_skips_taken_ports_and_never_overflows() {
        let taken: std::collections::BTreeSet<u16> = [5000, 5002].into();
        assert_eq!(
            super::lowest_free(&taken, 5000, 5004, 4),
            [Some(5001), Some(5003), Some(5004), None]
        );
        assert_eq!(
            super::lowest_free(&taken, 65534, 65535, 3),
            [Some(65534), Some(65535), None]
        );
        assert_eq!(super::lowest_free(&taken, 6000, 5999, 1), [None]);
        assert!(super::lowest_free(&taken, 5000, 5004, 0).is_empty());
    }

    #[test]
    fn save_dynos_upserts_and_deletes() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        s.create_app("b", 1).unwrap();
        assert!(s.dynos().unwrap().is_empty());
        let rows = vec![
            dyno("b", "web.1", 5002),
            dyno("a", "web.2", 5001),
            dyno("a", "web.1", 5000),
        ];
        s.save_dynos(&rows, &[]).unwrap();
        assert_eq!(
            s.dynos().unwrap(),
            vec![rows[2].clone(), rows[1].clone(), rows[0].clone()]
        );

        let crashed = DynoRow {
            pid: None,
            pid_start: None,
            cgroup: None,
            restarts: 3,
            release: 2,
            last_exit: Some(ExitInfo {
                at: 99,
                code: None,
                signal: Some(9),
                oom: true,
                reason: "OOM-killed (memory limit 64M)".into(),
            }),
            ..rows[2].clone()
        };
        s.save_dynos(
            std::slice::from_ref(&crashed),
            &[("a".into(), "web.2".into()), ("a".into(), "never".into())],
        )
        .unwrap();
        assert_eq!(s.dynos().unwrap(), vec![crashed, rows[0].clone()]);
    }

    #[test]
    fn save_dynos_is_all_or_nothing() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        s.save_dynos(&[dyno("a", "web.1", 5000)], &[]).unwrap();
        // The second row violates the foreign key: nothing of the call may stick.
        let err = s
            .save_dynos(
                &[dyno("a", "web.2", 5001), dyno("ghost", "web.1", 5002)],
                &[("a".into(), "web.1".into())],
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Sqlite {
                    op: "upsert dyno",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(s.dynos().unwrap(), vec![dyno("a", "web.1", 5000)]);
    }
}

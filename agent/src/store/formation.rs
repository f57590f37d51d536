//! Formation: how many dynos of each process type an app wants, and their resource limits.

use super::{json_col, to_json, FormationRow, SqlContext, Store, StoreError};
use rusqlite::params;

impl Store {
    /// The app's formation, by process type.
    pub fn formation(&self, app: &str) -> Result<Vec<FormationRow>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT ptype, count, limits FROM formation WHERE app = ?1 ORDER BY ptype",
            )
            .and_then(|mut st| {
                st.query_map([app], |r| {
                    Ok(FormationRow {
                        ptype: r.get(0)?,
                        count: r.get(1)?,
                        limits: json_col(r, 2)?,
                    })
                })?
                .collect()
            })
            .at("select formation", &self.path)
    }

    /// Upserts each row (count and limits), in one transaction. Types not in `rows` are kept.
    pub fn save_formation(&mut self, app: &str, rows: &[FormationRow]) -> Result<(), StoreError> {
        let path = &self.path;
        let tx = self.conn.transaction().at("begin save formation", path)?;
        Store::require_app(&tx, path, app)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO formation (app, ptype, count, limits) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (app, ptype) DO UPDATE SET count = excluded.count, limits = excluded.limits",
                )
                .at("upsert formation", path)?;
            for row in rows {
                let limits = to_json(&row.limits).at("encode limits", path)?;
                upsert
                    .execute(params![app, row.ptype, row.count, limits])
                    .at("upsert formation", path)?;
            }
        }
        tx.commit().at("commit formation", path)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_util::store;
    use crate::store::*;
    use roboku_wire::Limits;

    #[test]
    fn formation_upserts_and_keeps_other_types() {
        let (_dir, mut s) = store();
        let web = FormationRow {
            ptype: "web".into(),
            count: 1,
            limits: Limits::default(),
        };
        assert!(matches!(
            s.save_formation("nope", std::slice::from_ref(&web)),
            Err(StoreError::NoApp(_))
        ));
        s.create_app("a", 1).unwrap();
        assert!(s.formation("a").unwrap().is_empty());
        let worker = FormationRow {
            ptype: "worker".into(),
            count: 3,
            limits: Limits {
                memory_max: Some(128 << 20),
                memory_high: Some(100 << 20),
                cpu: Some(1.5),
                pids: Some(64),
                cpuset: Some("0-1".into()),
                nice: Some(-5),
                groups: Some(vec!["dialout".into(), "video".into()]),
                rt: Some("fifo:10".into()),
            },
        };
        s.save_formation("a", &[worker.clone(), web.clone()])
            .unwrap();
        assert_eq!(s.formation("a").unwrap(), vec![web.clone(), worker.clone()]);

        let web2 = FormationRow {
            count: 0,
            limits: Limits {
                cpu: Some(0.25),
                ..Limits::default()
            },
            ..web
        };
        s.save_formation("a", std::slice::from_ref(&web2)).unwrap();
        assert_eq!(s.formation("a").unwrap(), vec![web2, worker]);
    }

    #[test]
    fn corrupt_json_is_an_error_not_a_panic() {
        let (_dir, mut s) = store();
        s.create_app("a", 1).unwrap();
        s.save_formation(
            "a",
            &[FormationRow {
                ptype: "web".into(),
                count: 1,
                limits: Limits::default(),
            }],
        )
        .unwrap();
        s.conn
            .execute("UPDATE formation SET limits = '{not json'", [])
            .unwrap();
        let err = s.formation("a").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Sqlite {
                    op: "select formation",
                    ..
                }
            ),
            "{err}"
        );
    }
}

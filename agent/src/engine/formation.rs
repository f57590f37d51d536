//! Formation handlers: `ps`, scale, resize (applied live to running cgroups), restart and stop.

use super::command::Result;
use super::command::{Door, EngineError};
use super::dyno::{parse_name, DynoKey, Want};
use super::Engine;
use crate::store::FormationRow;
use roboku_wire as wire;
use std::collections::BTreeMap;

/// At most this many dynos of one process type (a typo like `web=1000000` must not fork-bomb).
const MAX_COUNT: u32 = 500;

impl Engine {
    pub(super) fn ps(&mut self, app: &str) -> Result<Vec<wire::DynoInfo>> {
        self.cache(app)?;
        self.read_unread(app);
        let mut list: Vec<_> = self
            .dynos
            .values()
            .filter(|d| d.app == app)
            .map(|d| d.info())
            .collect();
        list.sort_by(|a, b| (&a.ptype, a.index).cmp(&(&b.ptype, b.index)));
        Ok(list)
    }

    pub(super) fn formation(&self, app: &str) -> Result<Vec<wire::FormationEntry>> {
        let cache = self.cache(app)?;
        let enforced = self.cgroups.status().enforced;
        let types = cache
            .release
            .as_ref()
            .map(|r| r.process_types.clone())
            .unwrap_or_default();
        let mut rows: Vec<wire::FormationEntry> = cache
            .formation
            .iter()
            .map(|f| wire::FormationEntry {
                ptype: f.ptype.clone(),
                command: types.get(&f.ptype).cloned(),
                count: f.count,
                limits: f.limits.clone(),
                limits_enforced: enforced,
            })
            .collect();
        rows.sort_by(|a, b| a.ptype.cmp(&b.ptype));
        Ok(rows)
    }

    pub(super) fn scale(
        &mut self,
        door: Door,
        app: &str,
        counts: BTreeMap<String, u32>,
    ) -> Result<Vec<wire::FormationEntry>> {
        let cache = self.cache(app)?;
        let Some(release) = &cache.release else {
            return Err(EngineError::Conflict(format!(
                "app {app:?} has no release yet; deploy first"
            )));
        };
        if counts.is_empty() {
            return Err(EngineError::BadRequest(
                "nothing to scale: give TYPE=COUNT pairs".into(),
            ));
        }
        let mut rows = Vec::new();
        for (ptype, count) in &counts {
            if !release.process_types.contains_key(ptype) {
                let known: Vec<_> = release.process_types.keys().cloned().collect();
                return Err(EngineError::NotFound(format!(
                    "no process type {ptype:?} in v{} of {app} (it has: {})",
                    release.version,
                    known.join(", ")
                )));
            }
            if *count > MAX_COUNT {
                return Err(EngineError::BadRequest(format!(
                    "{ptype}={count}: at most {MAX_COUNT} dynos per type"
                )));
            }
            let limits = cache
                .formation
                .iter()
                .find(|f| &f.ptype == ptype)
                .map(|f| f.limits.clone())
                .unwrap_or_default();
            rows.push(FormationRow {
                ptype: ptype.clone(),
                count: *count,
                limits,
            });
        }
        self.store.save_formation(app, &rows)?;
        self.refresh_app(app);
        self.reconcile(app);
        let spec: Vec<String> = counts.iter().map(|(t, c)| format!("{t}={c}")).collect();
        self.event(door, Some(app), "scale", &spec.join(" "));
        self.formation(app)
    }

    pub(super) fn resize(
        &mut self,
        door: Door,
        app: &str,
        req: wire::ResizeRequest,
    ) -> Result<Vec<wire::FormationEntry>> {
        let cache = self.cache(app)?;
        let mut limits = cache
            .formation
            .iter()
            .find(|f| f.ptype == req.ptype)
            .map(|f| f.limits.clone())
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "no process type {:?} in the formation of {app}",
                    req.ptype
                ))
            })?;
        let count = cache
            .formation
            .iter()
            .find(|f| f.ptype == req.ptype)
            .map(|f| f.count)
            .unwrap_or(0);
        let before = limits.clone();
        merge_limits(&mut limits, &req)?;
        crate::cgroup::host::HostFacts::read()
            .check(&limits)
            .map_err(EngineError::BadRequest)?;
        if let Some(groups) = &limits.groups {
            crate::supervisor::hardware::resolve_groups(groups).map_err(EngineError::BadRequest)?;
        }
        if let Some(rt) = &limits.rt {
            crate::supervisor::hardware::check_rt(
                rt,
                limits.cpu.is_some(),
                &self.settings.cgroup_mount,
            )
            .map_err(EngineError::BadRequest)?;
        }
        // Groups and the scheduling policy are set when a process starts: restart to apply.
        let restart = before.groups != limits.groups || before.rt != limits.rt;
        self.store.save_formation(
            app,
            &[FormationRow {
                ptype: req.ptype.clone(),
                count,
                limits: limits.clone(),
            }],
        )?;
        self.refresh_app(app);
        // Applied live: no restart needed to change a running dyno's limits.
        let running: Vec<(i32, Option<String>)> = self
            .dynos
            .values()
            .filter(|d| d.app == app && d.ptype == req.ptype)
            .filter_map(|d| d.proc.as_ref().map(|p| (p.pid, p.cgroup.clone())))
            .collect();
        for (pid, cgroup) in running {
            if let Some(rel) = cgroup {
                if let Err(e) = self.cgroups.update(&rel, &limits) {
                    self.logs.system(
                        app,
                        "roboku",
                        format!("applying limits to {rel} failed: {e}"),
                    );
                }
            }
            if let Some(n) = limits.nice {
                // SAFETY: setpriority has no memory-safety preconditions.
                unsafe { libc::setpriority(libc::PRIO_PGRP, pid as libc::id_t, n) };
            }
        }
        self.event(
            door,
            Some(app),
            &format!("resize {}", req.ptype),
            &limits.to_string(),
        );
        if restart {
            let keys: Vec<DynoKey> = self
                .dynos
                .values()
                .filter(|d| d.app == app && d.ptype == req.ptype && d.want == Want::Run)
                .map(|d| d.key())
                .collect();
            for key in &keys {
                self.restart_dyno(key);
            }
        }
        self.formation(app)
    }

    /// The dynos a target names: all of the app (`None`), a type (`web`) or one dyno (`web.2`).
    fn targets(&self, app: &str, target: Option<&str>) -> Result<Vec<DynoKey>> {
        self.cache(app)?;
        let keys: Vec<DynoKey> = self
            .dynos
            .values()
            .filter(|d| d.app == app && d.want != Want::Remove)
            .filter(|d| match target {
                None => true,
                Some(t) if parse_name(t).is_some() => d.name == t,
                Some(t) => d.ptype == t,
            })
            .map(|d| d.key())
            .collect();
        if keys.is_empty() {
            let what = target
                .map(|t| format!("no dyno or process type {t:?}"))
                .unwrap_or_else(|| "no dynos".into());
            return Err(EngineError::NotFound(format!(
                "{what} in app {app} (see `roboku ps -a {app}`)"
            )));
        }
        Ok(keys)
    }

    pub(super) fn restart(
        &mut self,
        door: Door,
        app: &str,
        target: Option<String>,
    ) -> Result<wire::Done> {
        self.each_target(door, app, target, "restart", "Restarting", |e, keys| {
            for key in keys {
                e.restart_dyno(key)
            }
        })
    }

    pub(super) fn stop(
        &mut self,
        door: Door,
        app: &str,
        target: Option<String>,
    ) -> Result<wire::Done> {
        // Dependents first: the start order reversed.
        self.each_target(door, app, target, "stop", "Stopping", |e, keys| {
            e.stop_in_order(keys, Want::Stop)
        })
    }

    /// Applies `act` to the dynos `target` names, records the event, says what it did.
    fn each_target(
        &mut self,
        door: Door,
        app: &str,
        target: Option<String>,
        action: &str,
        verb: &str,
        act: impl Fn(&mut Engine, &[DynoKey]),
    ) -> Result<wire::Done> {
        let keys = self.targets(app, target.as_deref())?;
        act(self, &keys);
        let names: Vec<_> = keys.iter().map(|k| k.1.clone()).collect();
        self.event(door, Some(app), action, &names.join(" "));
        Ok(wire::Done {
            message: format!("{verb} {}", names.join(", ")),
        })
    }
}

/// Applies a resize request to `limits`, checking every value: all of it, or (refused) none.
pub fn merge_limits(limits: &mut wire::Limits, req: &wire::ResizeRequest) -> Result<()> {
    let mut merged = limits.clone();
    merge_into(&mut merged, req)?;
    *limits = merged;
    Ok(())
}

fn merge_into(limits: &mut wire::Limits, req: &wire::ResizeRequest) -> Result<()> {
    let l = &req.limits;
    let bad = |m: String| Err(EngineError::BadRequest(m));
    if let Some(m) = l.memory_max {
        if m < 1 << 20 {
            return bad(format!(
                "memory limit {m} bytes is below 1M: a dyno cannot start in that"
            ));
        }
        limits.memory_max = Some(m);
    }
    if let Some(m) = l.memory_high {
        if m < 1 << 20 {
            return bad(format!("memory-high {m} bytes is below 1M"));
        }
        limits.memory_high = Some(m);
    }
    if let Some(c) = l.cpu {
        if !(c.is_finite() && (0.01..=1024.0).contains(&c)) {
            return bad(format!(
                "cpu {c} is not a number of cores between 0.01 and 1024"
            ));
        }
        limits.cpu = Some(c);
    }
    if let Some(p) = l.pids {
        if p == 0 {
            return bad("pids limit must be at least 1".into());
        }
        limits.pids = Some(p);
    }
    if let Some(s) = &l.cpuset {
        let ok = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '-');
        if !ok {
            return bad(format!("cpuset {s:?} is not a CPU list like 0-1,3"));
        }
        limits.cpuset = Some(s.clone());
    }
    if let Some(n) = l.nice {
        if !(-20..=19).contains(&n) {
            return bad(format!("nice {n} is outside -20..19"));
        }
        limits.nice = Some(n);
    }
    if let Some(groups) = &l.groups {
        if let Some(g) = groups.iter().find(|g| {
            g.is_empty()
                || !g
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }) {
            return bad(format!("group name {g:?} is not a group name"));
        }
        limits.groups = (!groups.is_empty()).then(|| groups.clone());
    }
    if let Some(rt) = &l.rt {
        wire::parse_rt(rt).map_err(EngineError::BadRequest)?;
        limits.rt = Some(rt.clone());
    }
    for name in &req.clear {
        match name.as_str() {
            "memory_max" | "memory" => limits.memory_max = None,
            "memory_high" | "memory-high" => limits.memory_high = None,
            "cpu" => limits.cpu = None,
            "pids" => limits.pids = None,
            "cpuset" => limits.cpuset = None,
            "nice" => limits.nice = None,
            "groups" => limits.groups = None,
            "rt" => limits.rt = None,
            other => {
                return bad(format!(
                "unknown limit {other:?} to clear (memory, memory-high, cpu, pids, cpuset, nice, groups, rt)"
            ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(limits: wire::Limits, clear: &[&str]) -> wire::ResizeRequest {
        wire::ResizeRequest {
            ptype: "web".into(),
            limits,
            clear: clear.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn limits_are_checked_and_merged() {
        let mut l = wire::Limits::default();
        merge_limits(
            &mut l,
            &req(
                wire::Limits {
                    memory_max: Some(64 << 20),
                    cpu: Some(0.5),
                    ..Default::default()
                },
                &[],
            ),
        )
        .unwrap();
        assert_eq!((l.memory_max, l.cpu), (Some(64 << 20), Some(0.5)));
        merge_limits(
            &mut l,
            &req(
                wire::Limits {
                    pids: Some(64),
                    ..Default::default()
                },
                &["cpu"],
            ),
        )
        .unwrap();
        assert_eq!(
            (l.memory_max, l.cpu, l.pids),
            (Some(64 << 20), None, Some(64))
        );
        for bad in [
            wire::Limits {
                memory_max: Some(10),
                ..Default::default()
            },
            wire::Limits {
                cpu: Some(f64::NAN),
                ..Default::default()
            },
            wire::Limits {
                cpu: Some(0.0),
                ..Default::default()
            },
            wire::Limits {
                pids: Some(0),
                ..Default::default()
            },
            wire::Limits {
                cpuset: Some("0;1".into()),
                ..Default::default()
            },
            wire::Limits {
                nice: Some(40),
                ..Default::default()
            },
        ] {
            let before = l.clone();
            assert!(merge_limits(&mut l, &req(bad, &[])).is_err());
            assert_eq!(l, before);
        }
        assert!(merge_limits(&mut l, &req(Default::default(), &["bogus"])).is_err());
    }

    /// Found by the api_json fuzz target: a valid memory limit before an invalid cpu was kept.
    #[test]
    fn a_refused_resize_changes_nothing_even_after_valid_fields() {
        let mut l = wire::Limits {
            memory_max: Some(64 << 20),
            ..Default::default()
        };
        let before = l.clone();
        let both = wire::Limits {
            memory_max: Some(128 << 20),
            cpu: Some(0.0),
            ..Default::default()
        };
        assert!(merge_limits(&mut l, &req(both, &[])).is_err());
        assert_eq!(l, before);
        let cleared_then_bogus = req(Default::default(), &["memory", "bogus"]);
        assert!(merge_limits(&mut l, &cleared_then_bogus).is_err());
        assert_eq!(l, before);
    }
}

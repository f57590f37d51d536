//! Reconciling desired against running, split into a pure plan (tested without processes) and
//! the engine step that carries the plan out.

use super::dyno::{parse_name, Dyno, DynoKey, Want};
use super::Engine;
use crate::store::FormationRow;
use std::collections::{BTreeMap, BTreeSet};

/// One step towards the desired formation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start {
        ptype: String,
        index: u32,
    },
    /// Running an older release: restart it on the current one.
    Restart(String),
    /// Not wanted any more (scaled down, type gone from the Procfile).
    Remove(String),
}

/// Existing dyno as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    pub release: u32,
    /// Stopped on purpose (`ps:stop`): left down until restarted.
    pub stopped: bool,
}

/// Dyno `(type, index)` pairs the formation asks for, for types the release defines.
pub fn desired(
    formation: &[FormationRow],
    process_types: &BTreeMap<String, String>,
) -> BTreeSet<(String, u32)> {
    formation
        .iter()
        .filter(|f| process_types.contains_key(&f.ptype))
        .flat_map(|f| (1..=f.count).map(move |i| (f.ptype.clone(), i)))
        .collect()
}

/// What to do so that `existing` becomes `desired` on `release`.
pub fn plan(desired: &BTreeSet<(String, u32)>, release: u32, existing: &[Existing]) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut seen = BTreeSet::new();
    for e in existing {
        let Some((ptype, idx)) = parse_name(&e.name) else {
            continue;
        };
        let key = (ptype.to_string(), idx);
        if desired.contains(&key) {
            seen.insert(key);
            if e.release != release && !e.stopped {
                actions.push(Action::Restart(e.name.clone()));
            }
        } else {
            actions.push(Action::Remove(e.name.clone()));
        }
    }
    for (ptype, index) in desired {
        if !seen.contains(&(ptype.clone(), *index)) {
            actions.push(Action::Start {
                ptype: ptype.clone(),
                index: *index,
            });
        }
    }
    actions
}

impl Engine {
    /// The app's formation dynos (not one-offs, not being removed) as the planner sees them.
    pub(super) fn existing_dynos(&self, app: &str) -> Vec<Existing> {
        self.dynos
            .values()
            .filter(|d| d.app == app && d.want != Want::Remove && !d.one_off)
            .map(|d| Existing {
                name: d.name.clone(),
                release: d.release,
                stopped: d.want == Want::Stop,
            })
            .collect()
    }

    /// Brings one app's dynos in line with its formation and current release.
    pub(super) fn reconcile(&mut self, app: &str) {
        let Some(cache) = self.apps.get(app) else {
            return;
        };
        let (want, release) = match &cache.release {
            Some(r) => (desired(&cache.formation, &r.process_types), r.version),
            None => (BTreeSet::new(), 0),
        };
        let existing = self.existing_dynos(app);
        let mut removed = Vec::new();
        let mut starts = Vec::new();
        for action in plan(&want, release, &existing) {
            match action {
                Action::Start { ptype, index } => starts.push((ptype, index)),
                Action::Restart(name) => {
                    let key = (app.to_string(), name);
                    if self.prebootable(&key) {
                        self.preboot_dyno(&key);
                    } else {
                        self.restart_dyno(&key);
                    }
                }
                Action::Remove(name) => removed.push((app.to_string(), name)),
            }
        }
        self.start_new_dynos(app, release, &starts);
        // Scaled away together: dependents first, the start order reversed.
        self.stop_in_order(&removed, Want::Remove);
    }
}

impl Engine {
    /// Starts the formation's new dynos `(type, index)`: their ports come from one store
    /// transaction (a scale to 500 commits once, not once per dyno), then each one starts.
    /// A dyno without a port is not started; its log says why.
    fn start_new_dynos(&mut self, app: &str, release: u32, starts: &[(String, u32)]) {
        if starts.is_empty() {
            return;
        }
        let names: Vec<String> = starts.iter().map(|(t, i)| format!("{t}.{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (min, max) = (self.settings.port_min, self.settings.port_max);
        let ports: Vec<Result<u16, String>> = match self.store.ports_for(app, &refs, min, max) {
            Ok(ports) => ports
                .into_iter()
                .map(|p| p.map_err(|e| e.to_string()))
                .collect(),
            Err(e) => vec![Err(e.to_string()); names.len()],
        };
        for (((ptype, index), name), port) in starts.iter().zip(names).zip(ports) {
            let port = match port {
                Ok(p) => p,
                Err(e) => {
                    self.logs.system(app, &name, format!("cannot start: {e}"));
                    continue;
                }
            };
            let key: DynoKey = (app.to_string(), name);
            self.dynos.insert(
                key.clone(),
                Dyno::new(app, ptype, *index, port, release, crate::util::now_ms()),
            );
            self.start_dyno(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ptype: &str, count: u32) -> FormationRow {
        FormationRow {
            ptype: ptype.into(),
            count,
            limits: Default::default(),
        }
    }
    fn types(names: &[&str]) -> BTreeMap<String, String> {
        names
            .iter()
            .map(|n| (n.to_string(), format!("run-{n}")))
            .collect()
    }
    fn ex(name: &str, release: u32) -> Existing {
        Existing {
            name: name.into(),
            release,
            stopped: false,
        }
    }

    #[test]
    fn desired_skips_types_missing_from_release() {
        let d = desired(
            &[row("web", 2), row("worker", 1), row("gone", 3)],
            &types(&["web", "worker"]),
        );
        let names: Vec<_> = d.iter().map(|(t, i)| format!("{t}.{i}")).collect();
        assert_eq!(names, ["web.1", "web.2", "worker.1"]);
    }

    #[test]
    fn scale_up_down_and_release_change() {
        let d = desired(&[row("web", 2)], &types(&["web"]));
        assert_eq!(
            plan(&d, 1, &[ex("web.1", 1)]),
            [Action::Start {
                ptype: "web".into(),
                index: 2
            }]
        );
        let d1 = desired(&[row("web", 1)], &types(&["web"]));
        assert_eq!(
            plan(&d1, 1, &[ex("web.1", 1), ex("web.2", 1)]),
            [Action::Remove("web.2".into())]
        );
        assert_eq!(
            plan(&d1, 2, &[ex("web.1", 1)]),
            [Action::Restart("web.1".into())]
        );
        assert_eq!(plan(&d1, 1, &[ex("web.1", 1)]), []);
    }

    #[test]
    fn stopped_dynos_stay_down_and_zero_removes_all() {
        let d = desired(&[row("web", 1)], &types(&["web"]));
        let stopped = Existing {
            name: "web.1".into(),
            release: 1,
            stopped: true,
        };
        assert_eq!(plan(&d, 2, &[stopped]), []);
        let none = desired(&[row("web", 0)], &types(&["web"]));
        assert_eq!(
            plan(&none, 1, &[ex("web.1", 1), ex("web.2", 1)]),
            [
                Action::Remove("web.1".into()),
                Action::Remove("web.2".into())
            ]
        );
    }
}

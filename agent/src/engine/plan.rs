//! `deploy --plan`: what releasing a slug would do, from the same pure planner the reconcile
//! uses (`reconcile::plan`) and the slug's own switch policy, with nothing applied.

use super::command::Result;
use super::policy::{self, Strategy};
use super::reconcile::{self, Action};
use super::Engine;
use crate::build::Slug;
use roboku_wire as wire;
use roboku_wire::DynoState;
use std::collections::BTreeMap;

impl Engine {
    pub(super) fn plan_release(&self, app: &str, slug: &Slug) -> Result<wire::DeployPlan> {
        let cache = self.cache(app)?;
        let current = cache.release.as_ref();
        let next_version = self
            .store
            .releases(app)?
            .first()
            .map_or(1, |r| r.version + 1);
        let new_types: BTreeMap<String, String> = slug.process_types.iter().cloned().collect();
        let old_types = current.map(|r| r.process_types.clone()).unwrap_or_default();
        let policy = std::fs::read_to_string(slug.path.join("app.json"))
            .ok()
            .and_then(|t| policy::parse(&t).ok())
            .unwrap_or_default();
        // The real release would refuse it: so does its plan.
        super::releases::check_start_order(slug)?;
        let existing = self.existing_dynos(app);
        let desired = reconcile::desired(&cache.formation, &new_types);
        let dynos = reconcile::plan(&desired, next_version, &existing)
            .into_iter()
            .map(|a| match a {
                Action::Start { ptype, index } => planned(
                    format!("{ptype}.{index}"),
                    "start",
                    None,
                    policy.after(&ptype),
                ),
                Action::Remove(name) => planned(name, "stop", None, &[]),
                Action::Restart(name) => {
                    let d = self.dynos.get(&(app.to_string(), name.clone()));
                    let up = d.is_some_and(|d| d.proc.is_some() && d.state == DynoState::Up);
                    let strategy = match d.map(|d| policy.strategy(&d.ptype)) {
                        Some(Strategy::Preboot) if up => Strategy::Preboot,
                        _ => Strategy::StopThenStart,
                    };
                    let after = d.map(|d| policy.after(&d.ptype)).unwrap_or(&[]);
                    planned(name, "restart", Some(strategy), after)
                }
            })
            .collect();
        let mut types_changed: Vec<String> = new_types
            .iter()
            .filter(|(t, cmd)| old_types.get(*t).is_some_and(|old| old != *cmd))
            .map(|(t, _)| t.clone())
            .collect();
        types_changed.retain(|t| t != "release");
        let disk_bytes = if self.settings.slugs_dir().join(&slug.sha256).is_dir() {
            0
        } else {
            crate::deploy::tree_size(&slug.path)
        };
        let rollback_free = policy.probation.is_zero();
        Ok(wire::DeployPlan {
            app: app.to_string(),
            current: current.map(|r| r.version),
            next_version,
            slug: slug.sha256.clone(),
            code_changed: current.is_none_or(|r| r.slug != slug.sha256),
            types_added: keys_not_in(&new_types, &old_types),
            types_removed: keys_not_in(&old_types, &new_types),
            types_changed,
            release_command: new_types.get("release").cloned(),
            dynos,
            disk_bytes,
            probation_secs: if rollback_free {
                0
            } else {
                policy.probation.as_secs()
            },
            current_slug: current.map(|r| r.slug.clone()),
            files: None,
        })
    }
}

fn planned(
    name: String,
    action: &str,
    strategy: Option<Strategy>,
    after: &[String],
) -> wire::PlannedDyno {
    wire::PlannedDyno {
        name,
        action: action.into(),
        strategy: strategy.map(|s| s.as_str().to_string()),
        after: after.to_vec(),
    }
}

fn keys_not_in(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    a.keys().filter(|k| !b.contains_key(*k)).cloned().collect()
}

//! Releases, config vars and rollback. A deploy, a config change and a rollback each create a new
//! immutable release; the current pointer moves in the same transaction, then dynos restart.

use super::command::Reply;
use super::command::Result;
use super::command::{Door, EngineError};
use super::rollout::Answer;
use super::Engine;
use crate::build::Slug;
use crate::store::{FormationRow, NewRelease, ReleaseRow};
use crate::util::now_ms;
use roboku_wire as wire;
use std::collections::BTreeMap;

impl Engine {
    /// The release a rollback goes to: `version`, or the newest succeeded one before `current`.
    pub(super) fn rollback_version(
        &self,
        app: &str,
        current: u32,
        version: Option<u32>,
    ) -> Result<u32> {
        if let Some(v) = version {
            return Ok(v);
        }
        self.store
            .releases(app)?
            .into_iter()
            .find(|r| r.version < current && r.status == "succeeded")
            .map(|r| r.version)
            .ok_or_else(|| EngineError::Conflict(format!("app {app:?} has no earlier release")))
    }

    pub(super) fn release_info(&self, app: &str, r: &ReleaseRow) -> wire::ReleaseInfo {
        let current = self
            .apps
            .get(app)
            .and_then(|c| c.release.as_ref())
            .map(|c| c.version);
        wire::ReleaseInfo {
            version: r.version,
            created_at: r.created_at,
            description: r.description.clone(),
            slug: r.slug.clone(),
            process_types: r.process_types.clone(),
            config_keys: r.config.keys().cloned().collect(),
            current: current == Some(r.version),
            status: r.status.clone(),
            door: r.door.clone(),
            artifact: r.artifact.clone(),
            probation: r.probation.clone(),
            buildpacks: r.buildpacks.clone(),
        }
    }

    /// Makes a new release current and restarts the app's dynos onto it.
    /// The caller waits for the rollout ([`Reply::Pending`]): the release is committed once its
    /// dynos are healthy, or refused and the previous one restored.
    fn cut_release(
        &mut self,
        door: Door,
        app: &str,
        new: NewRelease,
        answer: Answer,
    ) -> Result<Reply> {
        self.ensure_no_rollout(app)?;
        self.ensure_no_restore(app)?;
        let previous = self.cache(app)?.release.as_ref().map(|r| r.version);
        self.snapshot_data(app, previous)?;
        let types = new.process_types.clone();
        let row = self.store.create_release(app, new)?;
        // New process types join the formation: web at 1 (as Heroku does), others at 0.
        let known: Vec<String> = self
            .store
            .formation(app)?
            .into_iter()
            .map(|f| f.ptype)
            .collect();
        let added: Vec<FormationRow> = types
            .keys()
            .filter(|t| !known.contains(t))
            .map(|t| FormationRow {
                ptype: t.clone(),
                count: u32::from(t == "web"),
                limits: Default::default(),
            })
            .collect();
        if !added.is_empty() {
            self.store.save_formation(app, &added)?;
        }
        self.refresh_app(app);
        self.event(
            door,
            Some(app),
            &format!("release v{}", row.version),
            &row.description,
        );
        self.logs.system(
            app,
            "roboku",
            format!("Release v{} created: {}", row.version, row.description),
        );
        crate::fault::point("release.created");
        if matches!(answer, Answer::Config(_)) {
            self.reload_in_place(app, row.version);
        }
        self.begin_rollout(app, row.version, previous, answer);
        Ok(Reply::Pending {
            app: app.to_string(),
        })
    }

    pub(super) fn release(
        &mut self,
        door: Door,
        app: &str,
        slug: Slug,
        description: String,
        artifact: Option<wire::fleet::Artifact>,
        buildpacks: Option<Vec<wire::ReleaseBuildpack>>,
    ) -> Result<Reply> {
        self.cache(app)?;
        check_start_order(&slug)?;

        let config = self.store.config(app)?;
        let process_types = slug.process_types.into_iter().collect();
        let new = NewRelease {
            slug: slug.sha256,
            process_types,
            config,
            description,
            door: door.as_str().into(),
            now: now_ms(),
            artifact,
            buildpacks,
        };
        self.cut_release(door, app, new, Answer::Release)
    }

    pub(super) fn get_config(&self, app: &str) -> Result<BTreeMap<String, String>> {
        self.cache(app)?;
        Ok(self.store.config(app)?)
    }

    pub(super) fn change_config(
        &mut self,
        door: Door,
        app: &str,
        change: wire::ConfigChange,
    ) -> Result<Reply> {
        self.cache(app)?;
        self.ensure_no_rollout(app)?;
        for key in change.set.keys().chain(change.unset.iter()) {
            check_env_name(key)?;
        }
        if change.set.is_empty() && change.unset.is_empty() {
            return Err(EngineError::BadRequest(
                "nothing to change: give KEY=VALUE pairs or keys to unset".into(),
            ));
        }
        let before = self.store.config(app)?;
        let mut config = before.clone();
        for key in &change.unset {
            config.remove(key);
        }
        config.extend(change.set.clone());
        // Refused here, with the key and the limit, rather than as a dyno that cannot start.
        let bad = |e: String| EngineError::BadRequest(format!("config var {e}"));
        for (k, v) in &change.set {
            crate::procfile::envsize::check_var(k, v).map_err(bad)?;
        }
        let dotenv = &self.cache(app)?.dotenv;
        let env = dotenv.iter().filter(|(k, _)| !config.contains_key(*k));
        crate::procfile::envsize::check_all(
            config
                .iter()
                .chain(env)
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| EngineError::BadRequest(format!("config vars and .env: {e}")))?;
        if config == before {
            // Unsetting an absent var or setting a var to its value: no release, no restart.
            return Ok(Reply::ConfigChanged(wire::ConfigChanged {
                config,
                release: None,
                unchanged: true,
            }));
        }
        self.store.replace_config(app, &config)?;
        let mut parts = Vec::new();
        if !change.set.is_empty() {
            parts.push(format!(
                "Set {}",
                change.set.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !change.unset.is_empty() {
            parts.push(format!("Remove {}", change.unset.join(", ")));
        }
        let mut description = format!("{} config vars", parts.join("; "));
        if let Some(reloads) = self.config_reloads(app) {
            description = format!("{description} (on config: {reloads})");
        }
        let current = self.cache(app)?.release.clone();
        match current {
            Some(cur) => {
                let new = NewRelease {
                    slug: cur.slug,
                    process_types: cur.process_types,
                    config: config.clone(),
                    description,
                    door: door.as_str().into(),
                    now: now_ms(),
                    artifact: cur.artifact,
                    buildpacks: cur.buildpacks,
                };
                self.cut_release(door, app, new, Answer::Config(config))
            }
            None => {
                self.event(door, Some(app), "config", &description);
                Ok(Reply::ConfigChanged(wire::ConfigChanged {
                    config,
                    release: None,
                    unchanged: false,
                }))
            }
        }
    }

    pub(super) fn releases(&self, app: &str) -> Result<Vec<wire::ReleaseInfo>> {
        self.cache(app)?;
        Ok(self
            .store
            .releases(app)?
            .iter()
            .map(|r| self.release_info(app, r))
            .collect())
    }

    /// Rolls back to `version` (or the release before the current one) as a new release that
    /// restores that release's code and config.
    pub(super) fn rollback(
        &mut self,
        door: Door,
        app: &str,
        version: Option<u32>,
    ) -> Result<Reply> {
        self.rollback_to(door, app, version, None)
    }

    /// Rolls back to the last good release by itself (probation), saying why in the new
    /// release's description. Nobody waits for its rollout.
    pub(super) fn rollback_because(&mut self, app: &str, why: &str) -> Result<Reply> {
        self.rollback_to(Door::Agent, app, None, Some(why))
    }

    pub(super) fn rollback_to(
        &mut self,
        door: Door,
        app: &str,
        version: Option<u32>,
        why: Option<&str>,
    ) -> Result<Reply> {
        let current = self.cache(app)?.release.clone().ok_or_else(|| {
            EngineError::Conflict(format!("app {app:?} has no releases to roll back"))
        })?;
        let target_version = self.rollback_version(app, current.version, version)?;
        let target = self.store.release(app, target_version)?.ok_or(
            crate::store::StoreError::NoRelease {
                app: app.into(),
                version: target_version,
            },
        )?;
        if !self.settings.slugs_dir().join(&target.slug).is_dir() {
            return Err(EngineError::Conflict(format!(
                "the slug of v{target_version} is gone (garbage-collected); cannot roll back to it"
            )));
        }
        // Add-ons are not rolled back with the code: their vars stay as attached now.
        let mut config = target.config;
        config.extend(self.addon_vars(app));
        self.store.replace_config(app, &config)?;
        let new = NewRelease {
            slug: target.slug,
            process_types: target.process_types,
            config,
            description: match why {
                Some(why) => format!("Rollback to v{target_version} ({why})"),
                None => format!("Rollback to v{target_version}"),
            },
            door: door.as_str().into(),
            now: now_ms(),
            artifact: target.artifact,
            buildpacks: target.buildpacks,
        };
        self.cut_release(door, app, new, Answer::Release)
    }
}

/// Config var names: `[A-Za-z_][A-Za-z0-9_]*`, and not one roboku sets itself.
fn check_env_name(key: &str) -> Result<()> {
    let ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(EngineError::BadRequest(format!(
            "config var name {key:?} is not valid: use letters, digits and '_', not starting with a digit"
        )));
    }
    let reserved = [
        "PORT",
        "DYNO",
        "ROBOKU_APP",
        "ROBOKU_RELEASE",
        crate::addons::data::VAR,
        crate::supervisor::orphans::AGENT_VAR,
        crate::supervisor::orphans::INSTANCE_VAR,
    ];
    if reserved.contains(&key) {
        return Err(EngineError::BadRequest(format!(
            "{key} is set by roboku for each dyno and cannot be a config var"
        )));
    }
    Ok(())
}

/// A start order that names a type the Procfile lacks, or that has a cycle, fails the release
/// from every door (the rest of `app.json` was checked when the slug was built or verified).
pub(super) fn check_start_order(slug: &Slug) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(slug.path.join("app.json")) else {
        return Ok(());
    };
    let policy = super::policy::parse(&text).map_err(EngineError::InvalidApp)?;
    let types = slug.process_types.iter().map(|(t, _)| t.clone()).collect();
    super::order::check(policy.start_order(), &types).map_err(EngineError::InvalidApp)
}

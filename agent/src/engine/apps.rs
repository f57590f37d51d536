//! The handlers for apps, status and events. Commands reach them through `command.rs`'s
//! dispatch; release, config and formation handlers live in `releases.rs` and `formation.rs`.

use super::command::{Door, EngineError, Result};
use super::dyno::Want;
use super::{AppCache, Engine};
use crate::supervisor::{procfs, spawn};
use crate::util::now_ms;
use roboku_wire as wire;
use std::collections::BTreeMap;
use std::time::Duration;

impl Engine {
    /// Records an audit event; a failing store is logged, never fatal to the command.
    pub(super) fn event(&mut self, door: Door, app: Option<&str>, action: &str, result: &str) {
        if let Err(e) = self
            .store
            .add_event(now_ms(), app, door.as_str(), action, result)
        {
            tracing::warn!(error = %e, action, "recording an event failed");
        }
    }

    /// The app's cache, or a not-found error a person can act on.
    pub(super) fn cache(&self, app: &str) -> Result<&AppCache> {
        self.apps
            .get(app)
            .ok_or_else(|| EngineError::NotFound(format!("no app {app:?} (see `roboku apps`)")))
    }

    /// Reloads what the engine keeps about `app` from the store.
    pub(super) fn refresh_app(&mut self, app: &str) {
        let row = match self.store.app(app) {
            Ok(Some(row)) => row,
            Ok(None) => {
                self.apps.remove(app);
                return;
            }
            Err(e) => {
                tracing::error!(app, error = %e, "reading app failed");
                return;
            }
        };
        let release = row
            .current_release
            .and_then(|v| self.store.release(app, v).ok().flatten());
        let slug_dir = release
            .as_ref()
            .map(|r| self.settings.slugs_dir().join(&r.slug));
        let app_json = slug_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("app.json")).ok());
        let checks = app_json
            .as_deref()
            .and_then(|t| super::health::parse_app_json(t).ok())
            .unwrap_or_default();
        let policy = app_json
            .as_deref()
            .and_then(|t| super::policy::parse(t).ok())
            .unwrap_or_default();
        let dotenv = slug_dir
            .as_ref()
            .map(|d| read_dotenv(&d.join(".env")))
            .unwrap_or_default();
        let formation = self.store.formation(app).unwrap_or_default();
        let (user_name, run_as) = self.app_user(app, row.user.as_deref());
        if let (Some(dir), Ok(Some(r))) = (&slug_dir, &run_as) {
            if let Err(e) = super::isolation::grant_slug(dir, r.gid) {
                tracing::warn!(app, error = %e, "cannot hand the slug to the app's group");
            }
        }
        let data_dir = self.settings.app_data_dir(app);
        let owner = run_as
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map(|r| (r.uid, r.gid));
        if let Err(e) = crate::addons::data::ensure(&self.settings.data_root(), &data_dir, owner) {
            tracing::warn!(app, error = %e, "cannot make the app's persistent data dir");
        }
        let mut own_env = self.addon_vars(app);
        own_env.insert(
            crate::addons::data::VAR.into(),
            data_dir.display().to_string(),
        );
        own_env.insert(
            roboku_wire::gates::DYNO_SOCKET_VAR.into(),
            self.settings.dyno_socket(app).display().to_string(),
        );
        let grace = Duration::from_secs(row.grace_secs.unwrap_or(self.settings.grace_secs));
        let cache = AppCache {
            own_env,
            release,
            slug_dir,
            dotenv,
            formation,
            checks,
            policy,
            run_as,
            user_name,
            grace,
        };
        self.router_errors.remove(app);
        self.apps.insert(app.to_string(), cache);
        self.drop_stale_spares(app);
    }

    /// Who an app's dynos and builds run as: the user it named (`apps:update --user`), else its
    /// own uid (allocated once, recorded in the store) when `dyno_user` is `dynamic`, else the
    /// shared `dyno_user`. robokud's own user when robokud is not root.
    fn app_user(
        &mut self,
        app: &str,
        named: Option<&str>,
    ) -> (String, std::result::Result<Option<spawn::RunAs>, String>) {
        if let Some(name) = named {
            return self.resolve_user(name);
        }
        if self.settings.dyno_user != crate::settings::DYNAMIC_USER
            || !nix::unistd::geteuid().is_root()
        {
            return self.resolve_user(&self.settings.dyno_user.clone());
        }
        let range = match self.settings.app_uid_range() {
            Ok(r) => r,
            Err(e) => return ("?".into(), Err(e)),
        };
        match self
            .store
            .allocate_uid(app, range, &super::isolation::host_has_id)
        {
            Ok(uid) => (
                uid.to_string(),
                Ok(Some(spawn::RunAs {
                    name: uid.to_string(),
                    uid,
                    gid: uid,
                })),
            ),
            Err(e) => ("?".into(), Err(e.to_string())),
        }
    }

    /// A named user when robokud is root (falling back from the shared default `roboku-dyno` to
    /// `nobody` when that user was not created), else robokud's own.
    fn resolve_user(
        &self,
        name: &str,
    ) -> (String, std::result::Result<Option<spawn::RunAs>, String>) {
        if !nix::unistd::geteuid().is_root() {
            let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten();
            return (
                me.map(|u| u.name).unwrap_or_else(|| "self".into()),
                Ok(None),
            );
        }
        match spawn::lookup_user(name) {
            Ok(r) => (name.to_string(), Ok(Some(r))),
            Err(e) if name == self.settings.dyno_user => match spawn::lookup_user("nobody") {
                Ok(r) => ("nobody".into(), Ok(Some(r))),
                Err(_) => (name.to_string(), Err(e)),
            },
            Err(e) => (name.to_string(), Err(e)),
        }
    }

    pub(super) fn status(&self) -> wire::Status {
        let (dyno_user, dyno_user_note) = if !nix::unistd::geteuid().is_root() {
            let (me, _) = self.resolve_user("self");
            (
                me,
                Some("robokud is not root: dynos run as robokud's own user".to_string()),
            )
        } else if self.settings.dyno_user == crate::settings::DYNAMIC_USER {
            match self.settings.app_uid_range() {
                Ok((lo, hi)) => (format!("own uid per app ({lo}-{hi})"), None),
                Err(e) => ("own uid per app".into(), Some(e)),
            }
        } else {
            let (user, run_as) = self.resolve_user(&self.settings.dyno_user);
            let shared = "apps share this user and are not isolated from each other";
            let note = match run_as {
                Ok(_) if user != self.settings.dyno_user => format!(
                    "user {:?} does not exist; dynos run as {user:?}; {shared}",
                    self.settings.dyno_user
                ),
                Ok(_) => shared.to_string(),
                Err(e) => e,
            };
            (user, Some(note))
        };
        wire::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            data_dir: self.settings.data_dir.display().to_string(),
            socket: self.settings.socket_path().display().to_string(),
            started_at: self.started_at,
            cgroup: {
                let mut c = self.cgroups.status();
                // Joins only matter where dynos join cgroups.
                if c.enforced {
                    c.joins = crate::cgroup::favor::current().map(|j| j.line());
                }
                c
            },
            dyno_user,
            dyno_user_note,
            apps: self.apps.len(),
            dynos_running: self.dynos.values().filter(|d| d.proc.is_some()).count(),
            dynos_desired: self.dynos.values().filter(|d| d.want == Want::Run).count(),
            agent_rss: procfs::rss_bytes(std::process::id() as i32).unwrap_or(0),
            clock: Some(crate::clock::status(&self.settings)),
        }
    }

    pub(super) fn app_info(&self, app: &str) -> Result<wire::AppInfo> {
        let row = self
            .store
            .app(app)?
            .ok_or_else(|| crate::store::StoreError::NoApp(app.into()))?;
        let cache = self.cache(app)?;
        let ids = cache.run_as.as_ref().ok().and_then(Option::as_ref);
        Ok(wire::AppInfo {
            name: row.name,
            created_at: row.created_at,
            release: row.current_release,
            user: cache.user_name.clone(),
            uid: ids.map(|r| r.uid),
            gid: ids.map(|r| r.gid),
            grace_secs: cache.grace.as_secs(),
            buildpacks: self.store.buildpacks(app)?,
            dynos_running: self
                .dynos
                .values()
                .filter(|d| d.app == app && d.proc.is_some())
                .count(),
            dynos_desired: self
                .dynos
                .values()
                .filter(|d| d.app == app && d.want == Want::Run)
                .count(),
            router_port: self.routers.get(app).map(|r| r.port),
            router_error: self.router_errors.get(app).cloned(),
            waiting: self.waiting_text(app),
            data_snapshots: self.store.data_snapshots(app)?,
        })
    }

    pub(super) fn list_apps(&self) -> Result<Vec<wire::AppInfo>> {
        self.store
            .apps()?
            .iter()
            .map(|a| self.app_info(&a.name))
            .collect()
    }

    pub(super) fn create_app(&mut self, door: Door, name: &str) -> Result<wire::AppInfo> {
        wire::check_app_name(name).map_err(EngineError::BadRequest)?;
        self.store.create_app(name, now_ms())?;
        self.refresh_app(name);
        self.event(door, Some(name), "create app", "ok");
        self.app_info(name)
    }

    pub(super) fn update_app(
        &mut self,
        door: Door,
        app: &str,
        update: wire::UpdateApp,
    ) -> Result<wire::AppInfo> {
        self.cache(app)?;
        // `dynamic` goes back to the app's own uid (the default).
        let dynamic = update.user.as_deref() == Some(crate::settings::DYNAMIC_USER);
        if let Some(user) = update.user.as_ref().filter(|_| !dynamic) {
            if nix::unistd::geteuid().is_root() {
                spawn::lookup_user(user).map_err(EngineError::BadRequest)?;
            }
        }
        if update.grace_secs.is_some_and(|g| g > 3600) {
            return Err(EngineError::BadRequest(
                "grace must be at most 3600 seconds".into(),
            ));
        }
        if let Some(packs) = &update.buildpacks {
            for p in packs {
                check_buildpack(p, &self.settings.buildpacks_dir())?;
            }
            self.store.set_buildpacks(app, packs)?;
        }
        // Settings not named in the request keep their value.
        let row = self
            .store
            .app(app)?
            .ok_or_else(|| crate::store::StoreError::NoApp(app.into()))?;
        let user = if dynamic {
            None
        } else {
            update.user.clone().or(row.user)
        };
        let grace = update.grace_secs.or(row.grace_secs);
        self.store.update_app(app, user.as_deref(), grace)?;
        if let Some(on) = update.data_snapshots {
            self.store.set_data_snapshots(app, on)?;
        }
        self.refresh_app(app);
        self.event(door, Some(app), "update app", &update.to_string());
        self.app_info(app)
    }

    pub(super) fn destroy_app(
        &mut self,
        door: Door,
        app: &str,
        confirm: &str,
    ) -> Result<wire::Done> {
        self.cache(app)?;
        if confirm != app {
            return Err(EngineError::Conflict(format!(
                "destroying {app:?} needs --confirm {app} (got {confirm:?})"
            )));
        }
        self.destroy_app_addons(app)?;
        let keys: Vec<_> = self.dynos.keys().filter(|k| k.0 == app).cloned().collect();
        self.stop_in_order(&keys, Want::Remove);
        self.store.delete_app(app)?;
        self.apps.remove(app);
        self.drains.stop_app(app, true);
        self.logs.remove_app(app);
        // Its build cache is its uid's: gone with the app, before that uid can be given again.
        // Moved out of the way at once, so an app that takes the name next (created, or renamed
        // to it) never shares a path with the removal.
        let mut cache = self.settings.cache_dir(app);
        let doomed = self
            .settings
            .tmp_dir()
            .join(format!("destroyed-cache-{app}-{}", now_ms()));
        if std::fs::rename(&cache, &doomed).is_ok() {
            cache = doomed;
        }
        self.destroy_data_snapshots(app);
        // Its persistent data goes too (moved aside the same way).
        let mut data = self.settings.app_data_dir(app);
        let doomed_data = self
            .settings
            .tmp_dir()
            .join(format!("destroyed-data-{app}-{}", now_ms()));
        if std::fs::rename(&data, &doomed_data).is_ok() {
            data = doomed_data;
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::build::remove_tree(&cache) {
                tracing::warn!(error = %e, "cannot remove a destroyed app's build cache");
            }
            if let Err(e) = crate::build::remove_tree(&data) {
                tracing::warn!(error = %e, "cannot remove a destroyed app's data dir");
            }
        });
        self.event(door, Some(app), "destroy app", "ok");
        Ok(wire::Done {
            message: format!("Destroyed {app} (stopping {} dynos)", keys.len()),
        })
    }

    pub(super) fn events(&self, app: Option<&str>, n: usize) -> Result<Vec<wire::EventInfo>> {
        Ok(self
            .store
            .events(app, n.clamp(1, 10_000))?
            .into_iter()
            .map(|e| wire::EventInfo {
                id: e.id,
                ts: e.ts,
                app: e.app,
                door: e.door,
                action: e.action,
                result: e.result,
            })
            .collect())
    }
}

/// A buildpack is a built-in's name, an absolute path to a dir with `bin/detect`, or a git URL
/// (checked here, fetched by the next build: the engine never waits on the network).
fn check_buildpack(p: &str, builtin: &std::path::Path) -> Result<()> {
    use crate::build::buildpack::git_spec::{is_git_spec, GitSpec};
    let p = match crate::build::buildpack::short_name::resolve(p) {
        Some(mapped) => mapped.map_err(EngineError::BadRequest)?,
        None if is_git_spec(p) => {
            return GitSpec::parse(p).map(drop).map_err(EngineError::BadRequest)
        }
        None => p,
    };
    let dir = if p.starts_with('/') {
        std::path::PathBuf::from(p)
    } else {
        builtin.join(p)
    };
    if p.contains("..") || !dir.join("bin").join("detect").is_file() {
        return Err(EngineError::BadRequest(format!(
            "buildpack {p:?} is neither a built-in ({}), an absolute path to a buildpack with \
             bin/detect, nor a git URL (https://host/org/pack#ref)",
            crate::build::buildpack::BUILTIN_ORDER.join(", ")
        )));
    }
    Ok(())
}

/// The slug's `.env` (validated at deploy time, so a failure here only means it is gone).
fn read_dotenv(path: &std::path::Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| crate::procfile::parse_dotenv(&t).ok())
        .map(|pairs| pairs.into_iter().collect())
        .unwrap_or_default()
}

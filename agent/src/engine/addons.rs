//! The add-on handlers (`roboku addons*`): records in the store, files and servers through the
//! providers (`crate::addons`), config vars and releases through `change_config`, as on Heroku.
//! Servers run in their own tasks ([`crate::addons::service`]); the engine only starts, reloads
//! and stops them, and reads their latest status.

use super::command::{Door, EngineError, Result};
use super::{Engine, Reply};
use crate::addons::provider::{Addon, Credential};
use crate::addons::service::{Service, Spec};
use crate::addons::{self, Kind};
use crate::store::{AddonRow, AttachmentRow};
use crate::supervisor::spawn::RunAs;
use crate::util::now_ms;
use roboku_wire as wire;
use std::collections::BTreeMap;

impl Engine {
    /// The add-on of a row, its paths resolved.
    fn addon_of(&self, row: &AddonRow) -> Result<Addon> {
        let kind = Kind::parse(&row.kind).map_err(EngineError::Internal)?;
        let dir = match kind {
            Kind::Sqlite => self.settings.app_data_dir(&row.app),
            _ => self.settings.addons_dir().join(&row.name),
        };
        Ok(Addon {
            name: row.name.clone(),
            kind,
            app: row.app.clone(),
            uid: row.uid,
            port: row.port,
            dir,
            file: row.file.clone(),
        })
    }

    fn find_addon(&self, name: &str) -> Result<AddonRow> {
        self.store.addon(name)?.ok_or_else(|| {
            EngineError::NotFound(format!("no add-on {name:?} (see `roboku addons -a APP`)"))
        })
    }

    fn credentials(&self, addon: &str) -> Result<Vec<Credential>> {
        Ok(self
            .store
            .attachments()?
            .into_iter()
            .filter(|a| a.addon == addon)
            .map(|a| Credential {
                app: a.app,
                user: a.user,
                password: a.password,
            })
            .collect())
    }

    /// The config vars `app`'s add-on attachments give it now (what its dynos get, whatever an
    /// older release's config says: add-ons are not rolled back with code).
    pub(super) fn addon_vars(&self, app: &str) -> BTreeMap<String, String> {
        let (Ok(rows), Ok(atts)) = (self.store.addons(), self.store.attachments()) else {
            return BTreeMap::new();
        };
        atts.iter()
            .filter(|a| a.app == app)
            .filter_map(|a| {
                let row = rows.iter().find(|r| r.name == a.addon)?;
                let addon = self.addon_of(row).ok()?;
                let cred = Credential {
                    app: a.app.clone(),
                    user: a.user.clone(),
                    password: a.password.clone(),
                };
                Some((
                    a.var.clone(),
                    addons::provider(addon.kind).url(&addon, &cred),
                ))
            })
            .collect()
    }

    /// Starts the server of every add-on that has one (at agent start), after making every
    /// attached app's stored vars whole.
    pub(super) fn start_addon_services(&mut self) {
        let apps: std::collections::BTreeSet<String> = self
            .store
            .attachments()
            .map(|a| a.into_iter().map(|a| a.app).collect())
            .unwrap_or_default();
        for app in apps {
            self.sync_addon_config(&app);
        }
        let rows = self.store.addons().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read add-ons");
            Vec::new()
        });
        for row in rows {
            // Files as the store says (a robokud killed between recording an attach or detach
            // and rewriting them left them behind).
            let provisioned = self.addon_of(&row).and_then(|addon| {
                if addon.kind == Kind::Sqlite {
                    return Ok(());
                }
                let creds = self.credentials(&row.name)?;
                addons::provider(addon.kind)
                    .provision(&addon, &creds)
                    .map_err(|e| EngineError::Internal(e.to_string()))
            });
            if let Err(e) = provisioned {
                tracing::error!(addon = %row.name, error = %e, "cannot rewrite the add-on's files");
            }
            if let Err(e) = self.start_service(&row) {
                tracing::error!(addon = %row.name, error = %e, "cannot start add-on server");
            }
        }
    }

    fn start_service(&mut self, row: &AddonRow) -> Result<()> {
        let addon = self.addon_of(row)?;
        let provider = addons::provider(addon.kind);
        let Some(program) = provider.locate().map_err(EngineError::BadRequest)? else {
            return Ok(());
        };
        let Some(server) = provider.server(&addon, &program) else {
            return Ok(());
        };
        let hook = |f: fn(
            &dyn addons::Provider,
            &Addon,
            &std::path::Path,
        ) -> std::result::Result<(), String>| {
            let (addon, program) = (addon.clone(), program.clone());
            let h: addons::service::Hook =
                std::sync::Arc::new(move || f(provider, &addon, &program));
            Some(h)
        };
        let prepare = hook(|p, a, prog| p.prepare(a, prog));
        let after_start = hook(|p, a, prog| p.after_start(a, prog));
        let mut env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        crate::supervisor::orphans::tag(
            &mut env,
            &self.settings.data_dir,
            &format!("addon/{}", addon.name),
        );
        let run_as = addon.uid.map(|uid| RunAs {
            name: uid.to_string(),
            uid,
            gid: uid,
        });
        let service = Service::start(Spec {
            name: addon.name.clone(),
            command: server.command,
            cwd: addon.dir.clone(),
            env,
            run_as,
            log: addon.dir.join("server.log"),
            policy: self.policy,
            cgroup: self
                .cgroups
                .status()
                .enforced
                .then(|| addons::service::Cgroup {
                    driver: self.cgroups.clone(),
                    rel: addons::service::cgroup_rel(&addon.name),
                    limits: addons::service::limits(),
                }),
            prepare,
            after_start,
            stop_signal: provider.stop_signal(),
        });
        self.addon_services.insert(addon.name.clone(), service);
        Ok(())
    }

    /// Rewrites the add-on's files for its current attachments and has its server pick them up.
    fn reprovision(&mut self, row: &AddonRow) -> Result<()> {
        let addon = self.addon_of(row)?;
        let creds = self.credentials(&row.name)?;
        addons::provider(addon.kind)
            .provision(&addon, &creds)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        match addon.kind {
            // Mosquitto rereads its password file and ACL on SIGHUP.
            Kind::Mqtt => {
                if let Some(s) = self.addon_services.get(&row.name) {
                    if let addons::state::Phase::Up { pid } = s.status().phase {
                        crate::supervisor::spawn::signal_group(pid, libc::SIGHUP);
                    }
                }
            }
            Kind::Redis => {
                if let Some(s) = self.addon_services.remove(&row.name) {
                    drop(s.stop());
                }
                self.start_service(row)?;
            }
            // Roles are SQL: applied over the socket while it runs (off the engine).
            Kind::Postgres => {
                let up = self
                    .addon_services
                    .get(&row.name)
                    .is_some_and(|s| matches!(s.status().phase, addons::state::Phase::Up { .. }));
                if up {
                    if let Ok(Some(program)) = addons::provider(addon.kind).locate() {
                        let a = addon.clone();
                        let hook: addons::service::Hook = std::sync::Arc::new(move || {
                            addons::provider(a.kind).after_start(&a, &program)
                        });
                        drop(addons::service::run_hook(&row.name, "roles", hook));
                    }
                }
            }
            Kind::Sqlite => {}
        }
        Ok(())
    }

    /// Stops every add-on server (agent shutdown); the handles end once they are down.
    pub(super) fn stop_addon_services(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut self.addon_services)
            .into_values()
            .filter_map(Service::stop)
            .collect()
    }

    fn new_attachment(
        &self,
        addon: &str,
        app: &str,
        as_name: Option<&str>,
        kind: Kind,
    ) -> Result<AttachmentRow> {
        let var = addons::attachment_var(as_name.unwrap_or(kind.default_attachment()))
            .map_err(EngineError::BadRequest)?;
        if self
            .store
            .attachments()?
            .iter()
            .any(|a| a.app == app && a.var == var)
        {
            return Err(EngineError::Conflict(format!(
                "{app} already has an add-on attached as {var}; pick another name with --as"
            )));
        }
        if self.store.config(app)?.contains_key(&var) {
            return Err(EngineError::Conflict(format!(
                "{app} already has the config var {var}; unset it or pick another name with --as"
            )));
        }
        Ok(AttachmentRow {
            addon: addon.to_string(),
            app: app.to_string(),
            var,
            user: format!("{app}-{}", addons::random_token(6).to_ascii_lowercase()),
            password: addons::random_token(32),
        })
    }

    fn set_var(
        &mut self,
        door: Door,
        app: &str,
        var: &str,
        value: Option<String>,
    ) -> Result<Reply> {
        let mut change = wire::ConfigChange::default();
        match value {
            Some(v) => {
                change.set.insert(var.to_string(), v);
            }
            None => change.unset.push(var.to_string()),
        }
        self.change_config(door, app, change)
    }

    pub(super) fn addon_create(
        &mut self,
        door: Door,
        app: &str,
        req: wire::addons::CreateAddon,
    ) -> Result<Reply> {
        self.cache(app)?;
        self.ensure_no_rollout(app)?;
        let kind = Kind::parse(&req.kind).map_err(EngineError::BadRequest)?;
        let provider = addons::provider(kind);
        provider
            .locate()
            .map_err(|e| EngineError::BadRequest(format!("cannot create a {kind} add-on: {e}")))?;
        let name = {
            let existing = self.store.addons()?;
            addons::default_name(app, kind, &|n| existing.iter().any(|a| a.name == n))
        };
        addons::check_name(&name).map_err(EngineError::BadRequest)?;
        let att = self.new_attachment(&name, app, req.as_name.as_deref(), kind)?;
        let root = nix::unistd::geteuid().is_root();
        let (uid, port, file) = match kind {
            Kind::Sqlite => {
                let owner = self
                    .cache(app)?
                    .run_as
                    .clone()
                    .map_err(EngineError::Conflict)?;
                let taken = self.store.addons()?;
                let file = if taken
                    .iter()
                    .any(|a| a.app == app && a.file.as_deref() == Some("db.sqlite3"))
                {
                    format!("{name}.sqlite3")
                } else {
                    "db.sqlite3".to_string()
                };
                (owner.map(|r| r.uid), None, Some(file))
            }
            _ => {
                let uid = if root {
                    let range = self
                        .settings
                        .app_uid_range()
                        .map_err(EngineError::Conflict)?;
                    Some(self.store.free_uid(range, &super::isolation::host_has_id)?)
                } else {
                    None
                };
                let port = self.store.port_for(
                    app,
                    &format!("addon:{name}"),
                    self.settings.port_min,
                    self.settings.port_max,
                )?;
                (uid, Some(port), None)
            }
        };
        let row = AddonRow {
            name: name.clone(),
            kind: kind.as_str().into(),
            app: app.to_string(),
            uid,
            port,
            file,
            created_at: now_ms(),
        };
        let addon = self.addon_of(&row)?;
        let cred = Credential {
            app: app.to_string(),
            user: att.user.clone(),
            password: att.password.clone(),
        };
        provider
            .provision(&addon, std::slice::from_ref(&cred))
            .map_err(|e| EngineError::Internal(format!("provisioning {name}: {e}")))?;
        self.store.create_addon(&row, &att)?;
        let url = provider.url(&addon, &cred);
        // Its var is part of it: if the config change is refused (env size, disk reserve for the
        // data snapshot...), the add-on is not created after all.
        let made = self.start_service(&row).and_then(|()| {
            crate::fault::point("addon.recorded");
            self.set_var(door, app, &att.var, Some(url))
        });
        match made {
            Ok(reply) => {
                self.event(
                    door,
                    Some(app),
                    "create add-on",
                    &format!("{name} ({kind}) as {}", att.var),
                );
                self.logs.system(
                    app,
                    "roboku",
                    format!("Add-on {name} ({kind}) created as {}", att.var),
                );
                Ok(reply)
            }
            Err(e) => {
                self.store.delete_addon(&name)?;
                self.remove_addon_files(&row)?;
                tracing::warn!(app, addon = %name, error = %e, "add-on not created: its config var was refused");
                Err(match e {
                    EngineError::BadRequest(m) => {
                        EngineError::BadRequest(format!("cannot create {name}: {m}"))
                    }
                    EngineError::Conflict(m) => {
                        EngineError::Conflict(format!("cannot create {name}: {m}"))
                    }
                    other => other,
                })
            }
        }
    }

    /// Makes `app`'s stored add-on vars say what its add-ons give: after a rename (the sqlite
    /// path), or at start after an agent killed between recording an add-on and storing its var.
    /// No release: its dynos get the current values already (`addon_vars`).
    pub(super) fn sync_addon_config(&mut self, app: &str) {
        let Ok(mut config) = self.store.config(app) else {
            return;
        };
        let mut changed = false;
        for (var, url) in self.addon_vars(app) {
            if config.get(&var) != Some(&url) {
                config.insert(var, url);
                changed = true;
            }
        }
        if changed {
            if let Err(e) = self.store.replace_config(app, &config) {
                tracing::warn!(app, error = %e, "cannot update the add-on config vars");
            }
        }
    }

    pub(super) fn addon_attach(
        &mut self,
        door: Door,
        app: &str,
        name: &str,
        req: wire::addons::AttachAddon,
    ) -> Result<Reply> {
        self.cache(app)?;
        self.ensure_no_rollout(app)?;
        let row = self.find_addon(name)?;
        let addon = self.addon_of(&row)?;
        let provider = addons::provider(addon.kind);
        provider
            .can_share(&addon)
            .map_err(|e| EngineError::Conflict(format!("cannot attach {name} to {app}: {e}")))?;
        if self
            .store
            .attachments()?
            .iter()
            .any(|a| a.addon == name && a.app == app)
        {
            return Err(EngineError::Conflict(format!(
                "{name} is already attached to {app}"
            )));
        }
        let att = self.new_attachment(name, app, req.as_name.as_deref(), addon.kind)?;
        self.store.attach_addon(&att)?;
        self.reprovision(&row)?;
        let cred = Credential {
            app: app.to_string(),
            user: att.user.clone(),
            password: att.password.clone(),
        };
        self.event(
            door,
            Some(app),
            "attach add-on",
            &format!("{name} as {}", att.var),
        );
        self.set_var(door, app, &att.var, Some(provider.url(&addon, &cred)))
    }

    pub(super) fn addon_detach(&mut self, door: Door, app: &str, name: &str) -> Result<Reply> {
        self.cache(app)?;
        self.ensure_no_rollout(app)?;
        let row = self.find_addon(name)?;
        if row.app == app {
            return Err(EngineError::Conflict(format!(
                "{name} belongs to {app}: destroy it instead (roboku addons:destroy {name} -a {app} --confirm {app})"
            )));
        }
        let att = self
            .store
            .attachments()?
            .into_iter()
            .find(|a| a.addon == name && a.app == app)
            .ok_or_else(|| EngineError::NotFound(format!("{name} is not attached to {app}")))?;
        self.store.detach_addon(name, app)?;
        self.reprovision(&row)?;
        self.event(door, Some(app), "detach add-on", name);
        self.set_var(door, app, &att.var, None)
    }

    pub(super) fn addon_destroy(
        &mut self,
        door: Door,
        app: &str,
        name: &str,
        confirm: &str,
    ) -> Result<Reply> {
        self.cache(app)?;
        self.ensure_no_rollout(app)?;
        let row = self.find_addon(name)?;
        if row.app != app {
            return Err(EngineError::Conflict(format!(
                "{name} belongs to {}, not {app}: detach it from {app} (roboku addons:detach {name} -a {app})",
                row.app
            )));
        }
        if confirm != app {
            return Err(EngineError::Conflict(format!(
                "destroying {name} and its data needs --confirm {app} (got {confirm:?})"
            )));
        }
        let atts: Vec<_> = self
            .store
            .attachments()?
            .into_iter()
            .filter(|a| a.addon == name)
            .collect();
        let others: Vec<_> = atts
            .iter()
            .filter(|a| a.app != app)
            .map(|a| a.app.clone())
            .collect();
        if !others.is_empty() {
            return Err(EngineError::Conflict(format!(
                "{name} is still attached to {}: detach it there first",
                others.join(", ")
            )));
        }
        let var = atts.iter().find(|a| a.app == app).map(|a| a.var.clone());
        self.store.delete_addon(name)?;
        self.remove_addon_files(&row)?;
        self.event(door, Some(app), "destroy add-on", name);
        self.logs
            .system(app, "roboku", format!("Add-on {name} destroyed"));
        match var {
            Some(var) => self.set_var(door, app, &var, None),
            None => Ok(Reply::Done(wire::Done {
                message: format!("Destroyed {name}"),
            })),
        }
    }

    /// Stops the add-on's server, then (off the engine) removes its files.
    fn remove_addon_files(&mut self, row: &AddonRow) -> Result<()> {
        let addon = self.addon_of(row)?;
        let stopped = self
            .addon_services
            .remove(&row.name)
            .and_then(Service::stop);
        tokio::spawn(async move {
            if let Some(h) = stopped {
                let _ = h.await;
            }
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = addons::provider(addon.kind).destroy(&addon) {
                    tracing::warn!(addon = %addon.name, error = %e, "cannot remove a destroyed add-on's files");
                }
            })
            .await;
        });
        Ok(())
    }

    /// Before an app is destroyed: its add-ons go with it, unless another app still uses one.
    pub(super) fn destroy_app_addons(&mut self, app: &str) -> Result<()> {
        let owned: Vec<_> = self
            .store
            .addons()?
            .into_iter()
            .filter(|a| a.app == app)
            .collect();
        let atts = self.store.attachments()?;
        for row in &owned {
            let users: Vec<_> = atts
                .iter()
                .filter(|a| a.addon == row.name && a.app != app)
                .map(|a| a.app.clone())
                .collect();
            if !users.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "{app}'s add-on {} is attached to {}: detach it there first",
                    row.name,
                    users.join(", ")
                )));
            }
        }
        for row in &owned {
            self.store.delete_addon(&row.name)?;
            self.remove_addon_files(row)?;
        }
        Ok(())
    }

    /// What a backup of `name` needs, checked: `app` must be attached to it (an attached app
    /// reads the data anyway); the door runs it off the engine.
    pub(super) fn addon_backup(&self, app: &str, name: &str) -> Result<addons::backup::Job> {
        self.cache(app)?;
        let row = self.find_addon(name)?;
        let creds = self.credentials(name)?;
        if !creds.iter().any(|c| c.app == app) {
            return Err(EngineError::NotFound(format!(
                "{name} is not attached to {app} (see `roboku addons -a {app}`)"
            )));
        }
        let addon = self.addon_of(&row)?;
        let provider = addons::provider(addon.kind);
        provider
            .backup_ext(&addon)
            .map_err(|e| EngineError::Conflict(format!("cannot back up {name}: {e}")))?;
        let program = provider
            .locate()
            .map_err(|e| EngineError::Conflict(format!("cannot back up {name}: {e}")))?;
        if addon.kind != Kind::Sqlite {
            let up = self
                .addon_services
                .get(name)
                .is_some_and(|s| matches!(s.status().phase, addons::state::Phase::Up { .. }));
            if !up {
                return Err(EngineError::Conflict(format!(
                    "cannot back up {name}: its server is not up (see `roboku addons -a {app}`)"
                )));
            }
        }
        // A sqlite add-on is a file in its owner's data dir: read as that app, never as root.
        let run_as = match addon.kind {
            Kind::Sqlite => self.run_as_ids(&addon.app)?,
            _ => None,
        };
        if addon.kind == Kind::Sqlite && run_as.is_none() && nix::unistd::geteuid().is_root() {
            return Err(EngineError::Conflict(format!(
                "cannot back up {name}: {} has no uid of its own to read its data dir as (see                  `roboku doctor`), and robokud never reads an app's files as root",
                addon.app
            )));
        }
        Ok(addons::backup::Job {
            addon,
            program,
            creds,
            run_as,
            dir: self.settings.backups_dir().join(app),
            now_ms: now_ms(),
            reserve: self.settings.disk_reserve,
        })
    }

    /// Every add-on once, as its owner's `roboku addons` shows it.
    pub(super) fn all_addons(&self) -> Result<Vec<wire::addons::AddonInfo>> {
        let owners: std::collections::BTreeSet<String> =
            self.store.addons()?.into_iter().map(|r| r.app).collect();
        let mut out = Vec::new();
        for app in owners {
            out.extend(self.addons(&app)?.into_iter().filter(|a| a.owner == app));
        }
        Ok(out)
    }

    pub(super) fn addons(&self, app: &str) -> Result<Vec<wire::addons::AddonInfo>> {
        self.cache(app)?;
        let atts = self.store.attachments()?;
        let mut out = Vec::new();
        for row in self.store.addons()? {
            let Some(mine) = atts.iter().find(|a| a.addon == row.name && a.app == app) else {
                continue;
            };
            let addon = self.addon_of(&row)?;
            let health = addons::provider(addon.kind).health(&addon);
            let status = self.addon_services.get(&row.name).map(Service::status);
            let (state, pid, restarts, detail) = match (&health, &status) {
                (Err(e), _) => ("broken".to_string(), None, 0, Some(e.clone())),
                (Ok(()), None) if addon.kind == Kind::Sqlite => {
                    ("provisioned".to_string(), None, 0, None)
                }
                (Ok(()), None) => (
                    "stopped".to_string(),
                    None,
                    0,
                    Some("no server running".into()),
                ),
                (Ok(()), Some(s)) => (
                    match (&s.phase, addons::provider(addon.kind).ready(&addon)) {
                        (addons::state::Phase::Up { .. }, Err(_)) => "starting".to_string(),
                        (addons::state::Phase::Starting, _) => "starting".to_string(),
                        _ => s.phase.name().to_string(),
                    },
                    match s.phase {
                        addons::state::Phase::Up { pid } => Some(pid),
                        _ => None,
                    },
                    s.restarts,
                    addons::provider(addon.kind)
                        .ready(&addon)
                        .err()
                        .filter(|_| {
                            matches!(
                                s.phase,
                                addons::state::Phase::Up { .. } | addons::state::Phase::Starting
                            )
                        })
                        .or_else(|| s.last_exit.clone().map(|e| format!("last exit: {e}"))),
                ),
            };
            out.push(wire::addons::AddonInfo {
                name: row.name.clone(),
                kind: row.kind.clone(),
                owner: row.app.clone(),
                var: mine.var.clone(),
                attached: atts
                    .iter()
                    .filter(|a| a.addon == row.name)
                    .map(|a| a.app.clone())
                    .collect(),
                state,
                detail,
                port: row.port,
                pid,
                restarts,
            });
        }
        Ok(out)
    }
}

//! `apps:rename`: an app and everything it owns take a new name.
//!
//! 1. Checks: the new name passes the validator `apps:create` uses and is free; no rollout,
//!    build or one-off dyno of the app is running; no git repository sits at the new path.
//! 2. Every dyno of the app is stopped (SIGTERM, grace, then its cgroup killed), as a restart
//!    does. They start again under the new name rather than being kept: the name is in a running
//!    dyno's environment (`ROBOKU_APP`, its instance tag), in its cgroup path in every hierarchy
//!    (a v1 host has several; renaming them is not one atomic step) and in its spool path, so a
//!    kept dyno would stay half old for the rest of its life, and an agent restart would have to
//!    tell it from a leak. Dynos stopped with `ps:stop` stay stopped.
//! 3. Once none runs: the journal is written, then one store transaction moves every row (the
//!    commit point; see `store/rename.rs`), then the build cache and the git repository move
//!    (its hook pointed at the new name) and the log task moves the logs.
//! 4. The journal is removed, the dynos start under the new name, and the caller hears.
//!
//! Commands that would change either name wait for the rename to end (they are refused, saying
//! so). Killed before the commit, the agent comes back with the old name and starts its dynos
//! again; after it, the next start finishes the moves ([`journal::recover`]) before anything runs.

pub mod hook;
pub mod journal;

use super::command::{Command, Door, EngineError, Reply};
use super::dyno::{DynoKey, Want};
use super::{Engine, Internal};
use roboku_wire as wire;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Result<T> = std::result::Result<T, EngineError>;

/// How long past the app's grace the old dynos may take to go before the rename is given up.
const STOP_MARGIN: Duration = Duration::from_secs(30);

/// A rename in progress, kept under the old name.
pub struct Renaming {
    to: String,
    door: Door,
    deadline: Instant,
    /// The store has the new name; the logs are being moved.
    committed: bool,
    reply: Option<oneshot::Sender<Result<Reply>>>,
    git_repository: Option<String>,
    warnings: Vec<String>,
}

impl Engine {
    /// Starts renaming `from` to `to`: checks, then stops the app's dynos. The caller waits
    /// ([`Reply::Renaming`]) until the rename has committed and the dynos run again.
    pub(super) fn rename_app(&mut self, door: Door, from: &str, to: &str) -> Result<Reply> {
        let grace = self.cache(from)?.grace;
        wire::check_app_name(to).map_err(EngineError::BadRequest)?;
        if from == to {
            return Err(EngineError::BadRequest(format!(
                "app {from:?} is called {to:?} already"
            )));
        }
        if self.store.app(to)?.is_some() {
            return Err(EngineError::Conflict(format!(
                "app {to:?} already exists; pick another name"
            )));
        }
        self.ensure_no_rollout(from)?;
        let one_offs: Vec<String> = self
            .dynos
            .values()
            .filter(|d| d.app == from && d.one_off)
            .map(|d| d.name.clone())
            .collect();
        if !one_offs.is_empty() {
            return Err(EngineError::Conflict(format!(
                "{from} has one-off dynos running ({}); rename it when they have exited",
                one_offs.join(", ")
            )));
        }
        let building = self
            .cgroups
            .children("_builds")
            .into_iter()
            .any(|c| c.rsplit_once('@').is_some_and(|(app, _)| app == from));
        if building {
            return Err(EngineError::Conflict(format!(
                "a build of {from} is running; rename it when the deploy is done"
            )));
        }
        let repo = self.settings.git_repo(to);
        if repo.exists() {
            return Err(EngineError::Conflict(format!(
                "a git repository for {to:?} exists already ({}), left by an app of that name; move it away first",
                repo.display()
            )));
        }
        let keys = self.stop_app_dynos(from);
        crate::fault::point("rename.stopping");
        self.logs.system(
            from,
            "roboku",
            format!(
                "Renaming to {to}: stopping {} dynos to start them again under the new name",
                keys.len()
            ),
        );
        let renaming = Renaming {
            to: to.to_string(),
            door,
            deadline: Instant::now() + grace + STOP_MARGIN,
            committed: false,
            reply: None,
            git_repository: None,
            warnings: Vec::new(),
        };
        self.renames.insert(from.to_string(), renaming);
        Ok(Reply::Renaming {
            from: from.to_string(),
        })
    }

    /// Refuses a command that would change an app being renamed, under either of its names.
    pub(super) fn refuse_while_renaming(&self, cmd: &Command) -> Result<()> {
        let Some(app) = cmd.changes_app() else {
            return Ok(());
        };
        for (from, r) in &self.renames {
            if app == from || app == r.to {
                return Err(EngineError::Conflict(format!(
                    "app {from} is being renamed to {}; try again when that is done",
                    r.to
                )));
            }
        }
        Ok(())
    }

    /// Attaches the waiting caller (the rename cannot have ended before: see `advance_renames`).
    pub(super) fn attach_rename(&mut self, from: &str, reply: oneshot::Sender<Result<Reply>>) {
        match self.renames.get_mut(from) {
            Some(r) => r.reply = Some(reply),
            None => {
                let _ = reply.send(Err(EngineError::Internal(format!(
                    "the rename of {from} ended before its caller was attached"
                ))));
            }
        }
    }

    /// Called on every turn of the loop (after the request that began a rename was attached):
    /// commits each rename whose old dynos are all gone, gives up one past its deadline.
    pub(super) fn advance_renames(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            // Not committed: the caller hears robokud is going; the next start runs the dynos
            // under the old name again.
            return;
        }
        let waiting: Vec<(String, Instant)> = self
            .renames
            .iter()
            .filter(|(_, r)| !r.committed)
            .map(|(from, r)| (from.clone(), r.deadline))
            .collect();
        for (from, deadline) in waiting {
            let running: Vec<String> = self
                .dynos
                .values()
                .filter(|d| d.app == from && !d.stays_down())
                .map(|d| d.name.clone())
                .collect();
            if running.is_empty() {
                self.commit_rename(&from);
            } else if now >= deadline {
                let reason = format!(
                    "the rename was given up: {} did not stop in time; {from} runs on",
                    running.join(", ")
                );
                self.abort_rename(&from, EngineError::Internal(reason));
            }
        }
    }

    /// The rename deadlines, for the loop's wake-up.
    pub(super) fn rename_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.renames.values().map(|r| r.deadline)
    }

    /// Nothing of `from` runs: journal, store transaction, cache and git moves, then the logs.
    fn commit_rename(&mut self, from: &str) {
        let Some((to, door)) = self.renames.get(from).map(|r| (r.to.clone(), r.door)) else {
            return;
        };
        // The stopped dynos' rows go first, so none is written under the old name afterwards.
        self.save_dynos();
        let journal_path = self.settings.rename_journal_path();
        let entry = journal::Journal {
            from: from.to_string(),
            to: to.clone(),
        };
        if let Err(e) = journal::write(&journal_path, &entry) {
            return self.abort_rename(from, EngineError::Internal(e));
        }
        crate::fault::point("rename.journaled");
        let now = crate::util::now_ms();
        if let Err(e) = self.store.rename_app(from, &to, now, door.as_str()) {
            if let Err(e) = journal::remove(&journal_path) {
                tracing::error!(error = %e, "cannot remove the journal of a failed rename");
            }
            return self.abort_rename(from, e.into());
        }
        crate::fault::point("rename.committed");
        // Dynos left stopped (`ps:stop`) keep their state under the new name.
        let keys: Vec<DynoKey> = self.dynos.keys().filter(|k| k.0 == from).cloned().collect();
        for key in keys {
            if let Some(mut d) = self.dynos.remove(&key) {
                d.app = to.clone();
                let new_key = d.key();
                self.dynos.insert(new_key.clone(), d);
                self.dirty.insert(new_key);
            }
        }
        self.dirty.retain(|k| k.0 != from);
        self.gone.retain(|k| k.0 != from);
        self.apps.remove(from);
        self.unclaimed.remove(from);
        // The router keeps its socket (the app's port moves with it): dropped and bound again
        // under the new name, the bind could come before the old task let go of the port.
        if let Some(router) = self.routers.remove(from) {
            self.routers.insert(to.clone(), router);
        }
        self.router_errors.remove(from);
        // Dirs first: refreshing makes the data dir of the name if it is not there.
        let warnings = journal::move_app_dirs(&self.settings, from, &to);
        // DATABASE_URL names the data dir: the stored value follows the new name.
        self.sync_addon_config(&to);
        self.refresh_app(&to);
        let repo = self.settings.git_repo(&to);
        let git_repository = repo.exists().then(|| repo.display().to_string());
        let (driver, old) = (self.cgroups.clone(), from.to_string());
        tokio::task::spawn_blocking(move || {
            // Best effort: an empty directory of the old name, no dyno's.
            let _ = driver.remove(&old);
        });
        crate::fault::point("rename.moved");
        if let Some(r) = self.renames.get_mut(from) {
            r.committed = true;
            r.git_repository = git_repository;
            r.warnings = warnings;
        }
        let (logs, tx, from) = (
            self.logs.clone(),
            self.internal_tx.clone(),
            from.to_string(),
        );
        tokio::spawn(async move {
            let result = logs.rename_app(&from, &to).await;
            let _ = tx.send(Internal::Renamed {
                from,
                to,
                logs: result,
            });
        });
    }

    /// The log task has moved the logs (or failed to): the rename is done.
    pub(super) fn on_renamed(
        &mut self,
        from: &str,
        to: &str,
        logs: std::result::Result<(), String>,
    ) {
        let Some(mut r) = self.renames.remove(from) else {
            return;
        };
        crate::fault::point("rename.logs_moved");
        let journal_path = self.settings.rename_journal_path();
        match logs {
            Ok(()) => {
                if let Err(e) = journal::remove(&journal_path) {
                    r.warnings.push(format!("the rename journal stays: {e}"));
                }
            }
            // The journal stays, so the next start moves them.
            Err(e) => r.warnings.push(format!(
                "the logs were not moved ({e}); restart robokud to move them"
            )),
        }
        for w in &r.warnings {
            tracing::warn!(from, to, warning = %w, "rename");
        }
        self.logs
            .system(to, "roboku", format!("Renamed from {from}"));
        self.restart_drains(from, to);
        self.reconcile(to);
        let dynos_restarted = self
            .dynos
            .values()
            .filter(|d| d.app == to && d.want == Want::Run)
            .count();
        let answer = self.app_info(to).map(|app| {
            Reply::Renamed(wire::Renamed {
                from: from.to_string(),
                app,
                git_repository: r.git_repository.take(),
                dynos_restarted,
                warnings: std::mem::take(&mut r.warnings),
            })
        });
        if let Some(reply) = r.reply.take() {
            let _ = reply.send(answer);
        }
    }

    /// Gives the rename up before its commit: the dynos run again under the old name.
    fn abort_rename(&mut self, from: &str, err: EngineError) {
        let Some(mut r) = self.renames.remove(from) else {
            return;
        };
        for d in self.dynos.values_mut().filter(|d| d.app == from) {
            if d.want == Want::Remove {
                d.want = Want::Run;
                d.restart_after_stop = d.proc.is_some();
            }
        }
        self.reconcile(from);
        let msg = format!("Renaming to {} failed: {err}", r.to);
        self.logs.system(from, "roboku", msg.clone());
        self.event(r.door, Some(from), "rename app", &msg);
        if let Some(reply) = r.reply.take() {
            let _ = reply.send(Err(err));
        }
    }
}

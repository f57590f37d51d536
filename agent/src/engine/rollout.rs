//! Rollouts: the health-gated switch to a new release.
//!
//! A new release (deploy, config change, rollback) becomes current at once (so an agent killed
//! mid-rollout comes back on a whole release, never half of each), runs its `release:` phase if
//! the Procfile has one, then restarts the dynos onto it. Each new dyno must pass its checks
//! (`app.json` healthchecks, or "stays up" by default) before the deadline. All healthy: the
//! release is committed and the caller hears "done". A failed release phase, a crash, a failed
//! check or the deadline: the release is marked failed, the previous one is made current again
//! (code and config) and its dynos restarted, and the caller hears why.

use super::command::{EngineError, Reply};
use super::dyno::{DynoKey, Want};
use super::health::{self, CheckEnv};
use super::{Engine, Internal};
use crate::supervisor::spawn::{self, SpawnSpec};
use roboku_wire as wire;
use roboku_wire::DynoState;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a dyno without declared checks must stay up to count as healthy.
const DEFAULT_UPTIME: Duration = Duration::from_secs(1);

/// What the waiting caller gets back on success.
#[derive(Debug, Clone)]
pub enum Answer {
    Release,
    Config(BTreeMap<String, String>),
}

#[derive(Debug)]
pub enum Phase {
    /// The `release:` process is running (this instance).
    ReleasePhase { instance: u64, pid: i32 },
    /// Dynos are being started on the new release and checked.
    Starting,
}

pub struct Rollout {
    pub version: u32,
    pub previous: Option<u32>,
    pub deadline: Instant,
    pub phase: Phase,
    pub healthy: BTreeSet<String>,
    pub answer: Answer,
    pub reply: Option<oneshot::Sender<Result<Reply, EngineError>>>,
}

impl Engine {
    /// Starts the rollout of `version` (already current). Returns the reply to send now, or
    /// `None` when the caller must wait for the rollout (its sender is attached by `handle`).
    pub(super) fn begin_rollout(
        &mut self,
        app: &str,
        version: u32,
        previous: Option<u32>,
        answer: Answer,
    ) {
        self.unclaimed.remove(app);
        let deadline = Instant::now() + Duration::from_secs(self.settings.deploy_timeout_secs);
        let mut rollout = Rollout {
            version,
            previous,
            deadline,
            phase: Phase::Starting,
            healthy: BTreeSet::new(),
            answer,
            reply: None,
        };
        if let Some((instance, pid)) = self.start_release_phase(app) {
            rollout.phase = Phase::ReleasePhase { instance, pid };
            self.rollouts.insert(app.to_string(), rollout);
            return;
        }
        self.rollouts.insert(app.to_string(), rollout);
        self.switch(app);
    }

    /// Runs the Procfile's `release:` command once, if there is one.
    fn start_release_phase(&mut self, app: &str) -> Option<(u64, i32)> {
        let cache = self.apps.get(app)?.clone();
        let (release, slug_dir) = (cache.release.clone()?, cache.slug_dir.clone()?);
        let command = release.process_types.get("release")?.clone();
        self.next_instance += 1;
        let instance = self.next_instance;
        let mut env =
            super::dyno::dyno_env(&cache.dotenv, &release, &slug_dir, app, "release.1", 0);
        // Tagged but never recorded: a robokud killed mid-phase kills it at its next start (and
        // runs the phase again as it finishes the rollout).
        let tag = super::dyno::instance_tag(&(app.to_string(), "release.1".into()), instance);
        crate::supervisor::orphans::tag(&mut env, &self.settings.data_dir, &tag);
        // Confined like every dyno (the app's web limits), or not run at all.
        let limits = super::one_off::app_limits(&cache.formation);
        let rel = release_cgroup(app, instance);
        let join = match self.confine(&rel, &limits) {
            Ok(c) => c.join,
            Err(e) => {
                let msg = format!("cannot start release command: {e}");
                self.logs.system(app, "release.1", msg);
                return Some((0, 0));
            }
        };
        let spawned = crate::logs::open_spool(&self.settings.logs_dir(), app, "release.1")
            .map_err(|e| e.to_string())
            .and_then(|spool| {
                spawn::spawn(SpawnSpec {
                    command: command.clone(),
                    cwd: slug_dir.clone(),
                    env,
                    run_as: cache.run_as.clone().unwrap_or(None),
                    spool,
                    stdin: None,
                    controlling_tty: false,
                    join,
                    nice: limits.nice,
                    groups: Vec::new(),
                    rt: None,
                })
                .map_err(|e| e.to_string())
            });
        match spawned {
            Ok(s) => {
                self.logs.watch(app, "release.1");
                self.logs.system(
                    app,
                    "release.1",
                    format!("Running release command `{command}` (pid {})", s.pid),
                );
                self.watch_exit(
                    (app.to_string(), "release.1".to_string()),
                    instance,
                    s.pid,
                    s.pidfd,
                );
                Some((instance, s.pid))
            }
            Err(e) => {
                self.cleanup_cgroup(rel);
                self.logs.system(
                    app,
                    "release.1",
                    format!("cannot start release command: {e}"),
                );
                // Fails the rollout on the next check: a zero instance never matches.
                Some((0, 0))
            }
        }
    }

    /// The release phase ended.
    pub(super) fn on_release_phase_exit(
        &mut self,
        app: &str,
        instance: u64,
        exit: crate::supervisor::watch::Exit,
    ) {
        if self.cgroups.status().enforced {
            self.cleanup_cgroup(release_cgroup(app, instance));
        }
        let Some(r) = self.rollouts.get(app) else {
            return;
        };
        if !matches!(r.phase, Phase::ReleasePhase { instance: i, .. } if i == instance) {
            return;
        }
        self.logs.unwatch(app, "release.1");
        if exit == crate::supervisor::watch::Exit::Code(0) {
            self.logs
                .system(app, "release.1", "Release command succeeded".into());
            if let Some(r) = self.rollouts.get_mut(app) {
                r.phase = Phase::Starting;
            }
            self.switch(app);
        } else {
            self.fail_rollout(app, format!("the release command {}", exit.describe()));
        }
    }

    /// Moves the dynos onto the new release.
    fn switch(&mut self, app: &str) {
        for d in self.dynos.values_mut().filter(|d| d.app == app) {
            d.crashes = 0;
        }
        self.reconcile(app);
        crate::fault::point("rollout.switched");
        // Dynos already on the new release (adopted while finishing an interrupted rollout)
        // are checked too: nothing counts as healthy that was not checked by this agent.
        let Some(version) = self.rollouts.get(app).map(|r| r.version) else {
            return;
        };
        let running: Vec<DynoKey> = self
            .dynos
            .values()
            .filter(|d| d.app == app && d.release == version && d.proc.is_some())
            .filter(|d| d.want == Want::Run && d.state == DynoState::Up)
            .map(|d| d.key())
            .collect();
        for key in running {
            self.on_dyno_started(&key);
        }
        self.check_rollout(app);
    }

    /// At start: a current release the previous agent left `deploying` is rolled out again (its
    /// gate runs again, the caller is gone); one it left `failed` is replaced by the release before
    /// it. Returns the apps handled (they need no separate reconcile).
    pub(super) fn finish_interrupted(&mut self, apps: &[String]) -> BTreeSet<String> {
        let mut handled = BTreeSet::new();
        for app in apps {
            let Some(current) = self.apps.get(app).and_then(|c| c.release.clone()) else {
                continue;
            };
            if current.status == "succeeded" {
                continue;
            }
            let previous = match self.store.releases(app) {
                Ok(rows) => rows
                    .into_iter()
                    .find(|r| r.version < current.version && r.status == "succeeded")
                    .map(|r| r.version),
                Err(e) => {
                    tracing::error!(app, error = %e, "cannot read releases to finish a rollout");
                    continue;
                }
            };
            let msg = if current.status == "failed" {
                let restored = self.restore(app, previous);
                self.reconcile(app);
                format!("release v{} had failed; {restored}", current.version)
            } else {
                self.begin_rollout(app, current.version, previous, Answer::Release);
                format!(
                    "release v{} was still rolling out when robokud stopped; checking it again",
                    current.version
                )
            };
            tracing::warn!(app, "{msg}");
            self.logs.system(app, "roboku", msg);
            handled.insert(app.clone());
        }
        handled
    }

    /// A dyno of `app` just started: during a rollout, check it before it counts.
    pub(super) fn on_dyno_started(&mut self, key: &DynoKey) {
        let Some(r) = self.rollouts.get(&key.0) else {
            return;
        };
        let Some(d) = self.dynos.get(key) else { return };
        let (Some(p), Some(cache)) = (&d.proc, self.apps.get(&key.0)) else {
            return;
        };
        if d.release != r.version {
            return;
        }
        let checks = cache
            .checks
            .get(&d.ptype)
            .cloned()
            .unwrap_or_else(|| vec![health::default_check(DEFAULT_UPTIME)]);
        let (Some(release), Some(slug_dir)) = (cache.release.clone(), cache.slug_dir.clone())
        else {
            return;
        };
        let env = CheckEnv {
            port: d.port,
            env: super::dyno::dyno_env(&cache.dotenv, &release, &slug_dir, &key.0, &d.name, d.port),
            cwd: slug_dir,
            run_as: cache.run_as.clone().ok().flatten().map(|r| (r.uid, r.gid)),
        };
        let (tx, key, instance) = (self.internal_tx.clone(), key.clone(), p.instance);
        tokio::spawn(async move {
            let result = health::run_checks(checks, env).await;
            let _ = tx.send(Internal::Health {
                key,
                instance,
                result,
            });
        });
    }

    pub(super) fn on_health(&mut self, key: DynoKey, instance: u64, result: Result<(), String>) {
        let current = self
            .dynos
            .get(&key)
            .and_then(|d| d.proc.as_ref())
            .map(|p| p.instance);
        if current != Some(instance) || !self.rollouts.contains_key(&key.0) {
            return;
        }
        match result {
            Ok(()) => {
                self.logs
                    .system(&key.0, &key.1, "Health checks passed".into());
                if let Some(r) = self.rollouts.get_mut(&key.0) {
                    r.healthy.insert(key.1.clone());
                }
                self.check_rollout(&key.0);
            }
            Err(e) => self.fail_rollout(&key.0, format!("{} is not healthy: {e}", key.1)),
        }
    }

    /// A dyno of the new release crashed during the rollout: the release is not good.
    pub(super) fn on_rollout_crash(&mut self, key: &DynoKey, release: u32, reason: &str) {
        if self
            .rollouts
            .get(&key.0)
            .is_some_and(|r| r.version == release && matches!(r.phase, Phase::Starting))
        {
            self.fail_rollout(
                &key.0,
                format!("{} crashed while starting: {reason}", key.1),
            );
        }
    }

    /// Commits when every wanted dyno runs the new release and passed its checks.
    fn check_rollout(&mut self, app: &str) {
        let Some(r) = self.rollouts.get(app) else {
            return;
        };
        if !matches!(r.phase, Phase::Starting) {
            return;
        }
        let done = self
            .dynos
            .values()
            .filter(|d| d.app == app && d.want == Want::Run)
            .all(|d| {
                d.release == r.version && d.state == DynoState::Up && r.healthy.contains(&d.name)
            });
        if done {
            self.finish_rollout(app, Ok(()));
        }
    }

    /// Deadlines of rollouts (called with the other timers).
    pub(super) fn rollout_timers(&mut self, now: Instant) {
        let late: Vec<String> = self
            .rollouts
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(a, _)| a.clone())
            .collect();
        for app in late {
            let waiting: Vec<String> = match self.rollouts.get(&app) {
                Some(r) if matches!(r.phase, Phase::ReleasePhase { .. }) => {
                    vec!["the release command".into()]
                }
                Some(r) => self
                    .dynos
                    .values()
                    .filter(|d| d.app == app && d.want == Want::Run && !r.healthy.contains(&d.name))
                    .map(|d| d.name.clone())
                    .collect(),
                None => continue,
            };
            let secs = self.settings.deploy_timeout_secs;
            self.fail_rollout(
                &app,
                format!(
                    "not healthy within {secs}s: still waiting for {}",
                    waiting.join(", ")
                ),
            );
        }
    }

    pub(super) fn fail_rollout(&mut self, app: &str, reason: String) {
        self.finish_rollout(app, Err(reason));
    }

    fn finish_rollout(&mut self, app: &str, result: Result<(), String>) {
        let Some(r) = self.rollouts.remove(app) else {
            return;
        };
        if let Phase::ReleasePhase { pid, .. } = r.phase {
            if pid > 0 {
                spawn::signal_group(pid, libc::SIGKILL);
            }
        }
        let outcome = match result {
            Ok(()) => {
                crate::fault::point("rollout.gated");
                let _ = self.store.set_release_status(app, r.version, "succeeded");
                self.gc_slugs();
                self.logs.system(
                    app,
                    "roboku",
                    format!("Release v{} is healthy and committed", r.version),
                );
                self.refresh_app(app);
                let info = self
                    .store
                    .release(app, r.version)
                    .ok()
                    .flatten()
                    .map(|row| self.release_info(app, &row));
                match (info, r.answer) {
                    (Some(info), Answer::Release) => Ok(Reply::Release(info)),
                    (info, Answer::Config(config)) => {
                        Ok(Reply::ConfigChanged(wire::ConfigChanged {
                            config,
                            release: info,
                            unchanged: false,
                        }))
                    }
                    (None, Answer::Release) => Err(EngineError::Internal(format!(
                        "release v{} vanished",
                        r.version
                    ))),
                }
            }
            Err(reason) => {
                let _ = self.store.set_release_status(app, r.version, "failed");
                crate::fault::point("rollout.failed");
                let restored = self.restore(app, r.previous);
                let msg = format!("release v{} failed: {reason}; {restored}", r.version);
                self.logs.system(app, "roboku", msg.clone());
                self.event(
                    super::Door::Agent,
                    Some(app),
                    &format!("release v{}", r.version),
                    &msg,
                );
                Err(EngineError::DeployFailed(msg))
            }
        };
        match r.reply {
            Some(reply) => {
                let _ = reply.send(outcome);
            }
            // Finished before its caller was attached (nothing to wait for, e.g. a config change
            // of an app without dynos): kept for `attach_reply`, which comes in the same turn.
            None => {
                self.unclaimed.insert(app.to_string(), outcome);
            }
        }
    }

    /// Makes `previous` current again (code and config) and restarts the dynos onto it.
    pub(super) fn restore(&mut self, app: &str, previous: Option<u32>) -> String {
        let Some(prev) = previous else {
            return "there is no earlier release to go back to".into();
        };
        let row = match self.store.release(app, prev) {
            Ok(Some(row)) => row,
            _ => return format!("v{prev} could not be read back"),
        };
        if let Err(e) = self
            .store
            .set_current_release(app, prev)
            .and_then(|()| self.store.replace_config(app, &row.config))
        {
            return format!("restoring v{prev} failed: {e}");
        }
        self.refresh_app(app);
        for d in self.dynos.values_mut().filter(|d| d.app == app) {
            d.crashes = 0;
        }
        self.reconcile(app);
        format!("v{prev} is running again")
    }

    /// Attaches the waiting caller to the app's rollout (or answers at once if it already ended).
    pub(super) fn attach_reply(
        &mut self,
        app: &str,
        reply: oneshot::Sender<Result<Reply, EngineError>>,
    ) {
        if let Some(outcome) = self.unclaimed.remove(app) {
            let _ = reply.send(outcome);
            return;
        }
        match self.rollouts.get_mut(app) {
            Some(r) => r.reply = Some(reply),
            None => {
                let info = self
                    .apps
                    .get(app)
                    .and_then(|c| c.release.clone())
                    .map(|row| self.release_info(app, &row));
                let _ = reply.send(
                    info.map(Reply::Release)
                        .ok_or_else(|| EngineError::Internal("release vanished".into())),
                );
            }
        }
    }

    /// Refuses a second release while one is rolling out for the same app.
    pub(super) fn ensure_no_rollout(&self, app: &str) -> Result<(), EngineError> {
        match self.rollouts.get(app) {
            Some(r) => Err(EngineError::Conflict(format!(
                "release v{} of {app} is still rolling out (started {}s ago); try again when it is done",
                r.version,
                (Instant::now() + Duration::from_secs(self.settings.deploy_timeout_secs)).saturating_duration_since(r.deadline).as_secs()
            ))),
            None => Ok(()),
        }
    }
}

/// The cgroup of one release-phase run.
fn release_cgroup(app: &str, instance: u64) -> String {
    format!("{app}/release.1@{instance}")
}

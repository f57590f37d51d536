//! Rollouts: the health-gated switch to a new release.
//!
//! A new release (deploy, config change, rollback) becomes current at once (so an agent killed
//! mid-rollout comes back on a whole release, never half of each), runs its `release:` phase if
//! the Procfile has one, then restarts the dynos onto it. Each new dyno must pass its checks
//! (`app.json` healthchecks, or "stays up" by default) before the deadline. All healthy: the
//! release is committed and the caller hears "done". A failed release phase, a crash, a failed
//! check or the deadline: the release is marked failed, the previous one is made current again
//! (code and config) and its dynos restarted, and the caller hears why.
//!
//! What each event means is decided by the pure [`Gate`]; this file starts what it needs (the
//! release command, health checks), feeds it, and carries out its verdicts.

use super::command::{EngineError, Reply};
use super::dyno::{DynoKey, Want};
use super::gate::{Event, Gate, Phase, Verdict, Wanted};
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

pub struct Rollout {
    pub gate: Gate,
    pub answer: Answer,
    pub reply: Option<oneshot::Sender<Result<Reply, EngineError>>>,
}

impl Rollout {
    pub fn deadline(&self) -> Instant {
        self.gate.started + self.gate.timeout
    }
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
        self.supersede_probation(app, version);
        let timeout = Duration::from_secs(self.settings.deploy_timeout_secs);
        let phase = match self.start_release_phase(app) {
            Some((instance, pid)) => Phase::ReleasePhase { instance, pid },
            None => Phase::Starting,
        };
        let rollout = Rollout {
            gate: Gate::new(version, previous, phase, Instant::now(), timeout),
            answer,
            reply: None,
        };
        self.rollouts.insert(app.to_string(), rollout);
        if phase == Phase::Starting {
            self.switch(app);
        }
    }

    /// Runs the Procfile's `release:` command once, if there is one.
    fn start_release_phase(&mut self, app: &str) -> Option<(u64, i32)> {
        let cache = self.apps.get(app)?.clone();
        let (release, slug_dir) = (cache.release.clone()?, cache.slug_dir.clone()?);
        let command = release.process_types.get("release")?.clone();
        self.next_instance += 1;
        let instance = self.next_instance;
        let mut env = super::dyno::dyno_env(
            &cache.dotenv,
            &cache.own_env,
            &release,
            &slug_dir,
            app,
            "release.1",
            0,
        );
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
        let event = Event::ReleaseCommandExited {
            instance,
            ok: exit == crate::supervisor::watch::Exit::Code(0),
            how: exit.describe(),
        };
        match self.gate(app, event) {
            Verdict::Wait | Verdict::Commit => {}
            Verdict::Switch => {
                self.logs.unwatch(app, "release.1");
                self.logs
                    .system(app, "release.1", "Release command succeeded".into());
                self.switch(app);
            }
            Verdict::Fail(reason) => {
                self.logs.unwatch(app, "release.1");
                self.fail_rollout(app, reason);
            }
        }
    }

    /// Feeds `event` to the app's gate with the dynos its formation wants now.
    fn gate(&mut self, app: &str, event: Event) -> Verdict {
        let Some(r) = self.rollouts.get_mut(app) else {
            return Verdict::Wait;
        };
        let wanted: Vec<Wanted<'_>> = self
            .dynos
            .values()
            .filter(|d| d.app == app && d.want == Want::Run)
            .map(|d| Wanted {
                name: &d.name,
                release: d.release,
                up: d.state == DynoState::Up,
            })
            .collect();
        r.gate.on(event, &wanted)
    }

    /// Carries out a verdict about the dynos (switching is the release command's).
    fn verdict(&mut self, app: &str, verdict: Verdict) {
        match verdict {
            Verdict::Commit => self.finish_rollout(app, Ok(())),
            Verdict::Fail(reason) => self.fail_rollout(app, reason),
            Verdict::Wait | Verdict::Switch => {}
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
        let Some(version) = self.rollouts.get(app).map(|r| r.gate.version) else {
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

    /// The dynos changed: commits when every wanted one runs the new release and passed.
    fn check_rollout(&mut self, app: &str) {
        let verdict = self.gate(app, Event::Check);
        self.verdict(app, verdict);
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
            let msg = if current.status == "failed" || current.status == "rolled-back" {
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
        if d.release != r.gate.version {
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
        let (instance, last) = (p.instance, p.health.clone());
        let reports = health::wants_reports(&checks).then(|| self.report_feed(key, instance, last));
        let Some(d) = self.dynos.get(key) else { return };
        let Some(cache) = self.apps.get(&key.0) else {
            return;
        };
        let env = CheckEnv {
            dyno: d.name.clone(),
            reports,
            port: d.port,
            env: super::dyno::dyno_env(
                &cache.dotenv,
                &cache.own_env,
                &release,
                &slug_dir,
                &key.0,
                &d.name,
                d.port,
            ),
            cwd: slug_dir,
            run_as: cache.run_as.clone().ok().flatten().map(|r| (r.uid, r.gid)),
        };
        let (tx, key) = (self.internal_tx.clone(), key.clone());
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
        // Its check is over, whatever became of the rollout: its reports need not go there.
        if self
            .health_feeds
            .get(&key)
            .is_some_and(|(i, _)| *i == instance)
        {
            self.health_feeds.remove(&key);
        }
        if current != Some(instance) || !self.rollouts.contains_key(&key.0) {
            return;
        }
        let event = match result {
            Ok(()) => {
                self.logs
                    .system(&key.0, &key.1, "Health checks passed".into());
                Event::Healthy(key.1.clone())
            }
            Err(why) => Event::Unhealthy {
                dyno: key.1.clone(),
                why,
            },
        };
        let verdict = self.gate(&key.0, event);
        self.verdict(&key.0, verdict);
    }

    /// A dyno crashed: during the rollout of its release, the release is not good.
    pub(super) fn on_rollout_crash(&mut self, key: &DynoKey, release: u32, reason: &str) {
        let event = Event::Crashed {
            dyno: key.1.clone(),
            release,
            reason: reason.to_string(),
        };
        let verdict = self.gate(&key.0, event);
        self.verdict(&key.0, verdict);
    }

    /// Deadlines of rollouts (called with the other timers).
    pub(super) fn rollout_timers(&mut self, now: Instant) {
        let apps: Vec<String> = self.rollouts.keys().cloned().collect();
        for app in apps {
            let verdict = self.gate(&app, Event::Tick(now));
            self.verdict(&app, verdict);
        }
    }

    pub(super) fn fail_rollout(&mut self, app: &str, reason: String) {
        self.finish_rollout(app, Err(reason));
    }

    fn finish_rollout(&mut self, app: &str, result: Result<(), String>) {
        let Some(r) = self.rollouts.remove(app) else {
            return;
        };
        if let Phase::ReleasePhase { pid, .. } = r.gate.phase {
            if pid > 0 {
                spawn::signal_group(pid, libc::SIGKILL);
            }
        }
        let outcome = match result {
            Ok(()) => {
                crate::fault::point("rollout.gated");
                let _ = self
                    .store
                    .set_release_status(app, r.gate.version, "succeeded");
                self.restore_rollout_ended(app, r.gate.version, true, r.gate.previous);
                self.retire_replaced(app);
                self.start_probation(app, r.gate.version);
                self.gc_slugs();
                self.logs.system(
                    app,
                    "roboku",
                    format!("Release v{} is healthy and committed", r.gate.version),
                );
                self.refresh_app(app);
                let info = self
                    .store
                    .release(app, r.gate.version)
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
                        r.gate.version
                    ))),
                }
            }
            Err(reason) => {
                let _ = self.store.set_release_status(app, r.gate.version, "failed");
                crate::fault::point("rollout.failed");
                self.restore_replaced(app);
                // A failed config change goes back the way it came: types that reload in place
                // are signalled (or left) again rather than restarted.
                if let (Answer::Config(_), Some(prev)) = (&r.answer, r.gate.previous) {
                    self.reload_in_place(app, prev);
                }
                let restored =
                    match self.restore_rollout_ended(app, r.gate.version, false, r.gate.previous) {
                        Some(undoing) => undoing,
                        None => self.restore(app, r.gate.previous),
                    };
                let msg = format!("release v{} failed: {reason}; {restored}", r.gate.version);
                self.logs.system(app, "roboku", msg.clone());
                self.event(
                    super::Door::Agent,
                    Some(app),
                    &format!("release v{}", r.gate.version),
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
        let prev = match self.set_back(app, previous) {
            Ok(prev) => prev,
            Err(e) => return e,
        };
        for d in self.dynos.values_mut().filter(|d| d.app == app) {
            d.crashes = 0;
        }
        self.reconcile(app);
        format!("v{prev} is running again")
    }

    /// Makes `previous` current again (code and config), starting nothing; says why not.
    pub(super) fn set_back(&mut self, app: &str, previous: Option<u32>) -> Result<u32, String> {
        let Some(prev) = previous else {
            return Err("there is no earlier release to go back to".into());
        };
        let row = match self.store.release(app, prev) {
            Ok(Some(row)) => row,
            _ => return Err(format!("v{prev} could not be read back")),
        };
        if let Err(e) = self
            .store
            .set_current_release(app, prev)
            .and_then(|()| self.store.replace_config(app, &row.config))
        {
            return Err(format!("restoring v{prev} failed: {e}"));
        }
        self.refresh_app(app);
        Ok(prev)
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
        let Some(reply) = self.attach_restore(app, reply) else {
            return;
        };
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
                r.gate.version,
                r.gate.started.elapsed().as_secs()
            ))),
            None => Ok(()),
        }
    }
}

/// The cgroup of one release-phase run.
fn release_cgroup(app: &str, instance: u64) -> String {
    format!("{app}/release.1@{instance}")
}

//! Spares (see [`crate::supervisor::spare`]): each running formation dyno gets one, its next
//! instance, made [`SPARE_AFTER`] after the dyno came up, by the spare maker (one thread, one
//! spare at a time, so a scale to 500 never forks 500 more beside it). A crash then costs one
//! write: the spare is already in its fresh cgroup with the limits in force, as the dyno user.
//!
//! A spare is used only where a start happens anyway ([`Engine::start_dyno`]: at once for a
//! first crash, after the backoff delay otherwise, after a restart), and only when it was made
//! from the same [`Recipe`] as the start would use now (command, environment, directory, user,
//! limits, release): anything else discards it and starts as before. A first crash that restarts
//! at once releases the spare before anything else is done about the exit (reading the cgroup's
//! OOM count, logging, cleaning up the old cgroup, saving the row), see [`Engine::release_early`].
//!
//! A spare goes with its dyno: scaled down, stopped, removed with its app or at shutdown, it is
//! discarded (pipe closed, process group SIGKILLed and reaped, cgroup removed) off the loop.
//! When robokud dies, the spares see their pipe close and exit by themselves; the next start
//! removes their cgroups with every other instance cgroup nobody owns (see `adopt`).

use super::dyno::{DynoKey, Want};
use super::{Engine, Internal};
use crate::supervisor::spare::{self, Spare};
use crate::supervisor::spawn::{RunAs, SpawnSpec, Spawned};
use roboku_wire::Limits;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

/// How long a dyno runs before its spare is made: a dyno that crashes sooner is in a crash loop
/// that backs off anyway, and the launch of a whole formation is not slowed by its spares.
pub(super) const SPARE_AFTER: Duration = Duration::from_millis(500);

/// What a start of one dyno is made from, now. Two starts from equal recipes (see
/// [`Recipe::fingerprint`]) are the same but for their instance.
#[derive(Debug, Clone)]
pub(super) struct Recipe {
    pub command: String,
    pub slug_dir: PathBuf,
    /// The dyno's environment without its instance tag.
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
    pub run_as: Option<RunAs>,
    pub release: u32,
    pub user_name: String,
}

impl Recipe {
    /// Equal for recipes a spare may stand in for. Pure.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.command.hash(&mut h);
        self.slug_dir.hash(&mut h);
        self.env.hash(&mut h);
        format!("{:?}", self.limits).hash(&mut h);
        self.run_as
            .as_ref()
            .map(|r| (r.uid, r.gid, &r.name))
            .hash(&mut h);
        self.release.hash(&mut h);
        h.finish()
    }
}

/// A spare of one dyno, as the engine holds it.
pub(super) struct Held {
    pub instance: u64,
    pub cgroup: Option<String>,
    pub fingerprint: u64,
    pub state: HeldState,
}

pub(super) enum HeldState {
    Waiting(Spare),
    /// Released by [`Engine::release_early`]; `start_dyno` takes it over in the same turn.
    Released(Spawned),
}

type Job = Box<dyn FnOnce() + Send>;

/// The engine's spares and the thread that makes them.
#[derive(Default)]
pub(super) struct Spares {
    held: BTreeMap<DynoKey, Held>,
    /// Spares being made, by the instance they will be.
    making: BTreeMap<DynoKey, u64>,
    maker: Option<std::sync::mpsc::Sender<Job>>,
}

impl Spares {
    /// Runs `job` on the spare maker thread (started on first use). `false`: no thread.
    fn make(&mut self, job: Job) -> bool {
        if self.maker.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name("spare-maker".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the spare maker thread; no spares");
                return false;
            }
            self.maker = Some(tx);
        }
        self.maker.as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }
}

impl Engine {
    /// The recipe of a start of `key` now; `None` when it cannot start (no release, no command).
    pub(super) fn recipe(&self, key: &DynoKey) -> Option<Recipe> {
        let cache = self.apps.get(&key.0)?;
        let (release, slug_dir) = (cache.release.as_ref()?, cache.slug_dir.clone()?);
        let d = self.dynos.get(key)?;
        let command = release.process_types.get(&d.ptype)?.clone();
        let limits = cache
            .formation
            .iter()
            .find(|f| f.ptype == d.ptype)
            .map(|f| f.limits.clone())
            .unwrap_or_default();
        let env = super::dyno::dyno_env(
            &cache.dotenv,
            &cache.own_env,
            release,
            &slug_dir,
            &d.app,
            &d.name,
            d.port,
        );
        Some(Recipe {
            command,
            slug_dir,
            env,
            limits,
            run_as: cache.run_as.clone().unwrap_or(None),
            release: release.version,
            user_name: cache.user_name.clone(),
        })
    }

    /// Once the dyno's instance `instance` has run [`SPARE_AFTER`], a spare is made for it.
    pub(super) fn spare_later(&self, key: &DynoKey, instance: u64) {
        if !self.settings.spare_dynos || key.1 == "release.1" {
            return;
        }
        let tx = self.internal_tx.clone();
        let key = key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SPARE_AFTER).await;
            let _ = tx.send(Internal::SpareDue { key, instance });
        });
    }

    /// The dyno's instance `instance` is still running: make its spare (on the maker thread).
    pub(super) fn on_spare_due(&mut self, key: DynoKey, instance: u64) {
        let wanted = self.dynos.get(&key).is_some_and(|d| {
            d.want == Want::Run
                && !d.one_off
                && d.proc.as_ref().is_some_and(|p| p.instance == instance)
        });
        if !wanted || self.spares.held.contains_key(&key) || self.spares.making.contains_key(&key) {
            return;
        }
        let Some(recipe) = self.recipe(&key) else {
            return;
        };
        let (groups, rt) = match self.confine_extras(&recipe.limits) {
            Ok(x) => x,
            Err(_) => return, // the next start reports it
        };
        self.next_instance += 1;
        let instance = self.next_instance;
        let rel = super::dyno::instance_tag(&key, instance);
        let mut env = recipe.env.clone();
        crate::supervisor::orphans::tag(&mut env, &self.settings.data_dir, &rel);
        let enforced = self.cgroups.status().enforced;
        let driver = self.cgroups.clone();
        let logs_dir = self.settings.logs_dir();
        let tx = self.internal_tx.clone();
        let fingerprint = recipe.fingerprint();
        let job_key = key.clone();
        let job: Job = Box::new(move || {
            let cgroup = enforced.then(|| rel.clone());
            let made = (|| -> Result<Spare, String> {
                let join = match &cgroup {
                    Some(rel) => {
                        driver
                            .create(rel, &recipe.limits)
                            .map_err(|e| format!("cgroup setup: {e}"))?;
                        driver
                            .join_files(rel)
                            .map_err(|e| format!("cgroup join files: {e}"))?
                    }
                    None => Vec::new(),
                };
                let spool = crate::logs::open_spool(&logs_dir, &job_key.0, &job_key.1)
                    .map_err(|e| e.to_string())?;
                spare::start(SpawnSpec {
                    command: recipe.command.clone(),
                    cwd: recipe.slug_dir.clone(),
                    env,
                    run_as: recipe.run_as.clone(),
                    spool,
                    stdin: None,
                    controlling_tty: false,
                    join,
                    nice: recipe.limits.nice,
                    groups,
                    rt,
                })
                .map_err(|e| format!("cannot start a spare of `{}`: {e}", recipe.command))
            })();
            if made.is_err() {
                if let Some(rel) = &cgroup {
                    let _ = driver.kill_all(rel).and_then(|()| driver.remove(rel));
                }
            }
            let _ = tx.send(Internal::SpareMade {
                key: job_key,
                instance,
                cgroup,
                fingerprint,
                made,
            });
        });
        if self.spares.make(job) {
            self.spares.making.insert(key, instance);
        }
    }

    /// The maker is done with a spare: hold it if its dyno still wants one, else discard it.
    pub(super) fn on_spare_made(
        &mut self,
        key: DynoKey,
        instance: u64,
        cgroup: Option<String>,
        fingerprint: u64,
        made: Result<Spare, String>,
    ) {
        if self.spares.making.get(&key) == Some(&instance) {
            self.spares.making.remove(&key);
        }
        let spare = match made {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(app = %key.0, dyno = %key.1, error = %e, "no spare");
                return;
            }
        };
        let held = Held {
            instance,
            cgroup,
            fingerprint,
            state: HeldState::Waiting(spare),
        };
        let wanted = self
            .dynos
            .get(&key)
            .is_some_and(|d| d.want == Want::Run && !d.one_off)
            && !self.spares.held.contains_key(&key);
        let current = self.recipe(&key).map(|r| r.fingerprint()) == Some(fingerprint);
        if wanted && current {
            self.spares.held.insert(key, held);
        } else {
            self.discard_spare(held);
            if wanted {
                // The app changed while it was being made: make one from the new recipe.
                self.respare(&key);
            }
        }
    }

    /// Schedules a new spare for `key` if it runs and wants one.
    fn respare(&self, key: &DynoKey) {
        let running = self.dynos.get(key).and_then(|d| {
            (d.want == Want::Run && !d.one_off)
                .then_some(d.proc.as_ref().map(|p| p.instance))
                .flatten()
        });
        if let Some(instance) = running {
            self.spare_later(key, instance);
        }
    }

    /// Whether a crash of `key` that ran for `ran_for` restarts at once (a first crash).
    pub(super) fn restarts_at_once(&self, key: &DynoKey, ran_for: Duration) -> bool {
        self.dynos.get(key).is_some_and(|d| {
            let count = self.policy.next_count(d.crashes, ran_for);
            self.policy.delay(count, 0.0).is_zero()
        })
    }

    /// Releases `key`'s spare now, ahead of the rest of the exit handling, when it matches what
    /// the restart will start; `start_dyno` takes it over (or [`Engine::settle_spare`] ends it).
    pub(super) fn release_early(&mut self, key: &DynoKey) {
        let Some(held) = self.spares.held.get(key) else {
            return;
        };
        if !matches!(held.state, HeldState::Waiting(_))
            || self.recipe(key).map(|r| r.fingerprint()) != Some(held.fingerprint)
        {
            return;
        }
        let Some(mut held) = self.spares.held.remove(key) else {
            return;
        };
        let HeldState::Waiting(spare) = held.state else {
            return;
        };
        match spare.release() {
            Ok(spawned) => {
                held.state = HeldState::Released(spawned);
                self.spares.held.insert(key.clone(), held);
            }
            Err((spare, e)) => {
                tracing::info!(app = %key.0, dyno = %key.1, error = %e, "spare lost; starting anew");
                held.state = HeldState::Waiting(spare);
                self.discard_spare(held);
            }
        }
    }

    /// Starts `key` from its spare when one made from `recipe` is there. `false`: start anew.
    pub(super) fn start_from_spare(&mut self, key: &DynoKey, recipe: &Recipe) -> bool {
        let Some(mut held) = self.spares.held.remove(key) else {
            return false;
        };
        if held.fingerprint != recipe.fingerprint() {
            self.discard_spare(held);
            return false;
        }
        let spawned = match held.state {
            HeldState::Released(s) => s,
            HeldState::Waiting(spare) => match spare.release() {
                Ok(s) => s,
                Err((spare, e)) => {
                    tracing::info!(app = %key.0, dyno = %key.1, error = %e, "spare lost; starting anew");
                    held.state = HeldState::Waiting(spare);
                    self.discard_spare(held);
                    return false;
                }
            },
        };
        let Some(d) = self.dynos.get_mut(key) else {
            held.state = HeldState::Released(spawned);
            self.discard_spare(held);
            return true;
        };
        d.retry_at = None;
        d.retry_at_ms = None;
        d.user = recipe.user_name.clone();
        d.release = recipe.release;
        d.sample = Default::default();
        d.state = roboku_wire::DynoState::Starting;
        d.pending = Some(held.instance);
        self.dirty.insert(key.clone());
        let command = recipe.command.clone();
        self.on_spawned(
            key.clone(),
            held.instance,
            held.cgroup,
            command,
            Ok(spawned),
        );
        true
    }

    /// After an exit was handled: a spare released early that nobody took over is ended.
    pub(super) fn settle_spare(&mut self, key: &DynoKey) {
        if self
            .spares
            .held
            .get(key)
            .is_some_and(|h| matches!(h.state, HeldState::Released(_)))
        {
            if let Some(held) = self.spares.held.remove(key) {
                self.discard_spare(held);
            }
        }
    }

    /// Discards the spares of dynos that no longer want one (gone, stopping, removed).
    pub(super) fn prune_spares(&mut self) {
        let stale: Vec<DynoKey> = self
            .spares
            .held
            .keys()
            .filter(|k| {
                !self
                    .dynos
                    .get(*k)
                    .is_some_and(|d| d.want == Want::Run && !d.one_off)
            })
            .cloned()
            .collect();
        for key in stale {
            if let Some(held) = self.spares.held.remove(&key) {
                self.discard_spare(held);
            }
        }
    }

    /// Discards the spares of `app` that its start recipe no longer matches (a new release,
    /// config, limits or user): they would be discarded at the next start anyway.
    pub(super) fn drop_stale_spares(&mut self, app: &str) {
        let stale: Vec<DynoKey> = self
            .spares
            .held
            .iter()
            .filter(|(k, h)| {
                k.0 == app
                    && matches!(h.state, HeldState::Waiting(_))
                    && self.recipe(k).map(|r| r.fingerprint()) != Some(h.fingerprint)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(held) = self.spares.held.remove(&key) {
                self.discard_spare(held);
                self.respare(&key);
            }
        }
    }

    /// Discards every spare (shutdown).
    pub(super) fn discard_all_spares(&mut self) {
        for (_, held) in std::mem::take(&mut self.spares.held) {
            self.discard_spare(held);
        }
    }

    /// Ends a spare and removes its cgroup, off the loop.
    fn discard_spare(&self, held: Held) {
        let driver = self.cgroups.clone();
        let work = move || {
            match held.state {
                HeldState::Waiting(spare) => spare.discard(),
                HeldState::Released(s) => {
                    crate::supervisor::spawn::signal_group(s.pid, libc::SIGKILL);
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s.pid), None);
                }
            }
            if let Some(rel) = held.cgroup {
                if let Err(e) = driver.kill_all(&rel).and_then(|()| driver.remove(&rel)) {
                    tracing::warn!(cgroup = %rel, error = %e, "removing a spare's cgroup failed");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            command: "exec sleep 9".into(),
            slug_dir: "/data/slugs/demo/v3".into(),
            env: [("PORT".to_string(), "5000".to_string())].into(),
            limits: Limits::default(),
            run_as: Some(RunAs {
                name: "nobody".into(),
                uid: 65534,
                gid: 65534,
            }),
            release: 3,
            user_name: "nobody".into(),
        }
    }

    #[test]
    fn a_spare_stands_in_only_for_the_same_recipe() {
        let r = recipe();
        assert_eq!(r.fingerprint(), recipe().fingerprint());
        let mut other = recipe();
        other.env.insert("DATABASE_URL".into(), "x".into());
        assert_ne!(r.fingerprint(), other.fingerprint(), "config changed");
        let mut other = recipe();
        other.limits.memory_max = Some(64 << 20);
        assert_ne!(r.fingerprint(), other.fingerprint(), "limits changed");
        let mut other = recipe();
        other.run_as = None;
        assert_ne!(r.fingerprint(), other.fingerprint(), "user changed");
        let mut other = recipe();
        other.release = 4;
        assert_ne!(r.fingerprint(), other.fingerprint(), "new release");
        let mut other = recipe();
        other.command = "exec sleep 10".into();
        assert_ne!(r.fingerprint(), other.fingerprint(), "command changed");
    }
}

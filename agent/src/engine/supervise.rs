//! Supervision: starting, stopping and restarting dynos, reacting to their exits, timers, and
//! resource samples. Slow work (killing what is left of a cgroup, removing it) runs in a blocking
//! task so the loop is free to start the replacement at once.

use super::dyno::{DynoKey, Proc, Want};
use super::{Engine, Internal};
use crate::supervisor::spawn::{self, SpawnSpec};
use crate::supervisor::watch::{self, Exit};
use crate::supervisor::{orphans, procfs};
use crate::util::now_ms;
use rand::Rng;
use roboku_wire::{DynoState, ExitInfo};
use std::time::{Duration, Instant};

impl Engine {
    /// Starts the dyno's process now. A failure to start counts as a crash (and is retried).
    pub(super) fn start_dyno(&mut self, key: &DynoKey) {
        self.start_dyno_with(key, Launch::AfterSave);
    }

    /// [`Engine::start_dyno`], saying when the fork runs. Returns whether the start took over
    /// the cleanup of `Launch::Now`'s old cgroup (else the caller still owns it).
    fn start_dyno_with(&mut self, key: &DynoKey, launch: Launch) -> bool {
        if self.hold_for_order(key) {
            return false;
        }
        let Some(recipe) = self.recipe(key) else {
            return false;
        };
        if self.start_from_spare(key, &recipe) {
            return false;
        }
        let Some(d) = self.dynos.get(key) else {
            return false;
        };
        let (app, name) = (d.app.clone(), d.name.clone());
        let super::spare::Recipe {
            command,
            slug_dir,
            mut env,
            limits,
            run_as,
            release,
            user_name,
        } = recipe;
        self.next_instance += 1;
        let instance = self.next_instance;

        let rel = super::dyno::instance_tag(key, instance);
        orphans::tag(&mut env, &self.settings.data_dir, &rel);

        // A dyno never runs outside its cgroup because a cgroup step failed: the start fails
        // (as a crash, retried with backoff) with the reason in ps, the logs and the events.
        let super::confine::Confined {
            cgroup,
            join,
            groups,
            rt,
        } = match self.confine(&rel, &limits) {
            Ok(c) => c,
            Err(reason) => {
                let door = super::command::Door::Agent;
                self.event(door, Some(&app), &format!("start {name}"), &reason);
                if let Some(d) = self.dynos.get_mut(key) {
                    d.user = user_name;
                    d.release = release;
                    d.pending = Some(instance);
                }
                self.on_spawned(key.clone(), instance, None, command, Err(reason));
                return false;
            }
        };
        let Some(d) = self.dynos.get_mut(key) else {
            return false;
        };
        d.retry_at = None;
        d.retry_at_ms = None;
        d.user = user_name;
        d.release = release;
        d.sample = Default::default();
        d.state = DynoState::Starting;
        d.pending = Some(instance);
        self.dirty.insert(key.clone());
        // fork+exec (and the cgroup joins between them) run on the blocking pool once `flush` has
        // saved the row naming this instance: a scale to 100 overlaps them, and the loop stays
        // free for exits and requests meanwhile. A crash replacement (`Launch::Now`) goes at
        // once, before the row is saved (see [`Launch`]).
        let (tx, key, logs_dir) = (
            self.internal_tx.clone(),
            key.clone(),
            self.settings.logs_dir(),
        );
        let (now, old_cgroup) = match launch {
            Launch::AfterSave => (false, None),
            Launch::Now { old_cgroup } => (true, old_cgroup),
        };
        let took_cleanup = old_cgroup.is_some();
        let driver = self.cgroups.clone();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let result = crate::logs::open_spool(&logs_dir, &app, &name)
                .map_err(|e| e.to_string())
                .and_then(|spool| {
                    spawn::spawn(SpawnSpec {
                        command: command.clone(),
                        cwd: slug_dir,
                        env,
                        run_as,
                        spool,
                        stdin: None,
                        controlling_tty: false,
                        join,
                        nice: limits.nice,
                        groups,
                        rt,
                    })
                    .map_err(|e| match &limits.rt {
                        Some(rt) if e.raw_os_error() == Some(libc::EPERM) => format!(
                            "cannot start `{command}` with real-time policy {rt}: the kernel refused it ({e})"
                        ),
                        _ => format!("cannot start `{command}`: {e}"),
                    })
                });
            if result.is_ok() {
                crate::fault::point("spawn.forked");
            }
            let _ = tx.send(Internal::Spawned {
                key,
                instance,
                cgroup,
                command,
                result,
            });
            // The crashed instance's cgroup goes after the replacement has exec'd: removing it
            // meanwhile would contend with the joins for the kernel's cgroup locks.
            if let Some(rel) = old_cgroup {
                remove_cgroup(driver.as_ref(), &rel);
            }
        });
        if now {
            tokio::task::spawn_blocking(job);
        } else {
            self.spawns.push(job);
        }
        took_cleanup
    }

    /// A spawn finished on the blocking pool.
    pub(super) fn on_spawned(
        &mut self,
        key: DynoKey,
        instance: u64,
        cgroup: Option<String>,
        command: String,
        result: Result<spawn::Spawned, String>,
    ) {
        let current = self.dynos.get(&key).and_then(|d| d.pending) == Some(instance);
        if !current {
            // The dyno was removed (or restarted) while it was being spawned: nobody wants this one.
            if let Ok(s) = &result {
                spawn::signal_group(s.pid, libc::SIGKILL);
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s.pid), None);
            }
            if let Some(rel) = cgroup {
                self.cleanup_cgroup(rel);
            }
            return;
        }
        let now = now_ms();
        let Some(d) = self.dynos.get_mut(&key) else {
            return;
        };
        d.pending = None;
        let (app, name, want) = (d.app.clone(), d.name.clone(), d.want);
        match result {
            Ok(spawned) => {
                // Its instance (the tag it is found by) is saved: the pid can wait a little.
                self.lazy.insert(key.clone());
                d.proc = Some(Proc {
                    pid: spawned.pid,
                    start_time: spawned.start_time,
                    cgroup,
                    instance,
                    tag: Some(super::dyno::instance_tag(&key, instance)),
                    started: Instant::now(),
                    adopted: false,
                    health: None,
                });
                d.state = DynoState::Up;
                d.since = now;
                self.logs.watch(&app, &name);
                let msg = format!(
                    "Starting process with command `{command}` (pid {})",
                    spawned.pid
                );
                self.logs.system(&app, &name, msg);
                self.watch_exit(key.clone(), instance, spawned.pid, spawned.pidfd);
                if want == Want::Run {
                    self.spare_later(&key, instance);
                    self.on_dyno_started(&key);
                } else {
                    // Asked to stop while it was starting.
                    self.stop_dyno(&key, want);
                }
            }
            Err(reason) => {
                self.dirty.insert(key.clone());
                self.logs.system(&app, &name, reason.clone());
                let reason_copy = reason.clone();
                if let Some(rel) = cgroup {
                    self.cleanup_cgroup(rel);
                }
                let exit = ExitInfo {
                    at: now,
                    code: None,
                    signal: None,
                    oom: false,
                    reason,
                };
                match want {
                    Want::Run => {
                        let release = self.dynos.get(&key).map(|d| d.release).unwrap_or(0);
                        if let Some(rel) = self.crashed(&key, exit, Duration::ZERO, None) {
                            self.cleanup_cgroup(rel);
                        }
                        // A dyno of a new release that cannot even start fails the release now.
                        self.on_rollout_crash(&key, release, &reason_copy);
                        self.probation_crash(&key, release);
                    }
                    Want::Stop => {
                        if let Some(d) = self.dynos.get_mut(&key) {
                            d.state = DynoState::Down;
                            d.last_exit = Some(exit);
                        }
                    }
                    Want::Remove => {
                        self.dynos.remove(&key);
                        self.dirty.remove(&key);
                        self.gone.push(key);
                    }
                }
            }
        }
    }

    pub(super) fn watch_exit(
        &self,
        key: DynoKey,
        instance: u64,
        pid: i32,
        fd: std::os::fd::OwnedFd,
    ) {
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let exit = watch::wait_exit(pid, fd).await;
            let _ = tx.send(Internal::Exited {
                key,
                instance,
                exit,
            });
        });
    }

    /// Kills whatever is left in an instance's cgroup and removes it, off the engine loop.
    pub(super) fn cleanup_cgroup(&self, rel: String) {
        self.sweeper.remove(rel);
    }

    pub(super) fn on_exit(&mut self, key: DynoKey, instance: u64, exit: Exit) {
        if self.on_retiree_exit(&key, instance) {
            return;
        }
        let Some(d) = self.dynos.get_mut(&key) else {
            return;
        };
        if d.proc.as_ref().map(|p| p.instance) != Some(instance) {
            return;
        }
        let Some(proc) = d.proc.take() else { return };
        let ran_for = proc.started.elapsed();
        // Whatever the dyno forked dies with it (Heroku kills the whole dyno).
        spawn::signal_group(proc.pid, libc::SIGKILL);
        let crash = d.want == Want::Run && d.state != DynoState::Stopping && !d.one_off;
        // Before the crash is counted: what this instance reported ends with it.
        self.probation_dyno_gone(&key);
        if crash && self.restarts_at_once(&key, ran_for) {
            // The replacement runs before anything else about this exit is done.
            self.release_early(&key);
        }
        let Some(d) = self.dynos.get_mut(&key) else {
            return;
        };
        // One small file (not the whole `stats`): this is on the way to the replacement's fork.
        let oom_kills = proc
            .cgroup
            .as_ref()
            .and_then(|rel| self.cgroups.oom_kills(rel).ok())
            .unwrap_or(0);
        d.oom_total += oom_kills.max(d.sample.oom_kills);
        d.sample = Default::default();
        let limit = self
            .apps
            .get(&key.0)
            .and_then(|c| c.formation.iter().find(|f| f.ptype == d.ptype))
            .and_then(|f| f.limits.memory_max);
        let oom = oom_kills > 0;
        let mut reason = exit.describe();
        if oom {
            reason = match limit {
                Some(l) => format!("OOM-killed (memory limit {})", roboku_wire::human_bytes(l)),
                None => "OOM-killed".into(),
            };
        }
        let info = ExitInfo {
            at: now_ms(),
            code: if let Exit::Code(c) = exit {
                Some(c)
            } else {
                None
            },
            signal: if let Exit::Signal(s) = exit {
                Some(s)
            } else {
                None
            },
            oom,
            reason: reason.clone(),
        };
        let (app, name, want, was) = (d.app.clone(), d.name.clone(), d.want, d.state);
        // Log lines are channel sends (the log task writes them), so they cost nothing here and
        // keep their order: the exit, then the restart's lines.
        if oom {
            self.logs.system(
                &app,
                &name,
                format!("Error R14 (Memory quota exceeded): {reason}"),
            );
        }
        self.logs.system(&app, &name, format!("Process {reason}"));
        if self.dynos.get(&key).is_some_and(|d| d.one_off) {
            if let Some(rel) = proc.cgroup {
                self.cleanup_cgroup(rel);
            }
            self.one_off_exited(&key, info);
        } else {
            let handled = Handled {
                want,
                was,
                old_cgroup: proc.cgroup,
            };
            self.exit_handled(key.clone(), handled, info, ran_for, reason.clone());
            self.settle_spare(&key);
        }
        if oom {
            // After the restart: a store write (fsync) is not for the crash path.
            let _ = self.store.add_event(
                now_ms(),
                Some(&app),
                "agent",
                &format!("{name} oom-killed"),
                &reason,
            );
        }
    }

    /// The rest of [`Engine::on_exit`] for a formation dyno: record the exit, then restart,
    /// back off, mark it down or forget it. The crashed instance's cgroup is removed at once,
    /// or, when the restart is at once, by the replacement's job once it has exec'd.
    fn exit_handled(
        &mut self,
        key: DynoKey,
        handled: Handled,
        info: ExitInfo,
        ran_for: Duration,
        reason: String,
    ) {
        let Handled {
            want,
            was,
            mut old_cgroup,
        } = handled;
        let (app, name) = key.clone();
        let Some(d) = self.dynos.get_mut(&key) else {
            if let Some(rel) = old_cgroup {
                self.cleanup_cgroup(rel);
            }
            return;
        };
        d.last_exit = Some(info.clone());
        d.stop_deadline = None;
        self.dirty.insert(key.clone());
        match want {
            Want::Run if was == DynoState::Stopping && d.restart_after_stop => {
                d.restart_after_stop = false;
                d.crashes = 0;
                d.state = DynoState::Starting;
                self.start_dyno(&key);
            }
            Want::Run => {
                let release = d.release;
                old_cgroup = self.crashed(&key, info, ran_for, old_cgroup);
                self.on_rollout_crash(&key, release, &reason);
                self.probation_crash(&key, release);
            }
            Want::Stop => {
                d.state = DynoState::Down;
                d.since = now_ms();
                self.logs
                    .system(&app, &name, "State changed to down".into());
            }
            Want::Remove => {
                self.dynos.remove(&key);
                self.dirty.remove(&key);
                self.gone.push(key);
            }
        }
        if let Some(rel) = old_cgroup {
            // At once, not deferred: a cleanup deferred past a crash left an empty instance
            // cgroup behind when robokud was killed in that window (a flaky kill -9 test).
            self.cleanup_cgroup(rel);
        }
    }

    /// Records a crash and schedules the restart (at once for a first crash: its fork goes
    /// before the row is saved, see [`Launch::Now`]). Returns `old_cgroup` unless the
    /// replacement's job took over removing it.
    fn crashed(
        &mut self,
        key: &DynoKey,
        info: ExitInfo,
        ran_for: Duration,
        old_cgroup: Option<String>,
    ) -> Option<String> {
        let jitter: f64 = self.rng.gen();
        let Some(d) = self.dynos.get_mut(key) else {
            return old_cgroup;
        };
        d.restarts = d.restarts.saturating_add(1);
        d.crashes = self.policy.next_count(d.crashes, ran_for);
        d.last_exit = Some(info);
        let delay = self.policy.delay(d.crashes, jitter);
        self.dirty.insert(key.clone());
        if delay.is_zero() {
            d.state = DynoState::Starting;
            let launch = Launch::Now {
                old_cgroup: old_cgroup.clone(),
            };
            if self.start_dyno_with(key, launch) {
                return None;
            }
        } else {
            d.state = DynoState::Backoff;
            d.since = now_ms();
            d.retry_at = Some(Instant::now() + delay);
            d.retry_at_ms = Some(now_ms() + delay.as_millis() as u64);
            let msg = format!(
                "State changed to crashed; restarting in {:.1}s",
                delay.as_secs_f64()
            );
            let (app, name) = key.clone();
            self.logs.system(&app, &name, msg);
        }
        old_cgroup
    }

    /// Stops a dyno: SIGTERM to its group now, SIGKILL to its cgroup after the app's grace.
    /// Stops (for removal) every dyno of `app` that runs or is meant to; the dynos stopped.
    pub(super) fn stop_app_dynos(&mut self, app: &str) -> Vec<DynoKey> {
        let keys: Vec<DynoKey> = self
            .dynos
            .iter()
            .filter(|(k, d)| k.0 == app && !d.stays_down())
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.stop_dyno(key, Want::Remove);
        }
        keys
    }

    pub(super) fn stop_dyno(&mut self, key: &DynoKey, want: Want) {
        let grace = self
            .apps
            .get(&key.0)
            .map(|c| c.grace)
            .unwrap_or(Duration::from_secs(self.settings.grace_secs));
        let Some(d) = self.dynos.get_mut(key) else {
            return;
        };
        d.want = want;
        d.restart_after_stop = false;
        d.retry_at = None;
        d.retry_at_ms = None;
        self.dirty.insert(key.clone());
        match &d.proc {
            Some(p) if d.state != DynoState::Stopping => {
                spawn::signal_group(p.pid, libc::SIGTERM);
                d.state = DynoState::Stopping;
                d.stop_deadline = Some(Instant::now() + grace);
                let msg = format!("Stopping process with SIGTERM ({}s grace)", grace.as_secs());
                self.logs.system(&key.0, &key.1, msg);
            }
            Some(_) => {}
            None => {
                if want == Want::Remove {
                    self.dynos.remove(key);
                    self.dirty.remove(key);
                    self.gone.push(key.clone());
                } else {
                    d.state = DynoState::Down;
                }
            }
        }
    }

    /// Restarts a dyno: stop (with grace), then start again at once with the current release.
    pub(super) fn restart_dyno(&mut self, key: &DynoKey) {
        let Some(d) = self.dynos.get(key) else { return };
        if d.proc.is_some() {
            self.stop_dyno(key, Want::Run);
            if let Some(d) = self.dynos.get_mut(key) {
                d.restart_after_stop = true;
            }
        } else if let Some(d) = self.dynos.get_mut(key) {
            d.want = Want::Run;
            d.crashes = 0;
            d.state = DynoState::Starting;
            self.start_dyno(key);
        }
    }

    /// Backoffs that are due, stop deadlines that passed, resource samples.
    pub(super) fn on_timers(&mut self, now: Instant) {
        let due: Vec<DynoKey> = self
            .dynos
            .iter()
            .filter(|(_, d)| d.retry_at.is_some_and(|t| t <= now) && d.want == Want::Run)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(d) = self.dynos.get_mut(&key) {
                d.state = DynoState::Starting;
            }
            self.start_dyno(&key);
        }
        let overdue: Vec<DynoKey> = self
            .dynos
            .iter()
            .filter(|(_, d)| d.stop_deadline.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in overdue {
            let Some(d) = self.dynos.get_mut(&key) else {
                continue;
            };
            d.stop_deadline = None;
            if let Some(p) = &d.proc {
                spawn::signal_group(p.pid, libc::SIGKILL);
                if let Some(rel) = p.cgroup.clone() {
                    self.cleanup_cgroup(rel);
                }
                let msg =
                    "Error R12 (Exit timeout): did not exit after SIGTERM; killed with SIGKILL"
                        .into();
                self.logs.system(&key.0, &key.1, msg);
            }
        }
        self.retiree_timers(now);
        self.probation_timers(now);
        self.rollout_timers(now);
        self.gate_timers(now);
        if now >= self.next_sample {
            self.sample();
            self.next_sample = now + Duration::from_secs(self.settings.sample_secs.max(1));
        }
    }

    /// Memory, CPU and pids of every running dyno, from its cgroup or else from /proc.
    pub(super) fn sample(&mut self) {
        let now = Instant::now();
        let enforced = self.cgroups.status().enforced;
        // One read per app first: an app cgroup whose CPU time did not move (it counts its
        // dynos') has no dyno that ran, so its dynos' own counters need not be read.
        let mut quiet_apps = std::collections::BTreeSet::new();
        if enforced {
            let apps: std::collections::BTreeSet<&str> = self
                .dynos
                .values()
                .filter(|d| d.proc.as_ref().is_some_and(|p| p.cgroup.is_some()))
                .map(|d| d.app.as_str())
                .collect();
            let mut seen = std::collections::BTreeMap::new();
            for app in apps {
                if let Ok(ns) = self.cgroups.cpu_usage_ns(app) {
                    if self.app_cpu.get(app) == Some(&ns) {
                        quiet_apps.insert(app.to_string());
                    }
                    seen.insert(app.to_string(), ns);
                }
            }
            self.app_cpu = seen;
        }
        // New dynos' first readings are rationed (FIRST_READS_PER_ROUND), in key order; the
        // others keep theirs for a later round, or for `ps` (read_unread).
        let mut firsts = 0usize;
        for d in self.dynos.values_mut() {
            if d.proc.is_none() {
                continue;
            }
            if !rationed(d.sample.tried, &mut firsts) {
                continue;
            }
            let app_quiet = quiet_apps.contains(&d.app);
            read_dyno(
                self.cgroups.as_ref(),
                &self.logs,
                enforced,
                app_quiet,
                d,
                now,
            );
        }
        self.offer_round();
    }

    /// Hands this round's numbers to the telemetry history (never waits: see `telemetry`).
    fn offer_round(&self) {
        let dynos = self
            .dynos
            .values()
            .filter(|d| !d.one_off)
            .map(|d| crate::telemetry::DynoReading {
                app: d.app.clone(),
                dyno: d.name.clone(),
                cpu_percent: d.proc.as_ref().and(d.sample.cpu_percent),
                memory: d.proc.as_ref().and(d.sample.memory),
                memory_limit: self.apps.get(&d.app).and_then(|c| {
                    c.formation
                        .iter()
                        .find(|f| f.ptype == d.ptype)
                        .and_then(|f| f.limits.memory_max)
                }),
                last_exit: d.last_exit.as_ref().map(|e| (e.at, e.oom)),
                release: d.release,
            })
            .collect();
        self.telemetry
            .offer(crate::telemetry::Round { t: now_ms(), dynos });
    }
}

impl Engine {
    /// Gives `app`'s dynos that were never read their first reading now (`ps` shows every
    /// dyno's memory and CPU at once, whatever the rationing of the rounds left for later).
    pub(super) fn read_unread(&mut self, app: &str) {
        let enforced = self.cgroups.status().enforced;
        let now = Instant::now();
        for d in self
            .dynos
            .values_mut()
            .filter(|d| d.app == app && d.proc.is_some() && !d.sample.tried)
        {
            read_dyno(self.cgroups.as_ref(), &self.logs, enforced, false, d, now);
        }
    }
}

/// First readings taken per sampling round. A dyno's first reading is a full one (five cgroup
/// files, `memory.stat` among them; ~90 us each here), so a scale to 500 would read 2,500 files
/// in one engine turn (~45 ms at N = 500, a crash arriving meanwhile waiting for it, and half a
/// percent of a core over the first 10 s after the launch). Rationed, a round does at most 8
/// first reads (~1.3 ms; 500 new dynos all have theirs within 63 rounds, 5 min at the default
/// 5 s); `ps` reads its app's at once.
pub(super) const FIRST_READS_PER_ROUND: usize = 8;

/// Whether a dyno is read this round: always once it was read before, else while this round's
/// first reads (`firsts`, counted here) are under [`FIRST_READS_PER_ROUND`]. Pure.
fn rationed(tried: bool, firsts: &mut usize) -> bool {
    if tried {
        return true;
    }
    if *firsts >= FIRST_READS_PER_ROUND {
        return false;
    }
    *firsts += 1;
    true
}

/// One dyno's reading of this round: memory, CPU, pids and OOM kills from its cgroup (or /proc),
/// an R14 line when it saw a new OOM kill.
fn read_dyno(
    cgroups: &dyn crate::cgroup::CgroupDriver,
    logs: &crate::logs::LogHandle,
    enforced: bool,
    app_quiet: bool,
    d: &mut super::dyno::Dyno,
    now: Instant,
) {
    let Some(p) = &d.proc else { return };
    d.sample.tried = true;
    let sample = &mut d.sample;
    let stats = p
        .cgroup
        .as_ref()
        .filter(|_| enforced)
        .and_then(|rel| read_cgroup(cgroups, rel, sample, app_quiet));
    let (mem, cpu_ns, pids, ooms) = match stats {
        Some(s) => (
            Some(s.memory_bytes),
            Some(s.cpu_usage_ns),
            Some(s.pids),
            s.oom_kills,
        ),
        None => (procfs::rss_bytes(p.pid), procfs::cpu_ns(p.pid), None, 0),
    };
    if ooms > d.sample.oom_kills {
        let msg = "Error R14 (Memory quota exceeded): a process of this dyno was OOM-killed".into();
        logs.system(&d.app, &d.name, msg);
    }
    d.sample.memory = mem;
    d.sample.pids = pids;
    d.sample.oom_kills = ooms;
    if let Some(ns) = cpu_ns {
        // A process this agent spawned started its counter at zero when it started, so the
        // first sample is already a rate (`ps` shows CPU at once, not after two intervals); an
        // adopted one needs a previous reading.
        let since = match d.sample.last_cpu {
            Some(prev) => Some(prev),
            None if !p.adopted => Some((0, p.started)),
            None => None,
        };
        if let Some((prev, at)) = since {
            let wall = now.duration_since(at).as_nanos();
            if wall > 0 {
                let pct = ns.saturating_sub(prev) as f64 * 100.0 / wall as f64;
                d.sample.cpu_percent = Some(pct);
            }
        }
        d.sample.last_cpu = Some((ns, now));
    }
}

/// When a start's fork runs.
pub(super) enum Launch {
    /// After `flush` saved the row naming the new instance (every start but a crash's).
    AfterSave,
    /// At once, before the row is saved: a crash replacement, whose old row is in the store.
    /// A robokud killed before the save finds the new process by its tag at its next start,
    /// unrecorded, and kills it like any leftover (the dyno starts again then); nothing leaks.
    /// `old_cgroup` is the crashed instance's, removed once the replacement has exec'd.
    Now { old_cgroup: Option<String> },
}

/// What [`Engine::on_exit`] knew of the dyno before it handled the exit.
struct Handled {
    want: Want,
    was: DynoState,
    /// The crashed instance's cgroup, still to be removed.
    old_cgroup: Option<String>,
}

pub(super) fn remove_cgroup(driver: &dyn crate::cgroup::CgroupDriver, rel: &str) {
    if let Err(e) = driver.kill_all(rel).and_then(|()| driver.remove(rel)) {
        tracing::warn!(cgroup = %rel, error = %e, "cleaning up a dyno cgroup failed");
    }
}

/// A dyno that used no CPU time since the last reading cannot have allocated memory, forked or
/// been OOM-killed (all of that runs in its own tasks), so one read of its CPU counter stands for
/// the whole round and the other readings are reused; every [`FULL_EVERY`]th round looks at its
/// raw memory charge too (the kernel may reclaim its page cache meanwhile), and reads all only
/// if that moved. At N idle dynos that is N small reads per round instead of 5N (none when
/// their app's counter did not move either), `memory.stat` (the costly one) among the saved.
pub(super) const FULL_EVERY: u32 = 12;

/// Whether this round may reuse the last readings: the CPU time did not move and the last full
/// read is recent enough. Pure.
pub(super) fn quiet(last_cpu_ns: Option<u64>, cpu_ns: u64, quiet_rounds: u32) -> bool {
    last_cpu_ns == Some(cpu_ns) && quiet_rounds + 1 < FULL_EVERY
}

/// This round's readings of one dyno's cgroup (see [`quiet`]); `app_quiet`: its app's cgroup
/// used no CPU time since the last round, so neither did this dyno.
fn read_cgroup(
    cgroups: &dyn crate::cgroup::CgroupDriver,
    rel: &str,
    sample: &mut super::dyno::Sample,
    app_quiet: bool,
) -> Option<crate::cgroup::CgroupStats> {
    let last = sample.last_cpu.map(|(ns, _)| ns);
    let cpu = match last {
        Some(ns) if app_quiet => Some(ns),
        _ => cgroups.cpu_usage_ns(rel).ok(),
    };
    if let (Some(cpu), Some(memory), Some(pids), Some(charge)) =
        (cpu, sample.memory, sample.pids, sample.charge)
    {
        let same = crate::cgroup::CgroupStats {
            memory_bytes: memory,
            cpu_usage_ns: cpu,
            pids,
            oom_kills: sample.oom_kills,
            charge,
        };
        if quiet(last, cpu, sample.quiet_rounds) {
            sample.quiet_rounds += 1;
            return Some(same);
        }
        // A full read is due; one small file says whether the memory moved meanwhile.
        if last == Some(cpu) && cgroups.memory_charge(rel).ok() == Some(charge) {
            sample.quiet_rounds = 0;
            return Some(same);
        }
    }
    sample.quiet_rounds = 0;
    let stats = cgroups.stats(rel).ok();
    sample.charge = stats.as_ref().map(|s| s.charge);
    stats
}

#[cfg(test)]
mod sample_tests {
    use super::*;

    #[test]
    fn first_reads_are_rationed_per_round_and_read_dynos_never_wait() {
        let mut firsts = 0;
        let mut tried = vec![false; 40];
        tried[3] = true;
        let mut rounds = 0;
        while tried.iter().any(|t| !t) {
            firsts = 0;
            rounds += 1;
            let read: Vec<bool> = tried.iter().map(|&t| rationed(t, &mut firsts)).collect();
            let new = read.iter().zip(&tried).filter(|(r, t)| **r && !**t).count();
            assert!(
                new <= FIRST_READS_PER_ROUND,
                "round {rounds}: {new} first reads"
            );
            assert!(read[3], "a dyno read before is read every round");
            for (t, r) in tried.iter_mut().zip(read) {
                *t |= r;
            }
        }
        assert_eq!(rounds, 5, "39 new dynos at 8 a round");
        assert_eq!(firsts, 7);
    }
    use crate::cgroup::fake::{FakeCgroups, FakeOp};
    use crate::cgroup::{CgroupDriver, CgroupStats};
    use roboku_wire::Limits;

    #[test]
    fn quiet_needs_an_unchanged_counter_and_a_recent_full_read() {
        assert!(quiet(Some(5), 5, 0));
        assert!(!quiet(Some(5), 6, 0), "the dyno ran");
        assert!(!quiet(None, 5, 0), "nothing read before");
        assert!(quiet(Some(5), 5, FULL_EVERY - 2));
        assert!(!quiet(Some(5), 5, FULL_EVERY - 1), "a full read is due");
    }

    #[test]
    fn an_idle_dyno_costs_one_read_per_round_and_a_full_one_now_and_then() {
        let cg = FakeCgroups::new();
        cg.create("demo/web.1", &Limits::default()).unwrap();
        let stats = |cpu| CgroupStats {
            memory_bytes: 7 << 20,
            cpu_usage_ns: cpu,
            pids: 1,
            oom_kills: 0,
            charge: 8 << 20,
        };
        cg.set_stats("demo/web.1", stats(1_000));
        let mut sample = crate::engine::dyno::Sample::default();
        let round = |sample: &mut crate::engine::dyno::Sample| {
            let s = read_cgroup(&cg, "demo/web.1", sample, false).expect("readings");
            sample.memory = Some(s.memory_bytes);
            sample.pids = Some(s.pids);
            sample.oom_kills = s.oom_kills;
            sample.last_cpu = Some((s.cpu_usage_ns, std::time::Instant::now()));
            s
        };
        round(&mut sample);
        assert_eq!(
            cg.calls_of(FakeOp::Stats).len(),
            1,
            "the first round reads all"
        );
        for _ in 0..FULL_EVERY - 1 {
            assert_eq!(round(&mut sample), stats(1_000));
        }
        assert_eq!(
            cg.calls_of(FakeOp::Stats).len(),
            1,
            "quiet rounds read the CPU counter only"
        );
        assert_eq!(cg.calls_of(FakeOp::CpuUsage).len(), FULL_EVERY as usize);
        assert_eq!(round(&mut sample), stats(1_000));
        assert_eq!(
            cg.calls_of(FakeOp::MemoryCharge).len(),
            1,
            "one round in FULL_EVERY looks at the charge"
        );
        assert_eq!(
            cg.calls_of(FakeOp::Stats).len(),
            1,
            "and reads no more when it did not move"
        );
        // The kernel reclaimed some of its page cache: the next look at the charge reads all.
        cg.set_stats(
            "demo/web.1",
            CgroupStats {
                memory_bytes: 6 << 20,
                charge: 6 << 20,
                ..stats(1_000)
            },
        );
        for _ in 0..FULL_EVERY - 1 {
            assert_eq!(round(&mut sample).memory_bytes, 7 << 20, "reused");
        }
        assert_eq!(round(&mut sample).memory_bytes, 6 << 20);
        assert_eq!(cg.calls_of(FakeOp::MemoryCharge).len(), 2);
        assert_eq!(
            cg.calls_of(FakeOp::Stats).len(),
            2,
            "a moved charge reads all"
        );
        // The dyno runs: its memory is read again at once.
        cg.set_stats(
            "demo/web.1",
            CgroupStats {
                memory_bytes: 9 << 20,
                ..stats(2_000)
            },
        );
        assert_eq!(round(&mut sample).memory_bytes, 9 << 20);
        assert_eq!(cg.calls_of(FakeOp::Stats).len(), 3);
        // When its app's cgroup did not move, the dyno's own counter is not read either.
        let before = cg.calls_of(FakeOp::CpuUsage).len();
        let s = read_cgroup(&cg, "demo/web.1", &mut sample, true).expect("readings");
        assert_eq!(s.memory_bytes, 9 << 20);
        assert_eq!(cg.calls_of(FakeOp::CpuUsage).len(), before);
        assert_eq!(cg.calls_of(FakeOp::Stats).len(), 3);
    }
}

//! Preboot: switching a process type to a new release without a gap. The old dyno is moved
//! out of the dyno table into `retiring` (still running, still routed), a fresh dyno of the
//! same name starts on the new release on the dyno's other port, and the rollout's gate checks
//! it as usual. Committed: the router moves to the new dynos, the old ones drain for
//! `preboot_drain_ms`, then get SIGTERM (SIGKILL after the grace). Failed: the new dynos are
//! stopped and the old ones put back as they were, so nothing that served ever stopped.
//!
//! Also here: which dynos the app's router sends traffic to, and the routers' lifecycle. The
//! router itself (`crate::router`) only reads the list published here.
//!
//! A robokud stopped mid-preboot leaves the retiring dyno unrecorded (its row now names the new
//! one): the next robokud kills it as an orphan by its tag and finishes the rollout.

use super::dyno::{Dyno, DynoKey, Want};
use super::policy::Strategy;
use super::Engine;
use crate::supervisor::spawn;
use roboku_wire::DynoState;
use std::time::{Duration, Instant};

/// `(app, dyno name, instance)` of a retiring dyno (the instance its exit watcher reports).
pub type RetireeKey = (String, String, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still serving while the new release boots.
    Serving,
    /// Out of the routes since `since`; SIGTERM once the router has no connection open to it
    /// (after [`SETTLE`]), or at `until` whatever it still serves.
    Draining { since: Instant, until: Instant },
    /// SIGTERM sent; SIGKILL to its cgroup at this instant.
    Stopping(Instant),
}

#[derive(Debug, Clone)]
pub struct Retiree {
    pub dyno: Dyno,
    pub phase: Phase,
}

/// The type that gets the router.
const ROUTED: &str = "web";
/// Ports a dyno may hold across overlapping preboots (deploys faster than the drain).
const PORT_SLOTS: usize = 4;
/// A drained dyno is stopped no sooner than this after leaving the routes: a connection the
/// router was opening to it as the routes changed is counted by then.
const SETTLE: Duration = Duration::from_millis(100);
/// How often a draining dyno's open connections are looked at.
const DRAIN_POLL: Duration = Duration::from_millis(20);

impl Engine {
    /// Whether reconciling should preboot this dyno instead of stopping it first: during a
    /// rollout, for a type whose strategy is preboot, when its old process is up.
    pub(super) fn prebootable(&self, key: &DynoKey) -> bool {
        let (Some(d), Some(cache)) = (self.dynos.get(key), self.apps.get(&key.0)) else {
            return false;
        };
        self.rollouts.contains_key(&key.0)
            && cache.policy.strategy(&d.ptype) == Strategy::Preboot
            && d.proc.is_some()
            && d.state == DynoState::Up
            && d.want == Want::Run
    }

    /// Starts `key` on the current release next to its running process (see the module doc).
    /// Falls back to a restart when the second port cannot be had.
    pub(super) fn preboot_dyno(&mut self, key: &DynoKey) {
        if !self.dynos.contains_key(key) {
            return;
        }
        // A few stable ports per dyno, used in turn: the new process takes the first one no
        // process of the app holds (the old one serving, an older one still draining), so its
        // health check can only reach the new process.
        let busy: Vec<u16> = self
            .dynos
            .values()
            .filter(|d| d.app == key.0)
            .map(|d| d.port)
            .chain(self.retiring.values().map(|r| r.dyno.port))
            .collect();
        let (min, max) = (self.settings.port_min, self.settings.port_max);
        let mut port = Err(format!(
            "all {PORT_SLOTS} ports of {} are still held",
            key.1
        ));
        for slot in 0..PORT_SLOTS {
            let name = format!("{}{}", key.1, "+".repeat(slot));
            match self.store.port_for(&key.0, &name, min, max) {
                Ok(p) if busy.contains(&p) => continue,
                Ok(p) => {
                    port = Ok(p);
                    break;
                }
                Err(e) => {
                    port = Err(e.to_string());
                    break;
                }
            }
        }
        let port = port.and_then(|p| {
            self.store
                .assign_port(&key.0, &key.1, p)
                .map(|()| p)
                .map_err(|e| e.to_string())
        });
        let port = match port {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("cannot preboot ({e}); restarting instead");
                self.logs.system(&key.0, &key.1, msg);
                self.restart_dyno(key);
                return;
            }
        };
        let Some(old) = self.dynos.remove(key) else {
            return;
        };
        let Some(release) = self
            .apps
            .get(&key.0)
            .and_then(|c| c.release.as_ref())
            .map(|r| r.version)
        else {
            self.dynos.insert(key.clone(), old);
            return;
        };
        let instance = old.proc.as_ref().map(|p| p.instance).unwrap_or(0);
        let mut new = Dyno::new(
            &old.app,
            &old.ptype,
            old.index,
            port,
            release,
            crate::util::now_ms(),
        );
        new.restarts = old.restarts;
        new.oom_total = old.oom_total;
        let msg = format!(
            "Preboot: starting v{release} on port {port}; v{} keeps serving on port {} until it is healthy",
            old.release, old.port
        );
        self.logs.system(&key.0, &key.1, msg);
        self.retiring.insert(
            (key.0.clone(), key.1.clone(), instance),
            Retiree {
                dyno: old,
                phase: Phase::Serving,
            },
        );
        self.dynos.insert(key.clone(), new);
        self.dirty.insert(key.clone());
        self.start_dyno(key);
    }

    /// The rollout of `app` committed: its serving retirees leave the routes and drain.
    pub(super) fn retire_replaced(&mut self, app: &str) {
        let since = Instant::now();
        let until = since + Duration::from_millis(self.settings.preboot_drain_ms);
        for (k, r) in self.retiring.iter_mut().filter(|(k, _)| k.0 == app) {
            if r.phase == Phase::Serving {
                r.phase = Phase::Draining { since, until };
                let msg = format!("v{} replaced; draining before SIGTERM", r.dyno.release);
                self.logs.system(&k.0, &k.1, msg);
            }
        }
    }

    /// The rollout of `app` failed: the dynos it started are stopped and the ones they were to
    /// replace come back, untouched.
    pub(super) fn restore_replaced(&mut self, app: &str) {
        let serving: Vec<RetireeKey> = self
            .retiring
            .iter()
            .filter(|(k, r)| k.0 == app && r.phase == Phase::Serving)
            .map(|(k, _)| k.clone())
            .collect();
        for rk in serving {
            let Some(old) = self.retiring.remove(&rk) else {
                continue;
            };
            let key: DynoKey = (rk.0.clone(), rk.1.clone());
            if let Some(new) = self.dynos.remove(&key) {
                // A spawn still pending finds its dyno gone and kills what it forked.
                if let Some((pid, instance)) = new.proc.as_ref().map(|p| (p.pid, p.instance)) {
                    let phase = self.terminate(&key, pid);
                    let rk = (key.0.clone(), key.1.clone(), instance);
                    self.retiring.insert(rk, Retiree { dyno: new, phase });
                }
            }
            if let Err(e) = self.store.assign_port(&key.0, &key.1, old.dyno.port) {
                tracing::warn!(app, error = %e, "cannot give the dyno its port back");
            }
            let msg = format!("v{} kept: the new release did not pass", old.dyno.release);
            self.logs.system(&key.0, &key.1, msg);
            self.dynos.insert(key.clone(), old.dyno);
            self.dirty.insert(key);
        }
    }

    /// SIGTERM to a retiring process; its SIGKILL deadline.
    fn terminate(&self, key: &DynoKey, pid: i32) -> Phase {
        let grace = self
            .apps
            .get(&key.0)
            .map(|c| c.grace)
            .unwrap_or(Duration::from_secs(self.settings.grace_secs));
        spawn::signal_group(pid, libc::SIGTERM);
        Phase::Stopping(Instant::now() + grace)
    }

    /// A watched process exited: if it was a retiring one, forget it (true).
    pub(super) fn on_retiree_exit(&mut self, key: &DynoKey, instance: u64) -> bool {
        let rk = (key.0.clone(), key.1.clone(), instance);
        let Some(r) = self.retiring.remove(&rk) else {
            return false;
        };
        if let Some(p) = &r.dyno.proc {
            spawn::signal_group(p.pid, libc::SIGKILL);
            if let Some(rel) = p.cgroup.clone() {
                self.cleanup_cgroup(rel);
            }
        }
        let msg = format!("v{} process stopped (replaced)", r.dyno.release);
        self.logs.system(&key.0, &key.1, msg);
        true
    }

    /// Drains that ended, stop graces that ran out.
    pub(super) fn retiree_timers(&mut self, now: Instant) {
        let due: Vec<RetireeKey> = self
            .retiring
            .iter()
            .filter(|(k, r)| match r.phase {
                Phase::Draining { since, until } => {
                    let open = self
                        .routers
                        .get(&k.0)
                        .map_or(0, |ro| ro.open_to(r.dyno.port));
                    until <= now || (since + SETTLE <= now && open == 0)
                }
                Phase::Stopping(t) => t <= now,
                Phase::Serving => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for rk in due {
            let key: DynoKey = (rk.0.clone(), rk.1.clone());
            let Some(r) = self.retiring.get(&rk) else {
                continue;
            };
            let Some(pid) = r.dyno.proc.as_ref().map(|p| p.pid) else {
                self.retiring.remove(&rk);
                continue;
            };
            match r.phase {
                Phase::Draining { .. } => {
                    let phase = self.terminate(&key, pid);
                    if let Some(r) = self.retiring.get_mut(&rk) {
                        r.phase = phase;
                    }
                }
                Phase::Stopping(_) => {
                    self.logs.system(
                        &key.0,
                        &key.1,
                        "Error R12 (Exit timeout): replaced process killed with SIGKILL".into(),
                    );
                    self.on_retiree_exit(&key, rk.2);
                }
                Phase::Serving => {}
            }
        }
    }

    pub(super) fn retiree_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.retiring.values().filter_map(|r| match r.phase {
            Phase::Draining { since, until } => {
                Some(until.min((since + SETTLE).max(Instant::now() + DRAIN_POLL)))
            }
            Phase::Stopping(t) => Some(t),
            Phase::Serving => None,
        })
    }

    /// Shutdown with `on_exit = stop`: retiring processes stop too.
    pub(super) fn stop_retirees(&mut self) {
        let all: Vec<(RetireeKey, i32)> = self
            .retiring
            .iter()
            .filter_map(|(k, r)| r.dyno.proc.as_ref().map(|p| (k.clone(), p.pid)))
            .collect();
        for (rk, pid) in all {
            let phase = self.terminate(&(rk.0.clone(), rk.1.clone()), pid);
            if let Some(r) = self.retiring.get_mut(&rk) {
                r.phase = phase;
            }
        }
    }

    /// The dyno ports `app`'s router sends new connections to: web dynos that are up, except
    /// those of a release still rolling out (not yet healthy); plus old ones still serving
    /// during a preboot.
    pub(super) fn routes(&self, app: &str) -> Vec<u16> {
        let rolling = self.rollouts.get(app).map(|r| r.gate.version);
        let current = self
            .dynos
            .values()
            .filter(|d| d.app == app && d.ptype == ROUTED && !d.one_off)
            .filter(|d| d.want == Want::Run && d.state == DynoState::Up && d.proc.is_some())
            .filter(|d| Some(d.release) != rolling)
            .map(|d| d.port);
        let serving = self
            .retiring
            .iter()
            .filter(|(k, r)| k.0 == app && r.dyno.ptype == ROUTED && r.phase == Phase::Serving)
            .map(|(_, r)| r.dyno.port);
        current.chain(serving).collect()
    }

    /// Binds a router for every app whose release has a web type, drops the others', and
    /// publishes each one's routes. A port that cannot be bound is said once (in the app's
    /// logs and `apps:info`) and tried again when the app changes.
    pub(super) fn sync_routers(&mut self) {
        self.routers.retain(|app, _| {
            self.apps
                .get(app)
                .and_then(|c| c.release.as_ref())
                .is_some_and(|r| r.process_types.contains_key(ROUTED))
        });
        let wanted: Vec<String> = self
            .apps
            .iter()
            .filter(|(_, c)| {
                c.release
                    .as_ref()
                    .is_some_and(|r| r.process_types.contains_key(ROUTED))
            })
            .map(|(a, _)| a.clone())
            .filter(|a| !self.routers.contains_key(a) && !self.router_errors.contains_key(a))
            .collect();
        for app in wanted {
            let bound = self
                .store
                .port_for(&app, ROUTED, self.settings.port_min, self.settings.port_max)
                .map_err(|e| format!("no port for the router of {app}: {e}"))
                .and_then(|port| {
                    crate::router::Router::bind(&app, port).map_err(|e| e.to_string())
                });
            match bound {
                Ok(router) => {
                    let msg = format!("Router listening on port {}", router.port);
                    self.logs.system(&app, "router", msg);
                    self.routers.insert(app, router);
                }
                Err(e) => {
                    tracing::warn!(app, error = %e, "router not started");
                    self.logs.system(&app, "router", e.clone());
                    self.router_errors.insert(app, e);
                }
            }
        }
        for (app, router) in &self.routers {
            router.set_backends(self.routes(app));
        }
    }
}

//! Probation: the window after a release is committed during which crashes count against it.
//! A process type crashing more often than its budget (`app.json` `roboku.probation`) rolls the
//! app back to the release before by itself; the bad release is marked `rolled-back` with why
//! (in `releases`, the events and the app's logs). A release through its window is marked
//! `passed`; later crashes are ordinary crashes (restarted with backoff, never rolled back).
//!
//! A dyno's own reports count too (`roboku health:set`): a report of `error` counts against its
//! type's budget like a crash, and so does a `blocked` or `waiting` that lasts past the window
//! of the type's `reported` health check (when it has one). The reason names the dyno and its
//! message: `worker.1 reported error: lidar lost (in probation: worker failed 1 time, budget 0)`.
//!
//! The counting is pure ([`Probation`]); the engine part below starts, feeds and ends it.
//! Probation lives in memory: a robokud restarted during one does not resume it (the release
//! stays marked `watching`).

use super::command::Door;
use super::dyno::DynoKey;
use super::Engine;
use roboku_wire::gates::{DynoHealth, HealthStatus};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Probation {
    pub version: u32,
    pub until: Instant,
    /// Failures (crashes and bad reports) per process type.
    crashes: BTreeMap<String, u32>,
    /// Dynos reporting `blocked`/`waiting`, by name: their type, when that counts as a failure,
    /// and what they said.
    stuck: BTreeMap<String, Stuck>,
}

#[derive(Debug, Clone)]
struct Stuck {
    ptype: String,
    at: Instant,
    what: String,
}

/// A report, as probation judges it.
pub struct Report<'a> {
    pub dyno: &'a str,
    pub ptype: &'a str,
    pub release: u32,
    pub health: &'a DynoHealth,
    /// The window of the type's `reported` check: how long `blocked`/`waiting` may last
    /// (`None`: the type has no such check, and only `error` counts).
    pub window: Option<Duration>,
}

impl Probation {
    pub fn new(version: u32, until: Instant) -> Probation {
        Probation {
            version,
            until,
            crashes: BTreeMap::new(),
            stuck: BTreeMap::new(),
        }
    }

    /// Counts one failure of `ptype`; the count when it is over `budget`.
    fn fail(&mut self, ptype: &str, budget: u32) -> Option<u32> {
        let n = self.crashes.entry(ptype.to_string()).or_insert(0);
        *n += 1;
        (*n > budget).then_some(*n)
    }

    /// Takes a dyno's report in at `now`; why the release must go when it is one failure over
    /// `budget`.
    pub fn on_report(&mut self, r: &Report<'_>, budget: u32, now: Instant) -> Option<String> {
        if r.release != self.version || now >= self.until {
            self.stuck.remove(r.dyno);
            return None;
        }
        let what = super::health::reported(r.dyno, r.health);
        match r.health.status {
            HealthStatus::Okay => {
                self.stuck.remove(r.dyno);
                None
            }
            HealthStatus::Error => {
                self.stuck.remove(r.dyno);
                let n = self.fail(r.ptype, budget)?;
                Some(failed(&what, r.ptype, n, budget))
            }
            HealthStatus::Blocked | HealthStatus::Waiting => {
                let window = r.window?;
                let entry = self.stuck.entry(r.dyno.to_string()).or_insert(Stuck {
                    ptype: r.ptype.to_string(),
                    at: now + window,
                    what: String::new(),
                });
                entry.what = format!("{what} for more than {}", human(window));
                None
            }
        }
    }

    /// Reports that stayed `blocked`/`waiting` past their window by `now` count as failures;
    /// why the release must go when one is over its type's budget.
    pub fn on_tick(&mut self, now: Instant, budget: impl Fn(&str) -> u32) -> Option<String> {
        let due: Vec<String> = self
            .stuck
            .iter()
            .filter(|(_, s)| s.at <= now && now < self.until)
            .map(|(d, _)| d.clone())
            .collect();
        for dyno in due {
            let Some(s) = self.stuck.remove(&dyno) else {
                continue;
            };
            let b = budget(&s.ptype);
            if let Some(n) = self.fail(&s.ptype, b) {
                return Some(failed(&s.what, &s.ptype, n, b));
            }
        }
        None
    }

    /// `dyno`'s instance ended (it crashed, was stopped, scaled away or removed): what it reported
    /// goes with it. Its next instance starts with no health; only its own reports count, and a
    /// crash is counted once (as a crash), not again as a report stuck past its window.
    pub fn dyno_gone(&mut self, dyno: &str) {
        self.stuck.remove(dyno);
    }

    /// When a `blocked`/`waiting` report next turns into a failure.
    pub fn next_stuck(&self) -> Option<Instant> {
        self.stuck.values().map(|s| s.at).min()
    }

    /// Counts a crash of a `ptype` dyno of `release` at `now`; why the release must go when this
    /// one is over `budget`.
    pub fn on_crash(
        &mut self,
        ptype: &str,
        release: u32,
        budget: u32,
        now: Instant,
    ) -> Option<String> {
        if release != self.version || now >= self.until {
            return None;
        }
        let n = self.fail(ptype, budget)?;
        Some(format!(
            "{ptype} crashed {n} time{} in probation (budget {budget})",
            if n == 1 { "" } else { "s" }
        ))
    }

    pub fn passed(&self, now: Instant) -> bool {
        now >= self.until
    }
}

impl Engine {
    /// Release `version` of `app` was just committed: watch it (not a rollback: that goes back
    /// to a release that already proved itself, and must not bounce).
    pub(super) fn start_probation(&mut self, app: &str, version: u32) {
        let Some(cache) = self.apps.get(app) else {
            return;
        };
        let window = cache.policy.probation;
        let rollback = cache
            .release
            .as_ref()
            .is_some_and(|r| r.description.starts_with("Rollback to v"));
        if window.is_zero() || rollback {
            return;
        }
        if let Err(e) = self.store.set_release_probation(app, version, "watching") {
            tracing::warn!(app, error = %e, "cannot record the probation");
        }
        let msg = format!("Release v{version} is on probation for {}", human(window));
        self.logs.system(app, "roboku", msg);
        self.probations.insert(
            app.to_string(),
            Probation::new(version, Instant::now() + window),
        );
    }

    /// A new rollout replaces the release on probation: its window ends unjudged.
    pub(super) fn supersede_probation(&mut self, app: &str, by: u32) {
        if let Some(p) = self.probations.remove(app) {
            let note = format!("superseded by v{by}");
            let _ = self.store.set_release_probation(app, p.version, &note);
        }
    }

    /// An instance of the dyno `key` ended, however: its reports no longer count.
    pub(super) fn probation_dyno_gone(&mut self, key: &DynoKey) {
        if let Some(p) = self.probations.get_mut(&key.0) {
            p.dyno_gone(&key.1);
        }
    }

    /// A dyno crashed: counts against its release's probation, and rolls back past the budget.
    pub(super) fn probation_crash(&mut self, key: &DynoKey, release: u32) {
        let Some(ptype) = self.dynos.get(key).map(|d| d.ptype.clone()) else {
            return;
        };
        let budget = match self.apps.get(&key.0) {
            Some(c) => c.policy.crash_budget(&ptype),
            None => return,
        };
        let Some(p) = self.probations.get_mut(&key.0) else {
            return;
        };
        let Some(why) = p.on_crash(&ptype, release, budget, Instant::now()) else {
            return;
        };
        let version = p.version;
        self.probation_failed(&key.0, version, &why);
    }

    /// A dyno of `key` reported its health (a change): an `error`, or a `blocked`/`waiting`
    /// past its type's check window, counts against its release's probation.
    pub(super) fn probation_report(&mut self, key: &DynoKey, health: &DynoHealth) {
        let Some(d) = self.dynos.get(key) else {
            return;
        };
        let (ptype, release) = (d.ptype.clone(), d.release);
        let Some(cache) = self.apps.get(&key.0) else {
            return;
        };
        let budget = cache.policy.crash_budget(&ptype);
        let window = cache.checks.get(&ptype).and_then(|cs| {
            cs.iter()
                .find(|c| c.kind == super::health::CheckKind::Reported)
                .map(|c| c.timeout)
        });
        let Some(p) = self.probations.get_mut(&key.0) else {
            return;
        };
        let report = Report {
            dyno: &key.1,
            ptype: &ptype,
            release,
            health,
            window,
        };
        let Some(why) = p.on_report(&report, budget, Instant::now()) else {
            return;
        };
        let version = p.version;
        self.probation_failed(&key.0, version, &why);
    }

    /// Release `version` of `app` failed its probation because of `why`: marked, told, and
    /// rolled back to the last release that succeeded.
    fn probation_failed(&mut self, app: &str, version: u32, why: &str) {
        self.probations.remove(app);
        let app = app.to_string();
        let note = format!("rolled back: {why}");
        let _ = self.store.set_release_status(&app, version, "rolled-back");
        let _ = self.store.set_release_probation(&app, version, &note);
        let msg = format!("Release v{version} failed its probation: {why}; rolling back");
        tracing::warn!(app, version, "{msg}");
        self.logs.system(&app, "roboku", msg.clone());
        self.event(
            Door::Agent,
            Some(&app),
            &format!("probation v{version}"),
            &msg,
        );
        let reason = format!("automatic: {why} of v{version}");
        if let Err(e) = self.rollback_because(&app, &reason) {
            let msg = format!("automatic rollback of v{version} failed: {e}");
            self.logs.system(&app, "roboku", msg.clone());
            self.event(Door::Agent, Some(&app), "rollback", &msg);
        }
    }

    /// Windows that ended: the release passed. Reports stuck past their window: failures.
    pub(super) fn probation_timers(&mut self, now: Instant) {
        let apps: Vec<String> = self.probations.keys().cloned().collect();
        for app in apps {
            let Some(policy) = self.apps.get(&app).map(|c| c.policy.clone()) else {
                continue;
            };
            let Some(p) = self.probations.get_mut(&app) else {
                continue;
            };
            if let Some(why) = p.on_tick(now, |t| policy.crash_budget(t)) {
                let version = p.version;
                self.probation_failed(&app, version, &why);
            }
        }
        let passed: Vec<(String, u32)> = self
            .probations
            .iter()
            .filter(|(_, p)| p.passed(now))
            .map(|(a, p)| (a.clone(), p.version))
            .collect();
        for (app, version) in passed {
            self.probations.remove(&app);
            let _ = self.store.set_release_probation(&app, version, "passed");
            let msg = format!("Release v{version} passed its probation");
            self.logs.system(&app, "roboku", msg.clone());
            self.event(
                Door::Agent,
                Some(&app),
                &format!("probation v{version}"),
                &msg,
            );
        }
    }

    pub(super) fn probation_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.probations
            .values()
            .flat_map(|p| std::iter::once(p.until).chain(p.next_stuck()))
    }
}

/// `worker.1 reported error: x (in probation: worker failed 3 times, budget 2)`.
fn failed(what: &str, ptype: &str, n: u32, budget: u32) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{what} (in probation: {ptype} failed {n} time{s}, budget {budget})")
}

fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 120.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{secs:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crash_past_the_budget_of_one_type_rolls_back() {
        let t0 = Instant::now();
        let mut p = Probation::new(2, t0 + Duration::from_secs(600));
        assert_eq!(p.on_crash("worker", 2, 2, t0), None);
        assert_eq!(p.on_crash("web", 2, 2, t0), None, "counted per type");
        assert_eq!(p.on_crash("worker", 2, 2, t0), None);
        assert_eq!(
            p.on_crash("worker", 2, 2, t0).as_deref(),
            Some("worker crashed 3 times in probation (budget 2)")
        );
        let mut strict = Probation::new(2, t0 + Duration::from_secs(1));
        assert_eq!(
            strict.on_crash("web", 2, 0, t0).as_deref(),
            Some("web crashed 1 time in probation (budget 0)")
        );
    }

    fn health(status: HealthStatus, message: &str) -> DynoHealth {
        DynoHealth {
            status,
            message: message.into(),
            at: 1,
        }
    }

    fn report<'a>(h: &'a DynoHealth, release: u32, window: Option<Duration>) -> Report<'a> {
        Report {
            dyno: "worker.1",
            ptype: "worker",
            release,
            health: h,
            window,
        }
    }

    #[test]
    fn reported_errors_count_against_the_budget_with_the_dynos_message() {
        let t0 = Instant::now();
        let mut p = Probation::new(2, t0 + Duration::from_secs(600));
        let err = health(HealthStatus::Error, "lidar lost");
        let okay = health(HealthStatus::Okay, "");
        assert_eq!(p.on_report(&report(&err, 2, None), 1, t0), None);
        assert_eq!(p.on_report(&report(&okay, 2, None), 1, t0), None);
        assert_eq!(
            p.on_crash("worker", 2, 1, t0).as_deref(),
            Some("worker crashed 2 times in probation (budget 1)"),
            "a crash shares the count"
        );
        let mut fresh = Probation::new(2, t0 + Duration::from_secs(600));
        assert_eq!(fresh.on_crash("worker", 2, 1, t0), None);
        assert_eq!(
            fresh.on_report(&report(&err, 2, None), 1, t0).as_deref(),
            Some("worker.1 reported error: lidar lost (in probation: worker failed 2 times, budget 1)")
        );
        // Another release's dyno, or after the window: nothing.
        let mut p = Probation::new(2, t0 + Duration::from_secs(10));
        assert_eq!(p.on_report(&report(&err, 1, None), 0, t0), None);
        assert_eq!(
            p.on_report(&report(&err, 2, None), 0, t0 + Duration::from_secs(10)),
            None
        );
    }

    #[test]
    fn blocked_past_the_check_window_is_a_failure_and_okay_clears_it() {
        let t0 = Instant::now();
        let w = Some(Duration::from_secs(30));
        let mut p = Probation::new(2, t0 + Duration::from_secs(600));
        let blocked = health(HealthStatus::Blocked, "mission 4");
        // Without a `reported` check, blocked is not judged.
        assert_eq!(p.on_report(&report(&blocked, 2, None), 0, t0), None);
        assert_eq!(p.next_stuck(), None);
        assert_eq!(p.on_report(&report(&blocked, 2, w), 0, t0), None);
        assert_eq!(p.next_stuck(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(p.on_tick(t0 + Duration::from_secs(29), |_| 0), None);
        // okay in time: cleared.
        let okay = health(HealthStatus::Okay, "");
        assert_eq!(p.on_report(&report(&okay, 2, w), 0, t0), None);
        assert_eq!(p.next_stuck(), None);
        // blocked again, and past the window: the budget of 0 is exceeded.
        let waiting = health(HealthStatus::Waiting, "no fix");
        assert_eq!(p.on_report(&report(&waiting, 2, w), 0, t0), None);
        assert_eq!(
            p.on_tick(t0 + Duration::from_secs(30), |_| 0).as_deref(),
            Some(
                "worker.1 reported waiting: no fix for more than 30.0s \
                 (in probation: worker failed 1 time, budget 0)"
            )
        );
        assert_eq!(p.next_stuck(), None);
    }

    #[test]
    fn a_dyno_gone_while_blocked_does_not_fail_the_release_nor_count_twice() {
        let t0 = Instant::now();
        let w = Some(Duration::from_secs(30));
        let past = t0 + Duration::from_secs(31);
        let waiting = health(HealthStatus::Waiting, "no fix");
        // Stopped or scaled away while waiting: nothing is counted at the window's end.
        let mut p = Probation::new(2, t0 + Duration::from_secs(600));
        assert_eq!(p.on_report(&report(&waiting, 2, w), 0, t0), None);
        p.dyno_gone("worker.1");
        assert_eq!(p.next_stuck(), None);
        assert_eq!(p.on_tick(past, |_| 0), None);
        // Crashed while waiting: one failure (the crash), not two.
        let mut p = Probation::new(2, t0 + Duration::from_secs(600));
        assert_eq!(p.on_report(&report(&waiting, 2, w), 1, t0), None);
        p.dyno_gone("worker.1");
        assert_eq!(p.on_crash("worker", 2, 1, t0), None, "1 of a budget of 1");
        assert_eq!(p.on_tick(past, |_| 1), None, "the report went with it");
        // Another dyno's report is kept.
        let mut p = Probation::new(2, t0 + Duration::from_secs(600));
        assert_eq!(p.on_report(&report(&waiting, 2, w), 0, t0), None);
        p.dyno_gone("worker.2");
        assert!(p.on_tick(past, |_| 0).is_some());
    }

    #[test]
    fn crashes_of_other_releases_or_after_the_window_do_not_count() {
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(10);
        let mut p = Probation::new(2, until);
        for _ in 0..5 {
            assert_eq!(
                p.on_crash("worker", 1, 0, t0),
                None,
                "an old release's dyno"
            );
            assert_eq!(p.on_crash("worker", 2, 0, until), None, "after the window");
        }
        assert!(!p.passed(until - Duration::from_millis(1)));
        assert!(p.passed(until));
    }
}

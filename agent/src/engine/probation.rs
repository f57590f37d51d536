//! Probation: the window after a release is committed during which crashes count against it.
//! A process type crashing more often than its budget (`app.json` `roboku.probation`) rolls the
//! app back to the release before by itself; the bad release is marked `rolled-back` with why
//! (in `releases`, the events and the app's logs). A release through its window is marked
//! `passed`; later crashes are ordinary crashes (restarted with backoff, never rolled back).
//!
//! The counting is pure ([`Probation`]); the engine part below starts, feeds and ends it.
//! Probation lives in memory: a robokud restarted during one does not resume it (the release
//! stays marked `watching`).

use super::command::Door;
use super::dyno::DynoKey;
use super::Engine;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Probation {
    pub version: u32,
    pub until: Instant,
    crashes: BTreeMap<String, u32>,
}

impl Probation {
    pub fn new(version: u32, until: Instant) -> Probation {
        Probation {
            version,
            until,
            crashes: BTreeMap::new(),
        }
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
        let n = self.crashes.entry(ptype.to_string()).or_insert(0);
        *n += 1;
        (*n > budget).then(|| {
            format!(
                "{ptype} crashed {n} time{} in probation (budget {budget})",
                if *n == 1 { "" } else { "s" }
            )
        })
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
        self.probations.remove(&key.0);
        let app = key.0.clone();
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

    /// Windows that ended: the release passed.
    pub(super) fn probation_timers(&mut self, now: Instant) {
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
        self.probations.values().map(|p| p.until)
    }
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

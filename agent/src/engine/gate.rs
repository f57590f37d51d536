//! A rollout's health gate, pure: what the rollout of one release decides when something happens
//! (its release command exits, a dyno passes or fails its checks, a dyno crashes, the dynos
//! change, time passes). Tested without processes; `rollout.rs` feeds it events and carries out
//! its verdicts (starting dynos, committing, restoring the previous release).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The `release:` process is running (this instance; 0 when it could not start).
    ReleasePhase { instance: u64, pid: i32 },
    /// Dynos are being started on the new release and checked.
    Starting,
}

/// A dyno the formation wants, as the gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    pub name: &'a str,
    pub release: u32,
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The release command of `instance` ended; `how` says how for people ("exited with code 1").
    ReleaseCommandExited {
        instance: u64,
        ok: bool,
        how: String,
    },
    /// This dyno (on the new release, current instance) passed its checks.
    Healthy(String),
    /// This dyno failed its checks.
    Unhealthy { dyno: String, why: String },
    /// A dyno of `release` crashed.
    Crashed {
        dyno: String,
        release: u32,
        reason: String,
    },
    /// The dynos changed (started, switched): see whether every wanted one is through.
    Check,
    /// The clock, for the deadline.
    Tick(Instant),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do yet (or the event was not about this rollout).
    Wait,
    /// The release command succeeded: move the dynos onto the new release.
    Switch,
    /// Every wanted dyno runs the new release and passed its checks.
    Commit,
    /// The release is not good, for this reason.
    Fail(String),
}

#[derive(Debug, Clone)]
pub struct Gate {
    pub version: u32,
    pub previous: Option<u32>,
    pub phase: Phase,
    pub started: Instant,
    pub timeout: Duration,
    healthy: BTreeSet<String>,
}

impl Gate {
    pub fn new(
        version: u32,
        previous: Option<u32>,
        phase: Phase,
        started: Instant,
        timeout: Duration,
    ) -> Gate {
        Gate {
            version,
            previous,
            phase,
            started,
            timeout,
            healthy: BTreeSet::new(),
        }
    }

    /// Whether dyno `name` passed its checks in this rollout.
    pub fn passed(&self, name: &str) -> bool {
        self.healthy.contains(name)
    }

    /// What `event` means for the rollout, given the dynos the formation wants now.
    pub fn on(&mut self, event: Event, wanted: &[Wanted<'_>]) -> Verdict {
        match (event, self.phase) {
            (
                Event::ReleaseCommandExited { instance, ok, how },
                Phase::ReleasePhase { instance: i, .. },
            ) if i == instance => {
                if ok {
                    self.phase = Phase::Starting;
                    Verdict::Switch
                } else {
                    Verdict::Fail(format!("the release command {how}"))
                }
            }
            (Event::Healthy(dyno), _) => {
                self.healthy.insert(dyno);
                self.through(wanted)
            }
            (Event::Unhealthy { dyno, why }, _) => {
                Verdict::Fail(format!("{dyno} is not healthy: {why}"))
            }
            (
                Event::Crashed {
                    dyno,
                    release,
                    reason,
                },
                Phase::Starting,
            ) if release == self.version => {
                Verdict::Fail(format!("{dyno} crashed while starting: {reason}"))
            }
            (Event::Check, _) => self.through(wanted),
            (Event::Tick(now), phase) if now >= self.started + self.timeout => {
                let waiting: Vec<&str> = match phase {
                    Phase::ReleasePhase { .. } => vec!["the release command"],
                    Phase::Starting => wanted
                        .iter()
                        .filter(|d| !self.healthy.contains(d.name))
                        .map(|d| d.name)
                        .collect(),
                };
                Verdict::Fail(format!(
                    "not healthy within {}s: still waiting for {}",
                    self.timeout.as_secs(),
                    waiting.join(", ")
                ))
            }
            _ => Verdict::Wait,
        }
    }

    /// Commit once the dynos are started and every wanted one is on the new release, up and
    /// checked by this gate (none wanted: nothing to wait for).
    fn through(&self, wanted: &[Wanted<'_>]) -> Verdict {
        let all = wanted
            .iter()
            .all(|d| d.release == self.version && d.up && self.healthy.contains(d.name));
        if self.phase == Phase::Starting && all {
            Verdict::Commit
        } else {
            Verdict::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    fn gate(phase: Phase) -> (Gate, Instant) {
        let t0 = Instant::now();
        (Gate::new(2, Some(1), phase, t0, T), t0)
    }

    fn up(name: &str, release: u32) -> Wanted<'_> {
        Wanted {
            name,
            release,
            up: true,
        }
    }

    #[test]
    fn commits_only_when_every_wanted_dyno_is_new_up_and_checked() {
        let (mut g, _) = gate(Phase::Starting);
        let old = [up("web.1", 2), up("web.2", 1)];
        assert_eq!(
            g.on(Event::Healthy("web.1".into()), &old),
            Verdict::Wait,
            "web.2 is on v1"
        );
        let starting = [
            up("web.1", 2),
            Wanted {
                name: "web.2",
                release: 2,
                up: false,
            },
        ];
        assert_eq!(
            g.on(Event::Check, &starting),
            Verdict::Wait,
            "web.2 is not up"
        );
        let both = [up("web.1", 2), up("web.2", 2)];
        assert_eq!(
            g.on(Event::Check, &both),
            Verdict::Wait,
            "web.2 was not checked"
        );
        assert_eq!(g.on(Event::Healthy("web.2".into()), &both), Verdict::Commit);
    }

    #[test]
    fn no_wanted_dynos_commit_at_once_but_not_during_the_release_command() {
        let (mut g, _) = gate(Phase::Starting);
        assert_eq!(g.on(Event::Check, &[]), Verdict::Commit);
        let (mut g, _) = gate(Phase::ReleasePhase {
            instance: 7,
            pid: 70,
        });
        assert_eq!(g.on(Event::Check, &[]), Verdict::Wait);
    }

    #[test]
    fn the_release_command_switches_or_fails_and_stale_runs_are_ignored() {
        let (mut g, _) = gate(Phase::ReleasePhase {
            instance: 7,
            pid: 70,
        });
        let exit = |instance, ok| Event::ReleaseCommandExited {
            instance,
            ok,
            how: "exited with code 3".into(),
        };
        assert_eq!(
            g.on(exit(6, false), &[]),
            Verdict::Wait,
            "an earlier run's exit"
        );
        assert_eq!(g.on(exit(7, true), &[]), Verdict::Switch);
        assert_eq!(g.phase, Phase::Starting);
        assert_eq!(g.on(exit(7, false), &[]), Verdict::Wait, "already past it");

        let (mut g, _) = gate(Phase::ReleasePhase {
            instance: 7,
            pid: 70,
        });
        assert_eq!(
            g.on(exit(7, false), &[]),
            Verdict::Fail("the release command exited with code 3".into())
        );
    }

    #[test]
    fn crashes_of_the_new_release_fail_it_once_dynos_start() {
        let crash = |release| Event::Crashed {
            dyno: "web.1".into(),
            release,
            reason: "exited with code 1".into(),
        };
        let (mut g, _) = gate(Phase::ReleasePhase {
            instance: 7,
            pid: 70,
        });
        assert_eq!(
            g.on(crash(2), &[]),
            Verdict::Wait,
            "the old dynos still run"
        );
        let (mut g, _) = gate(Phase::Starting);
        assert_eq!(g.on(crash(1), &[]), Verdict::Wait, "an old release's dyno");
        assert_eq!(
            g.on(crash(2), &[]),
            Verdict::Fail("web.1 crashed while starting: exited with code 1".into())
        );
        let unhealthy = Event::Unhealthy {
            dyno: "web.1".into(),
            why: "GET / answered 500".into(),
        };
        assert_eq!(
            g.on(unhealthy, &[]),
            Verdict::Fail("web.1 is not healthy: GET / answered 500".into())
        );
    }

    #[test]
    fn the_deadline_names_what_it_still_waits_for() {
        let (mut g, t0) = gate(Phase::Starting);
        let wanted = [up("web.1", 2), up("worker.1", 2)];
        g.on(Event::Healthy("web.1".into()), &wanted);
        assert_eq!(
            g.on(Event::Tick(t0 + T - Duration::from_millis(1)), &wanted),
            Verdict::Wait
        );
        assert_eq!(
            g.on(Event::Tick(t0 + T), &wanted),
            Verdict::Fail("not healthy within 30s: still waiting for worker.1".into())
        );
        let (mut g, t0) = gate(Phase::ReleasePhase {
            instance: 7,
            pid: 70,
        });
        assert_eq!(
            g.on(Event::Tick(t0 + T), &wanted),
            Verdict::Fail("not healthy within 30s: still waiting for the release command".into())
        );
    }
}

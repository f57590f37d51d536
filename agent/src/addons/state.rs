//! The life of an add-on's server process, pure: `starting -> up -> (crashed -> backoff ->
//! starting)* -> stopping -> stopped`, with the dynos' restart policy (first crash at once, then
//! exponential backoff with jitter, reset after a stable run, never giving up).

use crate::backoff::BackoffPolicy;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Starting,
    Up {
        pid: i32,
    },
    /// Crashed (or could not start); starts again after `delay`.
    Backoff {
        delay: Duration,
    },
    Stopping,
    Stopped,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Up { .. } => "up",
            Phase::Backoff { .. } => "crashed",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
        }
    }
}

/// What `roboku addons` shows of a server.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub phase: Phase,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Machine {
    policy: BackoffPolicy,
    crashes: u32,
    pub status: Status,
}

impl Machine {
    pub fn new(policy: BackoffPolicy) -> Machine {
        Machine {
            policy,
            crashes: 0,
            status: Status {
                phase: Phase::Starting,
                restarts: 0,
                last_exit: None,
            },
        }
    }

    pub fn spawned(&mut self, pid: i32) {
        if self.status.phase == Phase::Starting {
            self.status.phase = Phase::Up { pid };
        }
    }

    /// The process ended (or never started) after `ran_for`: how long to wait before the next
    /// start; `None` when it was being stopped (it stays down).
    pub fn ended(&mut self, why: String, ran_for: Duration, jitter: f64) -> Option<Duration> {
        self.status.last_exit = Some(why);
        if matches!(self.status.phase, Phase::Stopping | Phase::Stopped) {
            self.status.phase = Phase::Stopped;
            return None;
        }
        self.crashes = self.policy.next_count(self.crashes, ran_for);
        let delay = self.policy.delay(self.crashes, jitter);
        self.status.phase = Phase::Backoff { delay };
        Some(delay)
    }

    /// The backoff is over: start again (unless stopping).
    pub fn restart(&mut self) -> bool {
        if !matches!(self.status.phase, Phase::Backoff { .. }) {
            return false;
        }
        self.status.restarts += 1;
        self.status.phase = Phase::Starting;
        true
    }

    /// Stop asked: whether a process is there to be killed.
    pub fn stop(&mut self) -> bool {
        let running = matches!(self.status.phase, Phase::Up { .. });
        self.status.phase = if running {
            Phase::Stopping
        } else {
            Phase::Stopped
        };
        running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(60),
            first_at_once: true,
        }
    }

    #[test]
    fn crashes_restart_at_once_then_back_off_and_never_give_up() {
        let mut m = Machine::new(policy());
        m.spawned(10);
        assert_eq!(m.status.phase, Phase::Up { pid: 10 });
        let short = Duration::from_millis(5);
        assert_eq!(
            m.ended("killed by SIGKILL".into(), short, 0.0),
            Some(Duration::ZERO)
        );
        assert!(m.restart());
        m.spawned(11);
        let d2 = m.ended("x".into(), short, 0.0).unwrap();
        assert!(m.restart());
        let d3 = m.ended("x".into(), short, 0.0).unwrap();
        assert!(d3 > d2 && d2 > Duration::ZERO, "{d2:?} {d3:?}");
        for _ in 0..50 {
            m.restart();
            assert!(m.ended("x".into(), short, 1.0).unwrap() <= Duration::from_secs(10));
        }
        assert_eq!(m.status.restarts, 52);
        assert_eq!(m.status.last_exit.as_deref(), Some("x"));
        // A stable run resets the count: the next crash restarts at once again.
        m.restart();
        assert_eq!(
            m.ended("x".into(), Duration::from_secs(61), 0.5),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_stopped_server_stays_down() {
        let mut m = Machine::new(policy());
        m.spawned(10);
        assert!(m.stop(), "a running process is to be killed");
        assert_eq!(m.status.phase.name(), "stopping");
        assert_eq!(m.ended("terminated".into(), Duration::ZERO, 0.0), None);
        assert_eq!(m.status.phase, Phase::Stopped);
        assert!(!m.restart());
        let mut waiting = Machine::new(policy());
        waiting.ended("could not start".into(), Duration::ZERO, 0.0);
        assert!(!waiting.stop(), "nothing to kill while backing off");
        assert!(!waiting.restart());
    }
}

//! One dyno as the engine tracks it: what it should be doing, what its process is, and the
//! numbers `roboku ps` shows.

use crate::store::DynoRow;
use roboku_wire::{DynoInfo, DynoState, ExitInfo};
use std::collections::BTreeMap;
use std::time::Instant;

/// `(app, dyno name)`.
pub type DynoKey = (String, String);

/// What the engine wants of a dyno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Keep it running (restart it whenever it stops).
    Run,
    /// Stop it and keep the row (`ps:stop`, shutdown).
    Stop,
    /// Stop it and forget it (scaled down, app destroyed).
    Remove,
}

/// The running process of a dyno.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub start_time: Option<u64>,
    /// Relative cgroup path of this instance (`demo/web.1@17`), `None` if not in a cgroup.
    pub cgroup: Option<String>,
    pub instance: u64,
    /// The tag in its environment (`demo/web.1@17`); `None` for one adopted from a record older
    /// than tags.
    pub tag: Option<String>,
    pub started: Instant,
    /// Found running by this agent at start (not spawned by it): its CPU counter covers a life
    /// longer than `started` says, so it needs two samples for a rate.
    pub adopted: bool,
    /// What this process last reported about itself (`roboku health:set`).
    pub health: Option<roboku_wire::gates::DynoHealth>,
}

#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub memory: Option<u64>,
    pub cpu_percent: Option<f64>,
    pub pids: Option<u64>,
    pub oom_kills: u64,
    pub last_cpu: Option<(u64, Instant)>,
    /// Rounds in a row that found the dyno's CPU time unchanged and reused the other readings.
    pub quiet_rounds: u32,
    /// The raw memory charge at the last full read (see `supervise::FULL_EVERY`).
    pub charge: Option<u64>,
    /// Whether this instance was read at all yet (see `supervise::FIRST_READS_PER_ROUND`).
    pub tried: bool,
}

#[derive(Debug, Clone)]
pub struct Dyno {
    pub app: String,
    pub name: String,
    pub ptype: String,
    pub index: u32,
    pub state: DynoState,
    pub want: Want,
    pub release: u32,
    pub port: u16,
    pub proc: Option<Proc>,
    /// The instance being spawned on the blocking pool, until its result arrives.
    pub pending: Option<u64>,
    pub restarts: u32,
    /// Consecutive crashes (drives the backoff; reset by a stable run or a new release).
    pub crashes: u32,
    pub last_exit: Option<ExitInfo>,
    pub retry_at: Option<Instant>,
    pub retry_at_ms: Option<u64>,
    pub stop_deadline: Option<Instant>,
    /// The dyno is being restarted: start it again as soon as it is down.
    pub restart_after_stop: bool,
    pub since: u64,
    pub user: String,
    pub sample: Sample,
    /// OOM kills counted in earlier instances (each instance has a fresh cgroup).
    pub oom_total: u64,
    /// A one-off dyno (`run.N`): outside the formation, never restarted, forgotten when it exits.
    pub one_off: bool,
    /// Held back by the app's start order (`roboku.formation.TYPE.after`): started by
    /// `start_ordered` once the types it waits for are up.
    pub held: bool,
}

impl Dyno {
    /// Down and meant to stay down (`ps:stop`): nothing of it runs or is about to.
    pub fn stays_down(&self) -> bool {
        self.want == Want::Stop && self.proc.is_none() && self.pending.is_none()
    }

    pub fn new(app: &str, ptype: &str, index: u32, port: u16, release: u32, now: u64) -> Dyno {
        Dyno {
            app: app.to_string(),
            name: format!("{ptype}.{index}"),
            ptype: ptype.to_string(),
            index,
            state: DynoState::Starting,
            want: Want::Run,
            release,
            port,
            proc: None,
            pending: None,
            restarts: 0,
            crashes: 0,
            last_exit: None,
            retry_at: None,
            retry_at_ms: None,
            stop_deadline: None,
            restart_after_stop: false,
            since: now,
            user: String::new(),
            sample: Sample::default(),
            oom_total: 0,
            one_off: false,
            held: false,
        }
    }

    pub fn key(&self) -> DynoKey {
        (self.app.clone(), self.name.clone())
    }

    pub fn info(&self) -> DynoInfo {
        DynoInfo {
            name: self.name.clone(),
            ptype: self.ptype.clone(),
            index: self.index,
            state: self.state,
            pid: self.proc.as_ref().map(|p| p.pid as u32),
            port: self.port,
            release: self.release,
            since: self.since,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            next_retry_at: self.retry_at_ms,
            memory_bytes: self.sample.memory,
            cpu_percent: self.sample.cpu_percent,
            pids: self.sample.pids,
            oom_kills: self.oom_total + self.sample.oom_kills,
            user: self.user.clone(),
            health: self.proc.as_ref().and_then(|p| p.health.clone()),
        }
    }

    pub fn row(&self) -> DynoRow {
        DynoRow {
            app: self.app.clone(),
            name: self.name.clone(),
            pid: self.proc.as_ref().map(|p| p.pid),
            pid_start: self.proc.as_ref().and_then(|p| p.start_time),
            cgroup: self.proc.as_ref().and_then(|p| p.cgroup.clone()),
            instance: match (&self.proc, self.pending) {
                (Some(p), _) => p.tag.clone(),
                (None, Some(i)) => Some(instance_tag(&self.key(), i)),
                (None, None) => None,
            },
            release: self.release,
            port: self.port,
            restarts: self.restarts,
            started_at: self.since,
            last_exit: self.last_exit.clone(),
        }
    }
}

/// A dyno's environment: PATH, the slug's `.env`, the release's config vars, then what roboku
/// sets itself (`own`: ROBOKU_DATA, the dyno socket and the add-on vars as attached now; then
/// PORT, DYNO, ROBOKU_APP, ROBOKU_RELEASE, HOME), which nothing overrides.
pub(super) fn dyno_env(
    dotenv: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
    release: &crate::store::ReleaseRow,
    slug_dir: &std::path::Path,
    app: &str,
    name: &str,
    port: u16,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    env.extend(dotenv.clone());
    env.extend(release.config.clone());
    env.extend(own.clone());
    env.insert("PORT".into(), port.to_string());
    env.insert("DYNO".into(), name.to_string());
    env.insert("ROBOKU_APP".into(), app.to_string());
    env.insert("ROBOKU_RELEASE".into(), format!("v{}", release.version));
    env.insert("HOME".into(), slug_dir.display().to_string());
    env
}

/// The tag (and cgroup) of one instance of a dyno: `demo/web.1@17`.
pub fn instance_tag(key: &DynoKey, instance: u64) -> String {
    format!("{}/{}@{instance}", key.0, key.1)
}

/// Splits `web.2` into `("web", 2)`.
pub fn parse_name(name: &str) -> Option<(&str, u32)> {
    let (ptype, idx) = name.rsplit_once('.')?;
    let idx: u32 = idx.parse().ok()?;
    (idx >= 1 && !ptype.is_empty()).then_some((ptype, idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("web.2"), Some(("web", 2)));
        assert_eq!(parse_name("my.worker.10"), Some(("my.worker", 10)));
        assert_eq!(parse_name("web"), None);
        assert_eq!(parse_name("web.0"), None);
        assert_eq!(parse_name(".1"), None);
    }
}

//! Wire types shared by `robokud` (the agent) and `roboku` (the CLI).
//!
//! This crate is the one place where the local API's requests, responses and errors are written
//! down. It holds data only: no IO, no validation beyond what serde does. Times on the wire are
//! unix milliseconds (`u64`), sizes are bytes, CPU is in cores (0.5 = half a core).
//!
//! Routes (HTTP/1.1 + JSON over the unix socket, all under `/v1`):
//!
//! | method + path                              | request            | response                 |
//! |--------------------------------------------|--------------------|--------------------------|
//! | GET    /v1/status                          |                    | [`Status`]               |
//! | GET    /v1/disk                            |                    | [`DiskReport`]           |
//! | GET    /v1/doctor                          |                    | [`doctor::DoctorFacts`]  |
//! | GET    /v1/apps                            |                    | `Vec<AppInfo>`           |
//! | POST   /v1/apps                            | [`CreateApp`]      | [`AppInfo`]              |
//! | GET    /v1/apps/{app}                      |                    | [`AppInfo`]              |
//! | PATCH  /v1/apps/{app}                      | [`UpdateApp`]      | [`AppInfo`]              |
//! | DELETE /v1/apps/{app}?confirm={app}        |                    | [`Done`]                 |
//! | POST   /v1/apps/{app}/rename               | [`RenameApp`]      | [`Renamed`]              |
//! | POST   /v1/apps/{app}/deploy               | [`DeployRequest`]  | [`ReleaseInfo`]          |
//! | GET    /v1/apps/{app}/ps                   |                    | `Vec<DynoInfo>`          |
//! | GET    /v1/apps/{app}/formation            |                    | `Vec<FormationEntry>`    |
//! | POST   /v1/apps/{app}/scale                | [`ScaleRequest`]   | `Vec<FormationEntry>`    |
//! | POST   /v1/apps/{app}/resize               | [`ResizeRequest`]  | `Vec<FormationEntry>`    |
//! | POST   /v1/apps/{app}/restart              | [`TargetRequest`]  | [`Done`]                 |
//! | POST   /v1/apps/{app}/stop                 | [`TargetRequest`]  | [`Done`]                 |
//! | GET    /v1/apps/{app}/config               |                    | `BTreeMap<String,String>`|
//! | PATCH  /v1/apps/{app}/config               | [`ConfigChange`]   | [`ConfigChanged`]        |
//! | GET    /v1/apps/{app}/releases             |                    | `Vec<ReleaseInfo>`       |
//! | POST   /v1/apps/{app}/rollback             | [`RollbackRequest`]| [`ReleaseInfo`]          |
//! | POST   /v1/apps/{app}/run                  | [`RunRequest`]     | upgrade ([`attach`]), or [`Done`] detached |
//! | GET    /v1/apps/{app}/logs?n=&tail=&dyno=&source= |             | JSON lines of [`LogLine`]|
//! | GET    /v1/events?app=&n=                  |                    | `Vec<EventInfo>`         |
//!
//! Log drains: see [`drains`].
//!
//! Every error is `{"error": {"code", "message"}}` ([`ErrorBody`]) with a matching HTTP status.

pub mod addons;
pub mod attach;
pub mod bundle;
#[cfg(feature = "delta")]
pub mod delta;
pub mod doctor;
pub mod drains;
pub mod fleet;
pub mod gates;
pub mod procfile;
pub mod usage;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API version prefix of every route.
pub const API_PREFIX: &str = "/v1";

/// Header that names the door a request came through (`cli`, `api`, `mqtt`, `git`), recorded in events.
pub const DOOR_HEADER: &str = "x-roboku-door";

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ApiError,
}

/// A machine-readable `code` plus a message a person can act on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiError {
    /// One of the `code` constants in [`codes`].
    pub code: String,
    pub message: String,
}

/// Error codes and the HTTP status each goes with.
pub mod codes {
    /// 400: the request was malformed (bad JSON, bad scale spec, bad limit value, bad Procfile).
    pub const BAD_REQUEST: &str = "bad_request";
    /// 404: the app, dyno, release or route does not exist.
    pub const NOT_FOUND: &str = "not_found";
    /// 409: the request conflicts with the current state (app exists, confirmation mismatch).
    pub const CONFLICT: &str = "conflict";
    /// 422: the app's own files are wrong (malformed Procfile, .env).
    pub const INVALID_APP: &str = "invalid_app";
    /// 422: the new release did not become healthy; the previous one was restored.
    pub const DEPLOY_FAILED: &str = "deploy_failed";
    /// 500: the agent failed (disk, store, cgroup); the message says which path and operation.
    pub const INTERNAL: &str = "internal";
    /// 503: the agent is shutting down.
    pub const UNAVAILABLE: &str = "unavailable";
    /// 409: the app's apply gates stayed closed until the change's time limit (see [`gates`]).
    pub const GATE_CLOSED: &str = "gate_closed";
}

/// `GET /v1/dashboard` (unix socket): where the dashboard listens and the token that unlocks its
/// mutating routes, logs and config (`roboku dashboard:url`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DashboardInfo {
    /// `http://127.0.0.1:7070/`
    pub url: String,
    pub token: String,
    /// Bound to a loopback address only.
    pub loopback: bool,
}

/// A plain acknowledgement for requests with nothing else to say.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Done {
    pub message: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub data_dir: String,
    pub socket: String,
    pub started_at: u64,
    /// How limits are enforced on this host.
    pub cgroup: CgroupStatus,
    /// The user dynos run as by default (`root` only when asked, or when the agent is not root).
    pub dyno_user: String,
    /// Why dynos cannot run as `dyno_user` on this host, if they cannot.
    pub dyno_user_note: Option<String>,
    pub apps: usize,
    pub dynos_running: usize,
    pub dynos_desired: usize,
    /// Resident memory of the agent itself, bytes.
    pub agent_rss: u64,
    /// Whether the clock is trusted, and the rule signed payloads are judged by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockStatus>,
}

/// The clock as robokud judges it (docs/offline.md, "Clocks that cannot be trusted").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClockStatus {
    /// `false`: unsynchronised, or behind the last trusted time or the build date.
    pub trusted: bool,
    /// The kernel's NTP state (`None`: unknown).
    pub synced: Option<bool>,
    /// The wall clock, unix ms.
    pub wall_ms: u64,
    /// What signed payloads' expiry is judged against, unix ms.
    pub judged_ms: u64,
    /// The wall clock last seen while synchronised, unix ms.
    pub last_trusted_ms: Option<u64>,
    /// The rule in force, in one sentence.
    pub rule: String,
    /// Why the clock is untrusted.
    pub reason: Option<String>,
    /// The test knob's spec when the clock is pretended (`--test-clock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_knob: Option<String>,
}

/// Which cgroup hierarchy is in use and whether limits are enforced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CgroupStatus {
    /// `v1`, `v2` or `none`.
    pub mode: String,
    /// The root of roboku's subtree (v2) or its name inside each v1 hierarchy.
    pub root: String,
    pub enforced: bool,
    /// When not enforced: why, and what to do about it.
    pub reason: Option<String>,
    /// How dynos join their cgroups: `fast (favordynmods, <mount>)` or `slow: <why>` (a join
    /// after an idle spell waits an RCU grace period). None from agents that do not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joins: Option<String>,
}

/// `POST /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateApp {
    pub name: String,
}

/// `PATCH /v1/apps/{app}`: per-app settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpdateApp {
    /// The user this app's dynos run as (`root` must be asked for explicitly).
    pub user: Option<String>,
    /// Seconds between SIGTERM and killing the dyno's whole cgroup.
    pub grace_secs: Option<u64>,
    /// Buildpacks in order: built-in names (`python`, `nodejs`, `procfile`) or absolute paths to
    /// Heroku classic buildpacks. An empty list goes back to detecting among the built-ins.
    #[serde(default)]
    pub buildpacks: Option<Vec<String>>,
    /// Snapshot the app's data when a release replaces another (`data:snapshots on|off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_snapshots: Option<bool>,
}

/// `user nav, grace 10s, buildpacks python, nodejs` (what changed), for the audit trail.
impl std::fmt::Display for UpdateApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user {u}"));
        }
        if let Some(g) = self.grace_secs {
            parts.push(format!("grace {g}s"));
        }
        match &self.buildpacks {
            Some(b) if b.is_empty() => parts.push("buildpacks detected".into()),
            Some(b) => parts.push(format!("buildpacks {}", b.join(", "))),
            None => {}
        }
        if let Some(on) = self.data_snapshots {
            parts.push(format!("data snapshots {}", if on { "on" } else { "off" }));
        }
        match parts.is_empty() {
            true => f.write_str("nothing changed"),
            false => f.write_str(&parts.join(", ")),
        }
    }
}

/// `POST /v1/apps/{app}/rename`: the app's new name (checked as `POST /v1/apps` checks one).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RenameApp {
    pub name: String,
}

/// The answer to a rename: the app under its new name and what moved with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Renamed {
    /// The old name (no app has it any more).
    pub from: String,
    pub app: AppInfo,
    /// The app's push-to-deploy repository at its new path, when it has one (`git:init`). The
    /// old path no longer exists: remotes pointing there must be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_repository: Option<String>,
    /// Dynos started again under the new name (its cgroups, logs and `ROBOKU_APP`).
    pub dynos_restarted: usize,
    /// What could not be moved (the rename itself stands), for a person to act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One app as `roboku apps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppInfo {
    pub name: String,
    pub created_at: u64,
    /// Current release version, if anything has been deployed.
    pub release: Option<u32>,
    pub user: String,
    /// The uid and gid its dynos and builds run as (none when robokud is not root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    pub grace_secs: u64,
    /// Buildpacks named for this app (empty: detect among the built-ins).
    #[serde(default)]
    pub buildpacks: Vec<String>,
    pub dynos_running: usize,
    pub dynos_desired: usize,
    /// The stable port of the app's web router (connections go to its healthy web dynos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_port: Option<u16>,
    /// Why the router is not running, when it should be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_error: Option<String>,
    /// Changes waiting for the app's apply gates: `waiting for gate mission-idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Whether its data is snapshotted per release (`data:snapshots`; default on).
    #[serde(default = "yes")]
    pub data_snapshots: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/apps/{app}/deploy`: a directory (or `.tar.gz`) on the robot's filesystem holding a
/// Procfile. The CLI makes the path absolute before sending it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployRequest {
    pub source: String,
    /// Free text recorded on the release ("Deploy <source>" when empty).
    #[serde(default)]
    pub description: Option<String>,
    /// Build with the buildpacks release vN was built with, git buildpacks at the commits it
    /// pinned, instead of the app's current buildpacks (`deploy --buildpacks-of vN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpacks_of: Option<u32>,
}

/// A buildpack a release was built with: as the app named it (`python`, `/srv/pack`,
/// `https://github.com/org/pack#main`) and, for a git buildpack, the commit it was at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseBuildpack {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Resource limits for one process type. `None` means unlimited / host default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Hard memory limit in bytes (OOM kill above it).
    pub memory_max: Option<u64>,
    /// Soft memory limit in bytes (reclaim pressure above it; v2 only, v1 soft limit).
    pub memory_high: Option<u64>,
    /// CPU quota in cores (0.5 = half a core).
    pub cpu: Option<f64>,
    /// Maximum number of tasks (processes + threads) in the dyno's cgroup.
    pub pids: Option<u64>,
    /// CPUs the dyno may run on, in kernel list syntax (`0-1,3`).
    pub cpuset: Option<String>,
    /// Nice value for the dyno's processes (-20..19).
    pub nice: Option<i32>,
    /// Extra supplementary groups of the dyno's processes, by name (device access on a robot:
    /// `dialout` for serial ports, `video` for cameras...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Real-time scheduling of the dyno's processes: `fifo:PRIO` or `rr:PRIO` (PRIO 1..99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt: Option<String>,
}

/// A real-time policy as `Limits::rt` spells it: `fifo:10`, `rr:5`. The error says what is
/// wrong and what is expected.
pub fn parse_rt(text: &str) -> Result<(RtPolicy, u8), String> {
    let bad =
        || format!("bad real-time policy {text:?}: expected fifo:PRIO or rr:PRIO, PRIO 1..99");
    let (policy, prio) = text.split_once(':').ok_or_else(bad)?;
    let policy = match policy {
        "fifo" => RtPolicy::Fifo,
        "rr" => RtPolicy::Rr,
        _ => return Err(bad()),
    };
    let prio: u8 = prio.parse().map_err(|_| bad())?;
    if !(1..=99).contains(&prio) {
        return Err(bad());
    }
    Ok((policy, prio))
}

/// SCHED_FIFO or SCHED_RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtPolicy {
    Fifo,
    Rr,
}

/// `memory 64M, memory-high 48M, cpu 0.5, pids 64, cpuset 0-1, nice 5`, or `no limits`: how
/// people (ps, events) see limits.
impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            self.memory_max
                .map(|m| format!("memory {}", human_bytes(m))),
            self.memory_high
                .map(|m| format!("memory-high {}", human_bytes(m))),
            self.cpu.map(|c| format!("cpu {c}")),
            self.pids.map(|p| format!("pids {p}")),
            self.cpuset.as_ref().map(|c| format!("cpuset {c}")),
            self.nice.map(|n| format!("nice {n}")),
            self.groups
                .as_ref()
                .map(|g| format!("groups {}", g.join(","))),
            self.rt.as_ref().map(|r| format!("rt {r}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        match parts.is_empty() {
            true => f.write_str("no limits"),
            false => f.write_str(&parts.join(", ")),
        }
    }
}

/// `msg` without the ` (os error N)` that Rust appends to OS errors: people read the words
/// (`Permission denied`), and every message that reaches them names the path as well.
pub fn in_words(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" (os error ") {
        let tail = &rest[i + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Unix ms as ISO-8601 UTC with milliseconds: `2026-11-29T22:10:03.123Z` (also RFC 3339, as
/// RFC 5424 syslog wants it). The one formatter agent and CLI share.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `GET /v1/disk`: what uses the data dir, the reserve, what slug GC would free.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskReport {
    pub data_dir: String,
    /// Bytes of the data filesystem: total, free, kept free by `disk_reserve`.
    pub total: u64,
    pub free: u64,
    pub reserve: String,
    pub reserved: u64,
    pub rows: Vec<DiskRow>,
    /// Unreferenced slugs a collection would remove, and their bytes.
    pub gc_slugs: u32,
    pub gc_bytes: u64,
}

/// One thing using space: `what` (`slug`, `rollback slugs`, `build cache`, `logs`, `data`,
/// `data snapshots`, `delta bases`, `store`, `tmp`, `ballast`, `other`), per app when it is an
/// app's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskRow {
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub bytes: u64,
}

/// A byte count as people read it: `512B`, `1.5K`, `64M`, `2.3G` (binary units, one decimal
/// unless it is whole). The one formatter agent and CLI share.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n}B");
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{}", UNITS[unit])
}

/// One process type's row of the formation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FormationEntry {
    pub ptype: String,
    /// The command from the current release's Procfile (`None` if the type is not in it).
    pub command: Option<String>,
    pub count: u32,
    pub limits: Limits,
    /// False when this host cannot enforce limits (no cgroups): they are stored, not applied.
    pub limits_enforced: bool,
}

/// `POST /v1/apps/{app}/scale`: `web=3 worker=1` as a map.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScaleRequest {
    pub counts: BTreeMap<String, u32>,
}

/// `POST /v1/apps/{app}/resize`: set limits of one process type. Fields left `None` are kept;
/// names in `clear` (`memory_max`, `memory_high`, `cpu`, `pids`, `cpuset`, `nice`) are reset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResizeRequest {
    pub ptype: String,
    pub limits: Limits,
    #[serde(default)]
    pub clear: Vec<String>,
}

/// `POST /v1/apps/{app}/restart` and `/stop`: a process type (`web`), a dyno (`web.2`) or,
/// when `None`, every dyno of the app.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetRequest {
    pub target: Option<String>,
}

/// Where a dyno is in its life.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DynoState {
    Starting,
    Up,
    Crashed,
    Backoff,
    Stopping,
    Down,
}

impl DynoState {
    pub fn as_str(self) -> &'static str {
        match self {
            DynoState::Starting => "starting",
            DynoState::Up => "up",
            DynoState::Crashed => "crashed",
            DynoState::Backoff => "backoff",
            DynoState::Stopping => "stopping",
            DynoState::Down => "down",
        }
    }
}

/// How a dyno's process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    pub at: u64,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Killed by the kernel's OOM killer inside the dyno's cgroup (R14/R15).
    pub oom: bool,
    /// A short human description: `exit 1`, `killed by SIGKILL`, `OOM-killed (memory limit 64M)`.
    pub reason: String,
}

/// One dyno as `roboku ps` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DynoInfo {
    /// `web.1`
    pub name: String,
    pub ptype: String,
    pub index: u32,
    pub state: DynoState,
    pub pid: Option<u32>,
    pub port: u16,
    pub release: u32,
    /// When the current process started (or the state was entered, for non-running states).
    pub since: u64,
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    /// When a dyno in backoff will be started again.
    pub next_retry_at: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// CPU use over the last sampling interval, percent of one core.
    pub cpu_percent: Option<f64>,
    pub pids: Option<u64>,
    pub oom_kills: u64,
    pub user: String,
    /// What the dyno last reported about itself (`roboku health:set`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<gates::DynoHealth>,
}

/// `PATCH /v1/apps/{app}/config`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfigChange {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

/// The answer to `PATCH /v1/apps/{app}/config`: the new config, and the release it made
/// (`None` before the first deploy: the vars wait for it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigChanged {
    pub config: BTreeMap<String, String>,
    pub release: Option<ReleaseInfo>,
    /// The change changed nothing (unsetting an absent var, setting a var to its value): no
    /// release was made.
    #[serde(default)]
    pub unchanged: bool,
}

/// One release as `roboku releases` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseInfo {
    pub version: u32,
    pub created_at: u64,
    pub description: String,
    /// sha256 of the slug.
    pub slug: String,
    /// Process types and commands of this release.
    pub process_types: BTreeMap<String, String>,
    /// Config var names of this release (values via `roboku config`).
    pub config_keys: Vec<String>,
    pub current: bool,
    /// `succeeded` or `failed`.
    pub status: String,
    pub door: String,
    /// The fleet artifact this release's slug was built from (a config change or rollback keeps
    /// its release's). Releases older than the field know only the sha256 (url empty, size 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<fleet::Artifact>,
    /// After the switch: `watching`, `passed`, `rolled back: <why>` or `superseded by vN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<String>,
    /// The buildpacks its slug was built with, in order (empty: detected among the built-ins);
    /// `None` when not known (a prebuilt slug, or a release older than the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildpacks: Option<Vec<ReleaseBuildpack>>,
}

/// `POST /v1/apps/{app}/deploy/plan` (a [`DeployRequest`]): what that deploy would do, computed
/// without applying anything (the slug is built in a scratch directory and thrown away).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployPlan {
    pub app: String,
    /// The release running now, and the one the deploy would cut.
    pub current: Option<u32>,
    pub next_version: u32,
    /// sha256 of the slug the deploy would release; whether it differs from the current one's.
    pub slug: String,
    pub code_changed: bool,
    pub types_added: Vec<String>,
    pub types_removed: Vec<String>,
    /// Process types whose command changes.
    pub types_changed: Vec<String>,
    /// The Procfile's `release:` command, run before any dyno switches.
    pub release_command: Option<String>,
    /// What happens to each dyno, in order.
    pub dynos: Vec<PlannedDyno>,
    /// Disk the new slug takes (0 when the slug store has it already).
    pub disk_bytes: u64,
    /// The probation the release would be on, seconds (0: none).
    pub probation_secs: u64,
    /// The slug of the release running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_slug: Option<String>,
    /// Files of the new slug against the running one's (when the code changed and the
    /// running slug is on disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesDiff>,
}

/// What differs between two slug trees, by path: a file, link or dir that is new, gone, or
/// different (contents, mode or link target).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FilesDiff {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// The first paths of each, `+ path`, `- path`, `~ path` (at most [`FilesDiff::SAMPLE`]).
    pub sample: Vec<String>,
}

impl FilesDiff {
    pub const SAMPLE: usize = 20;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlannedDyno {
    pub name: String,
    /// `start`, `restart` or `stop`.
    pub action: String,
    /// For a restart: `preboot` or `stop-then-start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// For a start or restart: the types it waits for (`roboku.formation.TYPE.after`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// `POST /v1/apps/{app}/rollback`: to `version`, or the release before the current one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RollbackRequest {
    pub version: Option<u32>,
    /// Bring that release's data snapshot back too: the app's dynos stop, its data dir is
    /// swapped for the snapshot (the data it had is kept as the current release's), then it
    /// starts on the rollback release.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_data: bool,
}

/// `POST /v1/apps/{app}/run`: ask for everything needed to run a one-off dyno.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRequest {
    pub command: Vec<String>,
    /// `run:detached`: output goes to the logs, the answer comes at once.
    #[serde(default)]
    pub detached: bool,
    /// Attached with a terminal of this size (rows, columns): the dyno gets a pty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<(u16, u16)>,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The dyno's own stdout/stderr.
    App,
    /// roboku itself: starts, exits, crashes, OOM kills, releases.
    Roboku,
}

/// One log line; `GET .../logs` streams these as JSON lines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub ts: u64,
    pub app: String,
    /// `web.1`, or `roboku` / `api` for system lines.
    pub dyno: String,
    pub source: LogSource,
    pub line: String,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventInfo {
    pub id: i64,
    pub ts: u64,
    pub app: Option<String>,
    /// `cli`, `api`, `mqtt`, `git`, `agent`.
    pub door: String,
    pub action: String,
    pub result: String,
}

/// Checks an app name against `[a-z][a-z0-9-]{0,29}`; the error says what is wrong.
pub fn check_app_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("app name is empty".into()),
        Some(c) if !c.is_ascii_lowercase() => {
            return Err(format!(
                "app name {name:?} must start with a lowercase letter"
            ))
        }
        _ => {}
    }
    if name.len() > 30 {
        return Err(format!("app name {name:?} is longer than 30 characters"));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "app name {name:?} contains {bad:?}; use lowercase letters, digits and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert!(check_app_name("demo").is_ok());
        assert!(check_app_name("nav-2").is_ok());
        assert!(check_app_name("").is_err());
        assert!(check_app_name("2nav").is_err());
        assert!(check_app_name("Nav").is_err());
        assert!(check_app_name("na_v").is_err());
        assert!(check_app_name(&"a".repeat(31)).is_err());
        assert!(check_app_name(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn error_body_shape() {
        let e = ErrorBody {
            error: ApiError {
                code: codes::NOT_FOUND.into(),
                message: "no app x".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
    }

    #[test]
    fn what_people_read() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(64 << 20), "64M");
        assert_eq!(human_bytes(3_250_000), "3.1M");
        assert_eq!(human_bytes(3 << 29), "1.5G");
        assert_eq!(human_bytes(1024), "1K");
        let l = Limits {
            memory_max: Some(32 << 20),
            cpu: Some(0.5),
            ..Limits::default()
        };
        assert_eq!(l.to_string(), "memory 32M, cpu 0.5");
        let u = UpdateApp {
            user: Some("nav".into()),
            grace_secs: Some(10),
            buildpacks: Some(vec!["python".into()]),
            data_snapshots: None,
        };
        assert_eq!(u.to_string(), "user nav, grace 10s, buildpacks python");
        assert_eq!(
            UpdateApp {
                user: None,
                grace_secs: None,
                buildpacks: None,
                data_snapshots: None,
            }
            .to_string(),
            "nothing changed"
        );
    }

    #[test]
    fn os_error_codes_are_dropped_and_the_words_kept() {
        assert_eq!(
            in_words("create dir /x: Permission denied (os error 13)"),
            "create dir /x: Permission denied"
        );
        assert_eq!(
            in_words(
                "a: No such file or directory (os error 2); b: Too many open files (os error 24)"
            ),
            "a: No such file or directory; b: Too many open files"
        );
        assert_eq!(
            in_words("keep (os error x) and (os error 5"),
            "keep (os error x) and (os error 5"
        );
    }
}

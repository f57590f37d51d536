//! Fleet control over MQTT: the topics, the signed envelope, acks, desired and reported state,
//! status and telemetry. robokud (the device side) and `roboku fleet` (the operator side) both use
//! these types; `docs/fleet-protocol.md` is the same contract for people.
//!
//! Signing never re-serialises: the publisher serialises an [`Envelope`] (or a [`DesiredDoc`])
//! once, signs those exact bytes with ed25519, and sends them base64-encoded inside a [`Sealed`]
//! wrapper next to the signature. The receiver checks the signature over the decoded bytes and
//! only then parses them, so field order, whitespace and number formatting can never break (or
//! fake) a signature. See [`seal`] for the primitives.

#[cfg(feature = "mqtt")]
pub mod client;
pub mod seal;
pub mod topic;

use crate::{ConfigChange, DynoState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Protocol version carried in every envelope (`v`) and in the topic prefix (`rk/v1`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Payloads larger than this are rejected unread (commands and desired docs are small; the
/// artifact itself travels over HTTP).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// What travels on a `cmd` or `desired` topic: the signed bytes and their signature.
/// `env` is base64 (standard alphabet, padded) of the exact JSON bytes that were signed.
/// `sig` is base64 of the 64-byte ed25519 signature over those bytes; `kid` names the key
/// ([`seal::key_id`]). An unsigned payload (dev mode only) has neither `sig` nor `kid`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub env: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// What a command asks for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Deploy,
    Scale,
    Config,
    Rollback,
    Restart,
    Stop,
    /// Read-only: the robot answers with matching log lines on its `logs` topic.
    Logs,
    /// Read-only: what a deploy of the artifact would do, on the final ack (`details.plan`).
    Plan,
    /// Read-only: a support bundle (`.tar.gz`) in [`SupportChunk`]s on the `logs` topic.
    Support,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Scale => "scale",
            Kind::Config => "config",
            Kind::Rollback => "rollback",
            Kind::Restart => "restart",
            Kind::Stop => "stop",
            Kind::Logs => "logs",
            Kind::Plan => "plan",
            Kind::Support => "support",
        }
    }
}

/// A command: `{v, id, ts, expires, to, type, app, body, version?}` (the signed bytes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// [`PROTOCOL_VERSION`].
    pub v: u32,
    /// Unique per command (the CLI uses 128 random bits in hex); devices deduplicate on it.
    pub id: String,
    /// When it was issued, unix ms.
    pub ts: u64,
    /// After this (unix ms, plus the device's clock-skew allowance) the command is refused.
    pub expires: u64,
    /// The address it was signed for, `d/<device>` or `g/<group>`: a device refuses a command
    /// that arrives on another address's topic, so a signed command cannot be re-aimed.
    pub to: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub app: String,
    /// The body of the command; its shape depends on `type` (see [`Action`]).
    pub body: serde_json::Value,
    /// Per-app monotonic version (the CLI uses unix ms). When present it must be higher than
    /// every version the device has accepted for this app: an older one is a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A command's body, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Deploy(Artifact),
    Scale(ScaleBody),
    Config(ConfigChange),
    Rollback(crate::RollbackRequest),
    Restart(crate::TargetRequest),
    Stop(crate::TargetRequest),
    Logs(LogsQuery),
    /// `deploy --plan`: the body of a deploy; nothing is applied.
    Plan(Artifact),
    /// `fleet support`: the robot's support bundle. The envelope's `app` is ignored.
    Support(SupportQuery),
}

impl Action {
    /// Reads change nothing on the robot: they take no version and are never kept in desired
    /// state.
    pub fn is_read(&self) -> bool {
        matches!(self, Action::Logs(_) | Action::Plan(_) | Action::Support(_))
    }
}

/// Body of `logs`: which stored lines of the app to send back (all filters together).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Only lines stamped at or after this (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Only lines whose text matches this regular expression (`regex-lite` syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grep: Option<String>,
    /// At most the last N matching lines [default: 100, or 10,000 with `since`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u32>,
    /// At most this many bytes of lines in the answer [default and ceiling: see the robot].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Only this dyno (`web.1`) or process type (`web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyno: Option<String>,
}

/// One message of a robot's answer to a `logs` command, on `rk/v1/d/<device>/logs` (QoS 1, not
/// retained). An answer is `parts` messages numbered from 0; lines are oldest first across them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogsChunk {
    /// The command's id.
    pub id: String,
    pub device: String,
    pub part: u32,
    pub parts: u32,
    pub lines: Vec<crate::LogLine>,
    /// Matching lines left out (the oldest) to stay within the size cap; 0 when none were.
    #[serde(default)]
    pub dropped: u64,
    /// The size cap the robot applied, bytes.
    #[serde(default)]
    pub max_bytes: u64,
}

/// Body of `support`: how big the bundle may be and how many log lines per app it carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SupportQuery {
    /// At most this many bytes of content (before compression) [default and ceiling: see the
    /// robot].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// At most the last N log lines per app [default and ceiling: see the robot].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u32>,
}

/// One message of a robot's answer to a `support` command, on `rk/v1/d/<device>/logs` (QoS 1,
/// not retained): `parts` messages numbered from 0 whose `data`, decoded and joined in order,
/// is the bundle (a `.tar.gz`) whose sha256 is `sha256`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SupportChunk {
    /// The command's id.
    pub id: String,
    pub device: String,
    pub part: u32,
    pub parts: u32,
    /// base64 (standard, padded) of this part's bytes.
    pub data: String,
    /// Size and sha256 (lowercase hex) of the whole bundle.
    pub size: u64,
    pub sha256: String,
    /// What was cut or left out to stay within `max_bytes`, one line each (empty: nothing).
    #[serde(default)]
    pub truncated: Vec<String>,
    /// The size cap the robot applied, bytes of content.
    #[serde(default)]
    pub max_bytes: u64,
}

/// A release artifact: a `.tar.gz` of the app (Procfile at the top) fetched over HTTP.
/// The device checks `size` and `sha256` (lowercase hex of the file bytes) before using it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// The same release as a delta against a slug the robot may keep (see `docs/offline.md`):
    /// a robot that has `delta.base` fetches the delta, one that lacks it (or whose delta fails)
    /// fetches `url` as without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
}

/// A slug delta ([`crate::delta`]) and what it must make.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    /// Where the delta file is.
    pub url: String,
    /// sha256 and size of the delta file.
    pub sha256: String,
    pub size: u64,
    /// The artifact sha256 of the base (a slug the robot reported in `Reported::artifacts`).
    pub base: String,
    /// sha256 and size of the decoded tar the delta makes: checked before it is deployed.
    pub tar_sha256: String,
    pub tar_size: u64,
}

/// Body of `scale`: `{"counts": {"web": 2}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScaleBody {
    pub counts: BTreeMap<String, u32>,
}

impl Action {
    pub fn kind(&self) -> Kind {
        match self {
            Action::Deploy(_) => Kind::Deploy,
            Action::Scale(_) => Kind::Scale,
            Action::Config(_) => Kind::Config,
            Action::Rollback(_) => Kind::Rollback,
            Action::Restart(_) => Kind::Restart,
            Action::Stop(_) => Kind::Stop,
            Action::Logs(_) => Kind::Logs,
            Action::Plan(_) => Kind::Plan,
            Action::Support(_) => Kind::Support,
        }
    }

    /// The body as JSON.
    pub fn body(&self) -> serde_json::Value {
        let v = match self {
            Action::Deploy(a) | Action::Plan(a) => serde_json::to_value(a),
            Action::Scale(s) => serde_json::to_value(s),
            Action::Config(c) => serde_json::to_value(c),
            Action::Rollback(r) => serde_json::to_value(r),
            Action::Restart(t) | Action::Stop(t) => serde_json::to_value(t),
            Action::Logs(q) => serde_json::to_value(q),
            Action::Support(q) => serde_json::to_value(q),
        };
        v.unwrap_or(serde_json::Value::Null)
    }

    /// Reads a body of the given kind; the error names the kind and what is wrong.
    pub fn parse(kind: Kind, body: &serde_json::Value) -> Result<Action, String> {
        fn de<T: serde::de::DeserializeOwned>(
            kind: Kind,
            v: &serde_json::Value,
        ) -> Result<T, String> {
            T::deserialize(v).map_err(|e| format!("body of {}: {e}", kind.as_str()))
        }
        Ok(match kind {
            Kind::Deploy => Action::Deploy(de(kind, body)?),
            Kind::Scale => Action::Scale(de(kind, body)?),
            Kind::Config => Action::Config(de(kind, body)?),
            Kind::Rollback => Action::Rollback(de(kind, body)?),
            Kind::Restart => Action::Restart(de(kind, body)?),
            Kind::Stop => Action::Stop(de(kind, body)?),
            Kind::Logs => Action::Logs(de(kind, body)?),
            Kind::Plan => Action::Plan(de(kind, body)?),
            Kind::Support => Action::Support(de(kind, body)?),
        })
    }
}

impl Envelope {
    /// A command for `app` addressed to `to`, issued at `ts` and valid for `ttl_ms`.
    pub fn new(id: String, ts: u64, ttl_ms: u64, to: String, app: &str, action: &Action) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            id,
            ts,
            expires: ts.saturating_add(ttl_ms),
            to,
            kind: action.kind(),
            app: app.to_string(),
            body: action.body(),
            version: None,
        }
    }

    pub fn action(&self) -> Result<Action, String> {
        Action::parse(self.kind, &self.body)
    }
}

/// The retained desired state of a device (`rk/v1/d/<device>/desired`) or of a group
/// (`rk/v1/g/<group>/desired`), signed like a command. Per app, the entry with the highest
/// `version` across the device's own doc and its groups' docs wins; an entry older than the last
/// version the device applied for the app (by command or desired state) is ignored as stale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DesiredDoc {
    pub v: u32,
    pub id: String,
    pub ts: u64,
    pub expires: u64,
    pub to: String,
    pub apps: BTreeMap<String, AppDesired>,
}

/// What one app should look like. Missing parts are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppDesired {
    pub version: u64,
    /// The release to run, by artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Artifact>,
    /// Process counts; types not named keep their count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub formation: BTreeMap<String, u32>,
    /// When present, the complete set of config vars (keys not named are unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// Without `config`: vars that must have these values (`set`) or be absent (`unset`); the
    /// others are left as they are. This is how `fleet config` (a change, not a complete set)
    /// reaches a robot that was offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_patch: Option<ConfigChange>,
    /// One-shot commands (config, rollback, restart, stop) in the order they were sent, each with
    /// its own version: a robot runs those newer than the last version it applied for the app,
    /// once and in order, so a robot that missed them replays what the others did (a relative
    /// rollback then lands on the same release). A deploy clears them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub once: Vec<OneShot>,
}

/// How many one-shot commands an [`AppDesired`] keeps (the oldest go first).
pub const MAX_ONE_SHOTS: usize = 16;

/// A one-shot command kept in desired state: `{"version": 17, "type": "restart", "body": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OneShot {
    pub version: u64,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub body: serde_json::Value,
}

impl OneShot {
    pub fn new(version: u64, action: &Action) -> Self {
        OneShot {
            version,
            kind: action.kind(),
            body: action.body(),
        }
    }
    pub fn action(&self) -> Result<Action, String> {
        Action::parse(self.kind, &self.body)
    }
}

impl AppDesired {
    /// Folds a `fleet config` change in: into the complete set when the entry has one, else into
    /// the patch (a later change of a key wins over an earlier one).
    pub fn apply_config(&mut self, change: &ConfigChange) {
        if let Some(c) = &mut self.config {
            c.extend(change.set.clone());
            for k in &change.unset {
                c.remove(k);
            }
            return;
        }
        let patch = self.config_patch.get_or_insert_with(ConfigChange::default);
        for (k, v) in &change.set {
            patch.unset.retain(|u| u != k);
            patch.set.insert(k.clone(), v.clone());
        }
        for k in &change.unset {
            patch.set.remove(k);
            if !patch.unset.contains(k) {
                patch.unset.push(k.clone());
            }
        }
    }

    /// Records a one-shot command. A rollback brings back an older release's code and config,
    /// so the entry stops naming a release or config (they would undo it).
    pub fn push_once(&mut self, version: u64, action: &Action) {
        if matches!(action, Action::Rollback(_)) {
            self.release = None;
            self.config = None;
            self.config_patch = None;
        }
        self.once.push(OneShot::new(version, action));
        let extra = self.once.len().saturating_sub(MAX_ONE_SHOTS);
        self.once.drain(..extra);
    }

    /// Records a deploy: it supersedes the one-shots before it.
    pub fn set_release(&mut self, artifact: Artifact) {
        self.release = Some(artifact);
        self.once.clear();
    }
}

/// Progress of a command, AWS IoT Jobs' names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AckStatus {
    Accepted,
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    TimedOut,
}

impl AckStatus {
    /// No further ack follows this one for the same command.
    pub fn is_final(self) -> bool {
        !matches!(self, AckStatus::Accepted | AckStatus::InProgress)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Accepted => "ACCEPTED",
            AckStatus::InProgress => "IN_PROGRESS",
            AckStatus::Succeeded => "SUCCEEDED",
            AckStatus::Failed => "FAILED",
            AckStatus::Rejected => "REJECTED",
            AckStatus::TimedOut => "TIMED_OUT",
        }
    }
}

/// `rk/v1/d/<device>/ack`, QoS 1, not retained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ack {
    /// The command's (or desired doc's) id; `None` when the payload could not be read at all.
    pub id: Option<String>,
    /// [`payload_ref`] of the payload this answers: lets a publisher match even a REJECTED
    /// payload it could not have an id for.
    #[serde(rename = "ref")]
    pub reference: String,
    pub device: String,
    pub ts: u64,
    /// Per-device ack counter (restarts from 0 with the agent).
    pub seq: u64,
    pub status: AckStatus,
    #[serde(default)]
    pub details: AckDetails,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AckDetails {
    /// `deploy`, `scale`, ..., or `desired` for convergence to a desired doc.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// IN_PROGRESS: `download`, `build`, `release`, `scale`, `config`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// FAILED / REJECTED / TIMED_OUT: why, in words a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// FAILED deploys: the last lines of the app's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// SUCCEEDED: the release now current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u32>,
    /// SUCCEEDED `logs`: lines sent, in how many [`LogsChunk`]s, and matching lines left out
    /// to stay within the size cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// SUCCEEDED `plan`: what a deploy of the artifact would do on this robot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Box<crate::DeployPlan>>,
}

/// Short reference to a payload: the first 16 hex digits of its sha256.
pub fn payload_ref(payload: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(payload);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Online or offline.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Online,
    Offline,
}

/// `rk/v1/d/<device>/status`, retained. The Last Will is the same message with `offline`.
/// `session` grows with every connection: a reader (and the device itself) ignores an
/// `offline` whose session is older than the newest `online` (a late Will).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceStatus {
    pub device: String,
    pub state: Presence,
    pub session: u64,
    pub ts: u64,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub agent_version: String,
    /// Dev mode: unsigned commands are accepted.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// `rk/v1/d/<device>/reported`, retained: what runs, after every change and on connect.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Reported {
    pub device: String,
    pub ts: u64,
    pub session: u64,
    pub agent_version: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Free bytes on the data dir's filesystem.
    #[serde(default)]
    pub disk_free: Option<u64>,
    #[serde(default)]
    pub apps: Vec<ReportedApp>,
    /// The latest final ack this device sent.
    #[serde(default)]
    pub last_ack: Option<AckSummary>,
    /// Artifact sha256s of the slugs this device keeps as delta bases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// The clock as this device judges it (untrusted: which rule commands are judged by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<crate::ClockStatus>,
    /// Bytes per channel today / this month and what budgets hold back (`roboku usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::UsageSummary>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReportedApp {
    pub name: String,
    pub release: Option<u32>,
    /// sha256 of the current release's slug tree.
    pub slug: Option<String>,
    /// sha256 of the artifact the current slug came from, when it came from the fleet.
    #[serde(default)]
    pub artifact: Option<String>,
    /// Highest fleet version applied to this app.
    #[serde(default)]
    pub fleet_version: Option<u64>,
    #[serde(default)]
    pub formation: BTreeMap<String, u32>,
    #[serde(default)]
    pub dynos: Vec<ReportedDyno>,
    /// The current release's probation (`watching`, `passed`, ...), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<String>,
    /// When the current release is robokud's own rollback (a release failed its probation):
    /// its description, which says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<String>,
    /// Changes waiting for the app's gates: `waiting for gate mission-idle` (empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReportedDyno {
    pub name: String,
    pub state: DynoState,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// What the dyno last reported about itself, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::gates::DynoHealth>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AckSummary {
    pub id: Option<String>,
    pub status: AckStatus,
    pub ts: u64,
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `rk/v1/d/<device>/telemetry`, QoS 0, every `telemetry_secs`. Kept small on purpose (robots
/// on metered links): short keys, whole numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Telemetry {
    pub ts: u64,
    /// Dynos up / wanted.
    pub up: u32,
    pub want: u32,
    /// Agent resident memory, bytes.
    pub rss: u64,
    /// Free bytes on the data dir's filesystem.
    pub disk: Option<u64>,
    /// 1-minute load average × 100.
    pub load: Option<u32>,
    /// MemAvailable, bytes.
    pub mem: Option<u64>,
}

/// Checks a device or group name: 1-64 of `[A-Za-z0-9._-]` (no MQTT wildcards or separators).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{what} name {name:?} must be 1-64 characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{what} name {name:?} contains {bad:?}; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_keeps_wire_names() {
        let action = Action::Scale(ScaleBody {
            counts: [("web".to_string(), 2)].into(),
        });
        let mut env = Envelope::new("abc".into(), 1000, 60_000, "g/lab".into(), "hello", &action);
        env.version = Some(7);
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v["type"], "scale");
        assert_eq!(v["body"]["counts"]["web"], 2);
        assert_eq!(v["expires"], 61_000);
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back.action().unwrap(), action);
    }

    #[test]
    fn body_errors_name_the_kind() {
        let err = Action::parse(Kind::Deploy, &serde_json::json!({"url": "http://x"})).unwrap_err();
        assert!(err.contains("body of deploy"), "{err}");
        assert!(err.contains("sha256"), "{err}");
    }

    #[test]
    fn unknown_envelope_fields_are_refused() {
        let text = r#"{"v":1,"id":"a","ts":1,"expires":2,"to":"d/x","type":"stop","app":"a","body":{},"extra":1}"#;
        assert!(serde_json::from_str::<Envelope>(text).is_err());
    }

    #[test]
    fn ack_status_names() {
        assert_eq!(
            serde_json::to_string(&AckStatus::InProgress).unwrap(),
            "\"IN_PROGRESS\""
        );
        assert!(AckStatus::TimedOut.is_final());
        assert!(!AckStatus::Accepted.is_final());
    }

    #[test]
    fn names() {
        assert!(check_name("device", "robot-1.lab_a").is_ok());
        assert!(check_name("device", "a/b").is_err());
        assert!(check_name("group", "+").is_err());
        assert!(check_name("group", "").is_err());
    }

    #[test]
    fn payload_refs_are_short_and_stable() {
        assert_eq!(payload_ref(b"x"), payload_ref(b"x"));
        assert_eq!(payload_ref(b"x").len(), 16);
        assert_ne!(payload_ref(b"x"), payload_ref(b"y"));
    }
}

//! App-reported health and apply gates: what a dyno says about itself, and what must hold before
//! a deploy, a config change or a fleet command is applied to an app.
//!
//! Routes (local API socket):
//!
//! | method + path                       | request       | response        |
//! |-------------------------------------|---------------|-----------------|
//! | GET    /v1/apps/{app}/gates         |               | [`GatesReport`] |
//! | PUT    /v1/apps/{app}/gates/{name}  | [`SetGate`]   | [`Done`](crate::Done) |
//! | DELETE /v1/apps/{app}/gates/{name}  |               | [`Done`](crate::Done) |
//! | PUT    /v1/apps/{app}/holds/{name}  | [`TakeHold`]  | [`HoldInfo`]    |
//! | DELETE /v1/apps/{app}/holds/{name}  |               | [`Done`](crate::Done) |
//!
//! The dyno socket (`$ROBOKU_DYNO_SOCKET`, one per app, reachable only by that app's uid) serves
//! `POST /v1/health` ([`SetHealth`] -> [`DynoHealth`]) and `PUT`/`DELETE /v1/holds/{name}` for
//! the app it belongs to; the app is the socket's, never the request's.
//!
//! Mutating routes that wait for gates (deploy, config, rollback, restart) take
//! `?gate_timeout=SECS`: give up (error code `gate_closed`) when the gates are still closed then.

use serde::{Deserialize, Serialize};

/// The environment variable robokud puts in every dyno: the path of its app's dyno socket.
pub const DYNO_SOCKET_VAR: &str = "ROBOKU_DYNO_SOCKET";

/// What a dyno says of itself (snapd's `snapctl set-health` levels).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Okay,
    Waiting,
    Blocked,
    Error,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Okay => "okay",
            HealthStatus::Waiting => "waiting",
            HealthStatus::Blocked => "blocked",
            HealthStatus::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<HealthStatus> {
        match s {
            "okay" => Some(HealthStatus::Okay),
            "waiting" => Some(HealthStatus::Waiting),
            "blocked" => Some(HealthStatus::Blocked),
            "error" => Some(HealthStatus::Error),
            _ => None,
        }
    }
}

/// `POST /v1/health` on the dyno socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SetHealth {
    /// The reporting dyno (`$DYNO`); it must be a running dyno of the socket's app.
    pub dyno: String,
    pub status: HealthStatus,
    #[serde(default)]
    pub message: String,
}

/// A dyno's last report, kept for the running instance only (a restart forgets it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DynoHealth {
    pub status: HealthStatus,
    #[serde(default)]
    pub message: String,
    /// When it was reported, unix ms.
    pub at: u64,
}

/// What a gate checks. On the wire: `{"command": "test -e /run/robot/idle"}`, `{"file": PATH}`,
/// `{"health": "nav"}`, `{"window": "22:00-06:00"}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    /// A shell command, run as the app's user, that must exit 0.
    Command(String),
    /// A path that must exist (checked as the app's user).
    File(String),
    /// Every running dyno of this process type must report `okay`.
    Health(String),
    /// Local time must be inside `HH:MM-HH:MM` (may wrap midnight).
    Window(String),
}

impl GateKind {
    pub fn label(&self) -> &'static str {
        match self {
            GateKind::Command(_) => "command",
            GateKind::File(_) => "file",
            GateKind::Health(_) => "health",
            GateKind::Window(_) => "window",
        }
    }
    pub fn spec(&self) -> &str {
        match self {
            GateKind::Command(s)
            | GateKind::File(s)
            | GateKind::Health(s)
            | GateKind::Window(s) => s,
        }
    }
}

/// `PUT /v1/apps/{app}/gates/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SetGate {
    pub check: GateKind,
    /// How long one run of a command or file check may take (default 10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `PUT /v1/apps/{app}/holds/{name}`: a lease that keeps the app's gates closed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TakeHold {
    /// How long the hold lasts unless released (or taken again, which renews it).
    pub secs: u64,
    #[serde(default)]
    pub reason: String,
    /// Who holds it (default: the door, e.g. `cli`, or the dyno).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HoldInfo {
    pub name: String,
    pub holder: String,
    pub reason: String,
    /// Taken (or last renewed), unix ms.
    pub since: u64,
    /// Expires, unix ms.
    pub until: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateInfo {
    pub name: String,
    pub check: GateKind,
    pub timeout_secs: u64,
    /// The last check: open, closed, or not checked yet (`None`).
    pub open: Option<bool>,
    /// What the last check found (`exit 1`, `web.1 is blocked: mission 42`).
    #[serde(default)]
    pub detail: String,
    /// Since when it has been as `open` says, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// When it was last checked, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<u64>,
}

/// A change waiting for the app's gates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WaitingInfo {
    /// `deploy`, `config`, `rollback`, `restart`, `scale`, `stop`.
    pub what: String,
    pub door: String,
    /// Waiting since, unix ms.
    pub since: u64,
    /// Gives up then, unix ms (`None`: as long as its caller waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// The gates and holds it waits for.
    #[serde(default)]
    pub blocked_by: Vec<String>,
}

/// `GET /v1/apps/{app}/gates`: every gate (checked just now), every hold, every waiting change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatesReport {
    pub app: String,
    /// Every gate passed and no hold is held: changes apply at once.
    pub open: bool,
    pub gates: Vec<GateInfo>,
    pub holds: Vec<HoldInfo>,
    pub waiting: Vec<WaitingInfo>,
}

/// Names in the words an ack or a progress line uses: `gate mission-idle`, `hold mission-42`.
pub fn waiting_for(blocked_by: &[String]) -> String {
    match blocked_by {
        [] => "waiting for gates".into(),
        [one] => format!("waiting for {one}"),
        many => format!("waiting for {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_kinds_read_as_one_key_objects() {
        let g: SetGate = serde_json::from_str(r#"{"check":{"command":"test -e /x"}}"#).unwrap();
        assert_eq!(g.check, GateKind::Command("test -e /x".into()));
        assert_eq!(
            serde_json::to_string(&GateKind::Window("22:00-06:00".into())).unwrap(),
            r#"{"window":"22:00-06:00"}"#
        );
        let h: SetHealth =
            serde_json::from_str(r#"{"dyno":"web.1","status":"blocked","message":"m"}"#).unwrap();
        assert_eq!(h.status, HealthStatus::Blocked);
        assert!(serde_json::from_str::<SetHealth>(r#"{"dyno":"w","status":"meh"}"#).is_err());
        assert_eq!(
            waiting_for(&["gate a".into()]),
            "waiting for gate a".to_string()
        );
    }
}

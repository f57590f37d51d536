//! `GET /v1/doctor`: what only robokud can see about itself, for `roboku doctor` to judge
//! (the judgement is the CLI's, so an older CLI just prints less and a newer one against an
//! older agent falls back to its own checks).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DoctorFacts {
    pub fleet: FleetLink,
    /// Each trusted-key file the fleet's signatures are checked against.
    #[serde(default)]
    pub key_files: Vec<KeyFile>,
    pub systemd: Systemd,
    /// Where the dashboard listens (`None`: off).
    #[serde(default)]
    pub dashboard: Option<Dashboard>,
    /// Every add-on with a server, and how its server is.
    #[serde(default)]
    pub addon_servers: Vec<AddonServer>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetLink {
    /// A broker is set (`mqtt.broker`).
    pub configured: bool,
    /// The broker's URL without credentials.
    #[serde(default)]
    pub broker: Option<String>,
    pub connected: bool,
    /// The last connection error, until the next connect.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Unsigned commands are accepted (dev mode).
    #[serde(default)]
    pub allow_unsigned: bool,
    /// How many trusted keys robokud loaded.
    #[serde(default)]
    pub keys: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KeyFile {
    pub path: String,
    /// Mode bits and owner uid, when it could be read.
    #[serde(default)]
    pub mode: Option<u32>,
    #[serde(default)]
    pub uid: Option<u32>,
    /// Why it could not be read.
    #[serde(default)]
    pub error: Option<String>,
    /// The parent directories that others (or the group) can write to: whoever can write
    /// one can swap the file.
    #[serde(default)]
    pub writable_parents: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Systemd {
    /// robokud runs as a systemd unit (`$INVOCATION_ID` was set at its start).
    pub unit: bool,
    /// `$NOTIFY_SOCKET` was set: `Type=notify` (and `NotifyAccess`) lets robokud report.
    pub notify: bool,
    /// `WatchdogSec=` of the unit, when systemd watches robokud.
    #[serde(default)]
    pub watchdog_usec: Option<u64>,
    /// PID 1's name (`systemd`, `init`...).
    #[serde(default)]
    pub pid1: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Dashboard {
    pub addr: String,
    /// Bound to a loopback address only.
    pub loopback: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AddonServer {
    pub name: String,
    pub kind: String,
    pub app: String,
    /// `up`, `starting`, `backoff`, `stopped`, `broken`...
    pub state: String,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub restarts: u32,
}

//! Log drains: where an app's log lines are also sent (syslog, Heroku's HTTPS format), and what
//! each drain has delivered so far. See `docs/drains.md`.
//!
//! Routes (local API socket):
//!
//! | method + path                         | request      | response         |
//! |---------------------------------------|--------------|------------------|
//! | GET    /v1/apps/{app}/drains          |              | `Vec<DrainInfo>` |
//! | POST   /v1/apps/{app}/drains          | [`AddDrain`] | [`DrainInfo`]    |
//! | DELETE /v1/apps/{app}/drains?drain=   |              | [`Done`](crate::Done) |
//!
//! `drain=` is the drain's id or its URL.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddDrain {
    pub url: String,
}

/// A drain and its counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrainInfo {
    /// `d-` and 8 hex digits.
    pub id: String,
    /// The URL as added, a password in it shown as `***`.
    pub url: String,
    /// Sent as `Logplex-Drain-Token` (HTTPS drains).
    pub token: String,
    pub created_at: u64,
    /// Whether a task is delivering it now (false only on a failure to start one).
    pub running: bool,
    #[serde(default)]
    pub counters: DrainCounters,
}

/// What a drain has done since it was added (kept across robokud restarts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DrainCounters {
    /// Lines delivered (a line sent again after a broken connection counts again).
    pub sent: u64,
    /// Lines written on a stream and not yet confirmed (it must stay up 2 s after a write):
    /// counted in `sent` once confirmed, sent again if the connection breaks first. Never
    /// saved (0 after a restart); 0 when an older robokud's answer lacks it.
    #[serde(default)]
    pub in_flight: u64,
    /// Lines the log quota rotated away before they could be delivered.
    pub dropped: u64,
    /// Lines stored and not yet delivered (refreshed every few seconds).
    pub pending: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    pub last_success_at: Option<u64>,
}

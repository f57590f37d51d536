//! Byte accounting: what `GET /v1/usage` answers (`roboku usage`) and the compact summary the
//! MQTT `reported` state carries. See docs/offline.md ("Byte budgets").

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /v1/usage`: bytes per channel today and this month (UTC calendar), with budgets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageReport {
    /// The UTC day and month being counted (`2026-12-03`, `2026-12`).
    pub day: String,
    pub month: String,
    /// The clock the counters read, unix ms.
    pub now: u64,
    /// Set when a test knob accelerates that clock (debug builds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// Seconds between two saves of the counters (at most this much is lost to a kill -9).
    pub flush_secs: u64,
    pub channels: Vec<UsageChannel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageChannel {
    /// `commands`, `acks`, `reported`, `telemetry`, `logs`, `drains`, `artifacts`, `mqtt`.
    pub name: String,
    /// Critical channels (commands, acks, artifacts, MQTT keep-alive) always flow.
    pub critical: bool,
    pub today: u64,
    pub month: u64,
    /// The budget as configured (`1MB/day`), its bytes and period (`day` or `month`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// `open`, `slow` (past 80 % of the budget) or `paused` (the budget is spent).
    pub flow: String,
}

/// The compact form in `reported`: totals, today's bytes of channels that moved any, and what
/// is held back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsageSummary {
    pub day: String,
    /// All channels, today and this month.
    pub today: u64,
    pub month: u64,
    /// Today's bytes per channel (channels with none are left out).
    #[serde(default)]
    pub by: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paused: Vec<String>,
}

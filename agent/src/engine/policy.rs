//! How an app's releases switch and are watched afterwards, from the `roboku` key of its
//! `app.json` (pure: parsed and tested without processes):
//!
//! ```json
//! { "roboku": {
//!     "switch": { "web": "preboot", "driver": "stop-then-start" },
//!     "probation": { "secs": 600, "crash_budget": { "worker": 2 } } } }
//! ```
//! `preboot` starts the new release's dyno next to the old one and stops the old one only once
//! every new dyno passed its checks (web traffic moves through the router at that moment);
//! `stop-then-start` stops first (a driver that owns a device cannot run twice). Default:
//! `preboot` for `web`, `stop-then-start` for every other type. Probation: for `secs` after a
//! release is committed, a process type crashing more than its budget (default 2) rolls the
//! release back by itself; `secs: 0` turns probation off.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub const DEFAULT_PROBATION: Duration = Duration::from_secs(600);
pub const DEFAULT_CRASH_BUDGET: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Preboot,
    StopThenStart,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Preboot => "preboot",
            Strategy::StopThenStart => "stop-then-start",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    switch: BTreeMap<String, Strategy>,
    pub probation: Duration,
    budgets: BTreeMap<String, u32>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            switch: BTreeMap::new(),
            probation: DEFAULT_PROBATION,
            budgets: BTreeMap::new(),
        }
    }
}

impl Policy {
    pub fn strategy(&self, ptype: &str) -> Strategy {
        match self.switch.get(ptype) {
            Some(s) => *s,
            None if ptype == "web" => Strategy::Preboot,
            None => Strategy::StopThenStart,
        }
    }

    /// Crashes of one process type that probation tolerates; one more rolls back.
    pub fn crash_budget(&self, ptype: &str) -> u32 {
        self.budgets
            .get(ptype)
            .copied()
            .unwrap_or(DEFAULT_CRASH_BUDGET)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    switch: BTreeMap<String, Strategy>,
    probation: Option<RawProbation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbation {
    secs: Option<f64>,
    #[serde(default)]
    crash_budget: BTreeMap<String, u32>,
}

/// The policy of an `app.json` text (defaults when it has no `roboku` key). Errors name the
/// field and say what is expected.
pub fn parse(app_json: &str) -> Result<Policy, String> {
    let value: serde_json::Value =
        serde_json::from_str(app_json).map_err(|e| format!("app.json: {e}"))?;
    let Some(raw) = value.get("roboku") else {
        return Ok(Policy::default());
    };
    let raw: Raw = serde_json::from_value(raw.clone()).map_err(|e| {
        format!(
            "app.json: roboku: {e} (expected {{\"switch\": {{TYPE: \"preboot\" | \
             \"stop-then-start\"}}, \"probation\": {{\"secs\": N, \"crash_budget\": {{TYPE: N}}}}}})"
        )
    })?;
    let mut policy = Policy {
        switch: raw.switch,
        ..Policy::default()
    };
    if let Some(p) = raw.probation {
        if let Some(secs) = p.secs {
            if !(0.0..=86_400.0 * 30.0).contains(&secs) {
                return Err(format!(
                    "app.json: roboku.probation.secs: {secs} is not between 0 and 2592000 (30 days)"
                ));
            }
            policy.probation = Duration::from_secs_f64(secs);
        }
        policy.budgets = p.crash_budget;
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_preboots_by_default_and_types_can_opt_in_or_out() {
        let p = parse("{}").unwrap();
        assert_eq!(p.strategy("web"), Strategy::Preboot);
        assert_eq!(p.strategy("worker"), Strategy::StopThenStart);
        assert_eq!(p.probation, DEFAULT_PROBATION);
        assert_eq!(p.crash_budget("worker"), DEFAULT_CRASH_BUDGET);
        let p = parse(
            r#"{"roboku":{"switch":{"web":"stop-then-start","api":"preboot"},
                "probation":{"secs":2.5,"crash_budget":{"worker":0}}}}"#,
        )
        .unwrap();
        assert_eq!(p.strategy("web"), Strategy::StopThenStart);
        assert_eq!(p.strategy("api"), Strategy::Preboot);
        assert_eq!(p.probation, Duration::from_millis(2500));
        assert_eq!(p.crash_budget("worker"), 0);
        assert_eq!(p.crash_budget("web"), DEFAULT_CRASH_BUDGET);
    }

    #[test]
    fn bad_policies_name_the_field() {
        for (text, want) in [
            (
                r#"{"roboku":{"switch":{"web":"blue-green"}}}"#,
                "unknown variant `blue-green`",
            ),
            (r#"{"roboku":{"swtich":{}}}"#, "unknown field `swtich`"),
            (
                r#"{"roboku":{"probation":{"secs":-1}}}"#,
                "roboku.probation.secs: -1",
            ),
            (
                r#"{"roboku":{"probation":{"crash_budget":{"web":"x"}}}}"#,
                "app.json: roboku:",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}

//! How an app's releases switch and are watched afterwards, from the `roboku` key of its
//! `app.json` (pure: parsed and tested without processes):
//!
//! ```json
//! { "roboku": {
//!     "switch": { "web": "preboot", "driver": "stop-then-start" },
//!     "probation": { "secs": 600, "crash_budget": { "worker": 2 } },
//!     "formation": { "worker": { "after": ["web"], "on_config": "signal:SIGHUP" } } } }
//! ```
//! `preboot` starts the new release's dyno next to the old one and stops the old one only once
//! every new dyno passed its checks (web traffic moves through the router at that moment);
//! `stop-then-start` stops first (a driver that owns a device cannot run twice). Default:
//! `preboot` for `web`, `stop-then-start` for every other type. Probation: for `secs` after a
//! release is committed, a process type crashing more than its budget (default 2) rolls the
//! release back by itself; `secs: 0` turns probation off. Formation: per type, the types whose
//! dynos must be up before its own start (`after`, checked by `order.rs`), and what a config
//! change does to its running dynos (`on_config`: `restart`, the default, `signal:SIGNAME` or
//! `none`).

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

/// What a config change does to a running dyno of one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConfig {
    /// Restart it on the new release (the default).
    #[default]
    Restart,
    /// Send this signal to the dyno's process (not its group) and keep it running.
    Signal(nix::sys::signal::Signal),
    /// Leave it running as it is.
    None,
}

impl OnConfig {
    pub fn parse(text: &str) -> Result<OnConfig, String> {
        match text {
            "restart" => Ok(OnConfig::Restart),
            "none" => Ok(OnConfig::None),
            _ => {
                let name = text.strip_prefix("signal:").ok_or_else(|| {
                    format!("{text:?} is not \"restart\", \"signal:SIGNAME\" or \"none\"")
                })?;
                let full = if name.starts_with("SIG") {
                    name.to_string()
                } else {
                    format!("SIG{name}")
                };
                match full.parse::<nix::sys::signal::Signal>() {
                    Ok(nix::sys::signal::Signal::SIGKILL | nix::sys::signal::Signal::SIGSTOP) => {
                        Err(format!("{name}: a dyno cannot handle it; use \"restart\""))
                    }
                    Ok(sig) => Ok(OnConfig::Signal(sig)),
                    Err(_) => Err(format!("{name:?} is not a signal name (e.g. SIGHUP)")),
                }
            }
        }
    }

    pub fn describe(self) -> String {
        match self {
            OnConfig::Restart => "restart".into(),
            OnConfig::Signal(s) => format!("signal {}", s.as_str()),
            OnConfig::None => "none".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    switch: BTreeMap<String, Strategy>,
    pub probation: Duration,
    budgets: BTreeMap<String, u32>,
    /// Every type `roboku.formation` names, with the types it starts after.
    after: BTreeMap<String, Vec<String>>,
    on_config: BTreeMap<String, OnConfig>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            switch: BTreeMap::new(),
            probation: DEFAULT_PROBATION,
            budgets: BTreeMap::new(),
            after: BTreeMap::new(),
            on_config: BTreeMap::new(),
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

    /// The types whose dynos must be up before a dyno of `ptype` starts.
    pub fn after(&self, ptype: &str) -> &[String] {
        self.after.get(ptype).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every type `roboku.formation` names, with its `after` (for `order::check`).
    pub fn start_order(&self) -> &BTreeMap<String, Vec<String>> {
        &self.after
    }

    pub fn on_config(&self, ptype: &str) -> OnConfig {
        self.on_config.get(ptype).copied().unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    switch: BTreeMap<String, Strategy>,
    probation: Option<RawProbation>,
    #[serde(default)]
    formation: BTreeMap<String, RawType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    #[serde(default)]
    after: Vec<String>,
    on_config: Option<String>,
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
             \"stop-then-start\"}}, \"probation\": {{\"secs\": N, \"crash_budget\": {{TYPE: N}}}}, \
             \"formation\": {{TYPE: {{\"after\": [TYPE], \"on_config\": \"restart\" | \
             \"signal:SIGHUP\" | \"none\"}}}}}})"
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
    for (ptype, t) in raw.formation {
        if let Some(text) = t.on_config {
            let how = OnConfig::parse(&text)
                .map_err(|e| format!("app.json: roboku.formation.{ptype}.on_config: {e}"))?;
            policy.on_config.insert(ptype.clone(), how);
        }
        policy.after.insert(ptype, t.after);
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
    fn formation_gives_start_order_and_config_reloads() {
        use nix::sys::signal::Signal;
        let p = parse(
            r#"{"roboku":{"formation":{"worker":{"after":["web"],"on_config":"signal:SIGHUP"},
                "clock":{"on_config":"none"},"web":{"on_config":"signal:USR1"}}}}"#,
        )
        .unwrap();
        assert_eq!(p.after("worker"), ["web"]);
        assert!(p.after("web").is_empty() && p.after("other").is_empty());
        assert_eq!(p.on_config("worker"), OnConfig::Signal(Signal::SIGHUP));
        assert_eq!(p.on_config("web"), OnConfig::Signal(Signal::SIGUSR1));
        assert_eq!(p.on_config("clock"), OnConfig::None);
        assert_eq!(p.on_config("other"), OnConfig::Restart);
        assert_eq!(p.start_order().len(), 3);
        assert_eq!(p.on_config("worker").describe(), "signal SIGHUP");
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
            (
                r#"{"roboku":{"formation":{"w":{"on_config":"reload"}}}}"#,
                "roboku.formation.w.on_config: \"reload\" is not",
            ),
            (
                r#"{"roboku":{"formation":{"w":{"on_config":"signal:SIGNOPE"}}}}"#,
                "roboku.formation.w.on_config: \"SIGNOPE\" is not a signal",
            ),
            (
                r#"{"roboku":{"formation":{"w":{"on_config":"signal:SIGKILL"}}}}"#,
                "roboku.formation.w.on_config: SIGKILL: a dyno cannot handle it",
            ),
            (
                r#"{"roboku":{"formation":{"w":{"before":["web"]}}}}"#,
                "unknown field `before`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}

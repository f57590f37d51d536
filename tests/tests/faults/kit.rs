//! What every fault run checks afterwards, and how many runs a scenario makes.

use roboku_tests::{tagged, Agent};
use serde_json::Value;
use std::collections::BTreeSet;

/// Runs per scenario: `ROBOKU_FAULT_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("ROBOKU_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// No process outside the store's records: every process the agent ever tagged belongs to the
/// session of a dyno `ps` lists as up (its children inherit the tag and the session).
pub fn only_recorded_processes(agent: &Agent, apps: &[&str]) {
    let mut leaders = BTreeSet::new();
    for app in apps {
        for d in agent.ps(app) {
            if let Some(pid) = d["pid"].as_i64() {
                leaders.insert(pid);
            }
        }
    }
    let strays: Vec<(i64, i64)> = tagged(agent.data_dir())
        .into_iter()
        .filter(|(_, sid)| !leaders.contains(sid))
        .collect();
    assert!(
        strays.is_empty(),
        "processes (pid, session) outside the store's records: {strays:?}; recorded: {leaders:?}"
    );
}

/// The app's releases, newest first.
pub fn releases(agent: &Agent, app: &str) -> Vec<Value> {
    match agent.json(&["releases", "-a", app]) {
        Value::Array(v) => v,
        other => panic!("releases --json is not a list: {other}"),
    }
}

/// One whole release current, none left `deploying`; the current one `succeeded`.
pub fn settled_release(agent: &Agent, app: &str) -> Value {
    let all = releases(agent, app);
    let current: Vec<&Value> = all.iter().filter(|r| r["current"] == true).collect();
    assert_eq!(current.len(), 1, "exactly one current release: {all:#?}");
    assert!(
        all.iter().all(|r| r["status"] != "deploying"),
        "a release left deploying: {all:#?}"
    );
    assert_eq!(current[0]["status"], "succeeded", "{all:#?}");
    current[0].clone()
}

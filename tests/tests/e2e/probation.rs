//! Probation: a release whose worker crashes past its budget right after the switch is rolled
//! back by robokud itself, with the reason in `releases` and the events; one that crashes only
//! after its probation is restarted like any crashing dyno and stays.

use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::time::Duration;

fn worker_app(command: &str, probation: &str) -> tempfile::TempDir {
    let json = format!(r#"{{"roboku":{{"probation":{probation}}}}}"#);
    app_dir(&[
        ("Procfile", &format!("worker: {command}\n")),
        ("app.json", &json),
    ])
}

fn release(agent: &Agent, app: &str, version: u64) -> Value {
    let list = agent.json(&["releases", "-a", app]);
    list.as_array()
        .and_then(|l| l.iter().find(|r| r["version"] == version).cloned())
        .unwrap_or_else(|| panic!("no v{version}: {list}"))
}

#[test]
fn a_worker_crashing_three_times_in_probation_is_rolled_back_by_itself() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("nav", worker_app("exec sleep 600", r#"{"secs":60}"#).path());
    agent.ok(&["ps:scale", "worker=1", "-a", "nav"]);
    // Up long enough for its start check (1 s), then crashes every 2 s: 3 crashes > budget 2.
    let v2 = agent.deploy(
        "nav",
        worker_app("sleep 2; echo lost the lidar >&2; exit 1", r#"{"secs":60}"#).path(),
    );
    assert_eq!(v2["status"], "succeeded", "committed first: {v2}");
    assert_eq!(v2["version"], 2);

    wait_for("v3 rolls back to v1", Duration::from_secs(40), || {
        agent
            .json(&["releases", "-a", "nav"])
            .as_array()
            .is_some_and(|l| {
                l.iter()
                    .any(|r| r["version"] == 3 && r["status"] == "succeeded")
            })
    });
    let v2 = release(&agent, "nav", 2);
    assert_eq!(v2["status"], "rolled-back", "{v2}");
    let why = "worker crashed 3 times in probation (budget 2)";
    assert_eq!(v2["probation"], format!("rolled back: {why}"), "{v2}");
    let v3 = release(&agent, "nav", 3);
    assert_eq!(
        v3["description"],
        format!("Rollback to v1 (automatic: {why} of v2)"),
        "{v3}"
    );
    assert_eq!(v3["current"], true);
    assert_eq!(v3["door"], "agent", "robokud's own doing: {v3}");
    assert!(
        v3.get("probation").is_none(),
        "a rollback is not put on probation: {v3}"
    );
    let worker = agent.dyno("nav", "worker.1").expect("worker.1");
    assert_eq!(worker["release"], 3, "{worker}");

    let events = agent.ok(&["events", "-a", "nav"]);
    assert!(
        events.contains(&format!(
            "Release v2 failed its probation: {why}; rolling back"
        )),
        "{events}"
    );
    let text = agent.ok(&["releases", "-a", "nav"]);
    assert!(text.contains("probation rolled back"), "{text}");
}

#[test]
fn a_crash_after_probation_is_not_rolled_back() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("arm", worker_app("exec sleep 600", r#"{"secs":1}"#).path());
    agent.ok(&["ps:scale", "worker=1", "-a", "arm"]);
    // A budget of 0 would roll back at the first crash in the window; this one crashes after.
    let v2 = agent.deploy(
        "arm",
        worker_app(
            "sleep 4; exit 1",
            r#"{"secs":1,"crash_budget":{"worker":0}}"#,
        )
        .path(),
    );
    assert_eq!(v2["version"], 2, "{v2}");
    wait_for("v2 passes its probation", Duration::from_secs(10), || {
        release(&agent, "arm", 2)["probation"] == "passed"
    });
    wait_for("the worker crashed twice", Duration::from_secs(30), || {
        agent
            .dyno("arm", "worker.1")
            .is_some_and(|d| d["restarts"].as_u64() >= Some(2))
    });
    let list = agent.json(&["releases", "-a", "arm"]);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(2),
        "no rollback release: {list}"
    );
    let v2 = release(&agent, "arm", 2);
    assert_eq!(
        (v2["current"].clone(), v2["status"].clone()),
        (true.into(), "succeeded".into())
    );
    let events = agent.ok(&["events", "-a", "arm"]);
    assert!(
        events.contains("Release v2 passed its probation"),
        "{events}"
    );
}

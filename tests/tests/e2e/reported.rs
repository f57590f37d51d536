//! App-reported health (`roboku health:set`) in the deploy's judgements: a worker that reports
//! `error` while its release is on probation has the release rolled back with its message; a
//! `reported` health check passes on `okay`, fails the deploy on `error` and on a `waiting`
//! that outlasts its window, the old release running on each time.

use roboku_tests::bins::bin;
use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::time::Duration;

/// An app `nav` with one quiet worker up, under this `app.json`; and its current release.
fn start(app_json: &str) -> (Agent, u64) {
    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "nav"]);
    let roboku = bin("roboku").display().to_string();
    agent.ok(&["config:set", &format!("ROBOKU_BIN={roboku}"), "-a", "nav"]);
    let v = agent.deploy("nav", worker_app("exec sleep 600", app_json).path());
    assert_eq!(v["status"], "succeeded", "{v}");
    agent.ok(&["ps:scale", "worker=1", "-a", "nav"]);
    agent.wait_up("nav", "worker.1", None, Duration::from_secs(20));
    let v = v["version"].as_u64().expect("a version");
    (agent, v)
}

fn worker_app(command: &str, app_json: &str) -> tempfile::TempDir {
    app_dir(&[
        ("Procfile", &format!("worker: {command}\n")),
        ("app.json", app_json),
    ])
}

fn release(agent: &Agent, version: u64) -> Value {
    let list = agent.json(&["releases", "-a", "nav"]);
    list.as_array()
        .and_then(|l| l.iter().find(|r| r["version"] == version).cloned())
        .unwrap_or_else(|| panic!("no v{version}: {list}"))
}

/// `roboku deploy` of the worker app: exit code and stderr.
fn deploy(agent: &Agent, command: &str, app_json: &str) -> (Option<i32>, String) {
    let dir = worker_app(command, app_json);
    let out = agent.roboku(&["deploy", dir.path().to_str().expect("utf-8"), "-a", "nav"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_worker_reporting_error_in_probation_is_rolled_back_with_its_message() {
    let json = r#"{"roboku":{"probation":{"secs":120,"crash_budget":{"worker":0}}}}"#;
    let (agent, v1) = start(json);
    let (v2, v3) = (v1 + 1, v1 + 2);
    // Up (its start check passes), then says every second that it is broken. Only a change
    // counts, so the message changes; the first one inside the window is over the budget of 0.
    let bad = r#"i=0; while :; do i=$((i+1)); "$ROBOKU_BIN" health:set error "lidar lost $i"; sleep 1; done"#;
    let (code, err) = deploy(&agent, bad, json);
    assert_eq!(code, Some(0), "committed first: {err}");
    wait_for("the automatic rollback", Duration::from_secs(40), || {
        agent
            .json(&["releases", "-a", "nav"])
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["version"] == v3 && r["current"] == true))
    });
    let bad = release(&agent, v2);
    assert_eq!(bad["status"], "rolled-back", "{bad}");
    let note = bad["probation"].as_str().unwrap_or_default().to_string();
    assert!(
        note.starts_with("rolled back: worker.1 reported error: lidar lost "),
        "{bad}"
    );
    assert!(
        note.ends_with("(in probation: worker failed 1 time, budget 0)"),
        "{bad}"
    );
    let back = release(&agent, v3);
    let description = back["description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with(&format!(
            "Rollback to v{v1} (automatic: worker.1 reported error: lidar lost"
        )),
        "{back}"
    );
    let events = agent.ok(&["events", "-a", "nav"]);
    assert!(
        events.contains(&format!(
            "Release v{v2} failed its probation: worker.1 reported error: lidar lost"
        )),
        "{events}"
    );
    let worker = agent.dyno("nav", "worker.1").expect("worker.1");
    assert_eq!(worker["release"], v3, "{worker}");
}

#[test]
fn a_reported_check_passes_on_okay_and_fails_on_error_or_a_long_wait() {
    let check = |timeout: u32| {
        format!(
            r#"{{"healthchecks":{{"worker":[{{"reported":true,"timeout":{timeout}}}]}},
                "roboku":{{"probation":{{"secs":0}}}}}}"#
        )
    };
    let (agent, v1) = start(&check(60));
    let before = agent.up_pid("nav", "worker.1").expect("v2's worker");

    // (The first release's worker was started by the scale, not a rollout: no check ran.)
    // Waiting first, then okay: the deploy passes its check, the dyno shows its report.
    let good = r#""$ROBOKU_BIN" health:set waiting warming; sleep 1; "$ROBOKU_BIN" health:set okay ready; exec sleep 600"#;
    let (code, err) = deploy(&agent, good, &check(60));
    assert_eq!(code, Some(0), "{err}");
    let worker = agent.dyno("nav", "worker.1").expect("worker.1");
    assert_eq!(worker["release"], v1 + 1, "{worker}");
    assert_eq!(worker["health"]["status"], "okay", "{worker}");
    assert_ne!(worker["pid"].as_i64(), Some(before));
    let v3_pid = worker["pid"].as_i64();

    // error: the check fails at once with the dyno's message; v3 runs again.
    let bad = r#""$ROBOKU_BIN" health:set error 'no lidar'; exec sleep 600"#;
    let (code, err) = deploy(&agent, bad, &check(60));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("release v{} failed", v1 + 2)),
        "{err}"
    );
    assert!(err.contains("worker.1 reported error: no lidar"), "{err}");
    assert_eq!(release(&agent, v1 + 2)["status"], "failed");

    // waiting past its window (2 s): fails with the last report.
    let slow = r#""$ROBOKU_BIN" health:set waiting 'no gps fix'; exec sleep 600"#;
    let (code, err) = deploy(&agent, slow, &check(2));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("worker.1 reported waiting: no gps fix and stayed so past 2s"),
        "{err}"
    );
    assert_eq!(release(&agent, v1 + 3)["status"], "failed");
    // The good release runs again (restarted: a worker is stop-then-start).
    agent.wait_up("nav", "worker.1", v3_pid, Duration::from_secs(20));
    let shown = agent.dyno("nav", "worker.1").expect("worker.1");
    assert_eq!(shown["release"], v1 + 1, "{shown}");
}

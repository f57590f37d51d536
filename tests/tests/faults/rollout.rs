//! kill -9 at each step of a rollout, of a good and of a failing release: after the restart the
//! rollout is finished (its health gate run again) or rolled back, never left `deploying`, and a
//! release is `succeeded` only if its gate passed.

use super::kit;
use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use std::time::Duration;

fn good(n: usize) -> tempfile::TempDir {
    app_dir(&[("Procfile", &format!("web: exec sleep {}\n", 1000 + n))])
}

/// Stays up but fails its health check (deterministically, whatever the load: a "stays up"
/// gate is wall-clock and a crashing dyno that was not scheduled in time would pass it).
pub fn bad() -> tempfile::TempDir {
    app_dir(&[
        ("Procfile", "web: exec sleep 999\n"),
        (
            "app.json",
            r#"{"healthchecks": {"web": [{"type": "startup", "command": ["false"], "attempts": 1}]}}"#,
        ),
    ])
}

/// The version the agent settles on after it was killed at `point` deploying `dir`.
fn crash_deploy(agent: &mut Agent, point: &str, dir: &std::path::Path) -> (u64, serde_json::Value) {
    agent.restart_with_fault(point);
    let _ = agent.roboku(&["deploy", dir.to_str().expect("utf-8"), "-a", "demo"]);
    agent.wait_killed(Duration::from_secs(60));
    agent.respawn();
    let newest = kit::releases(agent, "demo")[0]["version"]
        .as_u64()
        .expect("version");
    wait_for(
        &format!("no release deploying after a kill at {point}"),
        Duration::from_secs(30),
        || {
            kit::releases(agent, "demo")
                .iter()
                .all(|r| r["status"] != "deploying")
        },
    );
    (newest, kit::settled_release(agent, "demo"))
}

fn dynos_on(agent: &Agent, version: u64) {
    wait_for(
        &format!("every web dyno up on v{version}"),
        Duration::from_secs(20),
        || {
            agent
                .ps("demo")
                .iter()
                .all(|d| d["state"] == "up" && d["release"] == version)
        },
    );
    kit::only_recorded_processes(agent, &["demo"]);
}

fn agent_with_v1() -> (Agent, tempfile::TempDir) {
    let agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    let v1 = good(0);
    agent.create_and_deploy("demo", v1.path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    (agent, v1)
}

#[test]
fn kill_9_mid_rollout_of_a_good_release_finishes_it_through_the_gate() {
    let (mut agent, _v1) = agent_with_v1();
    let mut n = 0;
    for _ in 0..kit::runs(1) {
        for point in ["release.created", "rollout.switched", "rollout.gated"] {
            n += 1;
            let dir = good(n);
            let (newest, current) = crash_deploy(&mut agent, point, dir.path());
            assert_eq!(current["version"], newest, "after {point}: {current}");
            dynos_on(&agent, newest);
            let logs = agent.ok(&["logs", "-a", "demo", "-n", "10000"]);
            assert!(
                logs.contains(&format!("Release v{newest} is healthy and committed")),
                "after {point}: the gate did not run again:\n{logs}"
            );
        }
    }
    eprintln!("faults: {n} kill -9 mid-rollout of a good release (3 points), all finished through the gate");
}

#[test]
fn kill_9_mid_rollout_of_a_failing_release_rolls_it_back() {
    let (mut agent, _v1) = agent_with_v1();
    agent.ok(&["ps:scale", "web=3", "-a", "demo"]);
    let broken = bad();
    for _ in 0..kit::runs(1) {
        for point in ["release.created", "rollout.switched", "rollout.failed"] {
            let before = kit::settled_release(&agent, "demo")["version"].clone();
            let (newest, current) = crash_deploy(&mut agent, point, broken.path());
            assert_eq!(current["version"], before, "after {point}: {current}");
            let all = kit::releases(&agent, "demo");
            let failed = all.iter().find(|r| r["version"] == newest).expect("newest");
            assert_eq!(failed["status"], "failed", "after {point}: {all:#?}");
            dynos_on(&agent, before.as_u64().expect("version"));
        }
    }
    eprintln!(
        "faults: {} kill -9 mid-rollout of a failing release (3 points), all rolled back, none succeeded",
        3 * kit::runs(1)
    );
}

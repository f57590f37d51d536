//! App-reported health as the fleet sees it: a fleet deploy whose worker reports `error` during
//! its `reported` health check is FAILED with the dyno's message on the ack (the old release
//! runs on); one whose worker reports `error` in probation is rolled back by the robot, and its
//! retained `reported` state says why (`auto_rollback`).

use super::kit::{artifact_with, bin, fleet, keygen, serve_dir, Agent, Broker, Probe};
use roboku_wire::fleet::topic;
use roboku_wire::fleet::Reported;
use std::path::Path;

const BUDGET_0: &str = r#"{"roboku":{"probation":{"secs":120,"crash_budget":{"worker":0}}}}"#;

fn send(broker: &Broker, key: &Path, url: &str, slug: &Path, extra: &[&str]) -> (i32, String) {
    let name = slug.file_name().unwrap().to_string_lossy().to_string();
    let (key, slug) = (key.display().to_string(), slug.display().to_string());
    let art = format!("{url}/{name}");
    let mut args = vec![
        "deploy",
        "--device",
        "r1",
        "-a",
        "nav",
        "--key",
        &key,
        "--artifact-url",
        &art,
        "--slug",
        &slug,
        "--wait",
        "90",
        "--no-desired",
    ];
    args.extend(extra);
    fleet(broker, &args)
}

#[test]
fn reported_errors_fail_the_fleet_deploy_or_roll_it_back_with_the_dynos_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet.key");
    let roboku = bin("roboku").display().to_string();
    let quiet = artifact_with(
        dir.path(),
        "one.tar.gz",
        "one",
        "worker: exec sleep 600\n",
        &[("app.json", BUDGET_0.as_bytes())],
    );
    let checked = r#"{"healthchecks":{"worker":[{"reported":true,"timeout":60}]},
        "roboku":{"probation":{"secs":0}}}"#;
    let refuses = artifact_with(
        dir.path(),
        "two.tar.gz",
        "two",
        &format!("worker: {roboku} health:set error 'no lidar'; exec sleep 600\n"),
        &[("app.json", checked.as_bytes())],
    );
    let flaky = artifact_with(
        dir.path(),
        "three.tar.gz",
        "three",
        &format!(
            "worker: i=0; while :; do i=$((i+1)); {roboku} health:set error \"lidar lost $i\"; sleep 1; done\n"
        ),
        &[("app.json", BUDGET_0.as_bytes())],
    );
    let url = serve_dir(dir.path());
    let broker = Broker::start();
    let agent = Agent::start(&broker, "r1", &[], &public);
    let (rc, out) = send(&broker, &key, &url, &quiet, &[]);
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = fleet(
        &broker,
        &[
            "scale",
            "--device",
            "r1",
            "-a",
            "nav",
            "--key",
            &key.display().to_string(),
            "worker=1",
            "--no-desired",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    agent.wait_up("nav", 1, 30);
    let first = agent.releases("nav");

    // Its check hears the error: FAILED, with the dyno's own words; v1 runs on.
    let (rc, out) = send(&broker, &key, &url, &refuses, &[]);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("FAILED"), "{out}");
    assert!(out.contains("worker.1 reported error: no lidar"), "{out}");
    let current = |a: &Agent| a.releases("nav").into_iter().find(|r| r.2).map(|r| r.0);
    assert_eq!(current(&agent), first.iter().find(|r| r.2).map(|r| r.0));

    // Committed, then an error report in probation: the robot rolls back by itself and its
    // retained state says why.
    let mut probe = Probe::connect(&broker, &[topic::reported("r1")]);
    let (rc, out) = send(&broker, &key, &url, &flaky, &[]);
    assert_eq!(rc, 0, "{out}");
    let why = probe.wait_msg(60, "reported auto_rollback", |_, p| {
        let r: Reported = serde_json::from_slice(p).ok()?;
        r.apps
            .into_iter()
            .find(|a| a.name == "nav")
            .and_then(|a| a.auto_rollback)
    });
    assert!(
        why.contains("(automatic: worker.1 reported error: lidar lost"),
        "{why}"
    );
}

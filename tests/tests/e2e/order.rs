//! Start order and config reloads (`roboku.formation` in app.json): a `worker after web` starts
//! only once web is up; on `config:set` a `signal:SIGHUP` type gets the signal and keeps its
//! pid, a `none` type keeps its pid, a default type restarts. A cycle is refused at deploy.

use roboku_tests::{app_dir, wait_for, world_writable_dir, Agent, AgentOpts};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const APP_JSON: &str = r#"{"roboku": {"formation": {
    "worker": {"after": ["web"]},
    "hup": {"on_config": "signal:SIGHUP"},
    "still": {"on_config": "none"}}}}"#;

fn app(out: &Path, rev: &str) -> tempfile::TempDir {
    let out = out.display();
    let started = |t: &str| format!("date +%s%N >> {out}/{t}.starts\n");
    app_dir(&[
        (
            "Procfile",
            "web: sh web.sh\nworker: sh worker.sh\nhup: sh hup.sh\nstill: sh still.sh\n",
        ),
        ("app.json", APP_JSON),
        ("rev", rev),
        ("web.sh", &format!("{}exec sleep 600\n", started("web"))),
        (
            "worker.sh",
            &format!(
                "{}[ \"$FOO\" = bad ] && {{ echo refusing FOO=bad >&2; exit 1; }}\n\
                 exec sleep 600\n",
                started("worker")
            ),
        ),
        (
            "hup.sh",
            &format!(
                "trap 'echo \"hup $FOO\" >> {out}/hup.log' HUP\n{}\
                 while true; do sleep 0.1; done\n",
                started("hup")
            ),
        ),
        ("still.sh", "exec sleep 600\n"),
    ])
}

/// The start times (ns) a type's dynos wrote, oldest first.
fn starts(out: &Path, ptype: &str) -> Vec<u128> {
    std::fs::read_to_string(out.join(format!("{ptype}.starts")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn pids(agent: &Agent, names: &[&str]) -> Vec<i64> {
    let mut pids = Vec::new();
    wait_for(&format!("{names:?} up"), Duration::from_secs(20), || {
        pids = names
            .iter()
            .filter_map(|n| agent.up_pid("nav", n))
            .collect();
        pids.len() == names.len()
    });
    pids
}

#[test]
fn worker_after_web_starts_second_and_config_changes_reload_per_type() {
    let mut agent = Agent::start(AgentOpts::default());
    let out = world_writable_dir();
    agent.create_and_deploy("nav", app(out.path(), "1").path());
    agent.ok(&["ps:scale", "worker=1", "hup=1", "still=1", "-a", "nav"]);
    let all = ["web.1", "worker.1", "hup.1", "still.1"];
    pids(&agent, &all);

    // A new release: web preboots (its new dyno must pass its 1 s check); the worker is stopped
    // at the switch but starts only once the new web dyno passed.
    let v2_dir = app(out.path(), "2");
    let plan = agent.ok(&[
        "deploy",
        v2_dir.path().to_str().unwrap(),
        "-a",
        "nav",
        "--plan",
    ]);
    assert!(
        plan.contains("Dyno:       worker.1 restart (stop-then-start), after web\n"),
        "{plan}"
    );
    let v2 = agent.deploy("nav", v2_dir.path());
    assert_eq!(v2["status"], "succeeded", "{v2}");
    let (web, worker) = (starts(out.path(), "web"), starts(out.path(), "worker"));
    assert_eq!((web.len(), worker.len()), (2, 2), "{web:?} {worker:?}");
    let gap_ms = (worker[1] as i128 - web[1] as i128) / 1_000_000;
    assert!(
        gap_ms >= 800,
        "worker.1 started {gap_ms} ms after web.1: it must wait for web's check (1 s)"
    );
    let logs = agent.ok(&["logs", "-a", "nav", "-n", "500"]);
    assert!(
        logs.contains("Waiting for web to be up before starting (roboku.formation.worker.after)"),
        "{logs}"
    );

    // A config change: web and worker restart, hup hears SIGHUP, still is left alone.
    let before = pids(&agent, &all);
    let changed = agent.json(&["config:set", "FOO=bar", "-a", "nav"]);
    let version = changed["release"]["version"].as_u64().expect("a release");
    wait_for("hup.1 trapped SIGHUP", Duration::from_secs(10), || {
        std::fs::read_to_string(out.path().join("hup.log")).is_ok_and(|t| t.contains("hup"))
    });
    let hup_log = std::fs::read_to_string(out.path().join("hup.log")).unwrap();
    assert_eq!(
        hup_log.trim(),
        "hup",
        "the running process keeps its old environment (no FOO)"
    );
    let after = pids(&agent, &all);
    assert_ne!(after[0], before[0], "web (restart, the default) restarted");
    assert_ne!(
        after[1], before[1],
        "worker (restart, the default) restarted"
    );
    assert_eq!(after[2], before[2], "hup was signalled, not restarted");
    assert_eq!(after[3], before[3], "still was left running");
    assert_eq!(
        starts(out.path(), "hup").len(),
        2,
        "hup started once per deploy"
    );
    for name in all {
        let d = agent.dyno("nav", name).expect(name);
        assert_eq!(d["release"], version, "{name} is on the new release: {d}");
    }

    // Recorded in the release and the events, and each dyno's log says what it got.
    let releases = agent.json(&["releases", "-a", "nav"]);
    let rel: &Value = releases
        .as_array()
        .and_then(|l| l.iter().find(|r| r["version"] == version))
        .expect("the config release");
    let want =
        "Set FOO config vars (on config: hup signal SIGHUP, still none, web restart, worker restart)";
    assert_eq!(rel["description"], want, "{rel}");
    let events = agent.ok(&["events", "-a", "nav"]);
    assert!(events.contains(want), "{events}");
    let logs = agent.ok(&["logs", "-a", "nav", "-n", "500"]);
    assert!(
        logs.contains(&format!(
            "Config changed (v{version}): sent SIGHUP to pid {}",
            before[2]
        )),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "Config changed (v{version}): left running (on_config none)"
        )),
        "{logs}"
    );

    // A config change that fails (the worker will not run with FOO=bad) goes back to the
    // previous release; hup and still are reloaded in place again, not restarted.
    let out_bad = agent.roboku(&["config:set", "FOO=bad", "-a", "nav"]);
    assert!(
        !out_bad.status.success(),
        "FOO=bad must fail the release: {} {} {}",
        String::from_utf8_lossy(&out_bad.stdout),
        String::from_utf8_lossy(&out_bad.stderr),
        agent.ok(&["logs", "-a", "nav", "-n", "60"])
    );
    let back = pids(&agent, &all);
    assert_eq!(
        back[2], before[2],
        "hup kept its pid through the failed change"
    );
    assert_eq!(
        back[3], before[3],
        "still kept its pid through the failed change"
    );
    // Signalled for the change and again for its undoing (the trap runs within 0.1 s).
    wait_for("hup.1 trapped 3 SIGHUPs", Duration::from_secs(10), || {
        std::fs::read_to_string(out.path().join("hup.log")).is_ok_and(|t| t.lines().count() == 3)
    });
    for name in all {
        let d = agent.dyno("nav", name).expect(name);
        assert_eq!(
            d["release"], version,
            "{name} runs the restored release: {d}"
        );
    }
    let config = agent.json(&["config", "-a", "nav"]);
    assert_eq!(config["FOO"], "bar", "{config}");

    // robokud's own start (its dynos stopped with it): web is started first, the worker held.
    let held = |agent: &Agent| {
        agent
            .ok(&["logs", "-a", "nav", "-d", "worker.1", "-n", "1000"])
            .matches("Waiting for web to be up")
            .count()
    };
    let before = held(&agent);
    agent.restart("stop");
    pids(&agent, &all);
    assert_eq!(
        held(&agent),
        before + 1,
        "the worker waited for web at boot"
    );
    let since = |name: &str| {
        agent.dyno("nav", name).expect(name)["since"]
            .as_u64()
            .unwrap()
    };
    assert!(since("worker.1") >= since("web.1"), "web.1 was up first");
}

#[test]
fn a_start_order_cycle_or_unknown_type_is_refused_at_deploy() {
    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "loop"]);
    let cyclic = app_dir(&[
        ("Procfile", "a: exec sleep 60\nb: exec sleep 60\n"),
        (
            "app.json",
            r#"{"roboku":{"formation":{"a":{"after":["b"]},"b":{"after":["a"]}}}}"#,
        ),
    ]);
    let out = agent.roboku(&["deploy", cyclic.path().to_str().unwrap(), "-a", "loop"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("app.json: roboku.formation: the start order has a cycle: a -> b -> a"),
        "{err}"
    );
    let out = agent.roboku(&[
        "deploy",
        cyclic.path().to_str().unwrap(),
        "-a",
        "loop",
        "--plan",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the start order has a cycle"),
        "a plan refuses what the deploy would"
    );
    let unknown = app_dir(&[
        ("Procfile", "a: exec sleep 60\n"),
        (
            "app.json",
            r#"{"roboku":{"formation":{"a":{"after":["brokr"]}}}}"#,
        ),
    ]);
    let out = agent.roboku(&["deploy", unknown.path().to_str().unwrap(), "-a", "loop"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("roboku.formation.a.after: no process type \"brokr\" in the Procfile"),
        "{err}"
    );
    let releases = agent.json(&["releases", "-a", "loop"]);
    assert_eq!(releases, serde_json::json!([]), "nothing was released");
}

//! Stop order, the start order reversed: with `worker after broker`, the worker is gone before
//! the broker gets its SIGTERM, whichever way the app stops (a stop of the app, a scale to 0,
//! apps:destroy, robokud's own shutdown). The order is written by the dynos' own TERM traps.

use roboku_tests::{app_dir, wait_for, world_writable_dir, Agent, AgentOpts};
use std::path::Path;
use std::time::Duration;

/// `broker` and `worker` (after broker); each writes `<type> term` to `out/<app>.stops` when it
/// gets SIGTERM, and the worker takes a moment to finish (`worker gone`) before it exits.
fn app(out: &Path, app: &str) -> tempfile::TempDir {
    let log = out.join(format!("{app}.stops")).display().to_string();
    let term = |t: &str, tail: &str| {
        format!(
            "trap 'echo {t} term >> {log}; {tail} exit 0' TERM\nwhile true; do sleep 0.1; done\n"
        )
    };
    app_dir(&[
        ("Procfile", "broker: sh broker.sh\nworker: sh worker.sh\n"),
        (
            "app.json",
            r#"{"roboku": {"formation": {"worker": {"after": ["broker"]}}}}"#,
        ),
        ("broker.sh", &term("broker", "")),
        (
            "worker.sh",
            &term("worker", &format!("sleep 1; echo worker gone >> {log};")),
        ),
    ])
}

fn stops(out: &Path, app: &str) -> Vec<String> {
    std::fs::read_to_string(out.join(format!("{app}.stops")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Deploys the app and runs one broker and one worker.
fn running(agent: &Agent, out: &Path, name: &str) {
    agent.ok(&["apps:create", name]);
    let dir = app(out, name);
    let v = agent.deploy(name, dir.path());
    assert_eq!(v["status"], "succeeded", "{v}");
    agent.ok(&["ps:scale", "broker=1", "worker=1", "-a", name]);
    agent.wait_up(name, "broker.1", None, Duration::from_secs(20));
    agent.wait_up(name, "worker.1", None, Duration::from_secs(20));
}

fn assert_reversed(out: &Path, name: &str, how: &str) {
    wait_for(
        &format!("{name} stopped ({how})"),
        Duration::from_secs(30),
        || stops(out, name).len() == 3,
    );
    assert_eq!(
        stops(out, name),
        ["worker term", "worker gone", "broker term"],
        "{how}: the worker must be gone before the broker hears SIGTERM"
    );
}

#[test]
fn dependents_stop_first_on_stop_scale_destroy_and_shutdown() {
    let out = world_writable_dir();
    let mut agent = Agent::start(AgentOpts::default());
    for name in ["a-stop", "a-scale", "a-destroy", "a-shutdown"] {
        running(&agent, out.path(), name);
    }

    // Every dyno of the app (the API's and the fleet's `stop` without a target; the CLI's
    // `ps:stop` names one).
    let r = agent.api("POST", "/v1/apps/a-stop/stop", Some("{}"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_reversed(out.path(), "a-stop", "stop");
    let logs = agent.ok(&["logs", "-a", "a-stop"]);
    assert!(
        logs.contains("Stopping once worker.1 is gone"),
        "the broker says why it waits: {logs}"
    );

    agent.ok(&["ps:scale", "broker=0", "worker=0", "-a", "a-scale"]);
    assert_reversed(out.path(), "a-scale", "scale to 0");

    agent.ok(&["apps:destroy", "a-destroy", "--confirm", "a-destroy"]);
    assert_reversed(out.path(), "a-destroy", "apps:destroy");

    // Only the broker: nothing depends on it being stopped, it goes at once and the worker
    // runs on (order only gates starts).
    running(&agent, out.path(), "a-only");
    agent.ok(&["ps:stop", "broker", "-a", "a-only"]);
    wait_for("the broker alone stopped", Duration::from_secs(20), || {
        stops(out.path(), "a-only") == ["broker term"]
    });
    assert!(agent.up_pid("a-only", "worker.1").is_some());

    agent.stop();
    assert_reversed(out.path(), "a-shutdown", "robokud shutdown");
}

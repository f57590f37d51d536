//! Apply gates and app-reported health (issue 14): a deploy against a closed gate waits, is
//! visible as waiting, and applies when the gate opens (or gives up at its time limit); a hold
//! outlives a robokud restart and expires by itself; a dyno reports its own health through its
//! app's dyno socket and cannot reach another app's.

use roboku_tests::bins::bin;
use roboku_tests::{app_dir, wait_for, world_writable_dir, Agent, AgentOpts};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn agent() -> Agent {
    Agent::start(AgentOpts {
        extra: vec!["--gate-poll-ms".into(), "200".into()],
        ..AgentOpts::default()
    })
}

fn worker_app(tag: &str) -> tempfile::TempDir {
    app_dir(&[("Procfile", &format!("worker: echo {tag}; exec sleep 600\n"))])
}

fn current(agent: &Agent, app: &str) -> u64 {
    agent.json(&["apps:info", "-a", app])["release"]
        .as_u64()
        .unwrap_or(0)
}

fn gates(agent: &Agent, app: &str) -> Value {
    agent.json(&["gates", "-a", app])
}

/// `roboku ARGS` started in the background (it waits for the gates).
fn background(agent: &Agent, args: &[&str]) -> std::process::Child {
    Command::new(bin("roboku"))
        .args(args)
        .env("ROBOKU_SOCKET", agent.socket())
        .env_remove("ROBOKU_APP")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roboku")
}

#[test]
fn a_deploy_against_a_closed_gate_waits_visibly_and_applies_when_it_opens() {
    let agent = agent();
    agent.create_and_deploy("nav", worker_app("v1").path());
    agent.ok(&["ps:scale", "worker=1", "-a", "nav"]);
    let shared = world_writable_dir();
    let idle = shared.path().join("idle");
    let idle_s = idle.display().to_string();
    agent.ok(&["gates:set", "mission-idle", "--file", &idle_s, "-a", "nav"]);

    let v2 = worker_app("v2");
    let dir = v2.path().to_str().unwrap();
    // Without --json: the deploy's progress (stderr) is part of what is checked.
    let deploy = background(&agent, &["deploy", dir, "-a", "nav"]);
    wait_for(
        "the deploy to wait for the gate",
        Duration::from_secs(30),
        || {
            let g = gates(&agent, "nav");
            g["waiting"].as_array().is_some_and(|w| {
                w.len() == 1
                    && w[0]["what"] == "deploy"
                    && w[0]["blocked_by"] == serde_json::json!(["gate mission-idle"])
            })
        },
    );
    let g = gates(&agent, "nav");
    assert_eq!(g["open"], false, "{g}");
    assert_eq!(g["gates"][0]["open"], false, "{g}");
    assert_eq!(
        g["gates"][0]["detail"],
        format!("{idle_s} does not exist"),
        "{g}"
    );
    let info = agent.json(&["apps:info", "-a", "nav"]);
    assert_eq!(info["waiting"], "waiting for gate mission-idle", "{info}");
    assert_eq!(
        current(&agent, "nav"),
        1,
        "nothing applied while the gate is closed"
    );
    let text = agent.ok(&["gates", "-a", "nav"]);
    assert!(
        text.contains("closed (changes wait)") && text.contains("waiting: deploy (cli)"),
        "{text}"
    );
    wait_for("the waiting event", Duration::from_secs(10), || {
        agent
            .ok(&["events", "-a", "nav"])
            .contains("The deploy waits: gate mission-idle")
    });

    std::fs::write(&idle, b"").unwrap();
    let out = deploy.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the deploy applies once the gate opens: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("done, v2"), "{said}");
    assert_eq!(current(&agent, "nav"), 2);
    let steps = String::from_utf8_lossy(&out.stderr);
    assert!(
        steps.contains("gates: The deploy waits: gate mission-idle")
            && steps.contains("gates: Gates open: applying the deploy"),
        "the deploy's progress says it waited: {steps}"
    );
    let g = gates(&agent, "nav");
    assert_eq!(g["open"], true, "{g}");
    assert!(g["waiting"].as_array().unwrap().is_empty(), "{g}");

    // With a time limit, a closed gate fails the change clearly and applies nothing.
    std::fs::remove_file(&idle).unwrap();
    let out = agent.roboku(&["config:set", "A=1", "--gate-timeout", "1s", "-a", "nav"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("gave up after waiting") && err.contains("gate mission-idle"),
        "{err}"
    );
    assert_eq!(current(&agent, "nav"), 2);
    assert!(agent.json(&["config", "-a", "nav"]).get("A").is_none());

    // Removed, the gate no longer holds anything back.
    agent.ok(&["gates:unset", "mission-idle", "-a", "nav"]);
    agent.ok(&["config:set", "A=1", "-a", "nav"]);
    assert_eq!(current(&agent, "nav"), 3);
}

#[test]
fn a_hold_survives_a_restart_of_robokud_and_expires_by_itself() {
    let mut agent = agent();
    agent.create_and_deploy("arm", worker_app("v1").path());
    let hold = agent.json(&[
        "gates:hold",
        "mission-7",
        "--for",
        "12s",
        "--reason",
        "picking",
        "-a",
        "arm",
    ]);
    assert_eq!(hold["holder"], "cli", "{hold}");
    agent.restart("stop");
    let g = gates(&agent, "arm");
    let holds = g["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 1, "the hold outlived robokud: {g}");
    assert_eq!(holds[0]["name"], "mission-7");
    assert_eq!(holds[0]["reason"], "picking");
    assert_eq!(g["open"], false, "{g}");

    // A change waits for it, then applies by itself when the lease runs out.
    let change = background(&agent, &["config:set", "MODE=slow", "-a", "arm"]);
    wait_for("the config change to wait", Duration::from_secs(10), || {
        gates(&agent, "arm")["waiting"]
            .as_array()
            .is_some_and(|w| w.len() == 1 && w[0]["blocked_by"][0] == "hold mission-7")
    });
    assert_eq!(current(&agent, "arm"), 1);
    let out = change.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current(&agent, "arm"), 2);
    let g = gates(&agent, "arm");
    assert!(g["holds"].as_array().unwrap().is_empty(), "{g}");
    let events = agent.ok(&["events", "-a", "arm"]);
    assert!(
        events.contains("Hold mission-7 expired (held by cli: picking)"),
        "{events}"
    );

    // Released by hand: gone at once.
    agent.ok(&["gates:hold", "dock", "--for", "1h", "-a", "arm"]);
    agent.ok(&["gates:release", "dock", "-a", "arm"]);
    assert_eq!(gates(&agent, "arm")["open"], true);
    let out = agent.roboku(&["gates:release", "dock", "-a", "arm"]);
    assert!(!out.status.success());
}

#[test]
fn a_dyno_reports_its_own_health_and_cannot_set_another_apps() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        extra: vec!["--gate-poll-ms".into(), "200".into()],
        ..AgentOpts::default()
    });
    let roboku = bin("roboku").display().to_string();
    let nav = app_dir(&[(
        "Procfile",
        "worker: \"$ROBOKU_BIN\" health:set blocked 'mission 42' && exec sleep 600\n",
    )]);
    agent.ok(&["apps:create", "nav"]);
    agent.ok(&["config:set", &format!("ROBOKU_BIN={roboku}"), "-a", "nav"]);
    agent.deploy("nav", nav.path());
    agent.ok(&["ps:scale", "worker=1", "-a", "nav"]);
    let health = |agent: &Agent| {
        agent
            .dyno("nav", "worker.1")
            .map(|d| d["health"].clone())
            .unwrap_or(Value::Null)
    };
    wait_for("worker.1 reports blocked", Duration::from_secs(30), || {
        health(&agent)["status"] == "blocked"
    });
    assert_eq!(health(&agent)["message"], "mission 42");
    let ps = agent.ok(&["ps", "-a", "nav"]);
    assert!(ps.contains("health blocked (mission 42)"), "{ps}");

    // A health gate reads it.
    agent.ok(&["gates:set", "nav-free", "--health", "worker", "-a", "nav"]);
    let g = gates(&agent, "nav");
    assert_eq!(g["open"], false, "{g}");
    assert_eq!(
        g["gates"][0]["detail"], "worker.1 is blocked: mission 42",
        "{g}"
    );

    // Another app's dyno: its own socket names its own app, and nav's socket is not its to use.
    agent.create_and_deploy("intruder", worker_app("x").path());
    let nav_socket = agent.data_dir().join("sockets/nav.sock");
    let nav_socket = nav_socket.display().to_string();
    let script = format!(
        "DYNO=worker.1 ROBOKU_DYNO_SOCKET={nav_socket} {roboku} health:set okay pwned; \
         echo rc=$?; DYNO=worker.1 {roboku} health:set okay pwned; echo rc=$?; \
         {roboku} gates:release nav-free; echo rc=$?"
    );
    let out = agent.roboku(&["run", "-a", "intruder", "--", "sh", "-c", &script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("rc=0").count(),
        0,
        "no attempt of the intruder may succeed: {text}"
    );
    assert!(
        text.contains("Permission denied") || text.contains("permission denied"),
        "nav's socket refuses another app's uid: {text}"
    );
    assert!(
        text.contains("app intruder has no dyno \"worker.1\""),
        "its own socket acts on its own app only: {text}"
    );
    assert_eq!(
        health(&agent)["status"],
        "blocked",
        "nav's health unchanged"
    );
    assert_eq!(gates(&agent, "nav")["gates"].as_array().unwrap().len(), 1);

    // The report belongs to the running instance: a restarted robokud re-adopts the dyno and
    // shows it again.
    let pid = agent.up_pid("nav", "worker.1");
    agent.restart("stop");
    assert_eq!(
        agent.up_pid("nav", "worker.1"),
        pid,
        "re-adopted, not restarted"
    );
    assert_eq!(
        health(&agent)["status"],
        "blocked",
        "kept across the restart"
    );
}

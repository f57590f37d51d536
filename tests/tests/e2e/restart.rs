//! robokud restarts: state survives in the store, dynos left running are re-adopted (same pids,
//! output still captured), and dynos stopped with the agent come back with it.

use roboku_tests::{alive, app_dir, now_ms, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::time::Duration;

const PROCFILE: &str = "web: exec sleep 1000
worker: i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.2; done
";

struct Snapshot {
    apps: Value,
    info: Value,
    releases: Value,
    config: Value,
    formation: Value,
}

fn snapshot(agent: &Agent) -> Snapshot {
    let formation = agent.api("GET", "/v1/apps/demo/formation", None);
    assert_eq!(formation.status, 200, "{}", formation.body);
    Snapshot {
        apps: agent.json(&["apps"]),
        info: agent.json(&["apps:info", "-a", "demo"]),
        releases: agent.json(&["releases", "-a", "demo"]),
        config: agent.json(&["config", "-a", "demo"]),
        formation: formation.json(),
    }
}

fn assert_same(before: &Snapshot, after: &Snapshot) {
    assert_eq!(before.apps, after.apps, "apps changed across the restart");
    assert_eq!(
        before.info, after.info,
        "apps:info changed across the restart"
    );
    assert_eq!(before.releases, after.releases, "releases changed");
    assert_eq!(before.config, after.config, "config changed");
    assert_eq!(before.formation, after.formation, "formation changed");
}

/// An app with config, two releases, a scaled formation and a limit.
fn set_up(agent: &Agent) -> tempfile::TempDir {
    let app = app_dir(&[("Procfile", PROCFILE)]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&["config:set", "GREETING=hi", "MODE=robot", "-a", "demo"]);
    agent.ok(&["ps:scale", "web=2", "worker=1", "-a", "demo"]);
    agent.ok(&["ps:resize", "worker", "--memory", "64M", "-a", "demo"]);
    app
}

fn wait_all_up(agent: &Agent) -> Vec<(String, i64)> {
    let mut pids = Vec::new();
    wait_for("web.1, web.2, worker.1 up", Duration::from_secs(10), || {
        pids = ["web.1", "web.2", "worker.1"]
            .iter()
            .filter_map(|n| agent.up_pid("demo", n).map(|p| (n.to_string(), p)))
            .collect();
        pids.len() == 3
    });
    pids
}

#[test]
fn restart_with_on_exit_leave_readopts_running_dynos() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    let _app = set_up(&agent);
    let pids = wait_all_up(&agent);
    // Let the formation settle (the resize restarted worker) before comparing snapshots.
    wait_for("dynos_running == 3", Duration::from_secs(10), || {
        agent.json(&["apps:info", "-a", "demo"])["dynos_running"] == 3
    });
    let before = snapshot(&agent);
    let old_agent = agent.pid();

    agent.restart("stop");
    assert_ne!(agent.pid(), old_agent);
    for (name, pid) in &pids {
        assert!(alive(*pid), "{name} (pid {pid}) died with the agent");
    }
    let after = snapshot(&agent);
    assert_same(&before, &after);
    for (name, pid) in &pids {
        let d = agent.dyno("demo", name).expect("listed");
        assert_eq!(d["state"], "up", "{d}");
        assert_eq!(d["pid"].as_i64(), Some(*pid), "{name} not re-adopted: {d}");
        assert_eq!(d["restarts"], 0, "{d}");
    }
    let lines = agent.log_lines(&["-a", "demo", "--source", "roboku"]);
    assert!(
        lines
            .iter()
            .any(|l| l["line"].as_str().is_some_and(|s| s.contains("Re-adopted"))),
        "{lines:#?}"
    );
    // Output written after the restart still reaches the logs.
    let restarted_at = now_ms();
    wait_for(
        "a worker line after the restart",
        Duration::from_secs(10),
        || {
            agent
                .log_lines(&["-a", "demo", "-d", "worker.1", "--source", "app", "-n", "5"])
                .iter()
                .any(|l| l["ts"].as_u64().is_some_and(|ts| ts > restarted_at + 300))
        },
    );
    // A re-adopted dyno is still supervised: killing it gets it replaced.
    let (_, web1) = pids[0].clone();
    assert!(roboku_tests::kill(web1, libc::SIGKILL));
    agent.wait_up("demo", "web.1", Some(web1), Duration::from_secs(10));
}

#[test]
fn restart_with_on_exit_stop_brings_the_formation_back() {
    let mut agent = Agent::start(AgentOpts::default());
    let _app = set_up(&agent);
    let pids = wait_all_up(&agent);
    wait_for("dynos_running == 3", Duration::from_secs(10), || {
        agent.json(&["apps:info", "-a", "demo"])["dynos_running"] == 3
    });
    let before = snapshot(&agent);

    agent.restart("stop");
    for (name, pid) in &pids {
        assert!(
            !alive(*pid),
            "{name} (pid {pid}) outlived an --on-exit stop agent"
        );
    }
    let fresh = wait_all_up(&agent);
    for ((name, old), (_, new)) in pids.iter().zip(&fresh) {
        assert_ne!(old, new, "{name}");
    }
    wait_for("dynos_running == 3", Duration::from_secs(10), || {
        agent.json(&["apps:info", "-a", "demo"])["dynos_running"] == 3
    });
    assert_same(&before, &snapshot(&agent));
}

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

/// A dyno that prints `mark <unix ms>` (its own clock reading) on SIGUSR1.
const MARKER: &str = "import signal, sys, time
def mark(*_):
    print('mark', int(time.time() * 1000), flush=True)
signal.signal(signal.SIGUSR1, mark)
print('ready', flush=True)
while True:
    time.sleep(1)
";

/// `(ts, written at)` of every `mark` line of web.1.
fn marks(agent: &Agent) -> Vec<(u64, u64)> {
    agent
        .log_lines(&["-a", "demo", "-d", "web.1", "--source", "app", "-n", "100"])
        .iter()
        .filter_map(|l| {
            let at = l["line"].as_str()?.strip_prefix("mark ")?.parse().ok()?;
            Some((l["ts"].as_u64()?, at))
        })
        .collect()
}

/// Lines a dyno wrote while robokud was dead keep (a bound of) their write time: each is stamped
/// with the spool's last write before robokud came back, never before it was written and never
/// as late as the re-read, and a roboku line states the bound.
#[test]
fn lines_written_while_the_agent_was_down_keep_their_write_time() {
    let mut agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[
        ("Procfile", "web: exec python3 -u marker.py\n"),
        ("marker.py", MARKER),
    ]);
    agent.create_and_deploy("demo", app.path());
    let pid = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    wait_for("the dyno is ready", Duration::from_secs(10), || {
        agent
            .log_lines(&["-a", "demo", "--source", "app"])
            .iter()
            .any(|l| l["line"] == "ready")
    });
    let spool = agent.data_dir().join("logs/demo/spool/web.1.out");
    let spooled = |n: usize| {
        let text = std::fs::read_to_string(&spool).unwrap_or_default();
        text.matches("mark ").count() >= n
    };

    agent.kill9();
    // Two lines 1 s apart while robokud is dead, then 1 s more of downtime: the fault itself.
    assert!(roboku_tests::kill(pid, libc::SIGUSR1));
    wait_for("mark 1 in the spool", Duration::from_secs(5), || spooled(1));
    std::thread::sleep(Duration::from_secs(1));
    assert!(roboku_tests::kill(pid, libc::SIGUSR1));
    wait_for("mark 2 in the spool", Duration::from_secs(5), || spooled(2));
    std::thread::sleep(Duration::from_secs(1));
    let restarted_at = now_ms();
    agent.respawn();
    assert_eq!(agent.up_pid("demo", "web.1"), Some(pid), "re-adopted");

    let mut got = Vec::new();
    wait_for("both marks in the logs", Duration::from_secs(10), || {
        got = marks(&agent);
        got.len() == 2
    });
    let (first, second) = (got[0], got[1]);
    // mtime comes from the kernel's coarse clock: up to a tick (4 ms) before the dyno's reading.
    let tick = 20;
    assert!(
        first.0 + tick >= first.1,
        "stamped before it was written: {first:?}"
    );
    assert!(
        second.0 + tick >= second.1,
        "stamped before it was written: {second:?}"
    );
    assert!(
        second.0 <= second.1 + 500 && first.0 <= second.1 + 500,
        "stamped later than the last write ({first:?}, {second:?})"
    );
    assert!(
        second.0 < restarted_at,
        "stamped when re-read: {second:?}, restarted at {restarted_at}"
    );
    eprintln!(
        "logs: lines written while down, stamped {:+} ms and {:+} ms after their writes; \
         robokud back {} ms after the last",
        first.0 as i64 - first.1 as i64,
        second.0 as i64 - second.1 as i64,
        restarted_at as i64 - second.1 as i64
    );
    let note = agent
        .log_lines(&["-a", "demo", "-d", "web.1", "--source", "roboku"])
        .into_iter()
        .find(|l| {
            l["line"]
                .as_str()
                .is_some_and(|s| s.contains("written while robokud was not reading"))
        })
        .expect("a roboku line states how the lines are stamped");
    assert!(
        note["line"].as_str().unwrap().starts_with("2 lines"),
        "{note}"
    );

    // Tailed again, a new line is stamped as it is read.
    assert!(roboku_tests::kill(pid, libc::SIGUSR1));
    wait_for("mark 3 in the logs", Duration::from_secs(10), || {
        got = marks(&agent);
        got.len() == 3
    });
    let third = got[2];
    assert!(
        third.0 + tick >= third.1 && third.0 <= third.1 + 1000,
        "{third:?}"
    );
}

//! kill -9 at every step of `apps:rename`: after the restart the app has exactly one of its two
//! names, whole (releases, config, uid, build cache, logs, git repository with its hook, the
//! web dyno answering HTTP on its port under that name), never half of each; a kill before the
//! store commit keeps the old name, one after it the new. The other app's dyno is not touched.

use super::kit;
use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use std::time::Duration;

const SERVER: &str = "import http.server, os\n\
class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = os.environ['ROBOKU_APP'].encode()\n        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";

/// The steps, and whether the app has the new name after a kill there.
const POINTS: [(&str, bool); 5] = [
    ("rename.stopping", false),
    ("rename.journaled", false),
    ("rename.committed", true),
    ("rename.moved", true),
    ("rename.logs_moved", true),
];

/// What must be the same, whatever the app is called.
#[derive(Debug, PartialEq)]
struct Held {
    releases: usize,
    config: String,
    uid: serde_json::Value,
    port: u64,
}

fn held(agent: &Agent, app: &str) -> Held {
    Held {
        releases: kit::releases(agent, app).len(),
        config: agent.ok(&["config:get", "COLOR", "-a", app]),
        uid: agent.json(&["apps:info", "-a", app])["uid"].clone(),
        port: agent.dyno(app, "web.1").expect("web.1")["port"]
            .as_u64()
            .expect("port"),
    }
}

/// Everything of `app` is under that name, none under `gone`'s.
fn whole(agent: &Agent, app: &str, gone: &str, at: &str) {
    let data = agent.data_dir();
    assert!(
        !agent.roboku(&["ps", "-a", gone]).status.success(),
        "after {at}: {gone} still answers"
    );
    for (dir, must) in [("cache", true), ("logs", true), ("git", true)] {
        let (have, lost) = match dir {
            "git" => (
                data.join(format!("git/{app}.git")),
                data.join(format!("git/{gone}.git")),
            ),
            _ => (data.join(dir).join(app), data.join(dir).join(gone)),
        };
        assert_eq!(have.exists(), must, "after {at}: {}", have.display());
        assert!(!lost.exists(), "after {at}: {} left", lost.display());
    }
    let hook = std::fs::read_to_string(data.join(format!("git/{app}.git/hooks/pre-receive")))
        .expect("hook");
    assert!(
        hook.contains(&format!("git-hook '{app}'")),
        "after {at}: {hook}"
    );
    assert!(
        !data.join("rename.json").exists(),
        "after {at}: journal left"
    );
    let port = agent.wait_up(app, "web.1", None, Duration::from_secs(20));
    let port_no = agent.dyno(app, "web.1").expect("web.1")["port"]
        .as_u64()
        .expect("port") as u16;
    wait_for(
        &format!("after {at}: {app} (pid {port}) answers as itself"),
        Duration::from_secs(20),
        || http::get(port_no, "/").is_ok_and(|r| r.status == 200 && r.body == app),
    );
    let logs = agent.ok(&["logs", "-a", app, "-n", "10000"]);
    assert!(
        logs.contains("first start"),
        "after {at}: history lost:\n{logs}"
    );
    let cg = format!("{}/{gone}", agent.cgroup_name());
    assert!(
        roboku_tests::cgroups::children(&cg, "").is_empty(),
        "after {at}: instance cgroups left under {gone}"
    );
    kit::only_recorded_processes(agent, &[app, "other"]);
    kit::no_leaked_cgroups(agent, app);
    kit::integrity_ok(agent);
}

#[test]
fn kill_9_at_every_step_of_a_rename_leaves_one_whole_name() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    let src = app_dir(&[
        (
            "Procfile",
            "web: echo \"first start\" >&2; exec python3 app.py\n",
        ),
        ("app.py", SERVER),
    ]);
    agent.create_and_deploy("app0", src.path());
    agent.ok(&["config:set", "COLOR=green", "-a", "app0"]);
    agent.ok(&["git:init", "-a", "app0"]);
    let other = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    agent.create_and_deploy("other", other.path());
    let other_pid = agent.wait_up("other", "web.1", None, Duration::from_secs(20));
    agent.wait_up("app0", "web.1", None, Duration::from_secs(20));
    wait_for("the first line logged", Duration::from_secs(10), || {
        agent
            .ok(&["logs", "-a", "app0", "-n", "100"])
            .contains("first start")
    });
    let before = held(&agent, "app0");
    let (mut name, mut n, mut kills) = ("app0".to_string(), 0, 0);
    for _ in 0..kit::runs(1) {
        for (point, moved) in POINTS {
            n += 1;
            let next = format!("app{n}");
            agent.restart_with_fault(point);
            let _ = agent.roboku(&["apps:rename", &name, &next]);
            agent.wait_killed(Duration::from_secs(30));
            agent.respawn();
            kills += 1;
            let (now, gone) = match moved {
                true => (next.clone(), name.clone()),
                false => (name.clone(), next.clone()),
            };
            whole(&agent, &now, &gone, point);
            assert_eq!(held(&agent, &now), before, "after {point}");
            assert_eq!(
                agent.up_pid("other", "web.1"),
                Some(other_pid),
                "after {point}: the other app was touched"
            );
            name = now;
        }
    }
    // And one without a kill, to end on.
    let last = format!("app{}", n + 1);
    agent.ok(&["apps:rename", &last, "-a", &name]);
    whole(&agent, &last, &name, "an uninterrupted rename");
    eprintln!(
        "faults: {kills} kill -9 during apps:rename ({} points), each left one whole name",
        POINTS.len()
    );
}

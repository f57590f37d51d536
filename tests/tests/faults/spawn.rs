//! kill -9 while dynos are being forked: whatever was forked is re-adopted (its instance was
//! recorded before the fork) or killed at the next start; no leaked dyno holds a `$PORT`.

use super::kit;
use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use std::time::Duration;

const WEB: &str = "web: exec python3 -m http.server $PORT --bind 127.0.0.1\n";

fn web_dynos_up(agent: &Agent, n: usize) -> bool {
    let ps = agent.ps("demo");
    ps.len() == n && ps.iter().all(|d| d["state"] == "up")
}

#[test]
fn kill_9_during_scale_up_leaks_no_dyno_and_no_port() {
    let runs = kit::runs(3);
    let app = app_dir(&[("Procfile", WEB)]);
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    agent.create_and_deploy("demo", app.path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    for run in 0..runs {
        // Die after the 1st, 2nd or 3rd fork of the scale-up (the others may be forked too).
        let n = 1 + run % 3;
        agent.restart_with_fault(&format!("spawn.forked:{n}"));
        let _ = agent.roboku(&["ps:scale", "web=4", "-a", "demo"]);
        agent.wait_killed(Duration::from_secs(20));
        agent.respawn();
        wait_for("web.1..4 up", Duration::from_secs(20), || {
            web_dynos_up(&agent, 4)
        });
        kit::only_recorded_processes(&agent, &["demo"]);
        for d in agent.ps("demo") {
            let port = d["port"].as_u64().expect("port") as u16;
            wait_for(
                &format!("run {run}: {} answers on {port}", d["name"]),
                Duration::from_secs(10),
                || http::get(port, "/").is_ok_and(|r| r.status == 200),
            );
            assert_eq!(d["restarts"], 0, "run {run}: crash-looped: {d}");
        }
        let logs = agent.ok(&["logs", "-a", "demo", "-n", "10000"]);
        assert!(
            !logs.contains("Address already in use"),
            "run {run}: a leaked dyno held a port:\n{logs}"
        );
        agent.ok(&["ps:scale", "web=1", "-a", "demo"]);
        wait_for("back to web.1 alone", Duration::from_secs(20), || {
            web_dynos_up(&agent, 1)
                && roboku_tests::tagged(agent.data_dir())
                    .iter()
                    .all(|(_, sid)| Some(*sid) == agent.up_pid("demo", "web.1"))
        });
    }
    eprintln!(
        "faults: {runs} kill -9 while forking a scale-up (after fork 1-3), 0 leaked dynos, 0 port clashes"
    );
}

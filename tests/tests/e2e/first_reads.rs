//! New dynos' first resource readings are rationed per sampling round (8), so a big scale-up
//! does not read thousands of cgroup files in one engine turn; `roboku ps` still shows every
//! dyno's memory at once, because it reads its app's unread dynos itself.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::time::{Duration, Instant};

#[test]
fn ps_shows_every_new_dynos_memory_at_once_though_rounds_ration_first_reads() {
    // A round every 600 s: none comes during the test, so whatever ps shows it read itself.
    let agent = Agent::start(AgentOpts {
        extra: vec!["--sample-secs".into(), "600".into()],
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    agent.create_and_deploy("many", app.path());
    agent.ok(&["ps:scale", "web=40", "-a", "many"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let list = loop {
        let list = agent.ps("many");
        if list.len() == 40 && list.iter().all(|d| d["state"] == "up") {
            break list;
        }
        assert!(Instant::now() < deadline, "40 dynos not up: {list:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for d in &list {
        let mem = d["memory_bytes"].as_u64();
        assert!(mem.is_some_and(|m| m > 0), "no memory reading: {d}");
        assert!(d["pids"].as_u64().is_some_and(|p| p >= 1), "no pids: {d}");
    }
    // The text form too: no "mem -" left.
    let text = agent.ok(&["ps", "-a", "many"]);
    assert!(!text.contains("mem -"), "{text}");
}

//! Degraded mode: without cgroups the agent still runs dynos, stores limits and says they are
//! not enforced.

use roboku_tests::{alive, app_dir, Agent, AgentOpts};
use std::time::Duration;

#[test]
fn without_cgroups_limits_are_stored_and_flagged_not_enforced() {
    eprintln!("note: this test checks degraded behaviour (robokud --no-cgroups), not enforcement");
    let agent = Agent::start(AgentOpts {
        no_cgroups: true,
        ..AgentOpts::default()
    });
    let status = agent.json(&["status"]);
    assert_eq!(status["cgroup"]["enforced"], false, "{status}");
    assert!(
        status["cgroup"]["reason"]
            .as_str()
            .is_some_and(|r| !r.trim().is_empty()),
        "no reason given: {status}"
    );
    let text = agent.ok(&["status"]);
    assert!(text.to_lowercase().contains("not enforced"), "{text}");

    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    let pid = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let formation = agent.json(&["ps:resize", "web", "--memory", "32M", "-a", "demo"]);
    let web = formation
        .as_array()
        .and_then(|f| f.iter().find(|e| e["ptype"] == "web"))
        .unwrap_or_else(|| panic!("{formation}"));
    assert_eq!(web["limits"]["memory_max"], 32 * 1024 * 1024, "{formation}");
    assert_eq!(web["limits_enforced"], false, "{formation}");

    let now = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    assert!(alive(now));
    let _ = pid;
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/pids")
            .join(agent.cgroup_name())
            .exists(),
        "--no-cgroups still made a cgroup"
    );
}

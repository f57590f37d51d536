//! Scaling to zero: SIGTERM, the grace period, SIGKILL (R12) for a dyno that ignores SIGTERM,
//! and stable ports when the formation comes back.

use roboku_tests::{alive, app_dir, holds_for, wait_for, Agent, AgentOpts};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PROCFILE: &str = "web: exec sleep 1000
stubborn: trap '' TERM; while true; do sleep 1; done
";

fn ports(agent: &Agent) -> BTreeMap<String, u64> {
    agent
        .ps("demo")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().expect("name").to_string(),
                d["port"].as_u64().expect("port"),
            )
        })
        .collect()
}

#[test]
fn scale_to_zero_terms_then_kills_after_grace_and_ports_are_stable() {
    let agent = Agent::start(AgentOpts::default()); // grace 3 s
    let app = app_dir(&[("Procfile", PROCFILE)]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&["ps:scale", "web=2", "stubborn=1", "-a", "demo"]);
    let long = Duration::from_secs(10);
    let web1 = agent.wait_up("demo", "web.1", None, long);
    let web2 = agent.wait_up("demo", "web.2", None, long);
    let stubborn = agent.wait_up("demo", "stubborn.1", None, long);
    let before = ports(&agent);
    assert_eq!(before.len(), 3, "{before:?}");
    let (lo, hi) = agent.port_range();
    assert!(
        before.values().all(|p| (lo as u64..=hi as u64).contains(p)),
        "{before:?} outside {lo}-{hi}"
    );

    let stop_at = Instant::now();
    agent.ok(&["ps:scale", "web=0", "stubborn=0", "-a", "demo"]);
    // The ones that honour SIGTERM are gone well before the grace.
    wait_for(
        "web dynos to exit on SIGTERM",
        Duration::from_millis(1500),
        || !alive(web1) && !alive(web2),
    );
    // The stubborn one is still there while the grace runs...
    let grace = Duration::from_secs(3);
    let window = grace.saturating_sub(stop_at.elapsed() + Duration::from_millis(700));
    holds_for("stubborn.1 alive during the grace", window, || {
        alive(stubborn)
    });
    // ... and killed after it.
    wait_for(
        "stubborn.1 killed after the grace",
        grace + Duration::from_secs(3) - stop_at.elapsed().min(grace),
        || !alive(stubborn),
    );
    assert!(
        stop_at.elapsed() >= grace - Duration::from_millis(300),
        "stubborn.1 died before the grace ended ({:?})",
        stop_at.elapsed()
    );
    wait_for("R12 in the roboku log", Duration::from_secs(5), || {
        agent
            .log_lines(&["-a", "demo", "--source", "roboku", "-d", "stubborn.1"])
            .iter()
            .any(|l| l["line"].as_str().is_some_and(|s| s.contains("R12")))
    });
    wait_for("no dynos listed", Duration::from_secs(5), || {
        agent.ps("demo").is_empty()
    });
    wait_for("the app's cgroups emptied", Duration::from_secs(5), || {
        roboku_tests::cgroups::procs_in(&format!("{}/demo", agent.cgroup_name())).is_empty()
    });

    agent.ok(&["ps:scale", "web=2", "stubborn=1", "-a", "demo"]);
    for name in ["web.1", "web.2", "stubborn.1"] {
        agent.wait_up("demo", name, None, long);
    }
    assert_eq!(
        ports(&agent),
        before,
        "ports moved across a scale to zero and back"
    );
}

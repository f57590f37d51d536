//! kill -9 in the middle of removing a stopped dyno's cgroup (v1: gone from `memory`, still in
//! `pids` and `cpuacct`): the next start finds the half-removed dir and removes it. The start
//! sweep used to list the `memory` hierarchy only, so such a dir stayed for good (found as an
//! empty old instance of a renamed app's web.1, now and then, when two fault tests ran at once).

use super::kit;
use roboku_tests::{app_dir, Agent, AgentOpts};
use std::time::Duration;

#[test]
fn kill_9_between_the_rmdirs_of_a_dyno_cgroup_leaves_nothing_after_the_restart() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&["ps:scale", "web=2", "-a", "demo"]);
    agent.wait_up("demo", "web.2", None, Duration::from_secs(20));
    let rel = format!("{}/demo", agent.cgroup_name());
    let web2: Vec<String> = roboku_tests::cgroups::children(&rel, "web.2@")
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert_eq!(web2.len(), 1, "{web2:?}");
    agent.restart_with_fault("cgroup.removing");
    let _ = agent.roboku(&["ps:scale", "web=1", "-a", "demo"]);
    agent.wait_killed(Duration::from_secs(30));
    // Cut in half: gone from memory, still in pids.
    let pids = format!("/sys/fs/cgroup/pids/{rel}/{}", web2[0]);
    let memory = format!("/sys/fs/cgroup/memory/{rel}/{}", web2[0]);
    assert!(
        std::path::Path::new(&pids).is_dir() && !std::path::Path::new(&memory).exists(),
        "the fault point fired elsewhere: pids dir {pids} there: {}, memory dir there: {}",
        std::path::Path::new(&pids).is_dir(),
        std::path::Path::new(&memory).exists()
    );
    agent.respawn();
    roboku_tests::wait_for("web=1 recorded", Duration::from_secs(20), || {
        agent.ps("demo").len() == 1
    });
    kit::no_leaked_cgroups(&agent, "demo");
    kit::only_recorded_processes(&agent, &["demo"]);
    eprintln!("faults: a dyno cgroup half removed by a kill -9 was removed at the next start");
}

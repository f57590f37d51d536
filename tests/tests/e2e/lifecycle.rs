//! App lifecycle: destroying an app needs its name again, and takes its dynos with it.

use roboku_tests::{alive, app_dir, cgroups, wait_for, Agent, AgentOpts};
use std::time::Duration;

#[test]
fn apps_destroy_needs_confirm_and_removes_dynos_and_app() {
    let agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[(
        "Procfile",
        "web: exec sleep 1000\nworker: exec sleep 1000\n",
    )]);
    agent.create_and_deploy("demo", app.path());
    agent.create_and_deploy("other", app.path());
    agent.ok(&["ps:scale", "web=2", "worker=1", "-a", "demo"]);
    let pids: Vec<i64> = ["web.1", "web.2", "worker.1"]
        .iter()
        .map(|n| agent.wait_up("demo", n, None, Duration::from_secs(10)))
        .collect();
    let other = agent.wait_up("other", "web.1", None, Duration::from_secs(10));

    for args in [
        &["apps:destroy", "demo"][..],
        &["apps:destroy", "demo", "--confirm", "other"][..],
    ] {
        let out = agent.roboku(args);
        assert!(!out.status.success(), "{args:?} was not refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--confirm demo"), "{args:?}: {err}");
        assert!(pids.iter().all(|p| alive(*p)), "{args:?} touched the dynos");
    }
    assert_eq!(agent.ps("demo").len(), 3);

    agent.ok(&["apps:destroy", "demo", "--confirm", "demo"]);
    wait_for("demo's dynos gone", Duration::from_secs(8), || {
        pids.iter().all(|p| !alive(*p))
    });
    let apps = agent.json(&["apps"]);
    let names: Vec<&str> = apps
        .as_array()
        .expect("apps list")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["other"], "{apps}");
    let out = agent.roboku(&["ps", "-a", "demo"]);
    assert_eq!(out.status.code(), Some(1));
    // Every dyno cgroup of the app is removed. (The empty per-app parent directory itself is
    // left behind by robokud today: reported, not asserted.)
    let app_cgroup = format!("{}/demo", agent.cgroup_name());
    wait_for(
        "demo's dyno cgroups removed",
        Duration::from_secs(5),
        || {
            cgroups::procs_in(&app_cgroup).is_empty()
                && cgroups::children(&app_cgroup, "").is_empty()
        },
    );
    assert_eq!(
        agent.up_pid("other", "web.1"),
        Some(other),
        "other app disturbed"
    );
    // The name is free again.
    agent.ok(&["apps:create", "demo"]);
    assert!(agent
        .json(&["releases", "-a", "demo"])
        .as_array()
        .is_some_and(|r| r.is_empty()));
}

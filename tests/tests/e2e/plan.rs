//! `deploy --plan`: lists what the deploy would do, changes nothing, and the deploy that follows
//! does what it listed (`ps:wait` returns once it did).

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::time::Duration;

fn app(worker: &str, extra: &str) -> tempfile::TempDir {
    let procfile = format!("web: exec python3 -m http.server $PORT\nworker: {worker}\n{extra}");
    app_dir(&[("Procfile", &procfile)])
}

fn slugs(agent: &Agent) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(agent.data_dir().join("slugs"))
        .expect("slugs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_plan_lists_what_the_deploy_then_does_and_changes_nothing() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("nav", app("exec sleep 600", "").path());
    agent.ok(&["ps:scale", "worker=1", "-a", "nav"]);
    let web = agent.wait_up("nav", "web.1", None, Duration::from_secs(20));
    let worker = agent.wait_up("nav", "worker.1", None, Duration::from_secs(20));
    let before = (agent.json(&["releases", "-a", "nav"]), slugs(&agent));

    let next = app("exec sleep 601", "clock: exec sleep 602\n");
    let dir = next.path().to_str().expect("utf-8");
    let plan = agent.json(&["deploy", dir, "-a", "nav", "--plan"]);
    assert_eq!(plan["current"], 1, "{plan}");
    assert_eq!(plan["next_version"], 2, "{plan}");
    assert_eq!(plan["code_changed"], true, "{plan}");
    assert_eq!(plan["types_added"], serde_json::json!(["clock"]), "{plan}");
    assert_eq!(
        plan["types_changed"],
        serde_json::json!(["worker"]),
        "{plan}"
    );
    assert_eq!(
        plan["dynos"],
        serde_json::json!([
            {"name": "web.1", "action": "restart", "strategy": "preboot"},
            {"name": "worker.1", "action": "restart", "strategy": "stop-then-start"},
        ]),
        "{plan}"
    );
    assert!(plan["disk_bytes"].as_u64() > Some(0), "{plan}");
    // The slug's files against the running one's: only the Procfile differs.
    let files = &plan["files"];
    assert_eq!(
        (&files["added"], &files["removed"]),
        (&0.into(), &0.into()),
        "{plan}"
    );
    assert!(
        files["sample"]
            .as_array()
            .is_some_and(|s| s.contains(&"~ Procfile".into())),
        "{plan}"
    );
    let text = agent.ok(&["deploy", dir, "-a", "nav", "--plan"]);
    assert!(text.contains("Files:      0 added,"), "{text}");
    assert!(text.contains("nothing was applied"), "{text}");
    assert!(
        text.contains("Dyno:       web.1 restart (preboot)"),
        "{text}"
    );

    // Nothing changed: the releases, the slug store, the processes.
    assert_eq!(
        (agent.json(&["releases", "-a", "nav"]), slugs(&agent)),
        before
    );
    assert_eq!(agent.up_pid("nav", "web.1"), Some(web));
    assert_eq!(agent.up_pid("nav", "worker.1"), Some(worker));
    assert!(
        std::fs::read_dir(agent.data_dir().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the scratch slug is gone"
    );

    // The deploy does what the plan said.
    let release = agent.deploy("nav", next.path());
    assert_eq!(release["version"], plan["next_version"], "{release}");
    assert_ne!(agent.up_pid("nav", "web.1"), Some(web), "web.1 restarted");
    let settled = agent.ok(&["ps:wait", "-a", "nav", "--wait-timeout", "20"]);
    assert_eq!(settled.trim(), "2 dynos of nav on v2");
    assert_ne!(
        agent.up_pid("nav", "worker.1"),
        Some(worker),
        "worker.1 restarted"
    );
    let names: Vec<String> = agent
        .ps("nav")
        .iter()
        .map(|d| d["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, ["web.1", "worker.1"], "clock has no dynos to start");
}

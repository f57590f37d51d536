//! `roboku doctor` against a real agent on this host: every check answers, the cgroup line names
//! the host's real mode, and an unsafe data dir or a stopped agent fails with the fix to apply.

use roboku_tests::{Agent, AgentOpts};
use std::os::unix::fs::PermissionsExt;

fn lines(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn doctor_checks_the_host_and_names_what_to_fix() {
    let mut agent = Agent::start(AgentOpts::default());
    let out = agent.roboku(&["doctor"]);
    let text = lines(&out);
    assert!(out.status.success(), "a healthy agent: exit 0\n{text}");
    for name in ["agent", "cgroups", "user", "data dir", "disk", "clock"] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == name.split(' ').next()),
            "a line for {name}:\n{text}"
        );
    }
    let mode = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    };
    let cg = text.lines().find(|l| l.contains("cgroups")).unwrap();
    assert!(cg.starts_with("ok") && cg.contains(mode), "{cg}");
    let json: serde_json::Value =
        serde_json::from_slice(&agent.roboku(&["--json", "doctor"]).stdout).expect("JSON");
    assert!(json.as_array().is_some_and(|a| a.len() == 6), "{json}");

    // A data dir others can write to: robokud refuses to start on one; doctor says so while it runs.
    let data = agent.data_dir().to_path_buf();
    let before = std::fs::metadata(&data).unwrap().permissions();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = agent.roboku(&["doctor"]);
    std::fs::set_permissions(&data, before).unwrap();
    let text = lines(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let dd = text.lines().find(|l| l.contains("data dir")).unwrap();
    assert!(
        dd.starts_with("fail") && dd.contains("777") && dd.contains("fix: chmod go-w"),
        "{dd}"
    );

    agent.stop();
    let out = agent.roboku(&["doctor"]);
    let text = lines(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("fail  agent"), "{text}");
    assert!(text.contains("fix: start it"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("clock")),
        "host checks still run:\n{text}"
    );
}

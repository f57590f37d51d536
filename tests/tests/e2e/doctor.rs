//! `roboku doctor` against a real agent on this host: every check answers, the cgroup line names
//! the host's real mode, and an unsafe data dir or a stopped agent fails with the fix to apply.
//! What only robokud sees (`GET /v1/doctor`): a broker it cannot reach (with the error), a
//! trusted-key file others can write, a dashboard beyond loopback, its add-on servers, and
//! how systemd runs it (here: not at all, which is a warning).

use roboku_tests::{wait_for, Agent, AgentOpts};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

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
    let names: Vec<&str> = json
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "agent",
            "cgroups",
            "user",
            "data dir",
            "disk",
            "clock",
            "fleet",
            "systemd",
            "dashboard",
            "add-ons"
        ],
        "{json}"
    );

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

#[test]
fn doctor_reports_what_only_robokud_sees() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("fleet");
    let out = std::process::Command::new(roboku_tests::bins::bin("roboku"))
        .args(["fleet", "keygen", "-o"])
        .arg(&key)
        .output()
        .expect("roboku fleet keygen");
    assert!(out.status.success(), "{out:?}");
    let public = keys.path().join("fleet.pub");
    // A closed port on loopback: robokud keeps retrying and remembers why it failed.
    let agent = Agent::start(AgentOpts {
        extra: vec![
            "--mqtt".into(),
            "mqtt://127.0.0.1:9".into(),
            "--trusted-key".into(),
            public.display().to_string(),
            "--dashboard".into(),
            "0.0.0.0:0".into(),
        ],
        ..AgentOpts::default()
    });
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o666)).unwrap();
    let src = roboku_tests::app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    agent.create_and_deploy("nav", src.path());
    agent.ok(&["addons:create", "mqtt", "-a", "nav"]);

    let line = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{text}"))
            .to_string()
    };
    let mut text = String::new();
    wait_for(
        "doctor to show the fleet link's error and the add-on up",
        Duration::from_secs(20),
        || {
            text = lines(&agent.roboku(&["doctor"]));
            !line(&text, "fleet").contains("no connection yet")
                && line(&text, "add-ons").starts_with("ok")
        },
    );
    let out = agent.roboku(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let fleet = line(&text, "fleet");
    assert!(
        fleet.starts_with("fail") && fleet.contains("127.0.0.1:9") && fleet.contains("fix:"),
        "{fleet}"
    );
    let k = line(&text, "keys");
    assert!(
        k.starts_with("fail")
            && k.contains("666")
            && k.contains(&format!("chmod go-w {}", public.display())),
        "{k}"
    );
    let d = line(&text, "dashboard");
    assert!(
        d.starts_with("warn") && d.contains("beyond loopback"),
        "{d}"
    );
    let a = line(&text, "add-ons");
    assert!(a.contains("1 up: nav-mqtt"), "{a}");
    let s = line(&text, "systemd");
    assert!(s.starts_with("warn") || s.starts_with("ok"), "{s}");

    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = lines(&agent.roboku(&["doctor"]));
    assert!(line(&text, "keys").starts_with("ok"), "{text}");
}

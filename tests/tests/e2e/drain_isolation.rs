//! A hostile dyno against drain state and add-on credentials: a real one-off dyno of `evil`
//! (running as evil's own uid) tries to list, read, write, replace and create the drain state
//! files (cursors and counters, `drains/<id>.json`) of its own app and of `nav`, the log store
//! the drains read from (`logs/<app>/`), and the files of nav's mqtt add-on (its password file
//! and config). Every attempt is refused by the kernel, and every target exists (so a refusal
//! is never a missing file).

use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SLEEPER: &str = "web: exec sleep 100000\n";

/// Each attack prints `BREACH <what>` when it works.
fn attack(targets_read: &[PathBuf], targets_dir: &[PathBuf]) -> String {
    // The control: the same commands do work on what is the dyno's own.
    let mut s = String::from(
        "id -u\necho x > \"$ROBOKU_DATA/own\" && cat \"$ROBOKU_DATA/own\" >/dev/null && ls \"$ROBOKU_DATA\" >/dev/null && echo CONTROL ok\n",
    );
    for f in targets_read {
        let f = f.display();
        s.push_str(&format!(
            "cat '{f}' >/dev/null 2>&1 && echo 'BREACH read {f}'\n\
             (echo x >> '{f}') 2>/dev/null && echo 'BREACH append {f}'\n\
             (: > '{f}') 2>/dev/null && echo 'BREACH truncate {f}'\n"
        ));
    }
    for d in targets_dir {
        let d = d.display();
        s.push_str(&format!(
            "ls '{d}' >/dev/null 2>&1 && echo 'BREACH list {d}'\n\
             (echo '{{}}' > '{d}/planted.json') 2>/dev/null && echo 'BREACH create in {d}'\n"
        ));
    }
    s.push_str("true\n");
    s
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_file() {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_hostile_dyno_cannot_touch_drain_state_logs_or_another_apps_addon_credentials() {
    let agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    for app in ["nav", "evil"] {
        agent.create_and_deploy(app, app_dir(&[("Procfile", SLEEPER)]).path());
        // A drain to a port nothing listens on: its state file is written at once.
        agent.ok(&["drains:add", "syslog://127.0.0.1:9", "-a", app]);
    }
    agent.ok(&["addons:create", "mqtt", "-a", "nav"]);
    let drains = data.join("drains");
    wait_for("both drains' state files", Duration::from_secs(20), || {
        files_under(&drains)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .count()
            == 2
    });
    let addon = data.join("addons/nav-mqtt");
    wait_for("nav-mqtt's password file", Duration::from_secs(20), || {
        addon.join("passwd").is_file()
    });
    let mut files = files_under(&drains);
    files.extend(files_under(&addon));
    for app in ["nav", "evil"] {
        let logs = data.join("logs").join(app);
        wait_for(
            &format!("{app}'s log store"),
            Duration::from_secs(20),
            || logs.is_dir() && !files_under(&logs).is_empty(),
        );
        files.extend(files_under(&logs));
    }
    let dirs = vec![
        drains.clone(),
        data.join("logs"),
        data.join("logs/nav"),
        data.join("logs/evil"),
        data.join("addons"),
        addon.clone(),
    ];
    let script = attack(&files, &dirs);
    let out = agent.roboku(&["run", "-a", "evil", "--", "sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = agent.json(&["apps:info", "-a", "evil"])["uid"]
        .as_u64()
        .expect("evil has its own uid (the test runs as root)");
    assert!(
        stdout.lines().any(|l| l == uid.to_string()),
        "the attack ran as evil's uid {uid}: {stdout}"
    );
    assert!(stdout.lines().any(|l| l == "CONTROL ok"), "{stdout}");
    let breaches: Vec<&str> = stdout.lines().filter(|l| l.starts_with("BREACH")).collect();
    assert!(breaches.is_empty(), "{breaches:#?}");
    assert!(
        files.iter().any(|f| f.starts_with(&drains)) && files.iter().any(|f| f.ends_with("passwd"))
    );
    assert!(!drains.join("planted.json").exists());
    // robokud's own drain state still reads (nothing was truncated).
    for f in files_under(&drains) {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(v.is_object(), "{}", f.display());
    }
}

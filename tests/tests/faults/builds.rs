//! Builds escape nothing: a buildpack that starts `setsid env -i sleep 611 &` (its own session,
//! no build tag in its environment) leaves nothing running after the build, nor after an agent
//! killed mid-build is restarted. Builds run in their own cgroup, killed whole.

use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use std::process::Command;
use std::time::Duration;

/// A buildpack whose compile leaves `/tmp/<marker> 611` running in a new session with a clean
/// environment, then `then` (shell).
fn escaping_pack(marker: &str, then: &str) -> tempfile::TempDir {
    let pack = app_dir(&[
        ("bin/detect", "#!/bin/sh\necho escapepack\n"),
        (
            "bin/compile",
            &format!(
                "#!/bin/sh\ncp /bin/sleep /tmp/{marker}\nsetsid env -i /tmp/{marker} 611 >/dev/null 2>&1 &\necho escaped\n{then}\n"
            ),
        ),
        ("bin/release", "#!/bin/sh\necho '--- {}'\n"),
    ]);
    let ok = Command::new("chmod")
        .arg("-R")
        .arg("a+rX,u+w")
        .arg(pack.path())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("chmod")
            .arg("755")
            .args(["detect", "compile", "release"].map(|s| pack.path().join("bin").join(s)))
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "chmod the buildpack");
    pack
}

fn running(marker: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("/tmp/{marker} 611")])
        .output()
        .expect("pgrep")
        .status
        .success()
}

struct Marker(String);
impl Drop for Marker {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-9", "-f", &format!("/tmp/{} 611", self.0)])
            .status();
        let _ = std::fs::remove_file(format!("/tmp/{}", self.0));
    }
}

fn set_pack(agent: &Agent, app: &str, pack: &std::path::Path) {
    agent.ok(&["apps:create", app]);
    agent.ok(&["buildpacks:set", pack.to_str().expect("utf-8"), "-a", app]);
}

#[test]
fn a_process_a_build_started_in_its_own_session_dies_with_the_build() {
    let agent = Agent::start(AgentOpts::default());
    let m = Marker(format!("roboku-escape-{}-a", std::process::id()));
    let pack = escaping_pack(&m.0, "true");
    set_pack(&agent, "esc", pack.path());
    let src = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.deploy("esc", src.path());
    let logs = agent.ok(&["logs", "-a", "esc", "-n", "1000"]);
    assert!(logs.contains("escaped"), "the compile did not run: {logs}");
    assert!(
        !running(&m.0),
        "the escaped build process outlived the build"
    );
}

#[test]
fn a_process_a_build_started_in_its_own_session_dies_at_restart_after_a_crash() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    let m = Marker(format!("roboku-escape-{}-b", std::process::id()));
    let pack = escaping_pack(&m.0, "exec sleep 1000");
    set_pack(&agent, "esc", pack.path());
    let src = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    let mut deploy = Command::new(roboku_tests::bins::bin("roboku"))
        .args(["deploy", src.path().to_str().expect("utf-8"), "-a", "esc"])
        .env("ROBOKU_SOCKET", agent.socket())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start deploy");
    wait_for("the escape to run", Duration::from_secs(20), || {
        running(&m.0)
    });
    agent.kill9_and_restart("leave");
    let _ = deploy.wait();
    assert!(
        !running(&m.0),
        "the escaped build process outlived the agent's restart"
    );
}

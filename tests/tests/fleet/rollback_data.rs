//! `roboku fleet rollback vN --with-data` over a real Mosquitto: the signed rollback carries
//! `with_data`, and the robot brings vN's data snapshot back with the code and config.

use super::kit::{artifact, bin, fleet, keygen, serve_dir, Agent, Broker};
use std::process::Command;

/// `roboku run -a nav -- sh -c SCRIPT` on the robot; its stdout.
fn run(agent: &Agent, script: &str) -> String {
    let out = Command::new(bin("roboku"))
        .args(["run", "-a", "nav", "--", "sh", "-c", script])
        .env("ROBOKU_SOCKET", agent.socket())
        .output()
        .expect("roboku run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn fleet_rollback_with_data_brings_the_releases_data_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet.key");
    let key = key.display().to_string();
    let slug = artifact(dir.path(), "nav.tar.gz", "one");
    let url = serve_dir(dir.path());
    let broker = Broker::start();
    let agent = Agent::start(&broker, "r1", &[], &public);
    let send = |args: &[&str]| {
        let mut all = vec![
            args[0], "--device", "r1", "-a", "nav", "--key", &key, "--wait", "60",
        ];
        all.extend(&args[1..]);
        let (rc, out) = fleet(&broker, &all);
        assert_eq!(rc, 0, "{args:?}: {out}");
        out
    };
    let slug = slug.display().to_string();
    let artifact_url = format!("{url}/nav.tar.gz");
    send(&["deploy", "--artifact-url", &artifact_url, "--slug", &slug]);
    run(&agent, "echo 1 > \"$ROBOKU_DATA/counter\"");
    // v2 replaces v1: v1's data (counter 1) is snapshotted.
    send(&["config", "COLOR=red"]);
    run(&agent, "echo 2 > \"$ROBOKU_DATA/counter\"");
    assert_eq!(run(&agent, "cat \"$ROBOKU_DATA/counter\"").trim(), "2");

    send(&["rollback", "v1", "--with-data"]);
    assert_eq!(
        run(&agent, "cat \"$ROBOKU_DATA/counter\"").trim(),
        "1",
        "v1's data is back"
    );
    let releases = agent
        .roboku_json(&["releases", "-a", "nav"])
        .expect("releases");
    let now = releases
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["current"] == true))
        .cloned()
        .expect("a current release");
    assert_eq!(now["version"], 3, "{releases}");
    let description = now["description"].as_str().unwrap_or("");
    assert!(
        description.contains("Rollback to v1") && description.contains("data"),
        "{description}"
    );
}

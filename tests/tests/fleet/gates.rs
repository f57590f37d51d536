//! Fleet commands against a closed apply gate (issue 14): the robot acks IN_PROGRESS `waiting
//! for gate <name>`, applies nothing while the gate is closed, times out at the command's
//! expiry, and applies as soon as the gate opens within it.

use super::kit::{bin, fleet, wait_for, Agent, Broker};
use super::{run_fleet, wait_online, Site};
use std::process::Command;

/// `roboku fleet ARGS` against the broker at `url` (for a thread that cannot borrow the kit).
fn fleet_at(url: &str, args: &[String]) -> (i32, String) {
    let out = Command::new(bin("roboku"))
        .arg("fleet")
        .args(args)
        .env("ROBOKU_BROKER", url)
        .output()
        .expect("run roboku fleet");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn has(out: &str, device: &str, what: &[&str]) -> bool {
    out.lines()
        .any(|l| l.starts_with(device) && what.iter().all(|w| l.contains(w)))
}

#[test]
fn a_fleet_command_against_a_closed_gate_waits_for_it_until_its_expiry() {
    let site = Site::new();
    let broker = Broker::start();
    let r1 = Agent::start_with(
        &broker,
        "r1",
        &["lab"],
        &site.public,
        &["--gate-poll-ms", "200"],
    );
    wait_online(&broker, &["r1"]);
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--device", "r1"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    let pids = r1.wait_up("hello", 1, 30);
    let shared = roboku_tests::world_writable_dir();
    let idle = shared.path().join("idle");
    let idle_s = idle.display().to_string();
    r1.roboku_json(&[
        "gates:set",
        "mission-idle",
        "--file",
        &idle_s,
        "-a",
        "hello",
    ])
    .expect("gates:set on the robot");

    // Valid for 4 s: it waits, says so, and times out at its expiry with nothing applied.
    let key = site.path("fleet.key");
    let (rc, out) = fleet(
        &broker,
        &[
            "restart", "--device", "r1", "-a", "hello", "--key", &key, "--ttl", "4", "--wait", "30",
        ],
    );
    assert_ne!(rc, 0, "{out}");
    assert!(
        has(
            &out,
            "r1",
            &["IN_PROGRESS", "waiting for gate mission-idle"]
        ),
        "{out}"
    );
    assert!(
        has(&out, "r1", &["TIMED_OUT", "gate mission-idle"]),
        "{out}"
    );
    assert_eq!(r1.wait_up("hello", 1, 5), pids, "web.1 was not restarted");

    // Valid for longer: the scale waits, and applies once the gate opens.
    let url = broker.url();
    let args: Vec<String> = [
        "scale", "--device", "r1", "-a", "hello", "--key", &key, "--ttl", "60", "--wait", "60",
        "web=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let scale = std::thread::spawn(move || fleet_at(&url, &args));
    wait_for(30, "the scale to wait for the gate on r1", || {
        let g = r1.roboku_json(&["gates", "-a", "hello"])?;
        let waiting = g["waiting"].as_array()?;
        (waiting.len() == 1 && waiting[0]["door"] == "mqtt").then_some(())
    });
    assert_eq!(
        r1.ps("hello").len(),
        1,
        "not applied while the gate is closed"
    );
    std::fs::write(&idle, b"").unwrap();
    let (rc, out) = scale.join().unwrap();
    assert_eq!(rc, 0, "{out}");
    assert!(
        has(
            &out,
            "r1",
            &["IN_PROGRESS", "waiting for gate mission-idle"]
        ),
        "{out}"
    );
    assert!(has(&out, "r1", &["SUCCEEDED"]), "{out}");
    r1.wait_up("hello", 2, 30);
}

//! A robot whose clock cannot be trusted (docs/offline.md, "Clocks that cannot be trusted"):
//! robokud first runs with a synchronised clock and writes down the last trusted time, then
//! restarts with a clock that reads 1970 and says it is unsynchronised (the `--test-clock`
//! knob: the host's clock is shared and cannot be set). A correctly signed new command and a
//! new bundle are taken; a replayed one, and one made before the last trusted time, are refused
//! with the reason; status, `roboku status` and the reported state say the clock is untrusted.

use super::kit::{bin, wait_for, Agent, Broker, Probe};
use super::{now_ms, run_fleet, scale_env, wait_online, Site};
use roboku_wire::bundle::{BundleApp, BundleWriter, Manifest, FORMAT};
use roboku_wire::fleet::seal;
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, AckStatus, Reported};
use std::path::{Path, PathBuf};
use std::process::Command;

const HOUR: u64 = 3_600_000;

fn clock(a: &Agent) -> serde_json::Value {
    let st = a.roboku_json(&["status"]).expect("roboku status --json");
    st["clock"].clone()
}

/// `roboku bundle apply FILE`: exit code and what it printed.
fn apply(a: &Agent, file: &Path) -> (Option<i32>, String) {
    let out = Command::new(bin("roboku"))
        .args(["bundle", "apply", file.to_str().unwrap()])
        .env("ROBOKU_SOCKET", a.socket())
        .output()
        .expect("roboku bundle apply");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// A config-only bundle for `hello`, made at `ts`, signed with the site's key.
fn bundle(site: &Site, name: &str, id: &str, ts: u64, version: u64, greeting: &str) -> PathBuf {
    let m = Manifest {
        bundle: FORMAT,
        id: id.into(),
        ts,
        expires: ts + 30 * 24 * HOUR,
        to: "d/r1".into(),
        apps: [(
            "hello".to_string(),
            BundleApp {
                version,
                config: Some([("GREETING".to_string(), greeting.to_string())].into()),
                ..BundleApp::default()
            },
        )]
        .into(),
    };
    let key = seal::parse_secret(&std::fs::read_to_string(&site.key).unwrap()).unwrap();
    let sealed = seal::seal(&serde_json::to_vec(&m).unwrap(), &key);
    let out = site.dir.path().join(name);
    let w = BundleWriter::new(Vec::new(), &sealed).unwrap();
    std::fs::write(&out, w.finish().unwrap()).unwrap();
    out
}

#[test]
fn clocks_a_robot_in_1970_takes_new_signed_commands_and_bundles_and_refuses_stale_ones() {
    let site = Site::new();
    let broker = Broker::start();
    let mut a = Agent::start_with(
        &broker,
        "r1",
        &[],
        &site.public,
        &["--test-clock", "synced"],
    );
    wait_online(&broker, &["r1"]);
    // Synchronised: trusted, and the last trusted time is written down.
    let anchor_file = a.dir.path().join("data").join("clock.json");
    let anchor: serde_json::Value = wait_for(20, "clock.json written", || {
        serde_json::from_slice(&std::fs::read(&anchor_file).ok()?).ok()
    });
    let t = anchor["wall_ms"].as_u64().expect("wall_ms");
    assert_eq!(clock(&a)["trusted"], true, "{}", clock(&a));
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--device", "r1"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    a.wait_up("hello", 1, 60);

    // Reboot into 1970, unsynchronised.
    a.stop();
    a.set_flag("--test-clock", "unsynced:0");
    a.restart();
    wait_online(&broker, &["r1"]);
    // `--on-exit stop`: the dyno was stopped with the old robokud, the new one starts it.
    let pids = a.wait_up("hello", 1, 60);
    let c = clock(&a);
    assert_eq!(c["trusted"], false, "{c}");
    assert_eq!(c["synced"], false, "{c}");
    assert!(
        c["wall_ms"].as_u64().unwrap() < 24 * HOUR,
        "reads 1970: {c}"
    );
    assert_eq!(c["last_trusted_ms"].as_u64(), Some(t), "{c}");
    assert!(c["judged_ms"].as_u64().unwrap() >= t, "{c}");
    assert!(
        c["rule"].as_str().unwrap().starts_with("untrusted clock"),
        "{c}"
    );
    assert_eq!(c["test_knob"], "unsynced:0", "{c}");
    let text = Command::new(bin("roboku"))
        .arg("status")
        .env("ROBOKU_SOCKET", a.socket())
        .output()
        .expect("roboku status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Clock:") && text.contains("UNTRUSTED"),
        "{text}"
    );
    // The reported state says so too.
    let mut probe = Probe::connect(&broker, &[topic::reported("r1"), topic::ack("r1")]);
    let reported = probe.wait_msg(30, "reported state with the clock", |tp, p| {
        let r: Reported = serde_json::from_slice(p).ok()?;
        (tp == topic::reported("r1")).then_some(r.clock?)
    });
    assert!(!reported.trusted, "{reported:?}");
    assert!(reported.rule.starts_with("untrusted clock"), "{reported:?}");

    // A correctly signed new command: taken (its ts is "in the future" of a 1970 clock).
    let key = seal::parse_secret(&std::fs::read_to_string(&site.key).unwrap()).unwrap();
    let sign =
        |env: &roboku_wire::fleet::Envelope| seal::seal(&serde_json::to_vec(env).unwrap(), &key);
    let cmd_topic = Address::Device("r1".into()).cmd();
    let v = now_ms();
    let fresh = sign(&scale_env("clk-new", "d/r1", Some(v), 2));
    probe.publish(&cmd_topic, false, fresh.clone());
    let ack = probe.final_ack("r1", &payload_ref(&fresh));
    assert_eq!(ack.status, AckStatus::Succeeded, "{ack:?}");
    let up = a.wait_up("hello", 2, 60);
    // Replayed: the same payload again.
    probe.seen.clear();
    probe.publish(&cmd_topic, false, fresh.clone());
    let again = probe.final_ack("r1", &payload_ref(&fresh));
    assert_eq!(again.status, AckStatus::Rejected);
    assert!(
        again
            .details
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("duplicate"),
        "{again:?}"
    );
    // Re-signed under a new id with a version already seen: replayed.
    let old_version = sign(&scale_env("clk-oldv", "d/r1", Some(v), 3));
    probe.publish(&cmd_topic, false, old_version.clone());
    let r = probe.final_ack("r1", &payload_ref(&old_version));
    assert_eq!(r.status, AckStatus::Rejected);
    assert!(
        r.details
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("replayed"),
        "{r:?}"
    );
    // Made an hour before the last trusted time, still "valid" by its own expiry and with a
    // new version: refused, it is older than what this robot last knew.
    let mut stale = scale_env("clk-stale", "d/r1", Some(v + 1), 3);
    stale.ts = t - HOUR;
    stale.expires = t + 23 * HOUR;
    let stale = sign(&stale);
    probe.publish(&cmd_topic, false, stale.clone());
    let r = probe.final_ack("r1", &payload_ref(&stale));
    assert_eq!(r.status, AckStatus::Rejected);
    let why = r.details.reason.unwrap_or_default();
    assert!(why.contains("trusted its clock"), "{why}");
    assert_eq!(a.wait_up("hello", 2, 30), up, "nothing restarted");
    assert!(
        up.contains(&pids[0]),
        "web.1 kept its pid through all of it"
    );

    // Bundles, through `roboku bundle apply`: the same rule.
    let new = bundle(&site, "new.rkb", "clk-b-new", now_ms(), v + 10, "from 1970");
    let (rc, out) = apply(&a, &new);
    assert_eq!(rc, Some(0), "a new bundle is taken: {out}");
    assert!(out.contains("SUCCEEDED"), "{out}");
    let (rc, out) = apply(&a, &new);
    assert_eq!(rc, Some(1), "{out}");
    assert!(out.contains("duplicate"), "{out}");
    let old = bundle(&site, "old.rkb", "clk-b-old", t - HOUR, v + 20, "stale");
    let (rc, out) = apply(&a, &old);
    assert_eq!(rc, Some(1), "{out}");
    assert!(out.contains("trusted its clock"), "{out}");
    let config = a.roboku_json(&["config", "-a", "hello"]).expect("config");
    assert_eq!(config["GREETING"], "from 1970", "{config}");
    // Nothing of the untrusted run became a trusted time.
    let still: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&anchor_file).unwrap()).unwrap();
    assert_eq!(still["wall_ms"].as_u64(), Some(t));
}

//! Fleet control end to end: a real Mosquitto, real robokud processes, the real `roboku fleet`.
//! Needs root (dyno cgroups) and mosquitto (`apt-get install mosquitto`); fails, never skips,
//! without them.

#[path = "fleet/bridge.rs"]
mod bridge;
#[path = "fleet/clocks.rs"]
mod clocks;
#[path = "fleet/delta.rs"]
mod delta;
#[path = "fleet/gates.rs"]
mod gates;
#[path = "fleet/health.rs"]
mod health;
#[path = "fleet/kit.rs"]
mod kit;
#[path = "fleet/logs.rs"]
mod logs;
#[path = "fleet/plan.rs"]
mod plan;
#[path = "fleet/rollback_data.rs"]
mod rollback_data;
#[path = "fleet/support.rs"]
mod support;
#[path = "fleet/tls.rs"]
mod tls;
#[path = "fleet/usage.rs"]
mod usage;

use kit::{artifact, fleet, keygen, serve_dir, wait_for, Agent, Broker, Probe};
use roboku_wire::fleet::seal::{self, secret_from_seed};
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, AckStatus, Action, Envelope, ScaleBody};
use std::path::Path;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A workspace: keys, an artifact served over HTTP.
struct Site {
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
    public: std::path::PathBuf,
    url: String,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, public) = keygen(dir.path(), "fleet.key");
        artifact(dir.path(), "hello-v1.tar.gz", "one");
        artifact(dir.path(), "hello-v2.tar.gz", "two");
        let url = serve_dir(dir.path());
        Site {
            dir,
            key,
            public,
            url,
        }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn deploy_args(&self, target: &[&str], name: &str) -> Vec<String> {
        let mut v: Vec<String> = target.iter().map(|s| s.to_string()).collect();
        v.extend(
            [
                "-a",
                "hello",
                "--key",
                &self.path("fleet.key"),
                "--artifact-url",
                &format!("{}/{name}", self.url),
                "--slug",
                &self.path(name),
                "--wait",
                "60",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        v
    }
}

fn run_fleet(broker: &Broker, cmd: &str, args: &[String]) -> (i32, String) {
    let mut all = vec![cmd];
    all.extend(args.iter().map(String::as_str));
    fleet(broker, &all)
}

/// Waits until `fleet status` shows every device online (they announce themselves on connect).
fn wait_online(broker: &Broker, devices: &[&str]) {
    wait_for(30, "every robot online in fleet status", || {
        let (rc, out) = fleet(broker, &["status"]);
        let ok = rc == 0
            && devices.iter().all(|d| {
                out.lines()
                    .any(|l| l.starts_with(d) && l.contains("online"))
            });
        ok.then_some(())
    });
}

#[test]
fn a_group_deploy_reaches_every_agent_and_fleet_status_shows_it() {
    let site = Site::new();
    let broker = Broker::start();
    let agents: Vec<Agent> = ["r1", "r2", "r3"]
        .iter()
        .map(|d| Agent::start(&broker, d, &["lab"], &site.public))
        .collect();
    wait_online(&broker, &["r1", "r2", "r3"]);
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--group", "lab"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    for d in ["r1", "r2", "r3"] {
        for status in [
            "ACCEPTED",
            "IN_PROGRESS download",
            "IN_PROGRESS build",
            "SUCCEEDED",
        ] {
            assert!(
                out.lines().any(|l| l.starts_with(d) && l.contains(status)),
                "{d} {status} missing:\n{out}"
            );
        }
    }
    assert!(out.contains("3 succeeded, 0 failed"), "{out}");
    for a in &agents {
        a.wait_up("hello", 1, 30);
    }
    // Reported state follows: status shows release and dynos per robot.
    wait_for(30, "fleet status to show v1 up on all three", || {
        let (_, out) = fleet(&broker, &["status", "--group", "lab"]);
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with('r')).collect();
        (rows.len() == 3
            && rows.iter().all(|l| {
                l.contains("online")
                    && l.contains("hello v1 1/1 up")
                    && l.contains("SUCCEEDED deploy")
            }))
        .then_some(())
    });
    // A group scale reaches all three too.
    let key = site.path("fleet.key");
    let (rc, out) = fleet(
        &broker,
        &[
            "scale", "--group", "lab", "-a", "hello", "--key", &key, "web=2",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    for a in &agents {
        a.wait_up("hello", 2, 30);
    }
}

#[test]
fn an_agent_down_during_a_deploy_converges_from_desired_state() {
    let site = Site::new();
    let broker = Broker::start();
    let r1 = Agent::start(&broker, "r1", &["yard"], &site.public);
    let mut r2 = Agent::start(&broker, "r2", &["yard"], &site.public);
    wait_online(&broker, &["r1", "r2"]);
    r2.stop();
    wait_for(20, "r2 offline", || {
        let (_, out) = fleet(&broker, &["status"]);
        out.lines()
            .any(|l| l.starts_with("r2") && l.contains("offline"))
            .then_some(())
    });
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--group", "yard"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("1 succeeded") && out.contains("1 offline"),
        "{out}"
    );
    assert!(
        out.contains("desired state updated: rk/v1/g/yard/desired"),
        "{out}"
    );
    r1.wait_up("hello", 1, 30);
    assert!(r2.ps("hello").is_empty());
    // r2 comes back: the retained desired state brings it to the same release.
    r2.restart();
    r2.wait_up("hello", 1, 60);
    let slug = |a: &Agent| a.releases("hello").into_iter().find(|r| r.2).map(|r| r.1);
    assert_eq!(slug(&r1), slug(&r2), "same slug on both");
    assert!(
        r2.log().contains("converging to desired state"),
        "{}",
        r2.log()
    );
    // Coming back again changes nothing (in sync; the doc is not re-applied).
    let releases = r2.releases("hello").len();
    r2.stop();
    r2.restart();
    r2.wait_up("hello", 1, 30);
    wait_online(&broker, &["r1", "r2"]);
    assert_eq!(r2.releases("hello").len(), releases);
}

/// `fleet config` and `fleet rollback` sent while a robot is offline reach it when it comes back
/// (through the retained desired state), and coming back again repeats neither.
#[test]
fn a_robot_offline_during_fleet_config_and_rollback_catches_up() {
    let site = Site::new();
    let broker = Broker::start();
    let r1 = Agent::start(&broker, "r1", &["dock"], &site.public);
    let mut r2 = Agent::start(&broker, "r2", &["dock"], &site.public);
    wait_online(&broker, &["r1", "r2"]);
    for name in ["hello-v1.tar.gz", "hello-v2.tar.gz"] {
        let (rc, out) = run_fleet(
            &broker,
            "deploy",
            &site.deploy_args(&["--group", "dock"], name),
        );
        assert_eq!(rc, 0, "{out}");
        assert!(out.contains("2 succeeded, 0 failed"), "{out}");
    }
    r2.wait_up("hello", 1, 30);
    r2.stop();
    wait_for(20, "r2 offline", || {
        let (_, out) = fleet(&broker, &["status"]);
        out.lines()
            .any(|l| l.starts_with("r2") && l.contains("offline"))
            .then_some(())
    });
    let key = site.path("fleet.key");
    let common = [
        "--group",
        "dock",
        "-a",
        "hello",
        "--key",
        key.as_str(),
        "--wait",
        "60",
    ];
    let config = |args: &[&str]| {
        let mut all = vec!["config"];
        all.extend(common);
        all.extend(args);
        let (rc, out) = fleet(&broker, &all);
        assert_eq!(rc, 0, "{out}");
        assert!(
            out.contains("1 succeeded") && out.contains("1 offline"),
            "{out}"
        );
    };
    config(&["GREETING=ahoy", "COLOR=red"]);
    config(&["--unset", "COLOR", "SPEED=3"]);
    let mut rollback = vec!["rollback"];
    rollback.extend(common);
    let (rc, out) = fleet(&broker, &rollback);
    assert_eq!(rc, 0, "{out}");
    let cfg = |a: &Agent| {
        a.roboku_json(&["config", "-a", "hello"])
            .unwrap_or_default()
    };
    let current = |a: &Agent| a.releases("hello").into_iter().find(|r| r.2);
    // On r1: v3 and v4 are the config changes, v5 the rollback to v3 (v2's code, first config).
    let want_cfg = cfg(&r1);
    assert_eq!(
        want_cfg,
        serde_json::json!({"COLOR": "red", "GREETING": "ahoy"})
    );
    let want = current(&r1).expect("r1 has a current release");
    assert_eq!(want.0, 5);
    r2.restart();
    wait_for(
        60,
        "r2 to replay the config changes and the rollback it missed",
        || (current(&r2)? == want && cfg(&r2) == want_cfg).then_some(()),
    );
    r2.wait_up("hello", 1, 30);
    assert!(
        r2.log().contains("converging to desired state"),
        "{}",
        r2.log()
    );
    let releases = r2.releases("hello").len();
    assert_eq!(releases, 5);
    r2.stop();
    r2.restart();
    r2.wait_up("hello", 1, 30);
    wait_online(&broker, &["r1", "r2"]);
    assert_eq!(
        r2.releases("hello").len(),
        releases,
        "nothing is applied twice"
    );
}

#[test]
fn a_broker_restart_leaves_dynos_alone_and_agents_reconnect() {
    let site = Site::new();
    let mut broker = Broker::start();
    let a = Agent::start(&broker, "r1", &["lab"], &site.public);
    let b = Agent::start(&broker, "r2", &["lab"], &site.public);
    wait_online(&broker, &["r1", "r2"]);
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--group", "lab"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    let pids_a = a.wait_up("hello", 1, 30);
    let pids_b = b.wait_up("hello", 1, 30);

    broker.stop();
    // The dynos do not notice: every one stays alive for as long as the broker is away.
    roboku_tests::holds_for(
        "dynos alive while the broker is down",
        std::time::Duration::from_secs(2),
        || {
            pids_a
                .iter()
                .chain(&pids_b)
                .all(|&p| roboku_tests::alive(p as i64))
        },
    );
    assert_eq!(a.wait_up("hello", 1, 5), pids_a);
    assert_eq!(b.wait_up("hello", 1, 5), pids_b);
    broker.restart();
    // Nothing is retained by the new broker: the agents re-publish their status...
    wait_online(&broker, &["r1", "r2"]);
    // ...and subscribed again: a new command reaches both.
    let key = site.path("fleet.key");
    let (rc, out) = fleet(
        &broker,
        &[
            "scale", "--group", "lab", "-a", "hello", "--key", &key, "web=2",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("2 succeeded"), "{out}");
    let up_a = a.wait_up("hello", 2, 30);
    assert!(up_a.contains(&pids_a[0]), "web.1 kept its pid");
    assert!(a.log().contains("mqtt connection lost"));
    // No command applied twice: one release on each, and a redelivered command is refused.
    assert_eq!(a.releases("hello").len(), 1);
    assert_eq!(b.releases("hello").len(), 1);
    let mut probe = Probe::connect(&broker, &[topic::ack("r1")]);
    let k = seal::parse_secret(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let env = scale_env("dup-1", "d/r1", Some(now_ms()), 3);
    let payload = seal::seal(&serde_json::to_vec(&env).unwrap(), &k);
    let r = payload_ref(&payload);
    probe.publish(&Address::Device("r1".into()).cmd(), false, payload.clone());
    assert_eq!(probe.final_ack("r1", &r).status, AckStatus::Succeeded);
    probe.seen.clear();
    probe.publish(&Address::Device("r1".into()).cmd(), false, payload);
    let again = probe.final_ack("r1", &r);
    assert_eq!(again.status, AckStatus::Rejected);
    assert!(again.details.reason.unwrap().contains("duplicate"));
    a.wait_up("hello", 3, 30);
}

fn scale_env(id: &str, to: &str, version: Option<u64>, web: u32) -> Envelope {
    let action = Action::Scale(ScaleBody {
        counts: [("web".to_string(), web)].into(),
    });
    let mut env = Envelope::new(id.into(), now_ms(), 600_000, to.into(), "hello", &action);
    env.version = version;
    env
}

#[test]
fn bad_payloads_are_rejected_with_a_reason_and_change_nothing() {
    let site = Site::new();
    let broker = Broker::start();
    let a = Agent::start(&broker, "r1", &[], &site.public);
    wait_online(&broker, &["r1"]);
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--device", "r1"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    let pids = a.wait_up("hello", 1, 30);
    let releases = a.releases("hello");

    let key = seal::parse_secret(&std::fs::read_to_string(&site.key).unwrap()).unwrap();
    let other = secret_from_seed([7; 32]);
    let sign = |env: &Envelope| seal::seal(&serde_json::to_vec(env).unwrap(), &key);
    let cmd_topic = Address::Device("r1".into()).cmd();
    let mut probe = Probe::connect(&broker, &[topic::ack("r1")]);

    // A good one first: sets the app's version to V.
    let v = now_ms();
    let good = sign(&scale_env("good", "d/r1", Some(v), 1));
    probe.publish(&cmd_topic, false, good.clone());
    assert_eq!(
        probe.final_ack("r1", &payload_ref(&good)).status,
        AckStatus::Succeeded
    );

    let mut expired = scale_env("expired", "d/r1", Some(v + 10), 3);
    expired.ts -= 3_600_000;
    expired.expires = expired.ts + 60_000;
    let mut oversized = scale_env("big", "d/r1", Some(v + 11), 3);
    oversized.body["padding"] = serde_json::Value::String("x".repeat(70_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unsigned",
            seal::seal_unsigned(
                &serde_json::to_vec(&scale_env("u", "d/r1", Some(v + 1), 3)).unwrap(),
            ),
            "unsigned payload refused",
        ),
        (
            "wrong key",
            seal::seal(
                &serde_json::to_vec(&scale_env("w", "d/r1", Some(v + 2), 3)).unwrap(),
                &other,
            ),
            "unknown key",
        ),
        (
            "bad signature",
            forge(&key, &scale_env("f", "d/r1", Some(v + 3), 3)),
            "bad signature",
        ),
        (
            "replayed old version",
            sign(&scale_env("old", "d/r1", Some(v - 1), 3)),
            "replayed",
        ),
        (
            "duplicate id",
            sign(&scale_env("good", "d/r1", Some(v + 4), 3)),
            "duplicate",
        ),
        ("expired", sign(&expired), "expired"),
        ("oversized", sign(&oversized), "more than the 65536 allowed"),
        ("malformed", b"{\"env\": 12}".to_vec(), "malformed"),
        ("not JSON", b"\x00\x01garbage".to_vec(), "malformed"),
        (
            "re-aimed",
            sign(&scale_env("aim", "g/other", Some(v + 5), 3)),
            "signed for",
        ),
    ];
    for (what, payload, reason) in cases {
        let r = payload_ref(&payload);
        probe.publish(&cmd_topic, false, payload);
        let ack = probe.final_ack("r1", &r);
        assert_eq!(ack.status, AckStatus::Rejected, "{what}: {ack:?}");
        let got = ack.details.reason.unwrap_or_default();
        assert!(
            got.contains(reason),
            "{what}: reason {got:?} lacks {reason:?}"
        );
        assert!(a.log().contains(&r), "{what}: no log line for ref {r}");
    }
    // Nothing running changed: same dyno, same pid, same releases.
    assert_eq!(a.wait_up("hello", 1, 5), pids);
    assert_eq!(a.releases("hello"), releases);
}

#[test]
fn oversized_messages_are_refused_without_losing_the_connection_or_commands() {
    let site = Site::new();
    // No message_size_limit, as mosquitto ships: any client may publish up to 256 MB.
    let broker = Broker::start_with_limit(None);
    let a = Agent::start(&broker, "r1", &[], &site.public);
    wait_online(&broker, &["r1"]);
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--device", "r1"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    a.wait_up("hello", 1, 30);
    let key = seal::parse_secret(&std::fs::read_to_string(&site.key).unwrap()).unwrap();
    let sign = |env: &Envelope| seal::seal(&serde_json::to_vec(env).unwrap(), &key);
    let addr = Address::Device("r1".into());
    let mut probe = Probe::connect_with_max(&broker, &[topic::ack("r1")], 32 << 20);

    // 10 MB retained on `desired`: refused once, not re-read at reconnect after reconnect.
    let huge = vec![b'x'; 10 << 20];
    probe.publish(&addr.desired(), true, huge.clone());
    let r = payload_ref(&huge);
    let ack = probe.final_ack("r1", &r);
    assert_eq!(ack.status, AckStatus::Rejected, "{ack:?}");

    // A 10 MB command whose id can be read: REJECTED, naming it.
    let mut big = scale_env("huge-cmd", "d/r1", Some(now_ms()), 3);
    big.body["padding"] = serde_json::Value::String("x".repeat(10 << 20));
    let big = sign(&big);
    let r = payload_ref(&big);
    probe.publish(&addr.cmd(), false, big);
    let ack = probe.final_ack("r1", &r);
    assert_eq!(ack.status, AckStatus::Rejected, "{ack:?}");
    assert_eq!(ack.id.as_deref(), Some("huge-cmd"), "{ack:?}");
    assert!(
        ack.details.reason.unwrap_or_default().contains("allowed"),
        "no size reason"
    );

    // A valid command right after still runs.
    let good = sign(&scale_env("after-huge", "d/r1", Some(now_ms()), 2));
    probe.publish(&addr.cmd(), false, good.clone());
    assert_eq!(
        probe.final_ack("r1", &payload_ref(&good)).status,
        AckStatus::Succeeded
    );
    a.wait_up("hello", 2, 30);
    let log = a.log();
    assert_eq!(
        log.matches("mqtt connected").count(),
        1,
        "the agent reconnected:\n{log}"
    );
}

/// A payload whose signature is a valid one, but over other bytes.
fn forge(key: &seal::SecretKey, env: &Envelope) -> Vec<u8> {
    use roboku_wire::fleet::Sealed;
    let real: Sealed = serde_json::from_slice(&seal::seal(b"{}", key)).unwrap();
    let ours: Sealed =
        serde_json::from_slice(&seal::seal(&serde_json::to_vec(env).unwrap(), key)).unwrap();
    serde_json::to_vec(&Sealed {
        sig: real.sig,
        ..ours
    })
    .unwrap()
}

#[test]
fn a_wrong_artifact_sha256_fails_and_the_old_release_keeps_running() {
    let site = Site::new();
    let broker = Broker::start();
    let a = Agent::start(&broker, "r1", &["lab"], &site.public);
    wait_online(&broker, &["r1"]);
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--device", "r1"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    let pids = a.wait_up("hello", 1, 30);
    let size = std::fs::metadata(Path::new(&site.path("hello-v2.tar.gz")))
        .unwrap()
        .len()
        .to_string();
    let wrong = "ab".repeat(32);
    let key = site.path("fleet.key");
    let url = format!("{}/hello-v2.tar.gz", site.url);
    let (rc, out) = fleet(
        &broker,
        &[
            "deploy",
            "--group",
            "lab",
            "-a",
            "hello",
            "--key",
            &key,
            "--artifact-url",
            &url,
            "--sha256",
            &wrong,
            "--size",
            &size,
            "--wait",
            "60",
        ],
    );
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("FAILED: artifact sha256 mismatch"), "{out}");
    assert!(out.contains(&wrong), "{out}");
    assert!(
        !out.contains("desired state updated"),
        "a failed rollout must not become desired state:\n{out}"
    );
    assert_eq!(
        a.wait_up("hello", 1, 5),
        pids,
        "the old release keeps running"
    );
    let rel = a.releases("hello");
    assert_eq!(rel.len(), 1, "{rel:?}");
    // The right sha256 then works.
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--group", "lab"], "hello-v2.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    wait_for(30, "release v2 current", || {
        a.releases("hello")
            .iter()
            .any(|r| r.0 == 2 && r.2)
            .then_some(())
    });
}

#[test]
fn waves_stop_after_a_failing_canary_and_finish_when_it_succeeds() {
    let site = Site::new();
    let broker = Broker::start();
    let agents: Vec<Agent> = ["w1", "w2", "w3"]
        .iter()
        .map(|d| Agent::start(&broker, d, &["field"], &site.public))
        .collect();
    wait_online(&broker, &["w1", "w2", "w3"]);
    let key = site.path("fleet.key");
    let url = format!("{}/hello-v1.tar.gz", site.url);
    let wrong = "cd".repeat(32);
    let (rc, out) = fleet(
        &broker,
        &[
            "deploy",
            "--group",
            "field",
            "-a",
            "hello",
            "--key",
            &key,
            "--artifact-url",
            &url,
            "--sha256",
            &wrong,
            "--size",
            "100",
            "--wave",
            "1",
            "--fail-threshold",
            "0",
            "--wait",
            "60",
        ],
    );
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("wave 1: w1"), "{out}");
    assert!(out.contains("STOPPED after wave 1"), "{out}");
    assert!(!out.contains("wave 2"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("w2") || l.starts_with("w3")),
        "{out}"
    );
    // A good artifact: canary first (34% of 3 = 2 robots), then the rest.
    let mut args = site.deploy_args(&["--group", "field"], "hello-v1.tar.gz");
    args.extend(["--wave".to_string(), "34%".to_string()]);
    let (rc, out) = run_fleet(&broker, "deploy", &args);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("wave 1: w1, w2") && out.contains("wave 2: w3"),
        "{out}"
    );
    assert!(out.contains("3 succeeded"), "{out}");
    for a in &agents {
        a.wait_up("hello", 1, 30);
    }
}

#[test]
fn robots_deploy_from_a_gateway_serving_its_slugs() {
    let site = Site::new();
    let broker = Broker::start();
    let port = kit::free_port();
    let serve = format!("127.0.0.1:{port}");
    let gw = Agent::start_with(&broker, "gw", &[], &site.public, &["--serve-slugs", &serve]);
    let robot = Agent::start(&broker, "r9", &[], &site.public);
    wait_online(&broker, &["gw", "r9"]);
    let (rc, out) = run_fleet(
        &broker,
        "deploy",
        &site.deploy_args(&["--device", "gw"], "hello-v1.tar.gz"),
    );
    assert_eq!(rc, 0, "{out}");
    let current = |a: &Agent| a.releases("hello").into_iter().find(|r| r.2).map(|r| r.1);
    let slug = current(&gw).expect("gateway release");
    // The operator takes the gateway's archive (deterministic, so its sha256 is stable)...
    let path = format!("/slugs/{slug}.tar.gz");
    let body = kit::http_get(port, &path);
    assert_eq!(body, kit::http_get(port, &path), "same bytes every time");
    let file = site.dir.path().join("from-gateway.tar.gz");
    std::fs::write(&file, &body).unwrap();
    // ...and robots fetch it from the gateway.
    let url = format!("http://{serve}{path}");
    let key = site.path("fleet.key");
    let (rc, out) = fleet(
        &broker,
        &[
            "deploy",
            "--device",
            "r9",
            "-a",
            "hello",
            "--key",
            &key,
            "--artifact-url",
            &url,
            "--slug",
            &file.display().to_string(),
            "--wait",
            "60",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    robot.wait_up("hello", 1, 30);
    assert_eq!(
        current(&robot),
        Some(slug),
        "the same slug as the gateway's"
    );
}

//! `roboku fleet deploy --plan` end to end over a real Mosquitto: two robots on different
//! releases each answer with their own plan of the same artifact, computed on the robot, and
//! nothing changes on either (releases, dyno pids, scratch files); an unsigned request, one
//! signed by an unknown key and one signed for another robot are refused with no plan.

use super::kit::{artifact_with, fleet, keygen, serve_dir, wait_for, Agent, Broker, Probe};
use super::now_ms;
use roboku_wire::fleet::seal;
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, AckStatus, Action, Artifact, Envelope};
use roboku_wire::DeployPlan;
use std::path::Path;

const WEB: &str = "web: exec sleep 100000\n";
const WEB_WORKER: &str = "web: exec sleep 100000\nworker: exec sleep 100001\n";
const WEB2_WORKER: &str = "web: exec sleep 100002\nworker: exec sleep 100001\n";

fn digest(path: &Path) -> (String, u64) {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let text = String::from_utf8_lossy(&out.stdout);
    let sha = text
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string();
    (sha, std::fs::metadata(path).expect("stat").len())
}

/// Deploys `slug` (served at `url/name`) to one robot with the fleet CLI.
fn deploy(broker: &Broker, key: &str, device: &str, url: &str, slug: &Path) {
    let name = slug.file_name().unwrap().to_string_lossy().to_string();
    let (rc, out) = fleet(
        broker,
        &[
            "deploy",
            "--device",
            device,
            "-a",
            "nav",
            "--key",
            key,
            "--artifact-url",
            &format!("{url}/{name}"),
            "--slug",
            &slug.display().to_string(),
            "--wait",
            "60",
            "--no-desired",
        ],
    );
    assert_eq!(rc, 0, "{out}");
}

/// A robot's releases and its dynos (name, state, pid).
type Snapshot = (Vec<(u64, String, bool)>, Vec<(String, String, Option<u64>)>);

/// What must not change on a robot: its releases and its dynos' pids.
fn snapshot(a: &Agent) -> Snapshot {
    (a.releases("nav"), a.ps("nav"))
}

/// Directories a plan might leave under the robot's tmp dir.
fn leftovers(a: &Agent) -> Vec<String> {
    let tmp = a.dir.path().join("data").join("tmp");
    std::fs::read_dir(&tmp)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("plan-") || n.starts_with("fleet-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The `--json` answer's plans, by device.
fn plans(out: &str) -> std::collections::BTreeMap<String, (String, Option<DeployPlan>)> {
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {out}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("json");
    v["robots"]
        .as_array()
        .expect("robots")
        .iter()
        .map(|r| {
            let plan = serde_json::from_value(r["plan"].clone()).ok();
            (
                r["device"].as_str().unwrap().to_string(),
                (r["status"].as_str().unwrap().to_string(), plan),
            )
        })
        .collect()
}

fn dyno<'a>(p: &'a DeployPlan, name: &str) -> (&'a str, Option<&'a str>) {
    let d = p
        .dynos
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no {name} in {p:?}"));
    (d.action.as_str(), d.strategy.as_deref())
}

#[test]
fn fleet_deploy_plan_answers_per_robot_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet.key");
    let key = key.display().to_string();
    let one = artifact_with(dir.path(), "one.tar.gz", "one", WEB, &[]);
    let two = artifact_with(dir.path(), "two.tar.gz", "two", WEB_WORKER, &[]);
    let three = artifact_with(dir.path(), "three.tar.gz", "three", WEB2_WORKER, &[]);
    let url = serve_dir(dir.path());
    let broker = Broker::start();
    let r1 = Agent::start(&broker, "r1", &["lab"], &public);
    let r2 = Agent::start(&broker, "r2", &["lab"], &public);
    deploy(&broker, &key, "r1", &url, &one);
    deploy(&broker, &key, "r2", &url, &two);
    r1.wait_up("nav", 1, 30);
    r2.wait_up("nav", 1, 30);
    let (rc, out) = fleet(
        &broker,
        &[
            "scale",
            "--device",
            "r2",
            "-a",
            "nav",
            "--key",
            &key,
            "worker=1",
            "--no-desired",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    r2.wait_up("nav", 2, 30);
    let before = (snapshot(&r1), snapshot(&r2));

    // The group's plan of `three`: each robot diffs against what it runs.
    let ask = |slug: &Path, extra: &[&str]| {
        let name = slug.file_name().unwrap().to_string_lossy().to_string();
        let mut args = vec![
            "deploy".to_string(),
            "--plan".into(),
            "-a".into(),
            "nav".into(),
            "--key".into(),
            key.clone(),
            "--artifact-url".into(),
            format!("{url}/{name}"),
            "--slug".into(),
            slug.display().to_string(),
            "--wait".into(),
            "60".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fleet(&broker, &args)
    };
    let (rc, out) = ask(&three, &["--group", "lab", "--json"]);
    assert_eq!(rc, 0, "{out}");
    let got = plans(&out);
    assert_eq!(got.len(), 2, "{out}");
    let (status, p1) = &got["r1"];
    assert_eq!(status, "SUCCEEDED", "{out}");
    let p1 = p1.as_ref().expect("r1's plan");
    let (status, p2) = &got["r2"];
    assert_eq!(status, "SUCCEEDED", "{out}");
    let p2 = p2.as_ref().expect("r2's plan");
    assert_eq!(p1.slug, p2.slug, "the same artifact makes the same slug");
    assert!(p1.code_changed && p2.code_changed);
    // r1 runs web only: worker is new, web restarts (its command changed).
    assert_eq!((p1.current, p1.next_version), (Some(1), 2), "{p1:?}");
    assert_eq!(p1.types_added, ["worker"], "{p1:?}");
    assert_eq!(p1.types_changed, ["web"], "{p1:?}");
    assert_eq!(dyno(p1, "web.1"), ("restart", Some("preboot")));
    // r2 runs web and worker: nothing added, both restart.
    assert!(p2.types_added.is_empty(), "{p2:?}");
    assert_eq!(p2.types_changed, ["web"], "{p2:?}");
    assert_eq!(dyno(p2, "web.1"), ("restart", Some("preboot")));
    assert_eq!(dyno(p2, "worker.1"), ("restart", Some("stop-then-start")));
    assert!(p1.disk_bytes > 0 && p2.disk_bytes > 0);

    // The human form: one block per robot, as `roboku deploy --plan` prints it.
    let (rc, out) = ask(&three, &["--group", "lab"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("=== r1: Plan: deploy artifact "), "{out}");
    assert!(
        out.contains("to nav (v2 after v1); nothing was applied"),
        "{out}"
    );
    assert!(out.contains("=== r2: Plan: deploy artifact "), "{out}");
    assert!(out.contains("Added:      worker"), "{out}");

    // r1 keeps the slug it runs: its plan of it says nothing changes.
    let (rc, out) = ask(&one, &["--device", "r1", "--json"]);
    assert_eq!(rc, 0, "{out}");
    let p = plans(&out)["r1"].1.clone().expect("plan");
    assert!(!p.code_changed, "{p:?}");
    assert_eq!(p.disk_bytes, 0, "{p:?}");

    // Nothing changed anywhere, and nothing was left behind.
    assert_eq!((snapshot(&r1), snapshot(&r2)), before);
    for a in [&r1, &r2] {
        wait_for(10, "the plan's scratch files removed", || {
            leftovers(a).is_empty().then_some(())
        });
    }
}

#[test]
fn fleet_deploy_plan_is_refused_unsigned_foreign_or_aimed_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet.key");
    let one = artifact_with(dir.path(), "one.tar.gz", "one", WEB, &[]);
    let url = serve_dir(dir.path());
    let broker = Broker::start();
    let r1 = Agent::start(&broker, "r1", &[], &public);
    deploy(&broker, &key.display().to_string(), "r1", &url, &one);
    r1.wait_up("nav", 1, 30);
    let before = snapshot(&r1);
    let slug = one.display().to_string();
    let art_url = format!("{url}/one.tar.gz");
    let base = [
        "deploy",
        "--plan",
        "--device",
        "r1",
        "-a",
        "nav",
        "--artifact-url",
        &art_url,
        "--slug",
        &slug,
        "--wait",
        "30",
    ];
    let (rc, out) = fleet(&broker, &[&base[..], &["--unsigned"]].concat());
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("=== r1: REJECTED: unsigned payload refused"),
        "{out}"
    );
    assert!(!out.contains("Plan:"), "{out}");
    let (other, _) = keygen(dir.path(), "other.key");
    let other = other.display().to_string();
    let (rc, out) = fleet(&broker, &[&base[..], &["--key", &other]].concat());
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("REJECTED: signed with unknown key"), "{out}");

    // Signed by the trusted key for r2 but published to r1; and one with a version (a read
    // takes none): both refused, no plan on any ack.
    let secret = seal::parse_secret(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let (sha256, size) = digest(&one);
    let action = Action::Plan(Artifact {
        url: art_url.clone(),
        sha256,
        size,
        delta: None,
    });
    let env =
        |id: &str, to: &str| Envelope::new(id.into(), now_ms(), 60_000, to.into(), "nav", &action);
    let sign = |e: &Envelope| seal::seal(&serde_json::to_vec(e).unwrap(), &secret);
    let mut versioned = env("versioned", "d/r1");
    versioned.version = Some(now_ms());
    let mut probe = Probe::connect(&broker, &[topic::ack("r1")]);
    let cmd = Address::Device("r1".into()).cmd();
    for (payload, reason) in [
        (sign(&env("aimed", "d/r2")), "signed for \"d/r2\""),
        (sign(&versioned), "a read takes no version"),
    ] {
        let rf = payload_ref(&payload);
        probe.publish(&cmd, false, payload);
        let ack = probe.final_ack("r1", &rf);
        assert_eq!(ack.status, AckStatus::Rejected, "{ack:?}");
        let why = ack.details.reason.clone().unwrap_or_default();
        assert!(why.contains(reason), "{why}");
        assert!(ack.details.plan.is_none());
    }
    // The good one is answered, once: its replay is refused.
    let good = sign(&env("good", "d/r1"));
    probe.publish(&cmd, false, good.clone());
    let ack = probe.final_ack("r1", &payload_ref(&good));
    assert_eq!(ack.status, AckStatus::Succeeded, "{ack:?}");
    assert!(ack.details.plan.is_some());
    probe.publish(&cmd, false, good.clone());
    let replay = probe.wait_msg(30, "the replay's REJECTED ack", |t, p| {
        let a: roboku_wire::fleet::Ack = serde_json::from_slice(p).ok()?;
        (t == topic::ack("r1")
            && a.status == AckStatus::Rejected
            && a.id.as_deref() == Some("good"))
        .then_some(a)
    });
    assert!(replay.details.reason.unwrap().contains("duplicate"));
    assert_eq!(snapshot(&r1), before);
}

/// Serves `body` slowly: the headers and half the bytes, then nothing until `release` is dropped.
fn serve_stalled(body: Vec<u8>, release: std::sync::mpsc::Receiver<()>) -> String {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut reader = std::io::BufReader::new(s.try_clone().expect("clone"));
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(&body[..body.len() / 2]);
        let _ = s.flush();
        // Blocks until the test lets go (drops the sender), then closes mid-body.
        let _ = release.recv();
    });
    format!("http://{addr}")
}

#[test]
fn a_plan_over_the_command_timeout_is_timed_out_at_once_and_holds_its_permit_until_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet.key");
    let key = key.display().to_string();
    let one = artifact_with(dir.path(), "one.tar.gz", "one", WEB, &[]);
    let two = artifact_with(dir.path(), "two.tar.gz", "two", WEB_WORKER, &[]);
    let url = serve_dir(dir.path());
    let conf = dir.path().join("robokud.toml");
    std::fs::write(&conf, "[mqtt]\ncommand_timeout_secs = 2\n").unwrap();
    let broker = Broker::start();
    let conf_arg = conf.display().to_string();
    let r1 = Agent::start_with(&broker, "r1", &[], &public, &["--config", &conf_arg]);
    deploy(&broker, &key, "r1", &url, &one);
    r1.wait_up("nav", 1, 30);
    let before = snapshot(&r1);

    let (release, held) = std::sync::mpsc::channel::<()>();
    let slow = serve_stalled(std::fs::read(&two).unwrap(), held);
    let slug = two.display().to_string();
    let ask = |art: &str| {
        fleet(
            &broker,
            &[
                "deploy",
                "--plan",
                "--device",
                "r1",
                "-a",
                "nav",
                "--key",
                &key,
                "--artifact-url",
                art,
                "--slug",
                &slug,
                "--wait",
                "20",
                "--json",
            ],
        )
    };
    let t0 = std::time::Instant::now();
    let (_, out) = ask(&format!("{slow}/two.tar.gz"));
    let took = t0.elapsed();
    let got = plans(&out);
    assert_eq!(got["r1"].0, "TIMED_OUT", "{out}");
    assert!(got["r1"].1.is_none(), "{out}");
    // Answered at the command timeout, not when the download gives up (30 s stall limit).
    assert!(took < std::time::Duration::from_secs(15), "{took:?}: {out}");

    // Its download still runs and keeps the permit: a second plan is refused as busy, and the
    // first one's files stay where it still writes them.
    let (_, out) = ask(&format!("{url}/two.tar.gz"));
    let got = plans(&out);
    assert_eq!(got["r1"].0, "FAILED", "{out}");
    assert!(out.contains("busy"), "{out}");
    assert!(
        !leftovers(&r1).is_empty(),
        "the running plan's download dir"
    );

    // Let the stalled download end: its dir goes, the permit is back, a plan is answered.
    drop(release);
    wait_for(40, "the timed-out plan's files removed", || {
        leftovers(&r1).is_empty().then_some(())
    });
    let (rc, out) = ask(&format!("{url}/two.tar.gz"));
    assert_eq!(rc, 0, "{out}");
    let got = plans(&out);
    assert_eq!(got["r1"].0, "SUCCEEDED", "{out}");
    assert_eq!(got["r1"].1.as_ref().expect("plan").types_added, ["worker"]);
    assert_eq!(snapshot(&r1), before, "a plan applies nothing");
}

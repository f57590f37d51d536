//! `roboku fleet support` end to end over a real Mosquitto: the bundle arrives as a `.tar.gz`
//! with the doctor facts, status and every app's ps and releases; no config var value is
//! anywhere in it (not even the one the app prints into its own logs), nor a drain's password;
//! a request signed with another key gets a REJECTED ack and nothing on the logs topic; a small
//! cap cuts the bundle and says so in TRUNCATED.txt and on stderr.

use super::kit::{artifact_with, fleet, keygen, serve_dir, Agent, Broker, Probe};
use roboku_wire::fleet::topic;
use roboku_wire::fleet::SupportChunk;
use std::path::Path;
use std::process::Command;

/// The secret the test sets as a config var; the app prints it into its log on every start.
const SECRET: &str = "s3cr3t-Tok3n-4242";
/// A drain password (in the drain's URL).
const DRAIN_PW: &str = "dr4inPassw0rd";

/// Prints the token, then 300 lines of about 60 bytes, then sleeps.
const PROCFILE: &str = "web: echo \"token is $API_TOKEN\"; i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo \"line $i of the chatty web dyno, padding padding padding\"; done; exec sleep 100000\n";

/// Extracts `bundle` into `into` with the system's tar; returns the top directory.
fn extract(bundle: &Path, into: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(bundle)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar");
    assert!(st.success(), "tar -xzf {}", bundle.display());
    let tops: Vec<_> = std::fs::read_dir(into)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(tops.len(), 1, "one top directory: {tops:?}");
    tops[0].clone()
}

/// Every file under `dir`, relative, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn fleet_support_brings_a_redacted_capped_bundle_and_refuses_a_foreign_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet.key");
    let key = key.display().to_string();
    let slug = artifact_with(dir.path(), "nav.tar.gz", "one", PROCFILE, &[]);
    let url = serve_dir(dir.path());
    let broker = Broker::start();
    let agent = Agent::start(&broker, "r1", &[], &public);
    let (rc, out) = fleet(
        &broker,
        &[
            "deploy",
            "--device",
            "r1",
            "-a",
            "nav",
            "--key",
            &key,
            "--artifact-url",
            &format!("{url}/nav.tar.gz"),
            "--slug",
            &slug.display().to_string(),
            "--wait",
            "60",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = fleet(
        &broker,
        &[
            "config",
            "--device",
            "r1",
            "-a",
            "nav",
            "--key",
            &key,
            &format!("API_TOKEN={SECRET}"),
            "--wait",
            "60",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    agent.wait_up("nav", 1, 30);
    let drain = format!("https://ops:{DRAIN_PW}@127.0.0.1:9/drain?token={DRAIN_PW}");
    assert!(
        agent
            .roboku_json(&["drains:add", &drain, "-a", "nav"])
            .is_some(),
        "drains:add"
    );
    // The app has printed its secret and its last line.
    super::kit::wait_for(30, "the app's lines stored", || {
        let (rc, out) = fleet(
            &broker,
            &[
                "logs",
                "--device",
                "r1",
                "-a",
                "nav",
                "--key",
                &key,
                "--grep",
                "line 300 ",
            ],
        );
        (rc == 0 && out.contains("line 300 of")).then_some(())
    });

    // The whole bundle.
    let file = dir.path().join("r1.tar.gz");
    let (rc, out) = fleet(
        &broker,
        &[
            "support",
            "--device",
            "r1",
            "--key",
            &key,
            "--lines",
            "1000",
            "-o",
            &file.display().to_string(),
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("TRUNCATED"), "{out}");
    let raw = std::fs::read(&file).expect("the bundle");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the bundle holds logs: owner only");
    let top = extract(&file, &dir.path().join("x1"));
    let all = files(&top);
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "README.txt",
        "doctor.json",
        "status.json",
        "disk.json",
        "usage.json",
        "apps.json",
        "events.json",
        "settings.json",
        "apps/nav/ps.json",
        "apps/nav/releases.json",
        "apps/nav/config-names.json",
        "apps/nav/drains.json",
        "apps/nav/logs.jsonl",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let get = |name: &str| -> serde_json::Value {
        let (_, b) = all.iter().find(|(n, _)| n == name).expect(name);
        serde_json::from_slice(b).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert!(get("doctor.json")["agent"]["fleet"]["configured"] == true);
    assert!(get("status.json")["pid"].as_u64().is_some());
    let ps = get("apps/nav/ps.json");
    assert_eq!(ps[0]["name"], "web.1", "{ps}");
    let releases = get("apps/nav/releases.json");
    assert_eq!(releases[0]["version"], 2, "newest first: {releases}");
    assert_eq!(
        get("apps/nav/config-names.json"),
        serde_json::json!(["API_TOKEN"])
    );
    let logs = String::from_utf8_lossy(
        &all.iter()
            .find(|(n, _)| n == "apps/nav/logs.jsonl")
            .unwrap()
            .1,
    )
    .into_owned();
    assert!(logs.contains("line 300 of"), "{logs}");
    assert!(
        logs.contains("token is [redacted: config var API_TOKEN of nav]"),
        "{logs}"
    );
    // No config value and no drain password anywhere: neither in a file nor in the raw stream.
    for (name, bytes) in &all {
        assert!(!contains(bytes, SECRET), "{name} holds the config value");
        assert!(
            !contains(bytes, DRAIN_PW),
            "{name} holds the drain password"
        );
    }
    let tar = Command::new("gzip")
        .arg("-dc")
        .arg(&file)
        .output()
        .expect("gzip");
    assert!(tar.status.success());
    assert!(!contains(&tar.stdout, SECRET) && !contains(&raw, SECRET));

    // Signed with another key: REJECTED, no file, and nothing published on the logs topic.
    let mut probe = Probe::connect(&broker, &[topic::logs("r1")]);
    let (other, _) = keygen(dir.path(), "other.key");
    let foreign = dir.path().join("foreign.tar.gz");
    let (rc, out) = fleet(
        &broker,
        &[
            "support",
            "--device",
            "r1",
            "--key",
            &other.display().to_string(),
            "-o",
            &foreign.display().to_string(),
        ],
    );
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("REJECTED: signed with unknown key"), "{out}");
    assert!(!foreign.exists());

    // A small cap: cut, with a clear marker in the bundle and on stderr. The good request
    // after the foreign one is the only answer the probe sees.
    let small = dir.path().join("small.tar.gz");
    let (rc, out) = fleet(
        &broker,
        &[
            "support",
            "--device",
            "r1",
            "--key",
            &key,
            "--max-bytes",
            "6K",
            "-o",
            &small.display().to_string(),
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("TRUNCATED"), "{out}");
    let top = extract(&small, &dir.path().join("x2"));
    let cut = files(&top);
    let (_, marker) = cut
        .iter()
        .find(|(n, _)| n == "TRUNCATED.txt")
        .expect("TRUNCATED.txt");
    let marker = String::from_utf8_lossy(marker);
    assert!(marker.starts_with("TRUNCATED"), "{marker}");
    assert!(marker.contains("6144 bytes"), "{marker}");
    let content: usize = cut
        .iter()
        .filter(|(n, _)| n != "TRUNCATED.txt")
        .map(|(_, b)| b.len())
        .sum();
    assert!(content <= 6144, "{content} bytes of content");
    assert!(cut.iter().any(|(n, _)| n == "README.txt"));
    for (name, bytes) in &cut {
        assert!(!contains(bytes, SECRET), "{name} holds the config value");
    }
    // Messages on one topic from one publisher arrive in order: once the capped answer's last
    // part is here, anything sent for the foreign request would be too.
    probe.wait_msg(30, "the capped answer's last part", |t, p| {
        let c: SupportChunk = serde_json::from_slice(p).ok()?;
        (t == topic::logs("r1") && !c.truncated.is_empty() && c.part + 1 == c.parts).then_some(())
    });
    let ids: Vec<String> = probe
        .seen
        .iter()
        .filter(|(t, _)| *t == topic::logs("r1"))
        .filter_map(|(_, p)| serde_json::from_slice::<SupportChunk>(p).ok())
        .map(|c| c.id)
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one answer only, to the good request: {ids:?}"
    );
}

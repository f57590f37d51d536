//! `fleet deploy --delta`: a robot keeping the base rebuilds the slug from a small delta, one
//! without it (or whose delta cannot be fetched) takes the full artifact; both end up with the
//! same slug.

use super::kit::{
    artifact_with, fleet, keygen, serve_dir, wait_for, Agent, Broker, Probe, PROCFILE_SLEEP,
};
use roboku_wire::fleet::{topic, Reported};

/// 2 MiB of incompressible bytes (a vendored binary), the same in every version.
fn bulk() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn current_slug(a: &Agent) -> String {
    a.releases("hello")
        .into_iter()
        .find(|r| r.2)
        .map(|r| r.1)
        .unwrap_or_default()
}

#[test]
fn a_delta_deploy_rebuilds_the_same_slug_and_robots_without_the_base_take_the_full_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet.key");
    let big = bulk();
    let files: [(&str, &[u8]); 1] = [("vendor/lib.bin", &big)];
    let v1 = artifact_with(dir.path(), "hello-v1.tar.gz", "one", PROCFILE_SLEEP, &files);
    let v2 = artifact_with(dir.path(), "hello-v2.tar.gz", "two", PROCFILE_SLEEP, &files);
    let url = serve_dir(dir.path());
    let broker = Broker::start();
    let r1 = Agent::start(&broker, "r1", &["lab"], &public);
    let r2 = Agent::start(&broker, "r2", &["lab"], &public);
    let key = key.display().to_string();
    let deploy = |target: &[&str], slug: &std::path::Path, extra: &[&str]| {
        let name = slug.file_name().unwrap().to_str().unwrap();
        let mut args = vec!["deploy"];
        args.extend_from_slice(target);
        let art_url = format!("{url}/{name}");
        let slug = slug.display().to_string();
        args.extend_from_slice(&["-a", "hello", "--key", &key, "--wait", "60"]);
        args.extend_from_slice(&["--artifact-url", &art_url, "--slug", &slug]);
        args.extend_from_slice(extra);
        fleet(&broker, &args)
    };
    // r1 gets v1 the ordinary way and then reports keeping it as a base.
    let (rc, out) = deploy(&["--device", "r1"], &v1, &[]);
    assert_eq!(rc, 0, "{out}");
    let v1_sha = robokud::mqtt::artifact::sha256_file(&v1).expect("sha256");
    let mut probe = Probe::connect(&broker, &[topic::reported("r1")]);
    probe.wait_msg(30, "r1 reporting v1 as a delta base", |_, p| {
        let rep: Reported = serde_json::from_slice(p).ok()?;
        rep.artifacts.contains(&v1_sha).then_some(())
    });
    wait_for(30, "r2 online", || {
        let (_, out) = fleet(&broker, &["status"]);
        out.lines()
            .any(|l| l.starts_with("r2") && l.contains("online"))
            .then_some(())
    });
    // v2 to the group as a delta against v1: r1 rebuilds it, r2 (no base) downloads it whole.
    let from = v1.display().to_string();
    let (rc, out) = deploy(
        &["--group", "lab"],
        &v2,
        &["--delta", "--delta-from", &from],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("delta against") && out.contains("1 of 2 robots"),
        "{out}"
    );
    let delta_file = dir
        .path()
        .join(format!("hello-v2.tar.gz.from-{}.rkd", &v1_sha[..12]));
    let delta_len = std::fs::metadata(&delta_file).expect("delta file").len();
    let full_len = std::fs::metadata(&v2).unwrap().len();
    assert!(
        delta_len * 100 < full_len,
        "delta {delta_len} vs full {full_len}"
    );
    let lines = |d: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with(d))
            .map(str::to_string)
            .collect()
    };
    assert!(
        lines("r1")
            .iter()
            .any(|l| l.ends_with("IN_PROGRESS download delta")),
        "{out}"
    );
    assert!(
        !lines("r1")
            .iter()
            .any(|l| l.ends_with("IN_PROGRESS download")),
        "{out}"
    );
    assert!(
        lines("r2")
            .iter()
            .any(|l| l.ends_with("IN_PROGRESS download")),
        "{out}"
    );
    assert!(lines("r2").iter().all(|l| !l.contains("delta")), "{out}");
    r1.wait_up("hello", 1, 30);
    r2.wait_up("hello", 1, 30);
    let (s1, s2) = (current_slug(&r1), current_slug(&r2));
    assert!(!s1.is_empty() && s1 == s2, "r1 {s1} vs r2 {s2}");
    let version = std::fs::read_to_string(r1.dir.path().join(format!("data/slugs/{s1}/VERSION")));
    assert_eq!(version.expect("VERSION in the rebuilt slug"), "two");
    // A delta that cannot be fetched: r1 says so and falls back to the full artifact.
    let v3 = artifact_with(
        dir.path(),
        "hello-v3.tar.gz",
        "three",
        PROCFILE_SLEEP,
        &files,
    );
    let (rc, out) = deploy(
        &["--device", "r1"],
        &v3,
        &[
            "--delta",
            "--delta-from",
            &v2.display().to_string(),
            "--delta-url",
            &format!("{url}/missing.rkd"),
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("delta failed") && out.contains("HTTP 404"),
        "{out}"
    );
    assert!(out.contains("SUCCEEDED"), "{out}");
}

//! The go, rust, cmake and colcon built-ins on one agent, as a robot team ships them: a Go web
//! app and a Rust web app with vendored dependencies (built offline), a CMake C++ server with a
//! shared library, and a colcon workspace (a CMake and a Python package) whose Procfile command
//! is found only through the sourced install/setup.sh. Each deploys, serves, and deploys again
//! from the build cache; the figures (build times, slug sizes) go to stderr.

use roboku_tests::{http, wait_for, Agent, AgentOpts};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn web_answers(agent: &Agent, app: &str, want: &str) {
    let pid = agent.wait_up(app, "web.1", None, Duration::from_secs(30));
    let port = agent.dyno(app, "web.1").expect("web.1")["port"]
        .as_u64()
        .expect("port") as u16;
    wait_for(
        &format!("{app} (pid {pid}) answers {want:?} on port {port}"),
        Duration::from_secs(30),
        || {
            http::get(port, "/")
                .map(|r| r.status == 200 && r.body.trim() == want)
                .unwrap_or(false)
        },
    );
}

fn slug_bytes(agent: &Agent, sha: &str) -> u64 {
    let out = Command::new("du")
        .arg("-sb")
        .arg(agent.data_dir().join("slugs").join(sha))
        .output()
        .expect("du");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("du of slug {sha}: {text}"))
}

#[test]
fn go_rust_cmake_and_colcon_apps_deploy_serve_and_rebuild_from_the_cache() {
    let agent = Agent::start(AgentOpts::default());
    let apps = [
        ("go", "go-web", "Go", "hello from a vendored module"),
        ("rust", "rust-web", "Rust", "hello from a vendored crate"),
        ("cpp", "cmake-hello", "CMake", "hello from cmake"),
        ("ws", "colcon-ws", "colcon", "hello from greeter via talker"),
    ];
    let mut figures = Vec::new();
    for (app, dir, pack, want) in apps {
        let src = tempfile::tempdir().expect("temp dir");
        let cp = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", example(dir).display()))
            .arg(src.path())
            .status()
            .expect("cp");
        assert!(cp.success(), "copy examples/{dir}");

        agent.ok(&["apps:create", app]);
        let t0 = Instant::now();
        let release = agent.deploy(app, src.path());
        let first = t0.elapsed();
        let log = agent.ok(&["logs", "-a", app, "-d", "build", "-n", "500"]);
        assert!(
            log.contains(&format!("{pack} app detected")),
            "{app}: {log}"
        );
        web_answers(&agent, app, want);
        let sha = release["slug"].as_str().expect("slug sha256").to_string();

        std::fs::write(src.path().join("CHANGES"), "second deploy\n").expect("write");
        let t1 = Instant::now();
        agent.deploy(app, src.path());
        let second = t1.elapsed();
        let log = agent.ok(&["logs", "-a", app, "-d", "build", "-n", "500"]);
        // CHANGES is new source, so the build runs again; the compiled dependencies come back
        // from the cache where the pack keeps them, the rest is compiled again.
        assert!(!log.contains(" !     "), "{app}: {log}");
        web_answers(&agent, app, want);

        let t2 = Instant::now();
        agent.deploy(app, src.path());
        let third = t2.elapsed();
        let log = agent.ok(&["logs", "-a", app, "-d", "build", "-n", "500"]);
        assert!(
            log.contains("from the build cache"),
            "{app}: an unchanged deploy uses the cache: {log}"
        );
        web_answers(&agent, app, want);
        figures.push(format!(
            "{pack:6} first deploy {first:.2?}, changed source {second:.2?}, unchanged {third:.2?} \
             ({:.1}x); slug {} bytes",
            first.as_secs_f64() / third.as_secs_f64(),
            slug_bytes(&agent, &sha)
        ));
    }
    for line in figures {
        eprintln!("{line}");
    }
}

/// CI builds the Rust app's slug for the other CPU (aarch64 here): cross-compiled, so the slug
/// is built; this robot's agent refuses it by name and keeps the running release.
#[test]
fn a_rust_slug_cross_built_for_another_cpu_is_refused_by_this_robot() {
    let other = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let out_dir = tempfile::tempdir().expect("temp dir");
    let slug = out_dir.path().join("rust.slug");
    let slug_s = slug.to_str().expect("utf-8");
    let src = example("rust-web");
    let built = Command::new(roboku_tests::bins::bin("roboku"))
        .args(["--json", "slug:build"])
        .arg(&src)
        .args(["-o", slug_s, "--arch", other])
        .output()
        .expect("roboku slug:build");
    let err = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{err}");
    assert!(err.contains("Cross-compiling for"), "{err}");
    let info: serde_json::Value =
        serde_json::from_slice(&built.stdout).expect("slug:build --json is JSON");
    assert_eq!(info["arch"], other, "{info}");

    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "rust"]);
    let out = agent.roboku(&["deploy", "--slug", slug_s, "-a", "rust"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a slug for {other} deployed here: {err}"
    );
    assert!(
        err.contains("target/release/robot-web") && err.contains(other),
        "names the binary and its CPU: {err}"
    );
}

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

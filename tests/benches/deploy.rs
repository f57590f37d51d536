//! Deploy of a prebuilt 10 MB slug to "new web dyno healthy", against the app's own boot time
//! measured in the same run (issue target: under 1 s plus the boot time).
//!
//! `cargo bench -p roboku-tests --bench deploy` (root). Builds the release binaries first through
//! `$CARGO`, then for each round: a fresh app, `roboku deploy --slug` (upload over the socket,
//! extraction, hashing, release, spawn, health check `listening` polled every 10 ms), timed from
//! the command's start to its exit. The peer is the app alone: the same `python3 -m http.server`
//! started directly, timed until its port accepts a connection.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("deploy bench: not run (use `cargo bench -p roboku-tests --bench deploy`)");
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "robokud",
            "-p",
            "roboku",
            "--bins",
        ])
        .status()
        .expect("cargo build runs");
    assert!(ok.success(), "release build failed");
    // The bench executable lives in target/release/deps: the kit finds the release binaries.
    let rounds: usize = std::env::var("ROBOKU_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);

    let src = app_dir(&[
        (
            "Procfile",
            "web: exec python3 -m http.server $PORT --bind 127.0.0.1\n",
        ),
        (
            "app.json",
            r#"{"healthchecks":{"web":[{"listening":true,"attempts":500,"wait":0.01,"timeout":1}]}}"#,
        ),
    ]);
    // 10 MB that do not compress: the slug file is as big as the tree.
    let mut blob = vec![0u8; 10 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut blob))
        .expect("read /dev/urandom");
    std::fs::write(src.path().join("payload.bin"), blob).expect("write payload");
    let out = tempfile::tempdir().expect("tempdir");
    let slug = out.path().join("app.slug");
    let built = Command::new(roboku_tests::bins::bin("roboku"))
        .args([
            "slug:build",
            src.path().to_str().expect("utf-8"),
            "-o",
            slug.to_str().expect("utf-8"),
        ])
        .stderr(Stdio::null())
        .status()
        .expect("slug:build");
    assert!(built.success());
    let size = std::fs::metadata(&slug).expect("slug").len();

    let agent = Agent::start(AgentOpts::default());
    let mut deploys = Vec::new();
    for i in 0..rounds {
        let app = format!("bench{i}");
        agent.ok(&["apps:create", &app]);
        let t = Instant::now();
        let out = agent.roboku(&[
            "deploy",
            "--slug",
            slug.to_str().expect("utf-8"),
            "-a",
            &app,
        ]);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        deploys.push(ms);
        agent.ok(&["ps:scale", "web=0", "-a", &app]);
    }

    let mut boots = Vec::new();
    for i in 0..rounds {
        let port = 28900 + i as u16;
        let t = Instant::now();
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(src.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the app never listened");
            std::thread::sleep(Duration::from_millis(1));
        }
        boots.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = child.kill();
        let _ = child.wait();
    }
    let (d, b) = (median(deploys.clone()), median(boots.clone()));
    println!(
        "== deploy bench: {rounds} rounds, slug file {:.1} MB ==",
        size as f64 / 1048576.0
    );
    println!("  roboku deploy --slug to web healthy   median {d:8.1} ms   (all: {deploys:.0?})");
    println!("  peer: the app alone, start to listen  median {b:8.1} ms   (all: {boots:.0?})");
    let over = d - b;
    let verdict = if over < 1000.0 { "MET" } else { "MISSED" };
    println!("  roboku's own share: {over:.1} ms   target < 1000 ms plus boot: {verdict}");
}

//! `cargo bench -p roboku-tests --bench dashboard`: the dashboard's speed targets (issue 12),
//! against the release binaries (`cargo build --release -p robokud -p roboku` first, with the
//! same CARGO_TARGET_DIR; the bench does not build them).
//!
//! 1. a warm agent with 100 dynos: `GET /dash/snapshot`, `GET /`, `GET /metrics`,
//!    `GET /dash/charts` latency (target: page and snapshot under 50 ms), medians of N.
//! 2. robokud's CPU over 20 s with 100 dynos sampled every second (the sampler's cost is at most
//!    this; target under 1 % of one core), and the same with sampling every 60 s for the floor.
//! 3. robokud's RSS with 100 dynos, and what an hour of history for 100 dynos costs: measured
//!    in this process by filling the same `History` type robokud uses (3600 rounds x 100
//!    dynos) and reading VmRSS before and after (target: agent + history under 20 MB).
//!
//! Env: `ROBOKU_BENCH_ITERS` (default 30).

use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DYNOS: usize = 100;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("robokud stat");
    let f: Vec<&str> = text[text.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

fn start(sample_secs: &str) -> (Agent, SocketAddr) {
    let agent = Agent::start(AgentOpts {
        extra: vec![
            "--dashboard".into(),
            "127.0.0.1:0".into(),
            "--sample-secs".into(),
            sample_secs.into(),
        ],
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    agent.create_and_deploy("bench", app.path());
    agent.ok(&["ps:scale", "-a", "bench", &format!("web={DYNOS}")]);
    wait_for("100 dynos up", Duration::from_secs(120), || {
        agent
            .ps("bench")
            .iter()
            .filter(|d| d["state"] == "up")
            .count()
            == DYNOS
    });
    let url = agent.ok(&["dashboard:url"]);
    let addr = url
        .trim()
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .map(|(a, _)| a.parse().expect("ADDR:PORT"))
        .expect("dashboard URL");
    (agent, addr)
}

fn latency(addr: SocketAddr, path: &str, iters: usize) -> (f64, usize) {
    let mut v = Vec::new();
    let mut size = 0;
    for _ in 0..iters {
        let t = Instant::now();
        let r = http::tcp(addr, "GET", path, &[], None).expect("dashboard request");
        v.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        size = r.body.len();
    }
    (median(v), size)
}

fn idle_cpu(agent: &Agent, secs: u64) -> f64 {
    let clk = 100.0; // USER_HZ on Linux
    let t0 = cpu_ticks(agent.pid());
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let used = (cpu_ticks(agent.pid()) - t0) as f64 / clk;
    used / start.elapsed().as_secs_f64() * 100.0
}

fn history_cost_kb() -> (u64, usize) {
    use robokud::telemetry::{DynoReading, History, Round};
    let me = std::process::id();
    let before = status_kb(me, "VmRSS");
    let mut h = History::new(Duration::from_secs(3600), Duration::from_secs(1));
    let names: Vec<String> = (1..=DYNOS).map(|i| format!("web.{i}")).collect();
    for r in 0..3600u64 {
        let dynos = names
            .iter()
            .map(|n| DynoReading {
                app: "bench".into(),
                dyno: n.clone(),
                cpu_percent: Some(1.0),
                memory: Some(1 << 20),
                memory_limit: None,
                last_exit: None,
                release: 1,
            })
            .collect();
        h.record(&Round {
            t: 1_000 * r,
            dynos,
        });
    }
    let after = status_kb(me, "VmRSS");
    let points = h.dynos.values().map(|s| s.points.len()).sum();
    (after.saturating_sub(before), points)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("dashboard bench: not run (use `cargo bench -p roboku-tests --bench dashboard`)");
        return;
    }
    let iters: usize = std::env::var("ROBOKU_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .max(1);
    let bins = release_dir();
    assert!(
        bins.join("robokud").is_file() && bins.join("roboku").is_file(),
        "{} has no robokud/roboku: cargo build --release -p robokud -p roboku first",
        bins.display()
    );
    // The kit starts whatever binaries ROBOKU_BIN_DIR names.
    std::env::set_var("ROBOKU_BIN_DIR", &bins);

    let (hist_kb, points) = history_cost_kb();
    println!("history: {points} points ({DYNOS} dynos x 1 h at 1 s) cost {hist_kb} KiB RSS");

    let (agent, addr) = start("1");
    // Warm: a few samples in the history, every path served once.
    std::thread::sleep(Duration::from_secs(3));
    for p in ["/", "/dash/snapshot", "/metrics", "/dash/charts?app=bench"] {
        let _ = latency(addr, p, 1);
    }
    for p in [
        "/",
        "/dash/snapshot",
        "/metrics",
        "/dash/charts?app=bench",
        "/healthz",
    ] {
        let (ms, size) = latency(addr, p, iters);
        println!("GET {p:<24} median {ms:7.2} ms  ({size} bytes, {iters} runs, {DYNOS} dynos)");
    }
    let rss = status_kb(agent.pid(), "VmRSS");
    println!("robokud RSS with {DYNOS} dynos: {rss} KiB (+ {hist_kb} KiB for a full hour of history = {} KiB)", rss + hist_kb);
    let cpu1 = idle_cpu(&agent, 20);
    println!("robokud CPU, {DYNOS} dynos, sampling every 1 s: {cpu1:.2} % of one core");
    drop(agent);
    let (agent, _) = start("60");
    let cpu60 = idle_cpu(&agent, 20);
    println!("robokud CPU, {DYNOS} dynos, sampling every 60 s: {cpu60:.2} % of one core");
    println!(
        "sampler cost (difference): {:.2} % of one core",
        cpu1 - cpu60
    );
}

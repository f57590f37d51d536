//! `cargo bench -p roboku-tests --bench peers` (or `tests/benches/peers/run.sh`, which installs
//! the peers first): robokud against the process managers a team would pick instead, on the same
//! machine in one interleaved pass. Contenders: a C floor (fork, exec, reap, respawn) with and
//! without fresh memory/pids/cpuacct cgroups per child (and with them while favordynmods is
//! mounted, `floor+cg+fdm`: the bench owns that switch, see `fdm.rs`), supervisord, foreman,
//! honcho, uwsgi laid out as piku does (`attach-daemon` per worker) and robokud (scaling an app
//! on one running agent with the default sampling, `--no-favordynmods`). Each iteration runs
//! every contender at every N in turn.
//!
//! Writes `<target>/bench-peers.json`, `<target>/bench-peers.md` and `<target>/bench-*.svg`;
//! with `ROBOKU_BENCH_DOCS=DIR` also `DIR/BENCHMARKS.md` and `DIR/bench-*.svg`.
//! Env: `ROBOKU_BENCH_TINY=1` (N=3, 1 iteration, 1 s idle window, 1 kill: CI's proof that it
//! runs), `ROBOKU_BENCH_ITERS` (default 3), `ROBOKU_BENCH_NS` (default `10,100,500`),
//! `ROBOKU_BENCH_IDLE_SECS` (default 10), `ROBOKU_BENCH_KILLS` (default 3),
//! `ROBOKU_BENCH_NO_BUILD=1` (use the release binaries as they are),
//! `ROBOKU_BENCH_ONLY=floor,floor+cg,robokud` (only these contenders, by their names in the
//! table; default all). Needs root and cgroup v1. The chatty dyno, slug deploy and MQTT
//! workloads run after the cycles (see extra.rs: `ROBOKU_BENCH_WORKLOADS`, `_LOG_MB`).
//! Nothing here asserts a time: it fails only when a contender cannot run a workload at all.

#[path = "../core/agent.rs"]
#[allow(dead_code)]
mod agent;
#[path = "../core/cg.rs"]
#[allow(dead_code)]
mod cg;
mod chatty;
mod extra;
mod extra_page;
mod fdm;
#[path = "../core/honcho.rs"]
#[allow(dead_code)]
mod honcho;
#[path = "../core/http.rs"]
mod http;
#[path = "../../tests/fleet/kit.rs"]
mod kit;
#[path = "../core/loglines.rs"]
#[allow(dead_code)]
mod loglines;
mod managers;
mod mqtt;
mod page;
#[path = "../core/procfs.rs"]
#[allow(dead_code)]
mod procfs;
mod procs;
#[path = "../core/series.rs"]
#[allow(dead_code)]
mod series;
mod slug;
mod svg;
mod workloads;

use managers::{Kind, Tools, ALL};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use workloads::{Config, Cycle};

fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> Config {
    if std::env::var_os("ROBOKU_BENCH_TINY").is_some() {
        return Config {
            ns: vec![3],
            iterations: 1,
            idle: Duration::from_secs(1),
            kills: 1,
        };
    }
    let ns = std::env::var("ROBOKU_BENCH_NS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![10, 100, 500]);
    Config {
        ns,
        iterations: env_num("ROBOKU_BENCH_ITERS", 3).max(1),
        idle: Duration::from_secs(env_num("ROBOKU_BENCH_IDLE_SECS", 10).max(1) as u64),
        kills: env_num("ROBOKU_BENCH_KILLS", 3).max(1),
    }
}

/// The 1-minute load average.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("written: {}", path.display());
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: do not start the bench.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("peers bench: not run (use `cargo bench -p roboku-tests --bench peers`)");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the peers bench needs root (cgroups, dynos run as nobody)"
    );
    assert!(
        Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists(),
        "the peers bench needs cgroup v1 hierarchies under /sys/fs/cgroup"
    );
    let cfg = config();
    extra::check_workloads().unwrap_or_else(|e| panic!("peers bench: {e}"));
    let bins = agent::build();
    let only = std::env::var("ROBOKU_BENCH_ONLY").unwrap_or_default();
    let picked = |k: Kind| only.is_empty() || only.split(',').any(|n| n.trim() == k.name());
    let kinds: Vec<Kind> = ALL.iter().copied().filter(|&k| picked(k)).collect();
    assert!(
        !kinds.is_empty(),
        "ROBOKU_BENCH_ONLY={only:?} names no contender"
    );
    let tools = Tools::locate(&bins.target, kinds.contains(&Kind::Honcho))
        .unwrap_or_else(|e| panic!("peers bench: {e}"));
    let began = Instant::now();
    let load_before = load1();
    let mut fdm = fdm::Switch::new();
    let mut foreign: Vec<String> = Vec::new();
    let mut note_foreign = |seen: Vec<String>| {
        for m in seen {
            if !foreign.contains(&m) {
                foreign.push(m);
            }
        }
    };
    note_foreign(fdm::foreign());
    // robokud must not mount favordynmods itself: the bench turns it on for robokud's cycles.
    let agent = agent::Agent::start_with(&bins, &["--dashboard", "off", "--no-favordynmods"]);
    let app_dir = agent.dir.path().join("app-peers");
    std::fs::create_dir(&app_dir).expect("mkdir app");
    std::fs::write(
        app_dir.join("Procfile"),
        format!("web: {}\n", managers::DYNO),
    )
    .expect("Procfile");
    agent.cli(&["apps:create", managers::APP]);
    agent.cli(&[
        "deploy",
        "-a",
        managers::APP,
        &app_dir.display().to_string(),
    ]);
    agent.scale_to_zero(managers::APP);

    let mut cycles: HashMap<(Kind, usize), Vec<Cycle>> = HashMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut loads = vec![load_before];
    let cycle_iterations = if extra::wants("cycle") {
        cfg.iterations
    } else {
        0
    };
    for it in 0..cycle_iterations {
        for &n in &cfg.ns {
            for j in 0..kinds.len() {
                // The order rotates each iteration: nobody always follows the same contender.
                let kind = kinds[(j + it) % kinds.len()];
                eprintln!(
                    "iteration {}/{} N={n} {} (load {:.2})",
                    it + 1,
                    cfg.iterations,
                    kind.name(),
                    load1()
                );
                loads.push(load1());
                fdm.set(kind.wants_fdm());
                note_foreign(fdm::foreign());
                match workloads::cycle(kind, n, &cfg, &tools, &agent) {
                    Ok(c) => cycles.entry((kind, n)).or_default().push(c),
                    Err(e) => failures.push(format!("{} at N={n}: {e}", kind.name())),
                }
            }
        }
    }
    fdm.set(false);
    let mut probes = Vec::new();
    for kind in kinds
        .iter()
        .copied()
        .filter(|k| !k.respawns() && cycle_iterations > 0)
    {
        let n = cfg.ns[0];
        match workloads::crash_probe(kind, n, &tools, &agent) {
            Ok(f) => probes.push((kind, n, f)),
            Err(e) => failures.push(format!("{} crash probe at N={n}: {e}", kind.name())),
        }
    }
    loads.push(load1());
    drop(agent);
    note_foreign(fdm::foreign());
    drop(fdm);
    let more = extra::run(&bins, &tools, &kinds, &cfg);
    failures.extend(more.failures.iter().cloned());
    loads.push(load1());

    let meta = page::Meta {
        cfg: &cfg,
        loads,
        secs: began.elapsed().as_secs_f64(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        foreign_fdm: foreign,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    };
    let mut out = page::render(&meta, &cycles, &probes, &failures);
    extra_page::append(&more, &mut out);
    write(
        &bins.target.join("bench-peers.json"),
        &(serde_json::to_string_pretty(&out.json).expect("json") + "\n"),
    );
    write(&bins.target.join("bench-peers.md"), &out.markdown);
    for (name, text) in &out.svgs {
        write(&bins.target.join(name), text);
    }
    if let Some(docs) = std::env::var_os("ROBOKU_BENCH_DOCS") {
        let docs = Path::new(&docs);
        write(&docs.join("BENCHMARKS.md"), &out.markdown);
        for (name, text) in &out.svgs {
            write(&docs.join(name), text);
        }
    }
    println!("{}", out.summary);
    assert!(
        failures.is_empty(),
        "peers bench: {} workload(s) could not run:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

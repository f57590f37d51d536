//! `cargo bench -p roboku-tests --bench core`: the agent-core targets, measured against peers in
//! the same run on the same machine. Needs root and cgroup v1 (as robokud does in production).
//!
//! 1. scale 0 -> 100 (`POST /v1/apps/{app}/scale`, then `GET .../ps` until all 100 are up with
//!    a pid) vs. a bare spawn loop of the same 100 shells, with and without per-child cgroups.
//!    Target: within 2x the bare loop.
//! 2. crash replacement: `kill -9` of a dyno until its replacement's first command runs
//!    (`date +%s%N` appended to a file), vs. the floor: the bench itself killing, reaping and
//!    respawning the same shell. Target: median under 5 ms.
//! 3. robokud's RSS idle and with 10/100 dynos (targets < 10 MB / < 20 MB), its CPU while
//!    idle with 100 dynos, and honcho's RSS supervising the same dynos.
//!
//! Prints a table (median, p90, min) and writes the same as JSON to `<target>/bench-core.json`.
//! Env: `ROBOKU_BENCH_ITERS` (default 9), `ROBOKU_BENCH_NO_BUILD=1` (use the release binaries as
//! they are), `ROBOKU_BENCH_NO_HONCHO=1` (skip the honcho peer), `ROBOKU_BENCH_CRASH_DYNOS=N`
//! (part 2 kills web.1 of an app running N dynos, default 1), `ROBOKU_BENCH_CRASH_ONLY=1` (part 2
//! alone, printed and written to `<target>/bench-core-crash.json`).

mod agent;
mod cg;
mod honcho;
mod http;
mod peers;
mod procfs;
mod report;
mod series;

use agent::Agent;
use serde_json::json;
use series::Series;
use std::path::Path;
use std::time::{Duration, Instant};

const DYNOS: usize = 100;
/// Pause before each timed phase: lets the previous phase's exits and cgroup frees finish.
const SETTLE: Duration = Duration::from_millis(300);

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and must not start a two-minute benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("core bench: not run (use `cargo bench -p roboku-tests --bench core`)");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the core bench needs root (robokud makes cgroups and runs dynos as nobody)"
    );
    assert!(
        Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists(),
        "the core bench needs cgroup v1 hierarchies under /sys/fs/cgroup"
    );
    let iters: usize = std::env::var("ROBOKU_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
        .max(1);
    let bins = agent::build();
    let began = Instant::now();
    let agent = Agent::start(&bins);
    let clk = procfs::clock_ticks();
    let crash_dynos: usize = std::env::var("ROBOKU_BENCH_CRASH_DYNOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    if std::env::var_os("ROBOKU_BENCH_CRASH_ONLY").is_some() {
        crash_only(&agent, &bins, iters, crash_dynos);
        return;
    }

    // Idle, no apps: let startup settle (a couple of sample intervals).
    std::thread::sleep(Duration::from_millis(2500));
    let rss_idle = procfs::rss_kb(agent.pid).expect("robokud VmRSS");

    eprintln!("scale: {iters} rounds of 0 -> {DYNOS} -> 0, interleaved with 4 peers...");
    let scale = scale_rounds(&agent, iters);

    // Supervising 10, then 100, each after a resource sample interval (1 s) has passed.
    agent.scale("scale", "web", 10);
    agent.wait_up("scale", 10);
    std::thread::sleep(Duration::from_millis(1500));
    let rss_10 = procfs::rss_kb(agent.pid).expect("VmRSS");
    agent.scale("scale", "web", DYNOS as u32);
    agent.wait_up("scale", DYNOS);
    std::thread::sleep(Duration::from_millis(1500));
    let rss_100 = procfs::rss_kb(agent.pid).expect("VmRSS");
    eprintln!("idle CPU with {DYNOS} dynos: 10 s...");
    let ticks0 = procfs::cpu_ticks(agent.pid).expect("robokud stat");
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let ticks = procfs::cpu_ticks(agent.pid).expect("robokud stat") - ticks0;
    let cpu_idle_pct = ticks as f64 / clk as f64 / t.elapsed().as_secs_f64() * 100.0;
    let rss_100_later = procfs::rss_kb(agent.pid).expect("VmRSS");
    agent.scale_to_zero("scale");
    std::thread::sleep(Duration::from_millis(1500));
    let rss_after = procfs::rss_kb(agent.pid).expect("VmRSS");

    eprintln!("crash replacement: {iters} samples, each a first crash (> 1 s of uptime)...");
    let (crash, floor, floor_cg) = crash_rounds(&agent, iters.max(7), crash_dynos);
    let peak = status_kb(agent.pid, "VmHWM");
    drop(agent);
    let agent_secs = began.elapsed().as_secs_f64();

    eprintln!("honcho peer...");
    let honcho = honcho::measure(&bins.target);

    let mem = report::Memory {
        rss_idle,
        rss_10,
        rss_100,
        rss_100_later,
        rss_after,
        peak,
        cpu_idle_pct,
        cpu_ticks: ticks,
        clk,
    };
    let out = report::render(iters, &scale, [&crash, &floor, &floor_cg], &mem, &honcho);
    println!("{}", out.text);
    let path = bins.target.join("bench-core.json");
    let mut j = out.json;
    j["meta"] = json!({
        "iterations": iters,
        "dynos": DYNOS,
        "agent_phase_secs": agent_secs,
        "total_secs": began.elapsed().as_secs_f64(),
        "robokud": bins.robokud.display().to_string(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "at_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    let text = serde_json::to_string_pretty(&j).expect("json");
    std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("written: {}", path.display());
}

/// Part 2 alone: crash replacement with `dynos` dynos running, against the two floors.
fn crash_only(agent: &Agent, bins: &agent::Bins, iters: usize, dynos: usize) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("crash replacement only: {iters} samples, N = {dynos}, load {load}");
    let (crash, floor, floor_cg) = crash_rounds(agent, iters.max(7), dynos);
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let row = |name: &str, s: &Series| {
        println!(
            "{name:<28} median {:>7.2} ms  p90 {:>7.2}  min {:>7.2}  max {:>7.2}  (n={})",
            s.median(),
            s.p90(),
            s.min(),
            s.max(),
            s.samples.len()
        );
        json!({"median": s.median(), "p90": s.p90(), "min": s.min(), "max": s.max(), "samples": s.samples})
    };
    println!("kill -9 -> replacement running, N = {dynos} dynos");
    let j = json!({
        "robokud": row("robokud", &crash),
        "floor (respawn)": row("floor (respawn)", &floor),
        "floor + cgroups": row("floor + cgroups", &floor_cg),
        "dynos": dynos,
        "loadavg_before": load.trim(),
        "loadavg_after": load_after.trim(),
    });
    println!(
        "load average before: {}, after: {}",
        load.trim(),
        load_after.trim()
    );
    let path = bins.target.join("bench-core-crash.json");
    let text = serde_json::to_string_pretty(&j).expect("json");
    std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("written: {}", path.display());
}

fn status_kb(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub struct Scale {
    pub reply: Series,
    pub up: Series,
    pub down: Series,
    pub bare: Series,
    pub fork: Series,
    pub cgroup3: Series,
    pub mirror: Series,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn scale_rounds(agent: &Agent, iters: usize) -> Scale {
    let app_dir = agent.dir.path().join("app-scale");
    std::fs::create_dir(&app_dir).expect("mkdir app");
    std::fs::write(app_dir.join("Procfile"), format!("web: {}\n", peers::CMD)).expect("Procfile");
    agent.cli(&["apps:create", "scale"]);
    agent.cli(&["deploy", "-a", "scale", &app_dir.display().to_string()]);
    agent.scale_to_zero("scale");
    let tree = cg::PeerTree::new("roboku-bench-peer");
    let mut s = Scale {
        reply: Series::new("ms"),
        up: Series::new("ms"),
        down: Series::new("ms"),
        bare: Series::new("ms"),
        fork: Series::new("ms"),
        cgroup3: Series::new("ms"),
        mirror: Series::new("ms"),
    };
    // Round 0 warms caches (page cache, dentries, the agent's allocator) and is not counted.
    for round in 0..=iters {
        // The order rotates each round and each phase starts after a pause, so no contender
        // always pays for the previous one's teardown (exits, cgroup frees run on after it).
        for k in 0..5 {
            std::thread::sleep(SETTLE);
            let keep = round > 0;
            match (k + round) % 5 {
                0 => {
                    let t = Instant::now();
                    agent.scale("scale", "web", DYNOS as u32);
                    let reply = t.elapsed();
                    agent.wait_up("scale", DYNOS);
                    let up = t.elapsed();
                    std::thread::sleep(SETTLE);
                    let down = agent.scale_to_zero("scale");
                    if keep {
                        s.reply.push(ms(reply));
                        s.up.push(ms(up));
                        s.down.push(ms(down));
                    }
                }
                1 => {
                    let d = peers::bare(DYNOS);
                    if keep {
                        s.bare.push(ms(d));
                    }
                }
                2 => {
                    let d = peers::fork_setsid(DYNOS);
                    if keep {
                        s.fork.push(ms(d));
                    }
                }
                3 => {
                    let d = peers::cgroup3(DYNOS, &tree);
                    if keep {
                        s.cgroup3.push(ms(d));
                    }
                }
                _ => {
                    let d = peers::mirror(DYNOS, &tree);
                    if keep {
                        s.mirror.push(ms(d));
                    }
                }
            }
        }
    }
    s
}

fn realtime_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only to `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// (number of lines, last line as ns) of a starts file.
fn starts(path: &Path) -> (usize, Option<i128>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let n = text.matches('\n').count();
    let last = text.lines().last().and_then(|l| l.trim().parse().ok());
    (n, last)
}

/// Waits until `path` has more than `lines` complete lines; the newest one's timestamp.
fn wait_start(path: &Path, lines: usize) -> i128 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (n, last) = starts(path);
        if n > lines {
            return last.unwrap_or_else(|| panic!("{}: bad start line", path.display()));
        }
        assert!(
            Instant::now() < deadline,
            "{}: no new start in 10 s",
            path.display()
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Waits until `pid` has exec'd `sleep` (the shell and `date` are done).
fn wait_sleeping(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while procfs::comm(pid) != "sleep" {
        assert!(Instant::now() < deadline, "pid {pid} never became sleep");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The replacement latency of a robokud dyno, of the bare floor (the bench kills, reaps and
/// respawns the same shell) and of the floor with robokud's cgroup work (a fresh cgroup per
/// instance in every hierarchy, joined before exec).
fn crash_rounds(agent: &Agent, iters: usize, dynos: usize) -> (Series, Series, Series) {
    let dir = tempfile::Builder::new()
        .prefix("roboku-bench-starts-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    // Dynos run as nobody: they must be able to append to the file.
    agent::chmod(dir.path(), 0o777);
    let file = dir.path().join("starts");
    std::fs::write(&file, "").expect("starts file");
    agent::chmod(&file, 0o666);
    let floor_file = dir.path().join("floor");
    let app_dir = agent.dir.path().join("app-crash");
    std::fs::create_dir(&app_dir).expect("mkdir app");
    let script = "date +%s%N >> \"$STARTS\"; exec sleep 100000";
    std::fs::write(app_dir.join("Procfile"), format!("web: {script}\n")).expect("Procfile");
    agent.cli(&["apps:create", "crash"]);
    agent.cli(&[
        "config:set",
        "-a",
        "crash",
        &format!("STARTS={}", file.display()),
    ]);
    agent.cli(&["deploy", "-a", "crash", &app_dir.display().to_string()]);
    agent.wait_up("crash", 1);
    wait_start(&file, 0);
    if dynos > 1 {
        // web.1 is the one killed; the others are there to be supervised beside it.
        agent.scale("crash", "web", dynos as u32);
        agent.wait_up("crash", dynos);
        wait_start(&file, dynos - 1);
        // Let the agent finish what follows a launch (spares, when it makes them): wait until
        // the app's cgroup count holds still for a second.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = cg::children(agent::CGROUP_NAME, "crash");
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = cg::children(agent::CGROUP_NAME, "crash");
            if now == last || Instant::now() > deadline {
                break;
            }
            last = now;
        }
    }

    let floor_spawn = || {
        std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .env("STARTS", &floor_file)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn floor shell")
    };
    let mut floor_child = floor_spawn();
    wait_start(&floor_file, 0);

    let tree = cg::PeerTree::new("roboku-bench-peer-crash");
    let roots = peers::mirror_roots(&tree);
    let cg_file = dir.path().join("floor-cg");
    let cg_spawn = |i: usize| {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", script])
            .env("STARTS", &cg_file)
            .stdin(std::process::Stdio::null());
        peers::spawn_mirrored(&roots, &format!("i{i}"), cmd)
    };
    let mut cg_child = cg_spawn(0);
    wait_start(&cg_file, 0);

    let mut crash = Series::new("ms");
    let mut floor = Series::new("ms");
    let mut floor_cg = Series::new("ms");
    for round in 0..=iters {
        // The floor sample fits in the wait that makes the next agent sample a first crash.
        let waited = Instant::now();
        wait_sleeping(floor_child.id() as i32);
        let (lines, _) = starts(&floor_file);
        let t_kill = realtime_ns();
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(floor_child.id() as i32, libc::SIGKILL) };
        let _ = floor_child.wait();
        floor_child = floor_spawn();
        let started = wait_start(&floor_file, lines);
        if round > 0 {
            floor.push((started - t_kill) as f64 / 1e6);
        }
        // Spaced like the agent's samples, so the kernel is as idle as it is for those.
        std::thread::sleep(Duration::from_millis(600));
        wait_sleeping(cg_child.id() as i32);
        let (lines, _) = starts(&cg_file);
        let t_kill = realtime_ns();
        // SAFETY: as above.
        unsafe { libc::kill(cg_child.id() as i32, libc::SIGKILL) };
        let _ = cg_child.wait();
        cg_child = cg_spawn(round + 1);
        let started = wait_start(&cg_file, lines);
        peers::remove_mirrored(&roots, &format!("i{round}"));
        if round > 0 {
            floor_cg.push((started - t_kill) as f64 / 1e6);
        }

        // Backoff resets after 1 s of uptime (--backoff-reset-secs 1): wait 1.3 s.
        std::thread::sleep(Duration::from_millis(1300).saturating_sub(waited.elapsed()));
        let ps = agent.ps("crash");
        let pid = ps
            .iter()
            .find(|d| d.name == "web.1")
            .and_then(|d| d.pid)
            .expect("crash app has a running dyno") as i32;
        wait_sleeping(pid);
        let (lines, _) = starts(&file);
        let t_kill = realtime_ns();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let started = wait_start(&file, lines);
        if round > 0 {
            crash.push((started - t_kill) as f64 / 1e6);
        }
        agent.wait_up("crash", dynos);
    }
    peers::reap(vec![floor_child, cg_child]);
    (crash, floor, floor_cg)
}

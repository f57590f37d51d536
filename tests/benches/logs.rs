//! `cargo bench -p roboku-tests --bench logs`: one dyno writes 50 MB of log lines; how fast
//! robokud stores them (from the writer's first line to its last line in `app.log`), whether
//! every line is stored (the agent's log quota is raised so that all of them stay on disk:
//! lines lost and lines stored twice are counted), and the dyno's own write time against the
//! same writer run by the bench with stdout on /dev/null, in the same run. Needs root (as the
//! core bench). Env: `ROBOKU_BENCH_LOG_MB` (default 50), `ROBOKU_BENCH_NO_BUILD=1` (then the
//! binaries are `$CARGO_TARGET_DIR/release/robokud` and `roboku`, so another build can be
//! measured with the same bench). The last line of output is one `RESULT key=value ...` line.

#[allow(dead_code)]
#[path = "core/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "core/cg.rs"]
mod cg;
#[allow(dead_code)]
#[path = "core/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "core/loglines.rs"]
mod loglines;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// robokud's user+system CPU time so far, ms.
fn cpu_ms(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks * 1000.0 / 100.0
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("logs bench: not run (use `cargo bench -p roboku-tests --bench logs`)");
        return;
    }
    let mb: usize = std::env::var("ROBOKU_BENCH_LOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let lines = mb * 1_000_000 / 100;
    let bins = agent::build();
    let dir = tempfile::Builder::new()
        .prefix("roboku-bench-logs-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    agent::chmod(dir.path(), 0o777);
    let config = dir.path().join("robokud.toml");
    std::fs::write(
        &config,
        format!("log_quota_bytes = {}\n", loglines::quota_for(mb)),
    )
    .expect("config");
    let agent = agent::Agent::start_with(
        &bins,
        &[
            "--sample-secs",
            "1",
            "--config",
            &config.display().to_string(),
        ],
    );
    let times = dir.path().join("times");
    std::fs::write(&times, "").expect("times file");
    agent::chmod(&times, 0o666);

    // The floor: the same writer, stdout on /dev/null.
    let app_dir = agent.dir.path().join("app-logs");
    std::fs::create_dir(&app_dir).expect("mkdir app");
    std::fs::write(app_dir.join("writer.py"), loglines::WRITER).expect("writer");
    let status = std::process::Command::new("python3")
        .arg(app_dir.join("writer.py"))
        .env("LINES", lines.to_string())
        .env("TIMES", &times)
        // Buffered, as in the dyno (robokud gives dynos a clean environment); a shell or CI
        // that exports it made this floor several times slower than the dyno.
        .env_remove("PYTHONUNBUFFERED")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the writer");
    assert!(status.success());
    let (_, floor_ns) = loglines::writer_run(&times, 0).expect("the /dev/null run's times");

    std::fs::write(
        app_dir.join("Procfile"),
        "web: python3 writer.py; exec sleep 100000\n",
    )
    .expect("Procfile");
    agent.cli(&["apps:create", "logs"]);
    agent.cli(&[
        "config:set",
        "-a",
        "logs",
        &format!("LINES={lines}"),
        &format!("TIMES={}", times.display()),
    ]);
    let cpu_before = cpu_ms(agent.pid);
    // `roboku deploy` answers once the dyno is up and healthy, about a second in (often after
    // the writer finished): the store is watched meanwhile, or that second would be counted as
    // capture time (it was: every figure before this was capped near 50 MB / 1.1 s).
    let logs = agent.dir.path().join("data/logs/logs");
    let app_log = logs.join("app.log");
    let last = loglines::tag(lines - 1);
    let deadline = Instant::now() + Duration::from_secs(600);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let app_src = app_dir.display().to_string();
    let (stored_at, cpu_first, cpu_end) = std::thread::scope(|s| {
        let deploy = s.spawn(|| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                agent.cli(&["deploy", "-a", "logs", &app_src])
            }));
            failed.store(r.is_err(), std::sync::atomic::Ordering::SeqCst);
            r.err()
        });
        // robokud's CPU while it captures (from its first stored line of the dyno on), which the
        // machine's load does not stretch as it does wall time.
        let first = loglines::tag(0);
        let mut cpu_first = None;
        while !loglines::tail_has(&app_log, &last, 4096) {
            if cpu_first.is_none()
                && std::fs::read(&app_log).is_ok_and(|b| loglines::contains(&b, &first))
            {
                cpu_first = Some(cpu_ms(agent.pid));
            }
            assert!(
                !failed.load(std::sync::atomic::Ordering::SeqCst),
                "roboku deploy failed (see its panic above)"
            );
            assert!(
                Instant::now() < deadline,
                "the last line is not stored after 600 s; robokud log: {}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let stored_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let cpu_end = cpu_ms(agent.pid);
        if let Ok(Some(p)) | Err(p) = deploy.join() {
            std::panic::resume_unwind(p);
        }
        (stored_at, cpu_first, cpu_end)
    });
    let cpu = cpu_end - cpu_before;
    let cpu_capture = cpu_end - cpu_first.unwrap_or(cpu_before);
    // The writer appends its times right after its last write: wait for them.
    while std::fs::read_to_string(&times)
        .map(|t| t.lines().count() < 2)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the dyno wrote no times");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (start_ns, dyno_ns) = loglines::writer_run(&times, 1).expect("the dyno's times");
    let span = stored_at.saturating_sub(start_ns) as f64 / 1e9;
    let lag = (stored_at as f64 - start_ns as f64 - dyno_ns) / 1e6;

    // Every line, exactly once?
    let texts: Vec<Vec<u8>> = ["app.log.1", "app.log"]
        .iter()
        .map(|f| std::fs::read(logs.join(f)).unwrap_or_default())
        .collect();
    let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    let loglines::Count { lost, twice } = loglines::count(&refs, lines);
    let mbps = mb as f64 / span.max(1e-9);
    let slowdown = (dyno_ns / floor_ns - 1.0) * 100.0;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1 = load.split_whitespace().next().unwrap_or("?");
    println!("logs: {mb} MB, {lines} lines of 100 bytes, one dyno");
    println!(
        "  dyno write time      {:8.1} ms  (the same writer to /dev/null: {:.1} ms, slowdown {slowdown:+.1} %)",
        dyno_ns / 1e6,
        floor_ns / 1e6,
    );
    println!(
        "  stored: first write -> last line in app.log {:.1} ms = {mbps:.1} MB/s ({lag:.1} ms after the writer finished)",
        span * 1e3
    );
    println!("  robokud CPU from the deploy to the last line stored: {cpu:.0} ms, from the first line stored: {cpu_capture:.0} ms");
    println!("  lines lost {lost}, stored twice {twice}");
    println!("  load average: {}", load.trim());
    println!(
        "RESULT mbps={mbps:.1} span_ms={:.1} lag_ms={lag:.1} dyno_ms={:.1} devnull_ms={:.1} slowdown_pct={slowdown:.1} lost={lost} twice={twice} cpu_ms={cpu:.0} capture_cpu_ms={cpu_capture:.0} load1={load1}",
        span * 1e3,
        dyno_ns / 1e6,
        floor_ns / 1e6
    );
}

//! `cargo bench -p roboku-tests --bench logs`: one dyno writes 50 MB of log lines; how fast
//! robokud captures them (the spool consumed to its end, as the saved offset says), whether the
//! newest stored line is the last one written, and the dyno's own time against the same writer
//! run by the bench with stdout on /dev/null. Needs root (as the core bench). Env:
//! `ROBOKU_BENCH_LOG_MB` (default 50), `ROBOKU_BENCH_NO_BUILD=1`.

#[allow(dead_code)]
#[path = "core/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "core/cg.rs"]
mod cg;
#[allow(dead_code)]
#[path = "core/http.rs"]
mod http;

use std::time::{Duration, Instant};

/// Writes `$LINES` numbered lines of exactly 100 bytes (`line NNNNNNNNN ` + 84 `x` + newline)
/// and then its own wall time (ns) to `$TIMES`. (They were 96 bytes once, so the spool never
/// reached the 100-byte total the capture loop waits for: the first figure, 0.26 MB/s, was the
/// bench waiting, not robokud.)
const WRITER: &str = "import os, sys, time\n\
n = int(os.environ['LINES'])\n\
t = time.monotonic_ns()\n\
w = sys.stdout.write\n\
pad = 'x' * 84\n\
for i in range(n): w('line %09d %s\\n' % (i, pad))\n\
sys.stdout.flush()\n\
open(os.environ['TIMES'], 'a').write('%d\\n' % (time.monotonic_ns() - t))\n";

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
    let agent = agent::Agent::start(&bins);
    let dir = tempfile::Builder::new()
        .prefix("roboku-bench-logs-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    agent::chmod(dir.path(), 0o777);
    let times = dir.path().join("times");
    std::fs::write(&times, "").expect("times file");
    agent::chmod(&times, 0o666);

    // The floor: the same writer, stdout on /dev/null.
    let app_dir = agent.dir.path().join("app-logs");
    std::fs::create_dir(&app_dir).expect("mkdir app");
    std::fs::write(app_dir.join("writer.py"), WRITER).expect("writer");
    let status = std::process::Command::new("python3")
        .arg(app_dir.join("writer.py"))
        .env("LINES", lines.to_string())
        .env("TIMES", &times)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the writer");
    assert!(status.success());
    let floor_ns: f64 = std::fs::read_to_string(&times)
        .expect("times")
        .trim()
        .parse()
        .expect("ns");

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
    let t = Instant::now();
    agent.cli(&["deploy", "-a", "logs", &app_dir.display().to_string()]);
    let total = (lines * 100) as u64;
    let logs = agent.dir.path().join("data/logs/logs");
    let offset = logs.join("spool/web.1.offset");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_byte = None;
    loop {
        let off: u64 = std::fs::read_to_string(&offset)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if off > 0 && first_byte.is_none() {
            first_byte = Some(t.elapsed());
        }
        if off >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spool offset {off} of {total} after 600 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let captured = t.elapsed();
    let text = std::fs::read_to_string(&times).expect("times");
    let dyno_ns: f64 = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("the dyno's time");
    let stored = std::fs::read_to_string(logs.join("app.log")).unwrap_or_default();
    let last = format!("line {:09}", lines - 1);
    let newest_ok = stored.lines().rev().take(50).any(|l| l.contains(&last));
    let first = first_byte.unwrap_or_default();
    let span = captured.saturating_sub(first).as_secs_f64();
    println!("logs: {mb} MB, {lines} lines of 100 bytes, one dyno");
    println!(
        "  dyno write time      {:8.1} ms  (to /dev/null: {:.1} ms, slowdown {:+.1} %)",
        dyno_ns / 1e6,
        floor_ns / 1e6,
        (dyno_ns / floor_ns - 1.0) * 100.0
    );
    println!("  captured (deploy -> spool consumed) {:8.1} ms; from the first consumed byte {:.1} ms = {:.1} MB/s", captured.as_secs_f64() * 1e3, span * 1e3, mb as f64 / span.max(1e-9));
    println!("  newest stored line is the last written: {newest_ok}");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("  load average: {}", load.trim());
}

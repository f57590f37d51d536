//! The chatty dyno: one dyno writes `mb` MB of numbered 100-byte lines ([`loglines::WRITER`]),
//! then sleeps; each contender that captures logs stores them where it does. Measured: the
//! capture's throughput (from the writer's first line to its last line found in the capture),
//! the lines lost or stored twice, and the writer's own time against the same writer with stdout
//! on /dev/null (timed by itself, interleaved with the contenders).
//!
//! Where a line counts as captured: robokud's log store (`<data>/logs/<app>/app.log` and
//! `app.log.1`, what `roboku logs` reads; the agent's log quota is raised so every line stays),
//! the C floor's `--log FILE` (a plain append to a file), supervisord's `stdout_logfile` (no
//! rotation), foreman's and honcho's own stdout (redirected to a file, as a service unit would).

use crate::agent::{self, Agent};
use crate::loglines;
use crate::managers::{Kind, Running, Tools};
use crate::procs;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The contenders that capture a dyno's output (uwsgi's attach-daemon output is not a log of
/// the dyno's own, so it is left out).
pub const CAPTURERS: [Kind; 5] = [
    Kind::Floor,
    Kind::Supervisord,
    Kind::Foreman,
    Kind::Honcho,
    Kind::Robokud,
];

/// How long a capture may stay unchanged after the writer finished before the lines it lacks
/// count as lost.
const QUIET: Duration = Duration::from_secs(3);

pub struct Sample {
    pub mbps: f64,
    pub dyno_ms: f64,
    pub lost: usize,
    pub twice: usize,
}

/// The setup every run of the workload shares.
pub struct Chatty<'a> {
    pub lines: usize,
    pub tools: &'a Tools,
    pub agent: &'a Agent,
    /// Counts robokud apps (each run has a fresh one: a fresh log store).
    runs: usize,
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A work dir the dyno (`nobody` under robokud) can read, with the writer and its times file.
fn work_dir(parent: &Path) -> Result<(tempfile::TempDir, PathBuf), String> {
    let dir = tempfile::Builder::new()
        .prefix("roboku-bench-chatty-")
        .tempdir_in(parent)
        .map_err(|e| format!("temp dir in {}: {e}", parent.display()))?;
    agent::chmod(dir.path(), 0o755);
    let writer = dir.path().join("writer.py");
    std::fs::write(&writer, loglines::WRITER)
        .map_err(|e| format!("write {}: {e}", writer.display()))?;
    let times = dir.path().join("times");
    std::fs::write(&times, "").map_err(|e| format!("write {}: {e}", times.display()))?;
    agent::chmod(&times, 0o666);
    Ok((dir, times))
}

impl<'a> Chatty<'a> {
    pub fn new(mb: usize, tools: &'a Tools, agent: &'a Agent) -> Chatty<'a> {
        Chatty {
            lines: mb * 1_000_000 / loglines::LINE_BYTES,
            tools,
            agent,
            runs: 0,
        }
    }

    /// The dyno's command line (run by a shell): the writer, then a sleep, so no manager
    /// restarts it. `PYTHONUNBUFFERED=` keeps the writer buffered whatever the manager passes
    /// on (honcho runs with it set; robokud gives dynos an environment of its own).
    fn dyno(&self, dir: &Path, times: &Path) -> String {
        format!(
            "PYTHONUNBUFFERED= LINES={} TIMES={} python3 {}/writer.py; exec sleep 100000",
            self.lines,
            times.display(),
            dir.display()
        )
    }

    /// The writer alone, stdout on /dev/null: its wall time, ms.
    pub fn devnull(&self) -> Result<f64, String> {
        let (dir, times) = work_dir(Path::new("/tmp"))?;
        let status = Command::new("python3")
            .arg(dir.path().join("writer.py"))
            .env("LINES", self.lines.to_string())
            .env("TIMES", &times)
            // Buffered, as in every dyno (a shell or CI may export it; set, every line is a
            // write of its own and the floor is several times slower than a dyno).
            .env_remove("PYTHONUNBUFFERED")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("run python3 {}/writer.py: {e}", dir.path().display()))?;
        if !status.success() {
            return Err(format!("the writer to /dev/null exited with {status}"));
        }
        let (_, ns) = loglines::writer_run(&times, 0)
            .ok_or_else(|| format!("the writer left no times in {}", times.display()))?;
        Ok(ns / 1e6)
    }

    /// One run of the chatty dyno under `kind`.
    pub fn run(&mut self, kind: Kind) -> Result<Sample, String> {
        if kind == Kind::Robokud {
            return self.robokud();
        }
        let (dir, times) = work_dir(Path::new("/tmp"))?;
        let capture = dir.path().join("capture.log");
        let line = self.dyno(dir.path(), &times);
        let mut c;
        let mut stdout = Stdio::null();
        match kind {
            Kind::Floor => {
                c = Command::new(&self.tools.floor);
                c.arg("--log")
                    .arg(&capture)
                    .args(["1", "/bin/sh", "-c", &line]);
            }
            Kind::Supervisord => {
                let conf = dir.path().join("supervisord.conf");
                let d = dir.path().display();
                let text = format!(
                    "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\n\
                     pidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
                     [program:web]\ncommand=/bin/sh -c \"{line}\"\nautorestart=false\n\
                     startsecs=0\nredirect_stderr=true\nstdout_logfile={}\n\
                     stdout_logfile_maxbytes=0\n",
                    capture.display()
                );
                std::fs::write(&conf, text)
                    .map_err(|e| format!("write {}: {e}", conf.display()))?;
                c = Command::new(&self.tools.supervisord);
                c.arg("-c").arg(&conf);
            }
            Kind::Foreman | Kind::Honcho => {
                let procfile = dir.path().join("Procfile");
                std::fs::write(&procfile, format!("web: {line}\n"))
                    .map_err(|e| format!("write {}: {e}", procfile.display()))?;
                let out = std::fs::File::create(&capture)
                    .map_err(|e| format!("create {}: {e}", capture.display()))?;
                stdout = Stdio::from(out);
                if kind == Kind::Foreman {
                    c = Command::new(&self.tools.foreman);
                    c.args(["start", "--no-timestamp", "-f"]).arg(&procfile);
                } else {
                    c = Command::new(&self.tools.honcho);
                    c.arg("start").arg("-f").arg(&procfile).arg("--no-colour");
                    // Its own output is a pipe or file under a service manager: unbuffered,
                    // as a unit running it would set, so no line waits in its buffer.
                    c.env("PYTHONUNBUFFERED", "1");
                }
                c.arg("-d").arg(dir.path());
            }
            other => return Err(format!("{} does not capture logs", other.name())),
        }
        if kind != Kind::Honcho {
            c.env_remove("PYTHONUNBUFFERED");
        }
        c.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .process_group(0);
        let child = c
            .spawn()
            .map_err(|e| format!("start {} for the chatty dyno: {e}", kind.name()))?;
        let mut run = Running::adopt(kind, child, dir);
        let sample = self.measure(&times, std::slice::from_ref(&capture), || {
            let t = procs::tree(run.root);
            run.seen.extend(t.dynos);
            run.manager_alive()
        });
        run.seen.extend(procs::tree(run.root).dynos);
        let stopped = run.stop(self.agent);
        let sample = sample?;
        stopped.map_err(|e| format!("stop after the chatty dyno: {e}"))?;
        Ok(sample)
    }

    /// robokud: a fresh app whose web dyno is the writer, deployed on the bench's agent.
    fn robokud(&mut self) -> Result<Sample, String> {
        self.runs += 1;
        let app = format!("chatty{}", self.runs);
        let (dir, times) = work_dir(self.agent.dir.path())?;
        let procfile = dir.path().join("Procfile");
        std::fs::write(
            &procfile,
            format!("web: {}\n", self.dyno(dir.path(), &times)),
        )
        .map_err(|e| format!("write {}: {e}", procfile.display()))?;
        self.agent.cli(&["apps:create", &app]);
        let logs = self.agent.dir.path().join("data/logs").join(&app);
        let files = [logs.join("app.log.1"), logs.join("app.log")];
        let src = dir.path().display().to_string();
        // `roboku deploy` answers once the dyno is up and healthy, about a second after the
        // writer started (and often after it finished): the capture is watched meanwhile, or
        // that second would be counted as capture time.
        let failed = AtomicBool::new(false);
        let sample = std::thread::scope(|s| {
            let deploy = s.spawn(|| {
                let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    self.agent.cli(&["deploy", "-a", &app, &src])
                }));
                failed.store(r.is_err(), Ordering::SeqCst);
                r.err()
            });
            let sample = self.measure(&times, &files, || !failed.load(Ordering::SeqCst));
            // A failed deploy panicked in its thread: on with that panic (the message is in it).
            match deploy.join() {
                Ok(None) => sample,
                Ok(Some(p)) | Err(p) => std::panic::resume_unwind(p),
            }
        });
        self.agent.scale_to_zero(&app);
        sample
    }

    /// Waits for the writer's times, then for its last line in the capture (`files`, oldest
    /// first; the last one is where the newest lines go) or for the capture to stay unchanged
    /// for [`QUIET`]; counts what it holds.
    fn measure(
        &self,
        times: &Path,
        files: &[PathBuf],
        mut alive: impl FnMut() -> bool,
    ) -> Result<Sample, String> {
        let deadline = Instant::now() + Duration::from_secs(600);
        let (start_ns, dyno_ns) = loop {
            if let Some(r) = loglines::writer_run(times, 0) {
                break r;
            }
            if !alive() {
                return Err("the manager exited before the writer finished".into());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the writer left no times in {} within 600 s",
                    times.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let last = loglines::tag(self.lines - 1);
        let newest = files.last().ok_or("no capture file")?;
        let size = || -> u64 {
            files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum()
        };
        let (mut seen_size, mut changed) = (size(), Instant::now());
        let captured_ns = loop {
            if loglines::tail_has(newest, &last, 64 << 10) {
                break Some(unix_ns());
            }
            let now = size();
            if now != seen_size {
                (seen_size, changed) = (now, Instant::now());
            } else if changed.elapsed() >= QUIET || Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let texts: Vec<Vec<u8>> = files
            .iter()
            .map(|f| std::fs::read(f).unwrap_or_default())
            .collect();
        let refs: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
        let count = loglines::count(&refs, self.lines);
        // Without the last line, the capture's end is when it last changed.
        let end_ns = captured_ns.unwrap_or_else(|| unix_ns() - changed.elapsed().as_nanos());
        let secs = end_ns.saturating_sub(start_ns) as f64 / 1e9;
        let kept = (self.lines - count.lost) * loglines::LINE_BYTES;
        Ok(Sample {
            mbps: kept as f64 / 1e6 / secs.max(1e-9),
            dyno_ms: dyno_ns / 1e6,
            lost: count.lost,
            twice: count.twice,
        })
    }
}

//! The RSS peer: honcho (a Python Foreman clone) supervising the same `sleep` dynos. honcho forks
//! one Python helper per process (multiprocessing), so besides the main process's RSS the bench
//! reports the PSS of the whole honcho tree (helpers share pages with the main interpreter).
//! honcho is pip-installed into `<target>/bench-venv` once; when that is not possible the peer
//! is skipped with the reason (the bench still passes).

use crate::procfs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Run {
    pub n: usize,
    /// From `honcho start` until all `n` sleeps exist.
    pub start_ms: f64,
    pub main_rss_kb: u64,
    pub helpers: usize,
    pub tree_rss_kb: u64,
    pub tree_pss_kb: u64,
}

fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Result<(), String> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("{cmd:?} failed: {s}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} took over {}s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// `<target>/bench-venv/bin/honcho`, installing it when missing.
pub fn install(target: &Path) -> Result<std::path::PathBuf, String> {
    let venv = target.join("bench-venv");
    let honcho = venv.join("bin/honcho");
    if honcho.is_file() {
        return Ok(honcho);
    }
    eprintln!("installing honcho into {} (pip)...", venv.display());
    run_with_deadline(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        Duration::from_secs(60),
    )?;
    run_with_deadline(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "honcho==2.0.0",
        ]),
        Duration::from_secs(120),
    )?;
    if honcho.is_file() {
        Ok(honcho)
    } else {
        Err(format!("pip ran but {} is missing", honcho.display()))
    }
}

/// honcho and everything it started; killed on drop.
struct Guard {
    child: Child,
    seen: Vec<i32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        self.seen.extend(procfs::descendants(pid));
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its dynos run in sessions of their own: kill each one we saw.
        for p in &self.seen {
            // SAFETY: as above.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
    }
}

fn run(honcho: &Path, n: usize) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let procfile = dir.path().join("Procfile");
    std::fs::write(&procfile, "web: sleep 100000\n").map_err(|e| e.to_string())?;
    let t = Instant::now();
    let child = Command::new(honcho)
        .arg("start")
        .arg("-d")
        .arg(dir.path())
        .arg("-f")
        .arg(&procfile)
        .arg("-c")
        .arg(format!("web={n}"))
        .arg("--no-colour")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start honcho: {e}"))?;
    let pid = child.id() as i32;
    let mut guard = Guard {
        child,
        seen: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let start_ms = loop {
        let tree = procfs::descendants(pid);
        let sleeps = tree.iter().filter(|&&p| procfs::comm(p) == "sleep").count();
        if sleeps >= n {
            break t.elapsed().as_secs_f64() * 1e3;
        }
        if Instant::now() >= deadline {
            return Err(format!("honcho started {sleeps}/{n} sleeps in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_secs(1));
    let tree = procfs::descendants(pid);
    guard.seen = tree.clone();
    let helpers: Vec<i32> = tree
        .into_iter()
        .filter(|&p| !matches!(procfs::comm(p).as_str(), "sleep" | "sh"))
        .collect();
    let mine = std::iter::once(pid).chain(helpers.iter().copied());
    let (mut rss, mut pss) = (0, 0);
    for p in mine {
        rss += procfs::rss_kb(p).unwrap_or(0);
        pss += procfs::pss_kb(p).unwrap_or(0);
    }
    Ok(Run {
        n,
        start_ms,
        main_rss_kb: procfs::rss_kb(pid).unwrap_or(0),
        helpers: helpers.len(),
        tree_rss_kb: rss,
        tree_pss_kb: pss,
    })
}

/// honcho supervising 10 and 100 sleeps, or why it could not be measured.
pub fn measure(target: &Path) -> Result<Vec<Run>, String> {
    if std::env::var_os("ROBOKU_BENCH_NO_HONCHO").is_some() {
        return Err("ROBOKU_BENCH_NO_HONCHO is set".into());
    }
    let honcho = install(target)?;
    [10, 100].iter().map(|&n| run(&honcho, n)).collect()
}

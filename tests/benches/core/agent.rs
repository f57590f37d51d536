//! The system under test: builds the release binaries, runs one throwaway `robokud` and talks to
//! it (raw API for the timed calls, the `roboku` CLI for setup). Dropping [`Agent`] stops it and
//! removes everything it left behind, also when the bench panics.

use crate::cg;
use crate::http::{self, Resp};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cgroup subtree the bench's agent uses (`--cgroup-name`).
pub const CGROUP_NAME: &str = "roboku-bench";

pub struct Bins {
    pub robokud: PathBuf,
    pub roboku: PathBuf,
    /// The cargo target dir (where `bench-core.json` goes).
    pub target: PathBuf,
}

/// The target dir: `$CARGO_TARGET_DIR`, else found from this binary (`<target>/release/deps/core-*`).
fn target_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t);
    }
    let exe = std::env::current_exe().expect("path of the bench binary");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Builds `robokud` and `roboku` in release mode with the cargo that runs the bench
/// (`ROBOKU_BENCH_NO_BUILD=1` skips it), then checks both binaries exist.
pub fn build() -> Bins {
    let target = target_dir();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace");
    if std::env::var_os("ROBOKU_BENCH_NO_BUILD").is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!(
            "building release robokud + roboku (cargo build --release -p robokud -p roboku)..."
        );
        let status = Command::new(&cargo)
            .args(["build", "--release", "-p", "robokud", "-p", "roboku"])
            .current_dir(workspace)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
        assert!(status.success(), "cargo build --release failed: {status}");
    }
    let bins = Bins {
        robokud: target.join("release/robokud"),
        roboku: target.join("release/roboku"),
        target,
    };
    for b in [&bins.robokud, &bins.roboku] {
        assert!(
            b.is_file(),
            "{} is missing: run `cargo build --release -p robokud -p roboku` \
             (with the same CARGO_TARGET_DIR) first",
            b.display()
        );
    }
    bins
}

pub struct Agent {
    child: Option<Child>,
    pub pid: i32,
    pub sock: PathBuf,
    roboku: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// The core bench's agent: resources sampled every second.
    pub fn start(bins: &Bins) -> Agent {
        Agent::start_with(bins, &["--sample-secs", "1"])
    }

    /// An agent with `extra` flags after the common ones (data dir, socket, cgroup name,
    /// `nobody` dynos, 1 s backoff reset, 2 s grace).
    pub fn start_with(bins: &Bins, extra: &[&str]) -> Agent {
        // A previous run killed by ^C leaves its dynos and cgroups: clear them first.
        cg::remove_tree(CGROUP_NAME);
        let dir = tempfile::Builder::new()
            .prefix("roboku-bench-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir data");
        // Dynos run as `nobody` and need to read their slug.
        chmod(dir.path(), 0o755);
        chmod(&data, 0o755);
        let sock = dir.path().join("robokud.sock");
        let log = std::fs::File::create(dir.path().join("robokud.log")).expect("log file");
        let child = Command::new(&bins.robokud)
            .arg("--data-dir")
            .arg(&data)
            .arg("--socket")
            .arg(&sock)
            .args(["--on-exit", "stop", "--cgroup-name", CGROUP_NAME])
            .args(["--dyno-user", "nobody"])
            .args(["--backoff-reset-secs", "1", "--grace-secs", "2"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn robokud");
        let agent = Agent {
            pid: child.id() as i32,
            child: Some(child),
            sock,
            roboku: bins.roboku.clone(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = agent.api("GET", "/v1/status", None) {
                if r.status == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "robokud did not answer on {} within 15 s; log: {}",
                agent.sock.display(),
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        agent
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("robokud.log")).unwrap_or_default()
    }

    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<Resp> {
        http::call(&self.sock, method, path, body)
    }

    /// An API call that must answer 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let r = self
            .api(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (200..300).contains(&r.status),
            "{method} {path} -> {}: {}",
            r.status,
            r.body
        );
        r.body
    }

    /// Runs the release `roboku` CLI against this agent; it must succeed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.roboku)
            .args(args)
            .env("ROBOKU_SOCKET", &self.sock)
            .output()
            .expect("run roboku");
        assert!(
            out.status.success(),
            "roboku {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn ps(&self, app: &str) -> Vec<roboku_wire::DynoInfo> {
        let body = self.ok("GET", &format!("/v1/apps/{app}/ps"), None);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("ps reply {body:?}: {e}"))
    }

    pub fn scale(&self, app: &str, ptype: &str, n: u32) {
        let body = format!(r#"{{"counts":{{"{ptype}":{n}}}}}"#);
        self.ok("POST", &format!("/v1/apps/{app}/scale"), Some(&body));
    }

    /// Scales `app` to zero and waits until every dyno and its cgroups are gone.
    pub fn scale_to_zero(&self, app: &str) -> Duration {
        let t = Instant::now();
        self.scale(app, "web", 0);
        self.wait_gone(app);
        t.elapsed()
    }

    pub fn wait_gone(&self, app: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(self.ps(app).is_empty() && cg::children(CGROUP_NAME, app) == 0) {
            assert!(
                Instant::now() < deadline,
                "{app}: dynos not gone after 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until `n` dynos are up with a pid (polling `ps` tightly).
    pub fn wait_up(&self, app: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ps = self.ps(app);
            let up = ps
                .iter()
                .filter(|d| d.state == roboku_wire::DynoState::Up && d.pid.is_some())
                .count();
            if up == n && ps.len() == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{app}: {up}/{n} dynos up after 60 s"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: with --on-exit stop the agent stops every dyno (2 s grace) and exits.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        cg::remove_tree(CGROUP_NAME);
    }
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

//! One real `robokud` per test, on its own data dir, socket, cgroup subtree and port range, and
//! the `roboku` CLI pointed at it. Dropping the [`Agent`] stops it and removes everything it
//! started; when the test is failing, the agent's stderr is printed first.

use crate::bins::bin;
use crate::wait::wait_for;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Dyno ports start here; each agent gets its own block, all below the ephemeral range (32768).
const PORT_BASE: u32 = 21000;
const PORT_BLOCK: u32 = 200;

/// How to start an agent. `Default` is what most tests want.
#[derive(Debug, Clone)]
pub struct AgentOpts {
    /// `stop` or `leave`.
    pub on_exit: &'static str,
    pub no_cgroups: bool,
    pub grace_secs: u64,
    pub extra: Vec<String>,
    /// Mount a tmpfs of this size (`mount -o size=`) on the data dir before the first start
    /// (robokud still creates its layout in it); unmounted when the agent is dropped.
    pub tmpfs: Option<&'static str>,
    /// Run robokud with this fd limit (soft and hard), as systemd's default soft limit of 1024.
    pub nofile: Option<u64>,
}

impl Default for AgentOpts {
    fn default() -> Self {
        AgentOpts {
            on_exit: "stop",
            no_cgroups: false,
            grace_secs: 3,
            extra: Vec::new(),
            tmpfs: None,
            nofile: None,
        }
    }
}

pub struct Agent {
    data: TempDir,
    /// Where the agent's stderr goes (beside the data dir, so a full data disk cannot eat it).
    stderr_dir: TempDir,
    socket: PathBuf,
    cgroup_name: String,
    ports: (u16, u16),
    opts: AgentOpts,
    child: Option<Child>,
    starts: u32,
    /// `ROBOKU_FAULT` for the next start (see `robokud::fault`), taken by it.
    fault: Option<String>,
}

impl Agent {
    /// Starts `robokud` and waits until `roboku status` answers.
    pub fn start(opts: AgentOpts) -> Agent {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let lo = PORT_BASE + PORT_BLOCK * (n % 55);
        let data = tempfile::Builder::new()
            .prefix("roboku-e2e-")
            .tempdir()
            .expect("create data dir");
        let mut agent = Agent {
            socket: data.path().join("robokud.sock"),
            data,
            stderr_dir: tempfile::Builder::new()
                .prefix("roboku-e2e-stderr-")
                .tempdir()
                .expect("create stderr dir"),
            cgroup_name: format!("roboku-e2e-{}-{n}", std::process::id()),
            ports: (lo as u16, (lo + PORT_BLOCK - 1) as u16),
            opts,
            child: None,
            starts: 0,
            fault: None,
        };
        if let Some(size) = agent.opts.tmpfs {
            let path = agent.data.path();
            let ok = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mount a {size} tmpfs on {}", path.display());
        }
        agent.spawn();
        agent
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn cgroup_name(&self) -> &str {
        &self.cgroup_name
    }

    pub fn port_range(&self) -> (u16, u16) {
        self.ports
    }

    /// The agent's own pid.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("agent is running")
    }

    fn stderr_path(&self) -> PathBuf {
        self.stderr_dir
            .path()
            .join(format!("robokud.stderr.{}", self.starts))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let stderr = std::fs::File::create(self.stderr_path()).expect("create stderr file");
        let mut cmd = Command::new(bin("robokud"));
        cmd.arg("--data-dir")
            .arg(self.data.path())
            .arg("--socket")
            .arg(&self.socket)
            .args(["--cgroup-name", &self.cgroup_name])
            .arg("--port-range")
            .arg(format!("{}-{}", self.ports.0, self.ports.1))
            .args(["--on-exit", self.opts.on_exit])
            .arg("--grace-secs")
            .arg(self.opts.grace_secs.to_string())
            .args(["--backoff-initial-ms", "200", "--backoff-max-ms", "2000"])
            .args(["--backoff-reset-secs", "5"])
            .args(&self.opts.extra)
            .env_remove("ROBOKU_CONFIG")
            .env_remove("ROBOKU_DASHBOARD")
            .env_remove("ROBOKU_APP")
            .env_remove("ROBOKU_SOCKET")
            .env_remove("ROBOKU_DATA_DIR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if self.opts.no_cgroups {
            cmd.arg("--no-cgroups");
        }
        // Parallel agents would fight over 7070: a test that wants the dashboard says where.
        // (clap refuses a flag given twice, so defaults step aside for `extra`.)
        for (flag, default) in [("--dashboard", "off"), ("--sample-secs", "1")] {
            if !self.opts.extra.iter().any(|a| a == flag) {
                cmd.args([flag, default]);
            }
        }
        if let Some(n) = self.opts.nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit between fork and exec touches only the child's own limits.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        match self.fault.take() {
            Some(point) => cmd.env("ROBOKU_FAULT", point),
            None => cmd.env_remove("ROBOKU_FAULT"),
        };
        let child = cmd.spawn().expect("spawn robokud");
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "robokud exited during start ({status}):\n{}",
                    self.stderr_text()
                );
            }
            if self.socket.exists() && self.roboku(&["status"]).status.success() {
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!(
                    "robokud did not answer `roboku status` within 15s:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every stderr the agent wrote (all starts), for failure reports.
    pub fn stderr_text(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let p = self.stderr_dir.path().join(format!("robokud.stderr.{i}"));
            out.push_str(&format!("--- robokud stderr (start {i}) ---\n"));
            out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
        out
    }

    /// SIGTERMs the agent and waits (bounded) for it to exit; SIGKILL if it would not.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        crate::procs::kill(child.id() as i64, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(self.opts.grace_secs + 10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    eprintln!("robokud did not exit after SIGTERM; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Stops the agent (SIGTERM, as systemd would) and starts it again on the same data dir,
    /// socket, cgroup subtree and ports, with `on_exit` for the new one.
    pub fn restart(&mut self, on_exit: &'static str) {
        self.stop();
        self.opts.on_exit = on_exit;
        self.spawn();
    }

    /// SIGKILLs the agent (a crash or power cut, as far as the agent can tell) and starts it
    /// again on the same data dir with `on_exit` for the new one. True if it had died already
    /// (an armed fault point fired before).
    pub fn kill9_and_restart(&mut self, on_exit: &'static str) -> bool {
        let mut dead = false;
        if let Some(mut child) = self.child.take() {
            dead = child.try_wait().ok().flatten().is_some();
            let _ = child.kill();
            let _ = child.wait();
        }
        self.opts.on_exit = on_exit;
        self.spawn();
        dead
    }

    /// SIGKILLs the agent and leaves it down (its dynos run on unwatched); [`Agent::respawn`]
    /// starts it again.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the agent (SIGTERM, dynos left running or stopped as its `on_exit` says) and starts
    /// it again armed to SIGKILL itself at fault point `point` (`name` or `name:n`).
    pub fn restart_with_fault(&mut self, point: &str) {
        self.stop();
        self.fault = Some(point.to_string());
        self.spawn();
    }

    /// Waits until the agent died by SIGKILL (an armed fault point fired); panics otherwise.
    pub fn wait_killed(&mut self, deadline: Duration) {
        let Some(mut child) = self.child.take() else {
            panic!("the agent is not running");
        };
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    assert_eq!(
                        status.signal(),
                        Some(libc::SIGKILL),
                        "robokud exited ({status}), not by its fault point:\n{}",
                        self.stderr_text()
                    );
                    return;
                }
                Ok(None) if start.elapsed() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => panic!(
                    "robokud did not reach its fault point within {deadline:?}:\n{}",
                    self.stderr_text()
                ),
            }
        }
    }

    /// Whether the agent exits on its own within `within` (an armed fault point fired).
    pub fn exits_within(&mut self, within: Duration) -> bool {
        let start = Instant::now();
        loop {
            match self.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(_))) => return true,
                Some(Ok(None)) if start.elapsed() < within => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return false,
            }
        }
    }

    /// Starts the agent again after it died (same data dir, socket, cgroups, ports), unarmed.
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "the agent is still running");
        self.spawn();
    }

    /// Runs `roboku ARGS` against this agent.
    pub fn roboku(&self, args: &[&str]) -> Output {
        Command::new(bin("roboku"))
            .args(args)
            .env("ROBOKU_SOCKET", &self.socket)
            .env_remove("ROBOKU_APP")
            .env_remove("ROBOKU_DATA_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run roboku")
    }

    /// `roboku ARGS`, asserting success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.roboku(args);
        assert!(
            out.status.success(),
            "roboku {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `roboku ARGS --json`, asserting success; the parsed answer.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("roboku {all:?} printed no JSON ({e}): {out}"))
    }

    /// `roboku logs ARGS --json`: one JSON object per line.
    pub fn log_lines(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        all.push("--json");
        self.ok(&all)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Creates `app` and deploys `dir` to it; the new release's JSON.
    pub fn create_and_deploy(&self, app: &str, dir: &Path) -> Value {
        self.ok(&["apps:create", app]);
        self.deploy(app, dir)
    }

    /// Deploys `dir` to `app`; the new release's JSON.
    pub fn deploy(&self, app: &str, dir: &Path) -> Value {
        let dir = dir.to_str().expect("utf-8 app dir");
        self.json(&["deploy", dir, "-a", app])
    }

    /// `ps --json` for `app`.
    pub fn ps(&self, app: &str) -> Vec<Value> {
        match self.json(&["ps", "-a", app]) {
            Value::Array(v) => v,
            other => panic!("ps --json is not a list: {other}"),
        }
    }

    /// One dyno from `ps --json`, if listed.
    /// Polls `app`'s web.1 until GET / answers 200 with `want` (trimmed), for up to `secs`.
    pub fn web_answers(&self, app: &str, want: &str, secs: u64) {
        let port = self.dyno(app, "web.1").expect("web.1")["port"]
            .as_u64()
            .expect("port") as u16;
        wait_for(
            &format!("{app} answers {want:?} on port {port}"),
            Duration::from_secs(secs),
            || {
                crate::http::get(port, "/")
                    .map(|r| r.status == 200 && r.body.trim() == want)
                    .unwrap_or(false)
            },
        );
    }

    pub fn dyno(&self, app: &str, name: &str) -> Option<Value> {
        self.ps(app).into_iter().find(|d| d["name"] == name)
    }

    /// The pid of a dyno that is up, if it is.
    pub fn up_pid(&self, app: &str, name: &str) -> Option<i64> {
        self.dyno(app, name)
            .filter(|d| d["state"] == "up")
            .and_then(|d| d["pid"].as_i64())
    }

    /// Waits until dyno `name` is up with a pid other than `not`; that pid.
    pub fn wait_up(&self, app: &str, name: &str, not: Option<i64>, deadline: Duration) -> i64 {
        let mut pid = None;
        wait_for(
            &format!("{app} {name} up (not pid {not:?})"),
            deadline,
            || {
                pid = self.up_pid(app, name).filter(|p| Some(*p) != not);
                pid.is_some()
            },
        );
        pid.expect("set by wait_for")
    }

    /// Raw API request on the agent's socket (routes the CLI has no command for, bad bodies).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> crate::http::Response {
        crate::http::unix(&self.socket, method, path, body)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.stderr_text());
        }
        self.stop();
        crate::cgroups::destroy(&self.cgroup_name);
        if self.opts.tmpfs.is_some() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.data.path())
                .status();
        }
    }
}

//! The real `robokud` binary under a stand-in for systemd: a unix datagram socket in
//! `$NOTIFY_SOCKET`, a watchdog in `$WATCHDOG_USEC`. READY=1 must come only once the API answers,
//! WATCHDOG=1 must keep coming while the engine runs, STOPPING=1 must follow SIGTERM.
//!
//! Needs the binaries built first: `cargo build --workspace --bins` (the test says so if not).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/` : the test runs from `target/<profile>/deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before this test",
        path.display()
    );
    path
}

/// Kills the agent if an assertion fails half way.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next datagram, or `None` at the deadline.
fn recv(sock: &UnixDatagram, deadline: Instant) -> Option<String> {
    let left = deadline.checked_duration_since(Instant::now())?;
    sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

fn has_field(msg: &str, field: &str) -> bool {
    msg.lines().any(|l| l == field)
}

#[test]
fn robokud_speaks_sd_notify_ready_watchdog_stopping() {
    let robokud = bin("robokud");
    let roboku = bin("roboku");
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    let data = dir.path().join("data");
    let api = data.join("robokud.sock");
    // An explicit empty config, so an /etc/roboku/robokud.toml on this machine plays no part.
    let config = dir.path().join("robokud.toml");
    std::fs::write(&config, "").unwrap();

    let mut agent = Agent(
        Command::new(&robokud)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("--no-cgroups")
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "200000")
            .env_remove("WATCHDOG_PID")
            .env_remove("ROBOKU_SOCKET")
            .env("ROBOKU_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn robokud"),
    );

    // READY=1 first (nothing else is sent before it), and the API must already answer then.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = recv(&sock, deadline).expect("no READY=1 from robokud within 30 s");
    assert!(has_field(&first, "READY=1"), "first message: {first:?}");
    assert!(
        first
            .lines()
            .any(|l| l == "STATUS=running 0 apps, 0/0 dynos up"),
        "first message: {first:?}"
    );
    assert!(api.exists(), "READY=1 before {} existed", api.display());
    let status = Command::new(&roboku)
        .args(["status", "--json"])
        .env("ROBOKU_SOCKET", &api)
        .output()
        .expect("run roboku status");
    assert!(
        status.status.success(),
        "roboku status failed right after READY=1: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["pid"].as_u64(), Some(u64::from(agent.0.id())));

    // Watchdog: every 100 ms (half of 200 ms); five in 10 s is a loose bound for a loaded host.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pets = 0;
    while pets < 5 {
        let msg = recv(&sock, deadline).unwrap_or_else(|| panic!("only {pets} WATCHDOG=1 in 10 s"));
        if has_field(&msg, "WATCHDOG=1") {
            pets += 1;
        }
    }

    // SIGTERM: STOPPING=1, then a clean exit and the socket removed.
    let pid = agent.0.id() as libc::pid_t;
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let msg = recv(&sock, deadline).expect("no STOPPING=1 within 30 s of SIGTERM");
        if has_field(&msg, "STOPPING=1") {
            break;
        }
        assert!(
            has_field(&msg, "WATCHDOG=1") || msg.starts_with("STATUS="),
            "unexpected message before STOPPING=1: {msg:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = agent.0.try_wait().unwrap() {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "robokud still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "robokud exited with {code}");
    assert!(!api.exists(), "socket left behind after exit");
}

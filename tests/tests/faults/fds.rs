//! fd exhaustion through the API socket: 1,100 idle connections against an agent whose fd limit
//! is systemd's default 1024. The CLI still answers, a killed dyno is still restarted, and the
//! agent's log stays small.

use roboku_tests::{app_dir, bins::bin, kill, wait_for, Agent, AgentOpts};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A non-blocking connect to the unix socket at `path`: the fd, or `None` when the backlog is
/// full (EAGAIN) or the agent refused it.
fn connect_idle(path: &std::path::Path) -> Option<OwnedFd> {
    let bytes = path.as_os_str().as_encoded_bytes();
    // SAFETY: plain socket calls on a zeroed sockaddr_un we fill within its bounds.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        assert!(bytes.len() < addr.sun_path.len());
        for (i, b) in bytes.iter().enumerate() {
            addr.sun_path[i] = *b as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let r = libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        );
        (r == 0).then_some(fd)
    }
}

/// `roboku ARGS` with a deadline: its stdout, or a panic naming what hung.
fn roboku_within(agent: &Agent, args: &[&str], deadline: Duration) -> String {
    let mut child = Command::new(bin("roboku"))
        .args(args)
        .env("ROBOKU_SOCKET", agent.socket())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run roboku");
    let start = Instant::now();
    let mut status = None;
    wait_for(&format!("roboku {args:?} to answer"), deadline, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let _ = start;
    let out = child.wait_with_output().expect("roboku output");
    assert!(
        out.status.success(),
        "roboku {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn idle_connections_starve_neither_the_cli_nor_supervision() {
    let agent = Agent::start(AgentOpts {
        nofile: Some(1024),
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    let pid = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));

    let idle: Vec<OwnedFd> = (0..1100)
        .filter_map(|_| connect_idle(agent.socket()))
        .collect();
    assert!(idle.len() > 900, "only {} connections got in", idle.len());

    let ps = roboku_within(&agent, &["ps", "-a", "demo"], Duration::from_secs(10));
    assert!(ps.contains("web.1"), "{ps}");
    assert!(kill(pid, libc::SIGKILL));
    let mut now_up = None;
    wait_for("web.1 restarted", Duration::from_secs(15), || {
        let out = roboku_within(
            &agent,
            &["ps", "-a", "demo", "--json"],
            Duration::from_secs(10),
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("ps json");
        now_up = v[0]["pid"]
            .as_i64()
            .filter(|p| *p != pid && v[0]["state"] == "up");
        now_up.is_some()
    });
    let log = agent.stderr_text();
    assert!(
        log.len() < 64 * 1024,
        "agent logged {} bytes:\n{}",
        log.len(),
        &log[..4096.min(log.len())]
    );
    drop(idle);
}

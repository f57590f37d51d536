//! fd exhaustion through the doors: 1,100 idle connections on the API socket against an agent
//! whose fd limit is systemd's default 1024 (the CLI still answers, a killed dyno is still
//! restarted, and the agent's log stays small), and a flood of idle connections on a gateway's
//! slug server (`--serve-slugs`), which keeps serving its clients within the same budget.

use roboku_tests::{app_dir, bins::bin, kill, wait_for, Agent, AgentOpts};
use std::io::{Read, Write};
use std::net::TcpStream;
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

/// Open fds of process `pid`.
fn fds_of(pid: u32) -> usize {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .count()
}

/// One `GET` on `conn` (kept alive); the status line of the answer.
fn get(conn: &mut TcpStream, path: &str) -> String {
    write!(conn, "GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n").expect("send a request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("reading the answer to GET {path}: {other:?} after {head:?}"),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    // The body of a 404 is one short line; read it so the connection is ready for the next.
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).expect("read the body");
    head.lines().next().unwrap_or_default().to_string()
}

#[test]
fn idle_connections_on_the_slug_server_neither_lock_out_a_client_nor_grow_fds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    // fd limit 256: each door may hold a quarter of it, 64 connections.
    let cap = 64;
    let agent = Agent::start(AgentOpts {
        nofile: Some(256),
        extra: vec!["--serve-slugs".into(), addr.clone()],
        ..AgentOpts::default()
    });
    let missing = format!("/slugs/{}.tar.gz", "0".repeat(64));
    let timeout = Some(Duration::from_secs(10));
    let connect = || {
        let c = TcpStream::connect(&addr).expect("connect to the slug server");
        c.set_read_timeout(timeout).expect("read timeout");
        c
    };
    let mut client = connect();
    assert_eq!(get(&mut client, &missing), "HTTP/1.1 404 Not Found");
    let before = fds_of(agent.pid());

    let flood: Vec<TcpStream> = (0..3 * cap + 1).map(|_| connect()).collect();
    // Accepted in order: once a newcomer is answered, the agent has taken in the whole flood.
    let mut newcomer = connect();
    assert_eq!(get(&mut newcomer, &missing), "HTTP/1.1 404 Not Found");
    assert_eq!(
        get(&mut client, &missing),
        "HTTP/1.1 404 Not Found",
        "the existing client"
    );
    // Bounded: at most `cap` connections (evicted ones are closed by their tasks, a moment later).
    let mut during = 0;
    wait_for(
        "the agent's fds within the cap",
        Duration::from_secs(5),
        || {
            during = fds_of(agent.pid());
            during <= before + cap + 2
        },
    );
    eprintln!(
        "faults: slug server: {} idle connections, agent fds {before} before, {during} during (cap {cap})",
        flood.len()
    );
    // The oldest idle ones made room: the agent closed them.
    let mut first = &flood[0];
    let mut buf = [0u8; 1];
    assert_eq!(
        first
            .read(&mut buf)
            .expect("an evicted connection reads EOF"),
        0
    );
    drop(flood);
    drop(agent);
}

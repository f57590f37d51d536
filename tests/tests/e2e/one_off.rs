//! `roboku run` is a one-off dyno as on Heroku: started by robokud as the app's own user in a
//! cgroup of its own, attached over the socket (stdin, output, signals, exit code), shown in
//! `ps` as `run.N`, logged, never restarted; `run:detached` logs its output instead; from a
//! terminal it gets a pty that follows resizes.

use roboku_tests::{app_dir, holds_for, wait_for, Agent, AgentOpts};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn roboku(agent: &Agent, args: &[&str]) -> Command {
    let mut cmd = Command::new(roboku_tests::bins::bin("roboku"));
    cmd.args(args)
        .env("ROBOKU_SOCKET", agent.socket())
        .env_remove("ROBOKU_APP");
    cmd
}

#[test]
fn one_off_dynos_run_as_the_app_in_their_cgroup_attached_and_detached() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy(
        "demo",
        app_dir(&[("Procfile", "web: exec sleep 100000\n")]).path(),
    );
    let uid = agent.json(&["apps:info", "-a", "demo"])["uid"]
        .as_u64()
        .expect("the app's uid");

    // Attached: stdin in, output out, the exit code back; as the app's user, in a cgroup.
    let script = "id -u; cat /proc/self/cgroup; read line; echo \"got:$line\"; \
                  touch \"$HOME/x\" 2>/dev/null && echo SLUG-WRITTEN || echo SLUG-READ-ONLY; exit 5";
    let mut child = roboku(&agent, &["run", "-a", "demo", "--", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("roboku run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("roboku run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().next(),
        Some(uid.to_string().as_str()),
        "{stdout}"
    );
    let memory = stdout
        .lines()
        .find(|l| l.contains(":memory:"))
        .unwrap_or_else(|| panic!("no memory cgroup line: {stdout}"));
    assert!(
        memory.contains(&format!("/{}/demo/run.1@", agent.cgroup_name())),
        "in a cgroup of its own: {memory}"
    );
    assert!(stdout.contains("got:hello"), "{stdout}");
    assert!(stdout.contains("SLUG-READ-ONLY"), "{stdout}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("up, run.1"), "{err}");

    // A long one is in ps as run.N; a signal to roboku reaches it; it is never restarted.
    let script = "echo started; trap 'echo got-term; exit 3' TERM; while :; do sleep 0.1; done";
    let mut child = roboku(&agent, &["run", "-a", "demo", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("roboku run");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).expect("started");
    assert_eq!(&first, b"started\n");
    let dyno = agent.dyno("demo", "run.1").expect("run.1 in ps");
    assert_eq!(dyno["state"], "up", "{dyno}");
    assert_eq!(dyno["user"], uid.to_string(), "{dyno}");
    let pid = dyno["pid"].as_i64().expect("pid");
    roboku_tests::kill(child.id() as i64, libc::SIGTERM);
    let status = child.wait().expect("roboku run");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("rest");
    assert!(rest.contains("got-term"), "{rest}");
    assert_eq!(status.code(), Some(3), "the trap's exit code");
    wait_for("run.1 to leave ps", Duration::from_secs(10), || {
        agent.dyno("demo", "run.1").is_none()
    });
    holds_for("run.1 is never restarted", Duration::from_secs(2), || {
        agent.dyno("demo", "run.1").is_none() && !roboku_tests::alive(pid)
    });
    let logs = agent.ok(&["logs", "-a", "demo", "-d", "run.1", "-n", "50"]);
    assert!(
        logs.contains("Starting process with command `sh -c"),
        "{logs}"
    );

    // Detached: the answer comes at once, the output goes to the logs (a computed marker: the
    // command line itself is logged too).
    let said = agent.ok(&[
        "run:detached",
        "-a",
        "demo",
        "--",
        "sh",
        "-c",
        "echo \"out-$((4 + 4))\"; sleep 1",
    ]);
    assert!(said.contains("up, run.1"), "{said}");
    wait_for(
        "the detached output in the logs",
        Duration::from_secs(10),
        || {
            agent
                .ok(&["logs", "-a", "demo", "-d", "run.1", "-n", "50"])
                .contains("out-8")
        },
    );
    wait_for("the detached run to end", Duration::from_secs(10), || {
        agent.dyno("demo", "run.1").is_none()
    });
    holds_for(
        "the detached run is not restarted",
        Duration::from_secs(2),
        || agent.dyno("demo", "run.1").is_none(),
    );
}

/// From a terminal (a pty the test drives, as a terminal emulator would), the one-off gets a
/// pty of the same size, follows resizes, and Ctrl-C typed on the terminal reaches it.
#[test]
fn one_off_from_a_terminal_gets_a_pty_that_follows_resizes_and_ctrl_c() {
    use std::os::unix::process::CommandExt;
    use std::sync::{Arc, Mutex};
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy(
        "demo",
        app_dir(&[("Procfile", "web: exec sleep 100000\n")]).path(),
    );
    let (master, slave) = robokud::supervisor::pty::open(33, 111).expect("pty");
    // Markers are computed, so the command line roboku echoes on the same terminal never matches.
    let script = "test -t 0 && echo \"tty-$((1 + 1))\"; echo \"size:$(stty size)\"; \
                  trap 'echo \"resized:$(stty size)\"' WINCH; trap 'echo \"int-$((2 + 2))\"; exit 4' INT; \
                  echo \"up-$((3 + 3))\"; while :; do sleep 0.1; done";
    let slave = std::fs::File::from(slave);
    let mut cmd = roboku(&agent, &["run", "-a", "demo", "--", "sh", "-c", script]);
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    // SAFETY: setsid and ioctl are async-signal-safe; the terminal becomes roboku's, as a shell's.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("roboku run on a terminal");
    drop(cmd);
    let seen = Arc::new(Mutex::new(String::new()));
    let mut reader = std::fs::File::from(master.try_clone().expect("dup master"));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let has = |s: &str| seen.lock().expect("lock").contains(s);
    wait_for("the dyno on its pty", Duration::from_secs(20), || {
        has("up-6")
    });
    assert!(has("tty-2"), "{}", seen.lock().expect("lock"));
    assert!(has("size:33 111"), "{}", seen.lock().expect("lock"));

    robokud::supervisor::pty::set_size(&master, 40, 120).expect("resize");
    wait_for(
        "the resize to reach the dyno",
        Duration::from_secs(10),
        || has("resized:40 120"),
    );

    let mut writer = std::fs::File::from(master);
    writer.write_all(b"\x03").expect("type Ctrl-C");
    wait_for("Ctrl-C to reach the dyno", Duration::from_secs(10), || {
        has("int-4")
    });
    let status = child.wait().expect("roboku run");
    assert_eq!(status.code(), Some(4), "{}", seen.lock().expect("lock"));
}

//! Logs (recent lines, filters, following) and one-off dynos.

use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PROCFILE: &str =
    "web: i=0; while true; do i=$((i+1)); echo \"web line $i mark=${MARK:-none}\"; sleep 0.1; done
worker: exec sleep 1000
";

#[test]
fn logs_recent_filtered_and_followed() {
    let agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[("Procfile", PROCFILE)]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&["ps:scale", "worker=1", "-a", "demo"]);
    agent.wait_up("demo", "worker.1", None, Duration::from_secs(10));
    wait_for("ten web lines", Duration::from_secs(10), || {
        agent
            .log_lines(&["-a", "demo", "-d", "web.1", "--source", "app"])
            .len()
            >= 10
    });

    // -n
    let five = agent.log_lines(&["-a", "demo", "-n", "5"]);
    assert_eq!(five.len(), 5, "{five:#?}");
    let text = agent.ok(&["logs", "-a", "demo", "-n", "5"]);
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.contains("app[web.1]"), "{text}");

    // -d: a dyno, or a process type.
    let web = agent.log_lines(&["-a", "demo", "-d", "web.1", "-n", "50"]);
    assert!(!web.is_empty());
    assert!(web.iter().all(|l| l["dyno"] == "web.1"), "{web:#?}");
    let worker = agent.log_lines(&["-a", "demo", "-d", "worker", "-n", "50"]);
    assert!(!worker.is_empty());
    assert!(
        worker.iter().all(|l| l["dyno"] == "worker.1"),
        "{worker:#?}"
    );

    // --source
    let sys = agent.log_lines(&["-a", "demo", "--source", "roboku", "-n", "50"]);
    assert!(sys.iter().any(|l| l["line"]
        .as_str()
        .is_some_and(|s| s.starts_with("Starting process"))));
    assert!(sys.iter().all(|l| l["source"] == "roboku"), "{sys:#?}");
    let apps = agent.log_lines(&["-a", "demo", "--source", "app", "-n", "50"]);
    assert!(apps.iter().all(|l| l["source"] == "app"), "{apps:#?}");

    // --tail follows: a line the dyno prints after the follower started reaches it.
    let mut tail = Command::new(roboku_tests::bins::bin("roboku"))
        .args(["logs", "-a", "demo", "--tail", "-n", "1"])
        .env("ROBOKU_SOCKET", agent.socket())
        .env_remove("ROBOKU_APP")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn roboku logs --tail");
    let stdout = tail.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower is attached once it printed its one recent line.
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("logs --tail printed nothing");
    assert!(!first.contains("mark=tailed"), "{first}");
    agent.ok(&["config:set", "MARK=tailed", "-a", "demo"]);
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.contains("mark=tailed") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        found,
        "the follower never showed the new line; it saw: {seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("Release v2")),
        "the follower missed roboku's release line: {seen:#?}"
    );
}

#[test]
fn one_off_run_gets_a_port_and_passes_the_exit_code_through() {
    let agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[
        ("Procfile", "web: exec sleep 1000\n"),
        ("hello.txt", "from the slug\n"),
    ]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&["config:set", "GREETING=hi", "-a", "demo"]);

    let port: u16 = agent
        .ok(&["run", "-a", "demo", "--", "printenv", "PORT"])
        .trim()
        .parse()
        .expect("printenv PORT prints a port");
    let (lo, hi) = agent.port_range();
    assert!((lo..=hi).contains(&port), "{port} outside {lo}-{hi}");
    let web_port = agent.dyno("demo", "web.1").expect("web.1")["port"].as_u64();
    assert_ne!(Some(port as u64), web_port, "the one-off took web.1's port");

    let out = agent.ok(&[
        "run",
        "-a",
        "demo",
        "--",
        "sh",
        "-c",
        "echo $GREETING; cat hello.txt",
    ]);
    assert_eq!(out, "hi\nfrom the slug\n");

    let out = agent.roboku(&["run", "-a", "demo", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");

    let out = agent.roboku(&["run", "-a", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

//! Crashes: a killed dyno is replaced, a crash loop backs off with growing delays, and a stable
//! run resets the backoff.

use roboku_tests::{app_dir, kill, now_ms, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::time::Duration;

/// `(ts, line)` of the roboku-source lines of one dyno.
fn system_lines(agent: &Agent, app: &str, dyno: &str) -> Vec<(u64, String)> {
    agent
        .log_lines(&["-a", app, "--source", "roboku", "-d", dyno, "-n", "1000"])
        .iter()
        .map(|l| {
            (
                l["ts"].as_u64().expect("ts"),
                l["line"].as_str().expect("line").to_string(),
            )
        })
        .collect()
}

#[test]
fn kill_9_is_replaced_and_a_stable_run_resets_the_backoff() {
    let agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    let first = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));

    assert!(kill(first, libc::SIGKILL));
    let second = agent.wait_up("demo", "web.1", Some(first), Duration::from_secs(5));
    let d = agent.dyno("demo", "web.1").expect("web.1 listed");
    assert_eq!(d["restarts"], 1, "{d}");
    assert_eq!(d["last_exit"]["signal"], 9, "{d}");
    assert_eq!(d["last_exit"]["oom"], false, "{d}");

    // Crash it again at once, three times: consecutive crashes back off.
    let mut pid = second;
    for _ in 0..3 {
        assert!(kill(pid, libc::SIGKILL));
        pid = agent.wait_up("demo", "web.1", Some(pid), Duration::from_secs(10));
    }
    let lines = system_lines(&agent, "demo", "web.1");
    let backoffs = lines
        .iter()
        .filter(|(_, l)| l.contains("restarting in"))
        .count();
    assert!(
        backoffs >= 2,
        "quick consecutive crashes should back off: {lines:#?}"
    );

    // A run longer than --backoff-reset-secs (5) resets the count: the next crash restarts at once.
    let since = agent.dyno("demo", "web.1").expect("web.1")["since"]
        .as_u64()
        .expect("since");
    wait_for("web.1 to run 5.5 s", Duration::from_secs(10), || {
        now_ms() >= since + 5500
    });
    assert_eq!(agent.up_pid("demo", "web.1"), Some(pid), "stable run broke");
    let killed_at = now_ms();
    assert!(kill(pid, libc::SIGKILL));
    let last = agent.wait_up("demo", "web.1", Some(pid), Duration::from_secs(5));
    let after: Vec<_> = system_lines(&agent, "demo", "web.1")
        .into_iter()
        .filter(|(ts, _)| *ts + 5 >= killed_at)
        .map(|(_, l)| l)
        .collect();
    let exit = after
        .iter()
        .position(|l| l.contains("killed by SIGKILL"))
        .unwrap_or_else(|| panic!("no exit line after the kill: {after:#?}"));
    assert!(
        after[exit + 1].starts_with("Starting process")
            && after[exit + 1].contains(&last.to_string()),
        "after a stable run the crash must restart at once, without backoff: {after:#?}"
    );
    let d = agent.dyno("demo", "web.1").expect("web.1");
    assert_eq!(d["restarts"], 5, "{d}");
}

#[test]
fn crash_loop_backs_off_with_growing_delays() {
    let agent = Agent::start(AgentOpts::default());
    // A crashing web would fail the deploy's health gate (tested in the deploy tests), so the
    // crash loop is a process type scaled up after a healthy deploy.
    let app = app_dir(&[(
        "Procfile",
        "web: exec sleep 100000\ncrash: echo boom; exit 3\n",
    )]);
    agent.create_and_deploy("crashy", app.path());
    agent.ok(&["ps:scale", "web=0", "crash=1", "-a", "crashy"]);

    // Caught in backoff: state, next_retry_at in the future of `since`.
    let mut seen: Option<Value> = None;
    wait_for("crash.1 in backoff", Duration::from_secs(10), || {
        seen = agent
            .dyno("crashy", "crash.1")
            .filter(|d| d["state"] == "backoff");
        seen.is_some()
    });
    let d = seen.expect("set");
    let retry = d["next_retry_at"].as_u64().unwrap_or_else(|| panic!("{d}"));
    let since = d["since"].as_u64().expect("since");
    assert!(retry > since, "next_retry_at {retry} <= since {since}: {d}");
    assert_eq!(d["last_exit"]["code"], 3, "{d}");
    assert!(d["pid"].is_null(), "no process while backing off: {d}");

    // Six restarts: delays (exit -> next start) must grow, from "at once" to about a second.
    let mut lines = Vec::new();
    wait_for("six restarts of web.1", Duration::from_secs(15), || {
        lines = system_lines(&agent, "crashy", "crash.1");
        lines
            .iter()
            .filter(|(_, l)| l.starts_with("Starting process"))
            .count()
            >= 7
    });
    let mut gaps = Vec::new();
    let mut announced = Vec::new();
    let mut exit_at = None;
    for (ts, l) in &lines {
        if l.starts_with("Process exited") {
            exit_at = Some(*ts);
            announced.push(false);
        } else if l.contains("restarting in") {
            if let Some(a) = announced.last_mut() {
                *a = true;
            }
        } else if l.starts_with("Starting process") {
            if let Some(e) = exit_at.take() {
                gaps.push(ts - e);
            }
        }
    }
    assert!(gaps.len() >= 6, "{lines:#?}");
    assert!(
        !announced[0],
        "the first crash restarts at once: {lines:#?}"
    );
    assert!(announced[1..6].iter().all(|a| *a), "{lines:#?}");
    // Equal jitter: delay n is in [base/2, base], base = 200 ms * 2^(n-2), capped at 2 s.
    let floors = [0, 100, 200, 400, 800, 1000];
    for (i, floor) in floors.iter().enumerate() {
        assert!(
            gaps[i] + 5 >= *floor,
            "gap {i} = {} ms < {floor}: {gaps:?}",
            gaps[i]
        );
    }
    assert!(
        gaps[4] > gaps[0] && gaps[4] > gaps[2],
        "delays do not grow: {gaps:?}"
    );
    let d = agent.dyno("crashy", "crash.1").expect("crash.1");
    assert!(d["restarts"].as_u64().expect("restarts") >= 6, "{d}");
}

/// `/proc/<pid>/comm`: the name of the program a process runs.
fn comm(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The pids of `pid`'s children.
fn children(pid: i64) -> Vec<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_simple_command_is_the_dyno_itself_and_a_compound_one_keeps_its_shell() {
    let agent = Agent::start(AgentOpts::default());
    // `.profile.d` is still sourced before the command (the exec comes after it).
    let app = app_dir(&[
        (
            "Procfile",
            "web: sleep 1000 $ROBOKU_PROFILE_TAG\nworker: sleep 1001 && true\n",
        ),
        (".profile.d/tag.sh", "export ROBOKU_PROFILE_TAG=7\n"),
    ]);
    agent.create_and_deploy("shells", app.path());
    agent.ok(&["ps:scale", "worker=1", "-a", "shells"]);
    let web = agent.wait_up("shells", "web.1", None, Duration::from_secs(10));
    let worker = agent.wait_up("shells", "worker.1", None, Duration::from_secs(10));

    // The simple command was exec'd: the dyno's pid runs `sleep`, with no shell around it, and
    // the profile's variable reached its arguments.
    assert_eq!(comm(web), "sleep", "web.1 should be the app, not a shell");
    assert!(
        children(web).is_empty(),
        "web.1 has children: {:?}",
        children(web)
    );
    let cmdline = std::fs::read(format!("/proc/{web}/cmdline")).unwrap_or_default();
    assert_eq!(
        cmdline, b"sleep\x001000\x007\x00",
        "profile.d not sourced first"
    );
    // A compound command runs under the shell, as written.
    assert_eq!(
        comm(worker),
        "sh",
        "worker.1 runs `a && b`: its shell stays"
    );
    assert_eq!(
        children(worker)
            .iter()
            .map(|p| comm(*p))
            .collect::<Vec<_>>(),
        ["sleep"]
    );

    // SIGKILL to the app itself is a crash of the dyno, replaced as before.
    assert!(kill(web, libc::SIGKILL));
    let again = agent.wait_up("shells", "web.1", Some(web), Duration::from_secs(10));
    assert_eq!(comm(again), "sleep");
    let d = agent.dyno("shells", "web.1").expect("web.1 listed");
    assert_eq!(d["last_exit"]["signal"], 9, "{d}");
}

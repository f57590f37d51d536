//! Crashes: a killed dyno is replaced, a crash loop backs off with growing delays, and a stable
//! run resets the backoff.

use roboku_tests::{alive, app_dir, kill, now_ms, wait_for, Agent, AgentOpts};
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

/// `/proc/<pid>/environ` as sorted `NAME=value` strings.
fn environ(pid: i64) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let mut vars: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    vars.sort();
    vars
}

#[test]
fn a_plain_command_without_profile_scripts_gets_what_the_shell_would_have_given_it() {
    let agent = Agent::start(AgentOpts::default());
    // `web` and `script` are plain words (robokud execs the program itself); the `$UNSET` of
    // `worker` and `script2` expands to nothing, so the shell runs them: the same programs with
    // the same argv, and the same environment.
    let app = app_dir(&[
        (
            "Procfile",
            "web: sleep 1000 1m\nworker: sleep 1000 1m $UNSET\n\
             script: ./bin/stay 1m\nscript2: ./bin/stay 1m $UNSET\n",
        ),
        ("bin/stay", "#!/bin/sh\nsleep 1000\n"),
    ]);
    let stay = app.path().join("bin/stay");
    std::fs::set_permissions(&stay, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod bin/stay");
    agent.create_and_deploy("plain", app.path());
    agent.ok(&["config:set", "GREETING=hello world", "-a", "plain"]);
    agent.ok(&[
        "ps:scale",
        "worker=1",
        "script=1",
        "script2=1",
        "-a",
        "plain",
    ]);
    let pid = |name| agent.wait_up("plain", name, None, Duration::from_secs(10));
    let (web, worker, script, script2) = (
        pid("web.1"),
        pid("worker.1"),
        pid("script.1"),
        pid("script2.1"),
    );
    let cmdline = |pid| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    for pid in [web, worker] {
        assert_eq!(comm(pid), "sleep");
        assert_eq!(cmdline(pid), b"sleep\x001000\x001m\x00");
    }
    for pid in [script, script2] {
        assert_eq!(comm(pid), "stay");
        assert_eq!(
            cmdline(pid),
            b"/bin/sh\x00./bin/stay\x001m\x00",
            "ps shows it as the shell would"
        );
    }
    // Names that differ per dyno by design (its name, port, instance tag) aside.
    let per_dyno = ["DYNO=", "PORT=", "ROBOKU_INSTANCE="];
    let shared = |pid| -> Vec<String> {
        environ(pid)
            .into_iter()
            .filter(|v| !per_dyno.iter().any(|p| v.starts_with(p)))
            .collect()
    };
    let direct = shared(web);
    assert!(
        direct.iter().any(|v| v == "GREETING=hello world"),
        "{direct:?}"
    );
    assert!(
        direct.iter().any(|v| v.starts_with("PWD=/")),
        "dash exports PWD: {direct:?}"
    );
    for (a, b) in [(web, worker), (script, script2), (web, script)] {
        assert_eq!(
            shared(a),
            shared(b),
            "direct exec and shell disagree on the environment"
        );
    }
}

#[test]
fn a_plain_command_that_cannot_be_execed_gets_the_shells_own_error() {
    let agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[
        (
            "Procfile",
            "web: sleep 1000\nmissing: no-such-program-here 1\nnoexec: ./bin/noexec\n",
        ),
        ("bin/noexec", "#!/bin/sh\nsleep 1000\n"),
    ]);
    agent.create_and_deploy("broken", app.path());
    agent.ok(&["ps:scale", "missing=1", "noexec=1", "-a", "broken"]);
    // Neither path execs for the dyno's user: the child goes on to the shell, whose search
    // fails with the messages users know (and the dyno crashes, as it did under the shell).
    let wants = [
        "no-such-program-here: not found",
        "./bin/noexec: Permission denied",
    ];
    let mut logs = String::new();
    wait_for(
        "the shell's errors in the logs",
        Duration::from_secs(15),
        || {
            logs = agent.ok(&["logs", "-a", "broken", "-n", "200"]);
            wants.iter().all(|w| logs.contains(w))
        },
    );
    assert!(
        !logs.contains("cannot start"),
        "a start failure, not the shell's: {logs}"
    );
}

/// The spares of `dyno` of `app` (pid, instance), waiting to be released.
fn spares_of(agent: &Agent, app: &str, dyno: &str) -> Vec<(i64, String)> {
    let prefix = format!("{app}/{dyno}@");
    roboku_tests::spares(agent.data_dir())
        .into_iter()
        .filter(|(_, inst)| inst.starts_with(&prefix))
        .collect()
}

/// Waits until `dyno` has exactly one spare (that is not `not`); its pid and instance.
fn wait_spare(agent: &Agent, app: &str, dyno: &str, not: Option<i64>) -> (i64, String) {
    let mut found = None;
    wait_for(
        &format!("a spare of {app}/{dyno}"),
        Duration::from_secs(15),
        || {
            let s = spares_of(agent, app, dyno);
            found = s.first().cloned().filter(|(pid, _)| Some(*pid) != not);
            s.len() == 1 && found.is_some()
        },
    );
    found.expect("set")
}

/// `Uid:` of a process: real, effective, saved, filesystem.
fn uids(pid: i64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The v1 cgroup of `pid` in `controller` (`/roboku-e2e-1-0/demo/web.1@17`).
fn cgroup_of(pid: i64, controller: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
        names
            .split(',')
            .any(|n| n == controller)
            .then(|| path.to_string())
    })
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

/// A running dyno has a spare: its next instance, already in its own fresh memory and pids
/// cgroups with the type's limits written, as the dyno's user, running nothing of the app; a
/// kill -9 of the dyno is answered by releasing that very process, and a new spare follows.
#[test]
fn crash_spare_waits_confined_as_the_dyno_user_and_becomes_the_replacement() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--spare-dynos".into()],
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&[
        "ps:resize",
        "web",
        "--memory",
        "48M",
        "--pids",
        "30",
        "-a",
        "demo",
    ]);
    let first = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let cg = agent.cgroup_name().to_string();
    // The resize discards a spare made before it: wait for one with the limits.
    let mut spare = (0, String::new());
    wait_for(
        "a spare with the new limits",
        Duration::from_secs(15),
        || {
            let s = spares_of(&agent, "demo", "web.1");
            let Some(found) = s.first().cloned() else {
                return false;
            };
            let dir = format!("/sys/fs/cgroup/memory/{cg}/{}", found.1);
            let limit = std::fs::read_to_string(format!("{dir}/memory.limit_in_bytes"));
            spare = found;
            s.len() == 1 && limit.is_ok_and(|l| l.trim() == (48u64 << 20).to_string())
        },
    );
    let (pid, instance) = spare;
    assert_ne!(pid, first);
    assert!(
        instance.starts_with("demo/web.1@"),
        "the spare is tagged as its own instance: {instance}"
    );
    assert_ne!(
        roboku_tests::procs::instance_of(first),
        Some(instance.clone()),
        "a spare is a new instance, not the running one"
    );
    // Confined before it runs anything: its own instance cgroups, the limits in force.
    let want = format!("/{cg}/{instance}");
    assert_eq!(cgroup_of(pid, "memory"), Some(want.clone()));
    assert_eq!(cgroup_of(pid, "pids"), Some(want.clone()));
    assert_eq!(
        read_trim(&format!("/sys/fs/cgroup/pids{want}/pids.max")),
        "30"
    );
    assert_eq!(
        read_trim(&format!(
            "/sys/fs/cgroup/memory{want}/memory.limit_in_bytes"
        )),
        (48u64 << 20).to_string()
    );
    // As the dyno's own (unprivileged) user, like the dyno.
    assert_eq!(uids(pid), uids(first));
    assert!(!uids(pid).starts_with("0 "), "a spare never runs as root");
    // Nothing of the app runs yet: the shell waits for its release.
    assert_eq!(read_trim(&format!("/proc/{pid}/comm")), "sh");

    assert!(kill(first, libc::SIGKILL));
    let second = agent.wait_up("demo", "web.1", Some(first), Duration::from_secs(5));
    assert_eq!(second, pid, "the spare is the replacement");
    wait_for(
        "the released spare runs the command",
        Duration::from_secs(5),
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep"),
    );
    let d = agent.dyno("demo", "web.1").expect("web.1 listed");
    assert_eq!(d["restarts"], 1, "{d}");
    assert_eq!(d["last_exit"]["signal"], 9, "{d}");
    let (next, _) = wait_spare(&agent, "demo", "web.1", Some(pid));
    assert_ne!(next, pid);
    // The crashed instance's cgroup is removed; the dyno's and its new spare's remain.
    let app_cgroup = format!("{cg}/demo");
    wait_for(
        "the crashed instance's cgroup removed",
        Duration::from_secs(5),
        || roboku_tests::cgroups::children(&app_cgroup, "web.1@").len() == 2,
    );
}

/// A spare goes with its dyno: scaled away, stopped, or removed with its app, its process is
/// gone and its cgroup removed.
#[test]
fn crash_spares_go_with_their_dynos_on_scale_down_stop_and_destroy() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--spare-dynos".into()],
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&["ps:scale", "web=2", "-a", "demo"]);
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    agent.wait_up("demo", "web.2", None, Duration::from_secs(10));
    let (spare1, _) = wait_spare(&agent, "demo", "web.1", None);
    let (spare2, inst2) = wait_spare(&agent, "demo", "web.2", None);
    let app_cgroup = format!("{}/demo", agent.cgroup_name());

    agent.ok(&["ps:scale", "web=1", "-a", "demo"]);
    wait_for("web.2's spare gone", Duration::from_secs(10), || {
        !alive(spare2) && roboku_tests::cgroups::children(&app_cgroup, "web.2@").is_empty()
    });
    assert!(
        !inst2.is_empty() && alive(spare1),
        "web.1's spare is not disturbed"
    );

    agent.ok(&["ps:stop", "web.1", "-a", "demo"]);
    wait_for(
        "web.1's spare gone with the stop",
        Duration::from_secs(10),
        || {
            !alive(spare1)
                && spares_of(&agent, "demo", "web.1").is_empty()
                && roboku_tests::cgroups::children(&app_cgroup, "web.1@").is_empty()
        },
    );

    agent.ok(&["ps:restart", "web.1", "-a", "demo"]);
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let (spare, _) = wait_spare(&agent, "demo", "web.1", None);
    agent.ok(&["apps:destroy", "demo", "--confirm", "demo"]);
    wait_for(
        "every spare and cgroup of demo gone",
        Duration::from_secs(10),
        || {
            !alive(spare)
                && roboku_tests::spares(agent.data_dir()).is_empty()
                && roboku_tests::cgroups::procs_in(&app_cgroup).is_empty()
                && roboku_tests::cgroups::children(&app_cgroup, "").is_empty()
        },
    );
}

/// robokud killed -9: its spares see their pipe close and exit by themselves, running nothing;
/// the dyno runs on, and the next robokud adopts it, leaves no cgroup of a dead spare behind
/// and makes a new spare.
#[test]
fn crash_spares_do_not_outlive_robokud_killed_9() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        extra: vec!["--spare-dynos".into()],
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    let dyno = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let (spare, instance) = wait_spare(&agent, "demo", "web.1", None);
    agent.kill9();
    wait_for("the spare exits on its own", Duration::from_secs(5), || {
        !alive(spare)
    });
    assert!(alive(dyno), "the dyno runs on without robokud");
    assert!(roboku_tests::spares(agent.data_dir()).is_empty());

    agent.respawn();
    assert_eq!(
        agent.wait_up("demo", "web.1", None, Duration::from_secs(10)),
        dyno,
        "the dyno is adopted"
    );
    let app_cgroup = format!("{}/demo", agent.cgroup_name());
    let dead = instance
        .strip_prefix("demo/")
        .expect("instance of demo")
        .to_string();
    wait_for(
        "the dead spare's cgroup removed",
        Duration::from_secs(10),
        || {
            roboku_tests::cgroups::children(&app_cgroup, "web.1@")
                .iter()
                .all(|d| !d.ends_with(&dead))
        },
    );
    let (next, _) = wait_spare(&agent, "demo", "web.1", None);
    assert_ne!(next, spare);
}

/// A dyno that keeps crashing still backs off with spares: only the first crash of a series
/// restarts at once; the next ones wait in the backoff state (visible in ps and the logs).
#[test]
fn crash_loop_with_spares_still_backs_off() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--spare-dynos".into()],
        ..AgentOpts::default()
    });
    // Runs long enough for its spare to be made (0.5 s), then crashes.
    let app = app_dir(&[("Procfile", "web: sleep 1.2; exit 3\n")]);
    agent.create_and_deploy("demo", app.path());
    let mut saw_backoff = false;
    wait_for("four crashes", Duration::from_secs(60), || {
        let d = agent.dyno("demo", "web.1").expect("web.1 listed");
        if d["state"] == "backoff" && d["next_retry_at"].as_u64().is_some() {
            saw_backoff = true;
        }
        d["restarts"].as_u64().is_some_and(|r| r >= 4)
    });
    assert!(saw_backoff, "never seen in backoff");
    let lines = system_lines(&agent, "demo", "web.1");
    let backoffs = lines
        .iter()
        .filter(|(_, l)| l.contains("restarting in"))
        .count();
    assert!(
        backoffs >= 2,
        "consecutive crashes must back off with spares too: {lines:#?}"
    );
    let d = agent.dyno("demo", "web.1").expect("web.1 listed");
    assert_eq!(d["last_exit"]["code"], 3, "{d}");
}

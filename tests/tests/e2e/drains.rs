//! Log drains against a real syslog receiver (Debian's rsyslogd, started by the test): every
//! line of a chatty dyno arrives in order; with the receiver down the lines wait in the log
//! store and arrive after it is back, while the dyno goes on writing at its own rate.

use roboku_tests::syslog::Rsyslog;
use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::time::Duration;

const CHATTY: &str =
    "web: i=0; while true; do i=$((i+1)); echo \"drain line $i\"; sleep 0.01; done\n";

/// The line numbers rsyslog got, in arrival order, first arrival of each (at-least-once: a
/// line may come twice after a broken connection).
fn received(r: &Rsyslog) -> Vec<u64> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for m in r.messages() {
        if let Some(n) = m
            .split("drain line ")
            .nth(1)
            .and_then(|n| n.trim().parse::<u64>().ok())
        {
            assert!(
                m.starts_with("<190>1 ") && m.contains(" demo web.1 - - "),
                "not RFC 5424 as documented: {m:?}"
            );
            if seen.insert(n) {
                out.push(n);
            }
        }
    }
    out
}

/// The newest line number the dyno has written (from the stored logs).
fn newest_written(agent: &Agent) -> u64 {
    agent
        .log_lines(&["-a", "demo", "-d", "web.1", "--source", "app", "-n", "1"])
        .iter()
        .filter_map(|l| {
            l["line"]
                .as_str()?
                .strip_prefix("drain line ")?
                .parse()
                .ok()
        })
        .next_back()
        .unwrap_or(0)
}

fn assert_in_order_without_gaps(got: &[u64]) {
    assert!(!got.is_empty());
    for w in got.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap or a reordering after line {}", w[0]);
    }
}

fn drain(agent: &Agent) -> Value {
    let list = agent.json(&["drains", "-a", "demo"]);
    list[0].clone()
}

#[test]
fn syslog_drain_gets_every_line_in_order_and_holds_them_while_the_receiver_is_down() {
    let mut rsyslog = Rsyslog::start();
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("demo", app_dir(&[("Procfile", CHATTY)]).path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(20));
    let url = format!("syslog+tcp://127.0.0.1:{}", rsyslog.port);
    let added = agent.ok(&["drains:add", &url, "-a", "demo"]);
    assert!(added.contains("Added drain d-"), "{added}");

    // Lines flow, in order, none missing.
    wait_for("300 lines at rsyslog", Duration::from_secs(30), || {
        received(&rsyslog).len() >= 300
    });
    assert_in_order_without_gaps(&received(&rsyslog));
    wait_for(
        "the drain to count lines as sent",
        Duration::from_secs(10),
        || drain(&agent)["counters"]["sent"].as_u64() >= Some(300),
    );

    // The receiver goes down for a while: the dyno keeps writing at its rate.
    rsyslog.stop();
    let down_at = newest_written(&agent);
    let before = received(&rsyslog).last().copied().unwrap_or(0);
    let started = std::time::Instant::now();
    wait_for(
        "the dyno to write 300 more lines",
        Duration::from_secs(20),
        || newest_written(&agent) >= down_at + 300,
    );
    let rate = 300.0 / started.elapsed().as_secs_f64();
    assert!(rate > 20.0, "the dyno slowed down to {rate:.0} lines/s");
    wait_for(
        "the drain to report the outage",
        Duration::from_secs(10),
        || {
            let d = drain(&agent);
            d["counters"]["last_error"].is_string() && d["counters"]["pending"].as_u64() > Some(0)
        },
    );
    let d = drain(&agent);
    let err = d["counters"]["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("127.0.0.1") || err.contains("closed"), "{err}");
    let text = agent.ok(&["drains", "-a", "demo"]);
    assert!(text.contains("pending") && text.contains(&url), "{text}");

    // Back: everything held is delivered, in order, from where it stopped.
    let last_while_down = newest_written(&agent);
    rsyslog.resume();
    wait_for("the held lines at rsyslog", Duration::from_secs(60), || {
        received(&rsyslog).last().copied() >= Some(last_while_down)
    });
    let got = received(&rsyslog);
    assert_in_order_without_gaps(&got);
    assert!(got.contains(&before) && got.contains(&(before + 1)));
    let d = drain(&agent);
    assert_eq!(d["counters"]["dropped"], 0, "{d}");
}

#[test]
fn bad_drain_urls_are_refused_and_drains_are_per_app() {
    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "demo"]);
    agent.ok(&["apps:create", "other"]);
    for (url, says) in [
        ("http://u:secret@logs.example/x", "use https://"),
        ("syslog://logs.example", "need a port"),
        ("ftp://logs.example:21", "unknown scheme"),
        ("mqtt://broker:1883", "not supported yet"),
    ] {
        let out = agent.roboku(&["drains:add", url, "-a", "demo"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url} was accepted");
        assert!(err.contains(says), "{url}: {err}");
        assert!(!err.contains("secret"), "a password was echoed: {err}");
    }
    let url = "https://user:secret@127.0.0.1:9/drain";
    agent.ok(&["drains:add", url, "-a", "demo"]);
    let again = agent.roboku(&["drains:add", url, "-a", "demo"]);
    assert!(!again.status.success());
    let list = agent.json(&["drains", "-a", "demo"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["url"], "https://user:***@127.0.0.1:9/drain");
    let id = list[0]["id"].as_str().unwrap().to_string();
    // Another app neither sees nor removes it.
    assert_eq!(
        agent.json(&["drains", "-a", "other"]),
        serde_json::json!([])
    );
    let out = agent.roboku(&["drains:remove", &id, "-a", "other"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no drain"));
    // Its state file is root's only.
    use std::os::unix::fs::PermissionsExt;
    let dir = agent.data_dir().join("drains");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    agent.ok(&["drains:remove", &id, "-a", "demo"]);
    assert_eq!(agent.json(&["drains", "-a", "demo"]), serde_json::json!([]));
}

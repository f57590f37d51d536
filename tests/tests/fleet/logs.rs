//! `roboku fleet logs` end to end: a robot's stored lines pulled over a real Mosquitto with a
//! signed `logs` command, filtered by --grep, --since and --tail, capped by --max-bytes, and
//! refused (with no lines anywhere) when unsigned, signed by another key, or expired.

use super::kit::{artifact_with, fleet, keygen, serve_dir, wait_for, Agent, Broker, Probe};
use super::now_ms;
use roboku_wire::fleet::seal;
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, AckStatus, Action, Envelope, LogsChunk, LogsQuery};
use roboku_wire::LogLine;

/// Each start of a web dyno prints 300 numbered lines, every tenth an ERROR, tagged with its
/// release, then sleeps.
const PROCFILE: &str = "web: i=0; while [ $i -lt 300 ]; do i=$((i+1)); if [ $((i % 10)) -eq 0 ]; then echo \"run=${ROBOKU_RELEASE#v} n=$i ERROR disk full\"; else echo \"run=${ROBOKU_RELEASE#v} n=$i ok\"; fi; done; exec sleep 100000\n";

/// The app's ERROR lines.
const ERRORS: &str = "^run=.* ERROR";

struct Robot {
    dir: tempfile::TempDir,
    broker: Broker,
    /// Runs until the test ends.
    _agent: Agent,
    key: String,
}

impl Robot {
    /// Starts a broker and robot r1 trusting the site key, and deploys the app `nav` to it.
    fn start() -> Robot {
        Robot::start_with(&[])
    }

    /// [`Robot::start`] with more robokud flags.
    fn start_with(extra: &[&str]) -> Robot {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, public) = keygen(dir.path(), "fleet.key");
        let slug = artifact_with(dir.path(), "nav.tar.gz", "one", PROCFILE, &[]);
        let url = serve_dir(dir.path());
        let broker = Broker::start();
        let agent = Agent::start_with(&broker, "r1", &[], &public, extra);
        let key = key.display().to_string();
        let (rc, out) = fleet(
            &broker,
            &[
                "deploy",
                "--device",
                "r1",
                "-a",
                "nav",
                "--key",
                &key,
                "--artifact-url",
                &format!("{url}/nav.tar.gz"),
                "--slug",
                &slug.display().to_string(),
                "--wait",
                "60",
            ],
        );
        assert_eq!(rc, 0, "{out}");
        agent.wait_up("nav", 1, 30);
        Robot {
            dir,
            broker,
            _agent: agent,
            key,
        }
    }

    /// `fleet logs --device r1 -a nav --key K --json ARGS`: exit code, lines, everything printed.
    fn logs(&self, args: &[&str]) -> (i32, Vec<LogLine>, String) {
        let mut all = vec![
            "logs", "--device", "r1", "-a", "nav", "--key", &self.key, "--json",
        ];
        all.extend(args);
        let (rc, out) = fleet(&self.broker, &all);
        let lines = out
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("a log line"))
            .collect();
        (rc, lines, out)
    }

    /// Waits until the robot has stored line 300 of the given run.
    fn wait_stored(&self, run: u32) {
        let want = format!("run={run} n=300 ERROR");
        wait_for(30, &format!("run {run} stored"), || {
            let (rc, lines, _) = self.logs(&["--grep", &want]);
            (rc == 0 && lines.len() == 1).then_some(())
        });
    }
}

fn texts(lines: &[LogLine]) -> Vec<String> {
    lines.iter().map(|l| l.line.clone()).collect()
}

fn errors(run: u32, from: u32) -> Vec<String> {
    (from..=300)
        .filter(|i| i % 10 == 0)
        .map(|i| format!("run={run} n={i} ERROR disk full"))
        .collect()
}

#[test]
fn fleet_logs_returns_exactly_the_matching_lines_and_respects_since_tail_and_the_cap() {
    let r = Robot::start();
    r.wait_stored(1);

    // --grep: exactly the 30 ERROR lines, in order, from the web dyno. (A plain `ERROR` would
    // also match roboku's own "Starting process with command ..." line, which quotes it.)
    let (rc, lines, out) = r.logs(&["--grep", ERRORS]);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(texts(&lines), errors(1, 1), "{out}");
    assert!(lines.iter().all(|l| l.dyno == "web.1" && l.app == "nav"));
    // --tail: the last 5 of them.
    let (rc, lines, out) = r.logs(&["--grep", ERRORS, "--tail", "5"]);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(texts(&lines), errors(1, 260), "{out}");
    // The human format is `roboku logs`'s.
    let (rc, out) = fleet(
        &r.broker,
        &[
            "logs", "--device", "r1", "-a", "nav", "--key", &r.key, "--grep", "n=300 ", "--tail",
            "1",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.trim_end()
            .ends_with("app[web.1]: run=1 n=300 ERROR disk full"),
        "{out}"
    );

    // --since: a config change restarts the dyno (release 2); only the second run is recent.
    let mark = now_ms();
    let (rc, out) = fleet(
        &r.broker,
        &[
            "config",
            "--device",
            "r1",
            "-a",
            "nav",
            "--key",
            &r.key,
            "COLOR=red",
            "--wait",
            "60",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    r.wait_stored(2);
    let since = format!("{}ms", now_ms() - mark);
    let (rc, lines, out) = r.logs(&["--since", &since, "--grep", ERRORS]);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(texts(&lines), errors(2, 1), "{out}");
    let (_, lines, _) = r.logs(&["--grep", ERRORS, "--tail", "100"]);
    assert_eq!(texts(&lines), [errors(1, 1), errors(2, 1)].concat());

    // --max-bytes: the newest lines that fit, and the CLI says some were left out.
    let (rc, all, out) = r.logs(&["--grep", "^run=2 n=\\d+ ok$", "--tail", "1000"]);
    assert_eq!((rc, all.len()), (0, 270), "{out}");
    let (rc, capped, out) = r.logs(&[
        "--grep",
        "^run=2 n=\\d+ ok$",
        "--tail",
        "1000",
        "--max-bytes",
        "2K",
    ]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("TRUNCATED"), "{out}");
    assert!(
        !capped.is_empty() && capped.len() < all.len(),
        "{} lines",
        capped.len()
    );
    assert_eq!(capped[..], all[all.len() - capped.len()..], "a suffix");
    let size = |l: &LogLine| serde_json::to_vec(l).unwrap().len() + 1;
    let used: usize = capped.iter().map(size).sum();
    assert!(used <= 2048, "{used} bytes");
    assert!(
        used + size(&all[all.len() - capped.len() - 1]) > 2048,
        "one more line would fit"
    );
    // Bigger than one MQTT message: several chunks, put together in order.
    let (rc, lines, out) = r.logs(&["--tail", "10000", "--max-bytes", "1M", "--grep", "^run="]);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(lines.len(), 600, "{out}");
    let bytes: usize = lines.iter().map(size).sum();
    assert!(bytes > 48 * 1024, "only {bytes} bytes: one chunk");
    let ns: Vec<String> = lines
        .iter()
        .map(|l| l.line.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let want: Vec<String> = (1..=2)
        .flat_map(|run| (1..=300).map(move |n| format!("run={run} n={n}")))
        .collect();
    assert_eq!(ns, want);
    // A bad pattern is refused by the robot, naming it.
    let (rc, lines, out) = r.logs(&["--grep", "(unclosed"]);
    assert_eq!(rc, 1, "{out}");
    assert!(lines.is_empty());
    assert!(
        out.contains("REJECTED") && out.contains("grep pattern \"(unclosed\""),
        "{out}"
    );
}

#[test]
fn fleet_logs_is_refused_unsigned_foreign_or_expired_and_leaks_no_line() {
    let r = Robot::start();
    r.wait_stored(1);
    // Unsigned, and signed by a key the robot does not trust: REJECTED, no lines.
    let (rc, out) = fleet(
        &r.broker,
        &[
            "logs",
            "--device",
            "r1",
            "-a",
            "nav",
            "--unsigned",
            "--grep",
            "ERROR",
        ],
    );
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("REJECTED: unsigned payload refused"), "{out}");
    assert!(!out.contains("disk full"), "{out}");
    let (other, _) = keygen(r.dir.path(), "other.key");
    let (rc, out) = fleet(
        &r.broker,
        &[
            "logs",
            "--device",
            "r1",
            "-a",
            "nav",
            "--key",
            &other.display().to_string(),
            "--grep",
            "ERROR",
        ],
    );
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("REJECTED: signed with unknown key"), "{out}");
    assert!(!out.contains("disk full"), "{out}");

    // Raw requests: expired, aimed at another robot, replayed. Each is refused, and the only
    // answer on the logs topic is the one to the good request sent after them.
    let key = seal::parse_secret(&std::fs::read_to_string(&r.key).unwrap()).unwrap();
    let query = Action::Logs(LogsQuery {
        grep: Some(ERRORS.into()),
        ..LogsQuery::default()
    });
    let env =
        |id: &str, to: &str| Envelope::new(id.into(), now_ms(), 60_000, to.into(), "nav", &query);
    let sign = |e: &Envelope| seal::seal(&serde_json::to_vec(e).unwrap(), &key);
    let mut probe = Probe::connect(&r.broker, &[topic::ack("r1"), topic::logs("r1")]);
    let cmd = Address::Device("r1".into()).cmd();
    let mut expired = env("old", "d/r1");
    expired.ts -= 3_600_000;
    expired.expires = expired.ts + 60_000;
    let good = sign(&env("good", "d/r1"));
    let cases = [
        (sign(&expired), "expired"),
        (sign(&env("aim", "d/r2")), "signed for \"d/r2\""),
    ];
    for (payload, reason) in cases {
        let rf = payload_ref(&payload);
        probe.publish(&cmd, false, payload);
        let ack = probe.final_ack("r1", &rf);
        assert_eq!(ack.status, AckStatus::Rejected, "{ack:?}");
        let why = ack.details.reason.unwrap_or_default();
        assert!(why.contains(reason), "{why}");
        assert!(!why.contains("disk full"), "{why}");
    }
    probe.publish(&cmd, false, good.clone());
    assert_eq!(
        probe.final_ack("r1", &payload_ref(&good)).status,
        AckStatus::Succeeded
    );
    // The same request again is a replay: refused, no second answer.
    probe.publish(&cmd, false, good.clone());
    let replay = probe.wait_msg(30, "the replay's REJECTED ack", |t, p| {
        let a: roboku_wire::fleet::Ack = serde_json::from_slice(p).ok()?;
        (t == topic::ack("r1")
            && a.status == AckStatus::Rejected
            && a.id.as_deref() == Some("good"))
        .then_some(a)
    });
    assert!(replay.details.reason.unwrap().contains("duplicate"));
    let chunks: Vec<LogsChunk> = probe
        .seen
        .iter()
        .filter(|(t, _)| *t == topic::logs("r1"))
        .map(|(_, p)| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(
        chunks.len(),
        1,
        "one answer, to the good request: {chunks:?}"
    );
    assert_eq!(chunks[0].id, "good");
    assert_eq!(texts(&chunks[0].lines), errors(1, 1));
}

#[test]
fn fleet_logs_replies_stop_at_their_byte_budget_and_commands_still_run() {
    let r = Robot::start_with(&["--budget", "logs=16K/day"]);
    r.wait_stored(1);
    // 30 lines (about 3 kB) fit in the budget.
    let (rc, lines, out) = r.logs(&["--grep", ERRORS]);
    assert_eq!(rc, 0, "{out}");
    assert_eq!(texts(&lines), errors(1, 1), "{out}");
    // All 300 (about 26 kB) would cross it: refused whole, nothing sent, the reason given.
    let (rc, lines, out) = r.logs(&["--grep", "^run=", "--tail", "1000"]);
    assert_eq!(rc, 1, "{out}");
    assert!(lines.is_empty(), "{out}");
    assert!(
        out.contains("over budget") && out.contains("16KB/day"),
        "{out}"
    );
    // A command still runs and is acked.
    let (rc, out) = fleet(
        &r.broker,
        &[
            "config",
            "--device",
            "r1",
            "-a",
            "nav",
            "--key",
            &r.key,
            "COLOR=red",
            "--wait",
            "60",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    // The robot's own count never passed the budget.
    let v = r._agent.roboku_json(&["usage"]).expect("roboku usage");
    let logs = v["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "logs"))
        .cloned()
        .expect("logs channel");
    let today = logs["today"].as_u64().unwrap_or(0);
    assert!(today > 2000 && today <= 16 << 10, "{logs}");
    assert_eq!(logs["flow"], "paused", "{logs}");
}

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
            .and_then(|n| n.split_whitespace().next()?.parse::<u64>().ok())
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
        ("mqtt://broker:1883", "need a topic"),
        ("mqtt://broker/robots/#", "wildcards"),
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

#[test]
fn a_receiver_that_never_reads_slows_neither_the_dyno_nor_the_other_drains() {
    // Accepts, then never reads: the drain's writes fill the socket buffers and stall.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in hung.incoming().flatten() {
            if held_tx.send(s).is_err() {
                break;
            }
        }
    });
    let rsyslog = Rsyslog::start();
    let agent = Agent::start(AgentOpts::default());
    // About 100 KiB/s of output, so the stalled connection's buffers fill within the test.
    let fat = "web: pad=$(head -c 1000 /dev/zero | tr '\\0' x); i=0; \
               while true; do i=$((i+1)); echo \"drain line $i $pad\"; sleep 0.01; done\n";
    agent.create_and_deploy("demo", app_dir(&[("Procfile", fat)]).path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(20));
    agent.ok(&[
        "drains:add",
        &format!("syslog://127.0.0.1:{hung_port}"),
        "-a",
        "demo",
    ]);
    let _held = held_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the drain connected to the hung receiver");
    agent.ok(&[
        "drains:add",
        &format!("syslog+tcp://127.0.0.1:{}", rsyslog.port),
        "-a",
        "demo",
    ]);
    wait_for(
        "lines through the other drain",
        Duration::from_secs(20),
        || !received(&rsyslog).is_empty(),
    );
    let from = received(&rsyslog)[0];
    let started = std::time::Instant::now();
    wait_for(
        "500 lines through the other drain",
        Duration::from_secs(40),
        || received(&rsyslog).len() >= 500,
    );
    let got = received(&rsyslog);
    assert_in_order_without_gaps(&got);
    // What the other drain delivered is a lower bound of what the dyno wrote.
    let rate = (got[got.len() - 1] - from) as f64 / started.elapsed().as_secs_f64();
    assert!(rate > 20.0, "the dyno slowed down to {rate:.0} lines/s");
    let t = std::time::Instant::now();
    agent.ok(&["ps", "-a", "demo"]);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the engine took {:?}",
        t.elapsed()
    );
}

/// A self-signed CA and a server certificate for 127.0.0.1, made with the `openssl` CLI.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=roboku test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
}

/// A small HTTPS receiver (Python's http.server behind ssl) appending each POST's headers and
/// body as a JSON line to `posts.jsonl`.
const HTTPS_RECEIVER: &str = r#"
import http.server, json, ssl, sys
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(d + "/posts.jsonl", "a") as f:
            f.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": body.decode()}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/srv.pem", d + "/srv.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(d + "/port.tmp", "w").write(str(srv.server_address[1]))
import os; os.rename(d + "/port.tmp", d + "/port")
srv.serve_forever()
"#;

/// Octet-counted frames (`LEN SP MSG`) of a logplex body.
fn frames(mut body: &str) -> Vec<String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (len, rest) = body.split_once(' ').expect("LEN SP");
        let len: usize = len.parse().expect("octet count");
        out.push(rest[..len].to_string());
        body = &rest[len..];
    }
    out
}

#[test]
fn https_drain_gets_every_line_in_order_in_herokus_format() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    std::fs::write(dir.path().join("receiver.py"), HTTPS_RECEIVER).unwrap();
    let mut server = std::process::Command::new("python3")
        .arg(dir.path().join("receiver.py"))
        .arg(dir.path())
        .spawn()
        .expect("start the HTTPS receiver");
    let port_file = dir.path().join("port");
    wait_for("the HTTPS receiver", Duration::from_secs(10), || {
        port_file.exists()
    });
    let port = std::fs::read_to_string(&port_file).unwrap();
    let ca = dir.path().join("ca.pem");
    let agent = Agent::start(AgentOpts {
        extra: vec!["--drain-ca-file".into(), ca.display().to_string()],
        ..AgentOpts::default()
    });
    agent.create_and_deploy("demo", app_dir(&[("Procfile", CHATTY)]).path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(20));
    agent.ok(&[
        "drains:add",
        &format!("https://robot:s3cret@127.0.0.1:{port}/logs"),
        "-a",
        "demo",
    ]);
    let token = drain(&agent)["token"].as_str().unwrap().to_string();
    let posts = || -> Vec<Value> {
        std::fs::read_to_string(dir.path().join("posts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let numbers = |posts: &[Value]| -> Vec<u64> {
        let mut seen = std::collections::BTreeSet::new();
        posts
            .iter()
            .flat_map(|p| frames(p["body"].as_str().unwrap_or_default()))
            .filter_map(|m| {
                m.split("drain line ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .filter(|n| seen.insert(*n))
            .collect()
    };
    wait_for("300 lines posted", Duration::from_secs(30), || {
        numbers(&posts()).len() >= 300
    });
    let all = posts();
    for p in &all {
        // Header names as sent (hyper writes them in lower case; HTTP does not mind).
        let h = &p["headers"];
        let n = frames(p["body"].as_str().unwrap()).len();
        assert_eq!(p["path"], "/logs");
        assert_eq!(h["content-type"], "application/logplex-1", "{h}");
        assert_eq!(h["logplex-msg-count"], n.to_string(), "{h}");
        assert_eq!(h["logplex-drain-token"], token.as_str(), "{h}");
        assert!(
            h["logplex-frame-id"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{h}"
        );
        // robot:s3cret
        assert_eq!(h["authorization"], "Basic cm9ib3Q6czNjcmV0", "{h}");
        for m in frames(p["body"].as_str().unwrap()) {
            assert!(m.starts_with("<190>1 ") || m.starts_with("<189>1 "), "{m}");
        }
    }
    assert_in_order_without_gaps(&numbers(&all));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_drains_budget_pauses_delivery_and_the_lines_wait_in_the_log_store() {
    let rsyslog = Rsyslog::start();
    let agent = Agent::start(AgentOpts {
        extra: vec!["--budget".into(), "drains=8K/day".into()],
        ..AgentOpts::default()
    });
    agent.create_and_deploy("demo", app_dir(&[("Procfile", CHATTY)]).path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(20));
    let url = format!("syslog+tcp://127.0.0.1:{}", rsyslog.port);
    agent.ok(&["drains:add", &url, "-a", "demo"]);
    let drains = |agent: &Agent| {
        let v = agent.json(&["usage"]);
        v["channels"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "drains"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    // Lines flow, slow down past 80 %, and stop once the day's 8 KiB are spent.
    wait_for(
        "the drains budget to pause delivery",
        Duration::from_secs(60),
        || drains(&agent)["flow"] == "paused",
    );
    let counted = drains(&agent)["today"].as_u64().unwrap_or(0);
    // Checked before each batch: crossed by at most one (a second of lines when slowed).
    assert!(
        counted > 8 << 10 && counted < 24 << 10,
        "{}",
        drains(&agent)
    );
    // Nothing more goes out while paused; the dyno goes on and its lines wait in the store.
    let more = |n: u64| {
        let written = newest_written(&agent);
        wait_for(
            "the dyno to write more lines",
            Duration::from_secs(20),
            || newest_written(&agent) >= written + n,
        );
    };
    // (What was sent before the pause has reached rsyslog's file by then.)
    more(100);
    let got = received(&rsyslog);
    assert!(!got.is_empty());
    assert_in_order_without_gaps(&got);
    more(100);
    assert_eq!(
        received(&rsyslog).len(),
        got.len(),
        "lines sent while paused"
    );
    assert_eq!(drains(&agent)["today"].as_u64(), Some(counted));
    wait_for(
        "the drain to count the waiting lines",
        Duration::from_secs(10),
        || drain(&agent)["counters"]["pending"].as_u64() > Some(50),
    );
}

/// A Mosquitto of this test's own, with a login and persistent sessions (so a subscriber that
/// is away gets what was published meanwhile, as a log consumer on a real broker would).
struct Mosquitto {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let pw = dir.path().join("passwd");
        let made = std::process::Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&pw)
            .args(["logger", "s3cret"])
            .status()
            .expect("mosquitto_passwd (package mosquitto)");
        assert!(made.success());
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
                 persistence true\npersistence_location {}/\nmax_queued_messages 0\n\
                 log_dest stderr\n",
                pw.display(),
                dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let mut m = Mosquitto {
            port,
            dir,
            child: None,
        };
        m.resume();
        m
    }

    fn resume(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("log"))
            .expect("log");
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let port = self.port;
        wait_for("mosquitto to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGTERM: mosquitto writes its sessions to disk and exits.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// `mosquitto_sub` on the logs topic with the persistent session `sub1`, QoS 1; with
    /// `-E` it only makes the session and exits.
    fn sub(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("mosquitto_sub");
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-u", "logger", "-P", "s3cret", "-i", "sub1", "-c", "-q", "1",
            ])
            .args(["-t", "robots/r1/logs"])
            .args(args);
        c
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A subscriber writing what it gets into a file, until dropped.
struct Collector(std::process::Child, std::path::PathBuf);

impl Collector {
    fn start(m: &Mosquitto, file: &std::path::Path) -> Collector {
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(file)
            .expect("collector file");
        let child = m.sub(&[]).stdout(out).spawn().expect("mosquitto_sub");
        Collector(child, file.to_path_buf())
    }

    /// Line numbers in arrival order, first arrival of each; every message checked to be the
    /// documented JSON of a line of demo's web.1.
    fn received(&self) -> Vec<u64> {
        let text = std::fs::read_to_string(&self.1).unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for m in text.lines().filter(|l| l.ends_with('}')) {
            let v: Value = serde_json::from_str(m).unwrap_or_else(|e| panic!("{m:?}: {e}"));
            assert_eq!(
                (&v["app"], &v["dyno"]),
                (&"demo".into(), &"web.1".into()),
                "{v}"
            );
            assert!(v["ts"].as_u64().is_some(), "{v}");
            let n = v["line"]
                .as_str()
                .and_then(|l| l.strip_prefix("drain line "))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = n.filter(|n| seen.insert(*n)) {
                out.push(n);
            }
        }
        out
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An MQTT drain to a real Mosquitto with a login: every line arrives as a QoS 1 message, in
/// order; with the broker down the lines wait in the log store and are published once it is
/// back; the password never shows in `drains`.
#[test]
fn mqtt_drain_publishes_every_line_in_order_and_holds_them_while_the_broker_is_down() {
    let mut broker = Mosquitto::start();
    let made = broker.sub(&["-E"]).status().expect("mosquitto_sub -E");
    assert!(made.success(), "the subscriber's session is made");
    let agent = Agent::start(AgentOpts::default());
    let chatty = "web: i=0; while true; do i=$((i+1)); echo \"drain line $i\"; sleep 0.02; done\n";
    agent.create_and_deploy("demo", app_dir(&[("Procfile", chatty)]).path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(20));
    let url = format!(
        "mqtt://logger:s3cret@127.0.0.1:{}/robots/r1/logs",
        broker.port
    );
    let added = agent.ok(&["drains:add", &url, "-a", "demo"]);
    assert!(added.contains("Added drain d-"), "{added}");
    let listed = agent.ok(&["drains", "-a", "demo"]);
    assert!(
        !listed.contains("s3cret") && listed.contains("logger:***@"),
        "{listed}"
    );

    let file = broker.dir.path().join("received");
    let collector = Collector::start(&broker, &file);
    wait_for("100 lines on the topic", Duration::from_secs(30), || {
        collector.received().len() >= 100
    });
    assert_in_order_without_gaps(&collector.received());
    drop(collector);

    // The broker goes away; the dyno writes on, the drain reports the outage.
    broker.stop();
    let down_at = newest_written(&agent);
    wait_for("100 more lines written", Duration::from_secs(20), || {
        newest_written(&agent) >= down_at + 100
    });
    wait_for(
        "the drain to report the outage",
        Duration::from_secs(20),
        || {
            let d = drain(&agent);
            d["counters"]["last_error"].is_string() && d["counters"]["pending"].as_u64() > Some(0)
        },
    );

    // Back: the held lines are published (the broker keeps them for the away subscriber).
    let last_while_down = newest_written(&agent);
    broker.resume();
    let collector = Collector::start(&broker, &file);
    wait_for(
        "the held lines on the topic",
        Duration::from_secs(60),
        || collector.received().last().copied() >= Some(last_while_down),
    );
    assert_in_order_without_gaps(&collector.received());
    let d = drain(&agent);
    assert_eq!(d["counters"]["dropped"], 0, "{d}");
}

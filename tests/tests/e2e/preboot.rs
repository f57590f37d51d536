//! Zero-downtime deploys: a client hitting the app's router every 10 ms across many deploys
//! never sees a failed request, and a release that never gets healthy never serves one.

use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SERVER: &str = r#"import http.server, os
code = open("version.txt").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (code + "\n").encode()
        self.send_response(500 if self.path == "/health" and code == "sick" else 200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

const CHECK: &str =
    r#"{"healthchecks":{"web":[{"path":"/health","attempts":30,"wait":0.1,"timeout":2}]}}"#;

fn web_app(code: &str) -> tempfile::TempDir {
    app_dir(&[
        ("Procfile", "web: exec python3 server.py\n"),
        ("server.py", SERVER),
        ("version.txt", code),
        ("app.json", CHECK),
    ])
}

/// What a client polling the router saw: answers in order, and failures with why.
#[derive(Default)]
struct Seen {
    answers: Vec<String>,
    failures: Vec<String>,
}

/// Polls `GET /` on `port` every 10 ms (a fresh connection each time) until stopped.
struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(port: u16) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s, out) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let result = http::get(port, "/");
                let mut seen = out.lock().expect("poller lock");
                match result {
                    Ok(r) if r.status == 200 => {
                        let body = r.body.trim().to_string();
                        if seen.answers.last() != Some(&body) {
                            seen.answers.push(body);
                        }
                    }
                    Ok(r) => seen.failures.push(format!("HTTP {}: {}", r.status, r.body)),
                    Err(e) => seen
                        .failures
                        .push(format!("at {}: {e}", roboku_tests::now_ms())),
                }
                drop(seen);
                std::thread::sleep(Duration::from_millis(10)); // the client's pace, not a wait
            }
        });
        Poller {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn last(&self) -> Option<String> {
        self.seen.lock().expect("lock").answers.last().cloned()
    }

    fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("poller thread");
        }
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}

fn router_port(agent: &Agent, app: &str) -> u16 {
    let info = agent.json(&["apps:info", "-a", app]);
    info["router_port"]
        .as_u64()
        .unwrap_or_else(|| panic!("no router port: {info}")) as u16
}

#[test]
fn twenty_deploys_under_a_10ms_client_fail_no_request() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("shop", web_app("v1").path());
    let port = router_port(&agent, "shop");
    wait_for(
        "v1 answers through the router",
        Duration::from_secs(10),
        || http::get(port, "/").is_ok_and(|r| r.body.trim() == "v1"),
    );
    let poller = Poller::start(port);
    let deploys = 20;
    for n in 2..=deploys + 1 {
        let code = format!("v{n}");
        let release = agent.deploy("shop", web_app(&code).path());
        assert_eq!(release["status"], "succeeded", "{release}");
        wait_for(&format!("{code} answers"), Duration::from_secs(10), || {
            poller.last().as_deref() == Some(code.as_str())
        });
    }
    let seen = poller.finish();
    if !seen.failures.is_empty() {
        eprintln!("{}", agent.ok(&["logs", "-a", "shop", "-n", "2000"]));
    }
    let expected: Vec<String> = (1..=deploys + 1).map(|n| format!("v{n}")).collect();
    assert_eq!(seen.failures, Vec::<String>::new(), "failed requests");
    assert_eq!(seen.answers, expected, "each release served, in order");
    // The replaced dynos are gone: one web process, on the last release.
    wait_for("one web dyno left", Duration::from_secs(10), || {
        let ps = agent.ps("shop");
        ps.len() == 1 && ps[0]["release"] == deploys + 1 && ps[0]["state"] == "up"
    });
}

#[test]
fn an_unhealthy_release_never_gets_a_request_and_the_old_one_never_stops() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("nav", web_app("one").path());
    let port = router_port(&agent, "nav");
    wait_for(
        "v1 answers through the router",
        Duration::from_secs(10),
        || http::get(port, "/").is_ok_and(|r| r.body.trim() == "one"),
    );
    let pid = agent.up_pid("nav", "web.1").expect("web.1 up");
    let poller = Poller::start(port);

    let sick = web_app("sick");
    let out = agent.roboku(&["deploy", sick.path().to_str().expect("utf-8"), "-a", "nav"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("release v2 failed") && err.contains("HTTP 500"),
        "{err}"
    );

    // Then a good one, to see the switch still works after a failed preboot.
    let release = agent.deploy("nav", web_app("three").path());
    assert_eq!(release["status"], "succeeded", "{release}");
    wait_for("v3 answers", Duration::from_secs(10), || {
        poller.last().as_deref() == Some("three")
    });
    let seen = poller.finish();
    assert_eq!(seen.failures, Vec::<String>::new(), "failed requests");
    assert_eq!(seen.answers, ["one", "three"], "v2 never answered a client");

    let releases = agent.json(&["releases", "-a", "nav"]);
    let v2 = releases
        .as_array()
        .and_then(|l| l.iter().find(|r| r["version"] == 2).cloned())
        .expect("v2 listed");
    assert_eq!(v2["status"], "failed", "{v2}");
    assert_ne!(
        agent.up_pid("nav", "web.1"),
        Some(pid),
        "v1's process was replaced only by v3"
    );
}

#[test]
fn stop_then_start_is_kept_for_types_that_ask_and_the_router_waits_instead_of_refusing() {
    let agent = Agent::start(AgentOpts::default());
    let json = r#"{"roboku":{"switch":{"web":"stop-then-start"}},
        "healthchecks":{"web":[{"path":"/health","attempts":30,"wait":0.1,"timeout":2}]}}"#;
    let app = |code: &str| {
        app_dir(&[
            ("Procfile", "web: exec python3 server.py\n"),
            ("server.py", SERVER),
            ("version.txt", code),
            ("app.json", json),
        ])
    };
    agent.create_and_deploy("drv", app("one").path());
    let port = router_port(&agent, "drv");
    wait_for(
        "v1 answers through the router",
        Duration::from_secs(10),
        || http::get(port, "/").is_ok_and(|r| r.body.trim() == "one"),
    );
    let before = agent.dyno("drv", "web.1").expect("web.1")["port"].clone();
    let poller = Poller::start(port);
    agent.deploy("drv", app("two").path());
    wait_for("v2 answers", Duration::from_secs(10), || {
        poller.last().as_deref() == Some("two")
    });
    let seen = poller.finish();
    // Stopped first, so it keeps its one port; clients waited in the router meanwhile instead
    // of being refused (only a request in flight at the SIGTERM can be cut).
    assert_eq!(agent.dyno("drv", "web.1").expect("web.1")["port"], before);
    assert!(seen.failures.len() <= 1, "{:?}", seen.failures);
    assert_eq!(seen.answers, ["one", "two"]);
}

//! The dashboard's HTTP door against a real robokud and a real app: the page and its assets,
//! `/healthz`, `/metrics` (checked by `promtool`, its values equal `roboku ps --json`), and the
//! guard: 401 without the token for changes, logs and config; 403 for a forged Host or Origin;
//! a rollback with the token makes a release whose door is `dashboard`.

use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

pub const TICKER: &str = r#"import http.server, os, threading, time
def tick():
    n = 0
    while True:
        n += 1
        print("tick", n, os.environ["DYNO"], flush=True)
        x = 0
        for i in range(20000):
            x += i
        time.sleep(0.3)
threading.Thread(target=tick, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

pub fn ticker_app(version: &str) -> tempfile::TempDir {
    app_dir(&[
        ("Procfile", "web: exec python3 -u server.py\n"),
        ("server.py", TICKER),
        ("version.txt", version),
    ])
}

/// The dashboard's URL and token, from `roboku dashboard:url` (URL `http://ADDR/#token=T`).
pub fn dashboard(agent: &Agent) -> (SocketAddr, String, String) {
    let url = agent.ok(&["dashboard:url"]).trim().to_string();
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, token) = rest.split_once("/#token=").expect("URL with #token=");
    (
        addr.parse().expect("ADDR:PORT"),
        token.to_string(),
        url.clone(),
    )
}

/// `name{labels} value` lines of a metrics text, by `name{labels}`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `/metrics` says what `ps` says for every dyno of `demo`.
fn metrics_match_ps(m: &BTreeMap<String, f64>, ps: &[Value]) -> Result<(), String> {
    for d in ps {
        let name = d["name"].as_str().unwrap();
        let key = |metric: &str| format!("{metric}{{app=\"demo\",dyno=\"{name}\"}}");
        for (metric, field) in [
            ("roboku_dyno_cpu_percent", "cpu_percent"),
            ("roboku_dyno_memory_bytes", "memory_bytes"),
            ("roboku_dyno_pids", "pids"),
            ("roboku_dyno_restarts_total", "restarts"),
            ("roboku_dyno_oom_kills_total", "oom_kills"),
        ] {
            let want = d[field].as_f64();
            let got = m.get(&key(metric)).copied();
            if want != got {
                return Err(format!("{name} {metric}: metrics {got:?}, ps {want:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn dashboard_beyond_loopback_guards_changes_and_serves_metrics_equal_to_ps() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--dashboard".into(), "0.0.0.0:0".into()],
        ..AgentOpts::default()
    });
    agent.create_and_deploy("demo", ticker_app("one").path());
    agent.ok(&["ps:resize", "-a", "demo", "web", "--memory", "128M"]);
    agent.ok(&["config:set", "-a", "demo", "SECRET=hunter2"]);
    agent.wait_up("demo", "web.1", None, Duration::from_secs(20));
    let (local, token, _) = dashboard(&agent);
    // Reach it the way a laptop would: the robot's own non-loopback address.
    let ip = String::from_utf8(
        std::process::Command::new("hostname")
            .arg("-I")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .split_whitespace()
    .find(|a| {
        a.parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| !ip.is_loopback())
    })
    .expect("this host has a non-loopback IPv4 address (hostname -I)")
    .to_string();
    let addr: SocketAddr = format!("{ip}:{}", local.port()).parse().unwrap();
    let host = addr.to_string();
    let origin = format!("http://{host}");
    let bearer = format!("Bearer {token}");
    let req = |method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>| {
        http::tcp(addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"))
    };

    // The page, its assets, health: no token needed.
    let page = req("GET", "/", &[], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>roboku</title>") && page.body.contains("/uplot.js"));
    for asset in [
        "/app.js",
        "/style.css",
        "/uplot.js",
        "/uplot.css",
        "/licenses/uplot.txt",
    ] {
        assert_eq!(req("GET", asset, &[], None).status, 200, "{asset}");
    }
    assert_eq!(req("GET", "/healthz", &[], None).body, "ok\n");
    assert_eq!(
        req("GET", "/v1/apps/demo/ps", &[], None).status,
        200,
        "reads need no token"
    );

    // 401: changes, logs, config and the token route itself, without (or with a wrong) token.
    for (method, path, body) in [
        ("POST", "/v1/apps/demo/rollback", Some("{}")),
        (
            "POST",
            "/v1/apps/demo/scale",
            Some(r#"{"counts":{"web":2}}"#),
        ),
        ("GET", "/v1/apps/demo/logs?n=5", None),
        ("GET", "/v1/apps/demo/config", None),
        ("GET", "/v1/dashboard", None),
    ] {
        let r = req(method, path, &[("Origin", &origin)], body);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "unauthorized");
        let r = req(method, path, &[("Authorization", "Bearer 00")], body);
        assert_eq!(r.status, 401, "{method} {path} with a wrong token");
    }
    // 403: a forged Host (DNS rebinding) or Origin (CSRF), whatever the token.
    let r = req(
        "GET",
        "/",
        &[("Host", &format!("evil.example:{}", addr.port()))],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = req(
        "POST",
        "/v1/apps/demo/rollback",
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        Some("{}"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        agent
            .json(&["releases", "-a", "demo"])
            .as_array()
            .unwrap()
            .len(),
        2,
        "nothing changed"
    );

    // Config is masked unless asked for; logs come with the token.
    let c = req(
        "GET",
        "/v1/apps/demo/config",
        &[("Authorization", &bearer)],
        None,
    )
    .json();
    assert_eq!(c["SECRET"], "********");
    let c = req(
        "GET",
        "/v1/apps/demo/config?reveal=1",
        &[("Authorization", &bearer)],
        None,
    )
    .json();
    assert_eq!(c["SECRET"], "hunter2");
    wait_for(
        "a tick line in the logs over HTTP",
        Duration::from_secs(10),
        || {
            req(
                "GET",
                "/v1/apps/demo/logs?n=50",
                &[("Authorization", &bearer)],
                None,
            )
            .body
            .contains("tick")
        },
    );

    // /metrics: valid for promtool, and the dyno numbers are the ones ps shows (both read the
    // engine's latest sample; retried across a sampling round that lands between the two reads).
    let mut last = String::new();
    wait_for(
        "/metrics to equal ps --json for web.1",
        Duration::from_secs(15),
        || {
            let before = req("GET", "/metrics", &[], None).body;
            let ps = agent.ps("demo");
            let after = req("GET", "/metrics", &[], None).body;
            let (b, a) = (samples(&before), samples(&after));
            let dyno_part = |m: &BTreeMap<String, f64>| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("roboku_dyno_"))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>()
            };
            let has_cpu = ps.iter().all(|d| d["cpu_percent"].is_number());
            match metrics_match_ps(&a, &ps) {
                Ok(()) if has_cpu && dyno_part(&a) == dyno_part(&b) => true,
                Ok(()) => false,
                Err(e) => {
                    last = e;
                    false
                }
            }
        },
    );
    let text = req("GET", "/metrics", &[], None).body;
    let m = samples(&text);
    assert_eq!(
        m["roboku_dyno_memory_limit_bytes{app=\"demo\",dyno=\"web.1\"}"],
        134217728.0
    );
    assert_eq!(m["roboku_app_release{app=\"demo\"}"], 2.0);
    assert!(
        m["roboku_host_memory_total_bytes"] > 0.0
            && m.contains_key("roboku_host_load{window=\"1m\"}"),
        "{last}"
    );
    promtool_check(&text);

    // The page's own reads: a snapshot with the app and its dynos, and a chart with points.
    let snap = req("GET", "/dash/snapshot", &[], None).json();
    assert_eq!(snap["apps"][0]["info"]["name"], "demo");
    assert_eq!(snap["apps"][0]["dynos"][0]["name"], "web.1");
    assert!(snap["host"]["mem_total"].as_u64().unwrap() > 0);
    let charts = req("GET", "/dash/charts?app=demo", &[], None).json();
    assert!(
        charts["dynos"][0]["t"].as_array().unwrap().len() >= 2,
        "{charts}"
    );
    assert_eq!(charts["dynos"][0]["memory_limit"], 134217728);

    // With the token and its own Origin, a rollback goes through, recorded as the dashboard's.
    let r = req(
        "POST",
        "/v1/apps/demo/rollback",
        &[("Authorization", &bearer), ("Origin", &origin)],
        Some(r#"{"version":1}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let releases = agent.json(&["releases", "-a", "demo"]);
    let newest = releases
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["version"].as_u64())
        .unwrap()
        .clone();
    assert_eq!(
        (newest["version"].as_u64(), newest["door"].as_str()),
        (Some(3), Some("dashboard")),
        "{newest}"
    );
}

#[test]
fn dashboard_on_loopback_answers_loopback_names_only_and_can_be_turned_off() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--dashboard".into(), "127.0.0.1:0".into()],
        ..AgentOpts::default()
    });
    let (addr, token, url) = dashboard(&agent);
    assert!(addr.ip().is_loopback(), "{url}");
    let get = |host: &str| {
        http::tcp(addr, "GET", "/healthz", &[("Host", host)], None)
            .unwrap()
            .status
    };
    assert_eq!(get(&format!("localhost:{}", addr.port())), 200);
    assert_eq!(get(&format!("127.0.0.1:{}", addr.port())), 200);
    assert_eq!(
        get(&format!("192.0.2.9:{}", addr.port())),
        403,
        "an IP that cannot be us"
    );
    assert_eq!(get("localhost:1"), 403, "another port");
    let mode = std::fs::metadata(agent.data_dir().join("dashboard.token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(agent.data_dir().join("dashboard.token"))
            .unwrap()
            .trim(),
        token
    );

    let off = Agent::start(AgentOpts {
        extra: vec!["--dashboard".into(), "off".into()],
        ..AgentOpts::default()
    });
    let out = off.roboku(&["dashboard:url"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dashboard is off"),
        "{out:?}"
    );
}

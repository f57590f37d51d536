//! Releases: `config:set` makes a new release and restarts the web dyno with the new env;
//! `rollback` brings back an old release's code and config as a new release.

use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::time::Duration;

const SERVER: &str = r#"import http.server, os
code = open("version.txt").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "{} {} {}\n".format(os.environ.get("GREETING", "none"), code, os.environ["ROBOKU_RELEASE"]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn version_app(code: &str) -> tempfile::TempDir {
    app_dir(&[
        ("Procfile", "web: exec python3 server.py\n"),
        ("server.py", SERVER),
        ("version.txt", code),
    ])
}

/// Waits until web.1 (not `old_pid`) answers `want` on its port; its new pid.
fn wait_answer(agent: &Agent, old_pid: Option<i64>, want: &str) -> i64 {
    let pid = agent.wait_up("demo", "web.1", old_pid, Duration::from_secs(10));
    let port = agent.dyno("demo", "web.1").expect("web.1")["port"]
        .as_u64()
        .expect("port") as u16;
    let mut last = String::new();
    wait_for(
        &format!("web.1 to answer {want:?} on port {port}"),
        Duration::from_secs(10),
        || {
            last = http::get(port, "/").map(|r| r.body).unwrap_or_default();
            last.trim() == want
        },
    );
    pid
}

fn version(release: &Value) -> u64 {
    release["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("{release}"))
}

#[test]
fn config_set_restarts_with_new_env_and_rollback_restores_code_and_config() {
    let agent = Agent::start(AgentOpts::default());
    let one = version_app("one");
    let two = version_app("two");
    assert_eq!(version(&agent.create_and_deploy("demo", one.path())), 1);
    let p1 = wait_answer(&agent, None, "none one v1");
    assert_eq!(version(&agent.deploy("demo", two.path())), 2);
    let p2 = wait_answer(&agent, Some(p1), "none two v2");

    let changed = agent.json(&["config:set", "GREETING=hi", "-a", "demo"]);
    assert_eq!(version(&changed["release"]), 3, "{changed}");
    assert_eq!(changed["config"]["GREETING"], "hi", "{changed}");
    let p3 = wait_answer(&agent, Some(p2), "hi two v3");
    assert_eq!(agent.json(&["config", "-a", "demo"])["GREETING"], "hi");

    let rolled = agent.json(&["rollback", "v1", "-a", "demo"]);
    assert_eq!(
        version(&rolled),
        4,
        "rollback makes a new release: {rolled}"
    );
    assert_eq!(rolled["current"], true, "{rolled}");
    wait_answer(&agent, Some(p3), "none one v4");
    let config = agent.json(&["config", "-a", "demo"]);
    assert_eq!(config, serde_json::json!({}), "v1 had no config vars");

    let releases = agent.json(&["releases", "-a", "demo"]);
    let list = releases.as_array().expect("releases list");
    let versions: Vec<u64> = list.iter().map(version).collect();
    assert_eq!(versions, [4, 3, 2, 1], "newest first: {releases}");
    assert_eq!(list[0]["slug"], list[3]["slug"], "v4 runs v1's slug");
    assert_ne!(list[1]["slug"], list[3]["slug"]);
    assert!(
        list[0]["description"]
            .as_str()
            .is_some_and(|d| d.to_lowercase().contains("rollback") && d.contains("v1")),
        "{}",
        list[0]
    );
    let current: Vec<_> = list.iter().filter(|r| r["current"] == true).collect();
    assert_eq!(current.len(), 1, "{releases}");
}

//! `apps:rename` as a user does it, on a data dir robokud made itself: a Python app with a real
//! dependency (a wheel it ships), config, two releases, a stopped worker, a git remote and logs,
//! renamed while its web dyno serves HTTP, next to a second app that must not notice. Afterwards
//! everything is under the new name (releases, config, formation, logs, uid, build cache, git
//! repository), the web dyno runs again under the new name's cgroup and answers on its port, the
//! old name is gone, and a push to the new remote deploys using the moved cache.

use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SERVER: &str = "import http.server, os, tinydep\n\
class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = ('%s %s %s' % (tinydep.GREETING, os.environ['ROBOKU_APP'], os.environ.get('COLOR'))).encode()\n        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";

fn answers(port: u16, want: &str) {
    wait_for(
        &format!("port {port} answers {want:?}"),
        Duration::from_secs(20),
        || {
            http::get(port, "/")
                .map(|r| r.status == 200 && r.body.trim() == want)
                .unwrap_or(false)
        },
    );
}

fn git(work: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .args(["-c", "user.email=e2e@roboku", "-c", "user.name=e2e"])
        .args(args)
        .current_dir(work)
        .output()
        .expect("git runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cgroup (v1 pids hierarchy, or v2) a process is in.
fn cgroup_of(pid: i64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup")
}

fn versions(agent: &Agent, app: &str) -> Vec<(u64, String)> {
    match agent.json(&["releases", "-a", app]) {
        Value::Array(v) => v
            .iter()
            .map(|r| {
                (
                    r["version"].as_u64().expect("version"),
                    r["description"].as_str().expect("description").to_string(),
                )
            })
            .collect(),
        other => panic!("releases is not a list: {other}"),
    }
}

#[test]
fn renamed_app_keeps_everything_and_serves_again_under_the_new_name() {
    let agent = Agent::start(AgentOpts::default());
    let src = app_dir(&[
        (
            "Procfile",
            "web: echo \"started as $ROBOKU_APP\"; exec python3 app.py\nworker: exec sleep 100000\n",
        ),
        ("requirements.txt", "tinydep==1.0\n"),
        ("app.py", SERVER),
        ("wheels/.keep", ""),
    ]);
    roboku_tests::app::tiny_wheel(&src.path().join("wheels"));
    agent.create_and_deploy("py", src.path());
    agent.ok(&["config:set", "COLOR=blue", "-a", "py"]);
    agent.ok(&["ps:scale", "worker=1", "-a", "py"]);
    agent.wait_up("py", "worker.1", None, Duration::from_secs(20));
    agent.ok(&["ps:stop", "worker.1", "-a", "py"]);
    let web = agent.wait_up("py", "web.1", None, Duration::from_secs(20));
    let port = agent.dyno("py", "web.1").expect("web.1")["port"]
        .as_u64()
        .expect("port") as u16;
    answers(port, "tiny ok py blue");
    agent.ok(&["git:init", "-a", "py"]);

    let other = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    agent.create_and_deploy("other", other.path());
    let other_pid = agent.wait_up("other", "web.1", None, Duration::from_secs(20));

    let info = agent.json(&["apps:info", "-a", "py"]);
    let uid = info["uid"].as_u64().expect("py has its own uid");
    let releases = versions(&agent, "py");
    let formation = agent.api("GET", "/v1/apps/py/formation", None).json();
    let data = agent.data_dir();
    assert_eq!(
        std::fs::metadata(data.join("cache/py"))
            .expect("cache")
            .uid() as u64,
        uid
    );
    wait_for(
        "the web dyno's first line logged",
        Duration::from_secs(10),
        || {
            agent
                .ok(&["logs", "-a", "py", "-n", "1000"])
                .contains("started as py")
        },
    );

    // Refused, naming why, and nothing changes: an existing name, a bad one (the same validator
    // as apps:create, also behind the CLI's back).
    let out = agent.roboku(&["apps:rename", "py", "other"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("app \"other\" already exists"), "{err}");
    let out = agent.roboku(&["apps:rename", "py", "Py"]);
    assert_eq!(out.status.code(), Some(2));
    let resp = agent.api("POST", "/v1/apps/py/rename", Some(r#"{"name": "9lives"}"#));
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(
        resp.body.contains("must start with a lowercase letter"),
        "{}",
        resp.body
    );
    assert_eq!(
        agent.up_pid("py", "web.1"),
        Some(web),
        "a refused rename restarts nothing"
    );

    let started = std::time::Instant::now();
    let out = agent.ok(&["apps:rename", "py", "py-two"]);
    let took = started.elapsed();
    assert!(out.contains("Renaming py to py-two... done"), "{out}");
    assert!(out.contains("Restarted 1 dyno under the new name"), "{out}");
    let repo = data.join("git/py-two.git");
    assert!(
        out.contains("git remote set-url robot ssh://root@"),
        "{out}"
    );
    assert!(out.contains(repo.to_str().expect("utf-8")), "{out}");

    // The old name is gone.
    let out = agent.roboku(&["ps", "-a", "py"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no app \"py\""), "{err}");
    let names: Vec<String> = match agent.json(&["apps"]) {
        Value::Array(a) => a
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect(),
        other => panic!("{other}"),
    };
    assert_eq!(names, ["other", "py-two"]);

    // The web dyno runs again, under the new name, on the same port, in the new name's cgroup.
    let new_web = agent.wait_up("py-two", "web.1", Some(web), Duration::from_secs(20));
    answers(port, "tiny ok py-two blue");
    eprintln!(
        "e2e: apps:rename answered in {} ms; the web dyno answered under the new name {} ms after the command began",
        took.as_millis(),
        started.elapsed().as_millis()
    );
    let cg = cgroup_of(new_web);
    assert!(cg.contains("/py-two/web.1@"), "{cg}");
    assert!(!roboku_tests::alive(web), "the old process is gone");
    let worker = agent.dyno("py-two", "worker.1").expect("worker.1 listed");
    assert_eq!(
        worker["state"], "down",
        "a stopped dyno stays stopped: {worker}"
    );

    // Releases, config, formation, uid, cache, logs history and the audit trail moved with it.
    assert_eq!(versions(&agent, "py-two"), releases);
    assert_eq!(
        agent.ok(&["config:get", "COLOR", "-a", "py-two"]).trim(),
        "blue"
    );
    assert_eq!(
        agent.api("GET", "/v1/apps/py-two/formation", None).json(),
        formation
    );
    let info = agent.json(&["apps:info", "-a", "py-two"]);
    assert_eq!(info["uid"].as_u64(), Some(uid), "{info}");
    assert!(!data.join("cache/py").exists() && !data.join("logs/py").exists());
    assert_eq!(
        std::fs::metadata(data.join("cache/py-two"))
            .expect("cache moved")
            .uid() as u64,
        uid,
        "the cache is still the app's"
    );
    let logs = agent.ok(&["logs", "-a", "py-two", "-n", "1000"]);
    assert!(logs.contains("started as py\n"), "history kept: {logs}");
    assert!(logs.contains("Renamed from py"), "{logs}");
    wait_for(
        "the new web dyno's first line",
        Duration::from_secs(10),
        || {
            agent
                .ok(&["logs", "-a", "py-two", "-n", "1000"])
                .contains("started as py-two")
        },
    );
    let events = agent.json(&["events", "-a", "py-two"]).to_string();
    assert!(
        events.contains("rename app") && events.contains("from py"),
        "{events}"
    );

    // The second app did not notice.
    assert_eq!(agent.up_pid("other", "web.1"), Some(other_pid));

    // The repository moved; a push to it deploys the renamed app (with the moved build cache);
    // the old path is no repository any more.
    assert!(repo.join("HEAD").exists() && !data.join("git/py.git").exists());
    let work = src.path();
    assert!(git(work, &["init", "-q", "-b", "main"]).0);
    assert!(git(work, &["add", "."]).0);
    assert!(git(work, &["commit", "-qm", "after the rename"]).0);
    let (ok, err) = git(
        work,
        &["push", data.join("git/py.git").to_str().unwrap(), "main"],
    );
    assert!(!ok, "the old remote is gone: {err}");
    let (ok, err) = git(work, &["push", repo.to_str().expect("utf-8"), "main"]);
    assert!(ok, "push to the new remote deploys: {err}");
    assert!(err.contains("Released v3 of py-two"), "{err}");
    let build = agent.ok(&["logs", "-a", "py-two", "-d", "build", "-n", "500"]);
    assert!(
        build.contains("reusing installed packages from the build cache"),
        "the moved cache is used: {build}"
    );
    answers(port, "tiny ok py-two blue");

    // Heroku's spelling: the new name, and the app with -a.
    let out = agent.ok(&["apps:rename", "nav", "-a", "other"]);
    assert!(out.contains("Renaming other to nav... done"), "{out}");
    agent.wait_up("nav", "web.1", Some(other_pid), Duration::from_secs(20));
    assert!(!agent.roboku(&["ps", "-a", "other"]).status.success());
}

/// While the old dynos take their grace to stop, commands that would change either name are
/// refused saying why, reads still answer; a push to the old name through `git-shell` (a
/// renamed app's old ssh remote) is an error naming it, and makes no repository.
#[test]
fn commands_on_either_name_wait_for_a_rename() {
    let agent = Agent::start(AgentOpts::default());
    let src = app_dir(&[("Procfile", "web: trap '' TERM; exec sleep 100000\n")]);
    agent.create_and_deploy("slow", src.path());
    agent.ok(&["git:init", "-a", "slow"]);
    let pid = agent.wait_up("slow", "web.1", None, Duration::from_secs(20));
    let rename = Command::new(roboku_tests::bins::bin("roboku"))
        .args(["apps:rename", "slow", "quick"])
        .env("ROBOKU_SOCKET", agent.socket())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run roboku apps:rename");
    wait_for("the rename to begin", Duration::from_secs(10), || {
        agent
            .ok(&["logs", "-a", "slow", "-n", "100"])
            .contains("Renaming to quick")
    });
    for args in [
        &["ps:scale", "web=2", "-a", "slow"][..],
        &["apps:create", "quick"][..],
        &["config:set", "A=1", "-a", "quick"][..],
    ] {
        let out = agent.roboku(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("app slow is being renamed to quick; try again when that is done"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(agent.up_pid("slow", "web.1"), None, "stopping, not up");
    assert!(agent.roboku(&["releases", "-a", "slow"]).status.success());

    let out = rename.wait_with_output().expect("apps:rename ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!roboku_tests::alive(pid), "killed after its grace");
    agent.wait_up("quick", "web.1", None, Duration::from_secs(20));
    let logs = agent.ok(&["logs", "-a", "quick", "-n", "100"]);
    assert!(logs.contains("Error R12 (Exit timeout)"), "{logs}");

    let out = Command::new(roboku_tests::bins::bin("roboku"))
        .arg("git-shell")
        .env("ROBOKU_SOCKET", agent.socket())
        .env("SSH_ORIGINAL_COMMAND", "git-receive-pack '/slow'")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run roboku git-shell");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no app \"slow\""), "{err}");
    assert!(!agent.data_dir().join("git/slow.git").exists());
    assert!(agent.data_dir().join("git/quick.git/HEAD").exists());
}

//! Deploys: the health-gated switch (a new release whose web dyno never gets healthy leaves the
//! old one serving, and says why), `app.json` checks, buildpack builds, and uploaded archives.

use roboku_tests::{app_dir, http, wait_for, Agent, AgentOpts};
use std::process::Command;
use std::time::Duration;

const SERVER: &str = r#"import http.server, os
code = open("version.txt").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (code + "\n").encode()
        self.send_response(200 if self.path != "/broken" else 500)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn web_app(code: &str, app_json: Option<&str>) -> tempfile::TempDir {
    let mut files = vec![
        ("Procfile", "web: exec python3 server.py\n"),
        ("server.py", SERVER),
        ("version.txt", code),
    ];
    if let Some(j) = app_json {
        files.push(("app.json", j));
    }
    app_dir(&files)
}

fn answer(agent: &Agent, app: &str) -> String {
    let port = agent.dyno(app, "web.1").expect("web.1")["port"]
        .as_u64()
        .expect("port") as u16;
    http::get(port, "/")
        .map(|r| r.body.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn unhealthy_new_release_leaves_the_old_one_serving_and_says_why() {
    let agent = Agent::start(AgentOpts::default());
    let check = r#"{"healthchecks":{"web":[{"path":"/","attempts":20,"wait":1,"timeout":2}]}}"#;
    agent.create_and_deploy("shop", web_app("one", Some(check)).path());
    wait_for("v1 answers", Duration::from_secs(10), || {
        answer(&agent, "shop") == "one"
    });

    // v2's health check asks for a path that answers 500: never healthy.
    let bad = r#"{"healthchecks":{"web":[{"path":"/broken","attempts":5,"wait":1,"timeout":2}]}}"#;
    let dir = web_app("two", Some(bad));
    let out = agent.roboku(&["deploy", dir.path().to_str().expect("utf-8"), "-a", "shop"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed rollout exits 1: {err}"
    );
    assert!(
        err.contains("release v2 failed") && err.contains("HTTP 500"),
        "says why: {err}"
    );
    assert!(err.contains("v1 is running again"), "{err}");
    assert!(err.contains("last log lines"), "shows the log tail: {err}");

    wait_for("v1 serving again", Duration::from_secs(15), || {
        answer(&agent, "shop") == "one"
    });
    let releases = agent.json(&["releases", "-a", "shop"]);
    let list = releases.as_array().expect("list");
    let v2 = list.iter().find(|r| r["version"] == 2).expect("v2 listed");
    assert_eq!(v2["status"], "failed", "{v2}");
    let current = list
        .iter()
        .find(|r| r["current"] == true)
        .expect("a current release");
    assert_eq!(current["version"], 1, "{releases}");
    assert_eq!(agent.dyno("shop", "web.1").expect("web.1")["release"], 1);
}

#[test]
fn crashing_release_fails_and_a_good_one_is_committed_healthy() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy(
        "nav",
        web_app(
            "one",
            Some(r#"{"healthchecks":{"web":[{"listening":true}]}}"#),
        )
        .path(),
    );
    let crash = app_dir(&[(
        "Procfile",
        "web: echo cannot open /dev/ttyUSB0 >&2; exit 3\n",
    )]);
    let out = agent.roboku(&["deploy", crash.path().to_str().expect("utf-8"), "-a", "nav"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("crashed while starting") && err.contains("ttyUSB0"),
        "{err}"
    );
    wait_for("v1 serving again", Duration::from_secs(15), || {
        answer(&agent, "nav") == "one"
    });

    let v3 = agent.deploy("nav", web_app("three", None).path());
    assert_eq!(v3["version"], 3, "{v3}");
    assert_eq!(v3["status"], "succeeded", "{v3}");
    assert_eq!(
        answer(&agent, "nav"),
        "three",
        "committed only once healthy: it answers at once"
    );
}

#[test]
fn release_phase_runs_before_dynos_and_its_failure_keeps_the_old_release() {
    let agent = Agent::start(AgentOpts::default());
    let marker = roboku_tests::world_writable_dir();
    let m = marker.path().join("migrated");
    let procfile = format!(
        "release: echo migrating; touch {}\nweb: exec sleep 100000\n",
        m.display()
    );
    agent.create_and_deploy("db", app_dir(&[("Procfile", &procfile)]).path());
    assert!(
        m.exists(),
        "the release command ran before the deploy returned"
    );
    let pid = agent.up_pid("db", "web.1").expect("web.1 up");

    let failing = app_dir(&[(
        "Procfile",
        "release: echo migration failed; exit 4\nweb: exec sleep 100000\n",
    )]);
    let out = agent.roboku(&[
        "deploy",
        failing.path().to_str().expect("utf-8"),
        "-a",
        "db",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("release command exited with status 4"),
        "{err}"
    );
    assert_eq!(
        agent.up_pid("db", "web.1"),
        Some(pid),
        "the old web dyno was never touched"
    );
}

#[test]
fn python_app_is_built_by_the_buildpack_and_a_foreign_binary_is_refused() {
    let agent = Agent::start(AgentOpts::default());
    let py = app_dir(&[
        (
            "Procfile",
            "web: exec python3 -m http.server $PORT --bind 127.0.0.1\n",
        ),
        ("requirements.txt", ""),
    ]);
    agent.create_and_deploy("py", py.path());
    let logs = agent.ok(&["logs", "-a", "py", "-d", "build", "-n", "50"]);
    assert!(
        logs.contains("Python app detected"),
        "build output reaches the logs: {logs}"
    );
    let port = agent.dyno("py", "web.1").expect("web.1")["port"]
        .as_u64()
        .expect("port") as u16;
    wait_for(
        "the python web dyno answers",
        Duration::from_secs(10),
        || {
            http::get(port, "/")
                .map(|r| r.status == 200)
                .unwrap_or(false)
        },
    );

    // An ELF header for another architecture than this host's.
    let mut elf = vec![
        0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0,
    ];
    let foreign: u16 = if std::env::consts::ARCH == "aarch64" {
        62
    } else {
        183
    };
    elf.extend_from_slice(&foreign.to_le_bytes());
    elf.resize(64, 0);
    let dir = app_dir(&[("Procfile", "web: exec ./bin/nav\n")]);
    std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir");
    let nav = dir.path().join("bin/nav");
    std::fs::write(&nav, &elf).expect("write");
    Command::new("chmod")
        .arg("755")
        .arg(&nav)
        .status()
        .expect("chmod");
    let out = agent.roboku(&["deploy", dir.path().to_str().expect("utf-8"), "-a", "py"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("bin/nav") && err.contains(std::env::consts::ARCH),
        "names file and arch: {err}"
    );
}

#[test]
fn uploaded_archives_deploy_and_hostile_ones_are_refused_without_writing_outside() {
    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "up"]);
    let src = app_dir(&[
        ("Procfile", "web: exec sleep 100000\n"),
        ("data.txt", "hello\n"),
    ]);
    let work = tempfile::tempdir().expect("tempdir");
    let tgz = work.path().join("app.tar.gz");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(src.path())
        .arg(".")
        .status()
        .expect("tar");
    assert!(ok.success());
    let r = agent.deploy("up", &tgz);
    assert_eq!(r["status"], "succeeded", "{r}");

    // A hand-made tar with `../escape` (GNU tar refuses to write one, so build the header).
    let evil = work.path().join("evil.tar");
    std::fs::write(&evil, hostile_tar("../escape-roboku-e2e")).expect("write");
    let out = agent.roboku(&["deploy", evil.to_str().expect("utf-8"), "-a", "up"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("escape-roboku-e2e"),
        "names the entry: {err}"
    );
    assert!(!agent.data_dir().join("escape-roboku-e2e").exists());
    assert!(!agent.data_dir().join("tmp/escape-roboku-e2e").exists());
    assert_eq!(
        agent.dyno("up", "web.1").expect("web.1")["release"],
        1,
        "the running release is untouched"
    );
}

/// A one-entry ustar archive whose entry name is `name` (plus a Procfile entry first).
fn hostile_tar(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, data) in [("Procfile", &b"web: sleep 1\n"[..]), (name, &b"x"[..])] {
        let mut h = [0u8; 512];
        h[..n.len()].copy_from_slice(n.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        let size = format!("{:011o}", data.len());
        h[124..135].copy_from_slice(size.as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        let mut d = data.to_vec();
        d.resize(512, 0);
        out.extend_from_slice(&d);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn git_push_deploys_and_a_failed_deploy_rejects_the_push() {
    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "nav"]);
    let init = agent.ok(&["git:init", "-a", "nav"]);
    let repo = agent.data_dir().join("git/nav.git");
    assert!(init.contains(repo.to_str().expect("utf-8")), "{init}");

    let work = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.email=e2e@roboku", "-c", "user.name=e2e"])
            .args(args)
            .current_dir(work.path())
            .env("ROBOKU_SOCKET", agent.socket())
            .output()
            .expect("git runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert!(git(&["init", "-q", "-b", "main"]).0);
    assert!(git(&["add", "."]).0);
    assert!(git(&["commit", "-qm", "one"]).0);
    let (ok, err) = git(&["push", repo.to_str().expect("utf-8"), "main"]);
    assert!(ok, "push deploys: {err}");
    assert!(
        err.contains("Released v1 of nav"),
        "the pusher sees the deploy: {err}"
    );
    assert!(
        agent.up_pid("nav", "web.1").is_some(),
        "web.1 up after the push"
    );
    let releases = agent.json(&["releases", "-a", "nav"]);
    assert_eq!(releases[0]["door"], "git", "{releases}");

    std::fs::write(work.path().join("Procfile"), "web: exit 3\n").expect("write");
    assert!(git(&["commit", "-qam", "two"]).0);
    let (ok, err) = git(&["push", repo.to_str().expect("utf-8"), "main"]);
    assert!(!ok, "a failed deploy rejects the push: {err}");
    assert!(err.contains("pre-receive hook declined"), "{err}");
    wait_for("v1 running again", Duration::from_secs(15), || {
        agent.up_pid("nav", "web.1").is_some()
    });
    let log = Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["log", "--format=%s", "main"])
        .output()
        .expect("git log");
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).trim(),
        "one",
        "the robot's branch names what runs"
    );
}

#[test]
fn agent_killed_mid_build_comes_back_on_the_old_release_with_no_build_left() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    agent.create_and_deploy(
        "slow",
        app_dir(&[("Procfile", "web: exec sleep 100000\n")]).path(),
    );
    let old_pid = agent.up_pid("slow", "web.1").expect("web.1 up");

    // A buildpack whose compile never ends on its own; its marker names the processes to find.
    let marker = format!("roboku-e2e-build-{}", std::process::id());
    let pack = app_dir(&[
        ("bin/detect", "#!/bin/sh\necho slowpack\n"),
        (
            "bin/compile",
            // A background grandchild and the compile itself, both named by the marker.
            &format!(
                "#!/bin/sh\ncp /bin/sleep \"$1/{marker}\"\necho compiling\n\"$1/{marker}\" 1001 &\nexec \"$1/{marker}\" 1000\n"
            ),
        ),
        ("bin/release", "#!/bin/sh\necho '--- {}'\n"),
    ]);
    for s in ["detect", "compile", "release"] {
        Command::new("chmod")
            .arg("755")
            .arg(pack.path().join("bin").join(s))
            .status()
            .expect("chmod");
    }
    Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(pack.path())
        .status()
        .expect("chmod");
    agent.ok(&[
        "buildpacks:set",
        pack.path().to_str().expect("utf-8"),
        "-a",
        "slow",
    ]);

    let src = app_dir(&[("Procfile", "web: exec sleep 100001\n")]);
    let mut deploy = Command::new(roboku_tests::bins::bin("roboku"))
        .args(["deploy", src.path().to_str().expect("utf-8"), "-a", "slow"])
        .env("ROBOKU_SOCKET", agent.socket())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start deploy");
    let building = || {
        let out = Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .expect("pgrep");
        out.status.success()
    };
    wait_for(
        "the build to be compiling",
        Duration::from_secs(20),
        building,
    );

    agent.kill9_and_restart("stop");
    let _ = deploy.wait();
    wait_for(
        "no build process left after the agent died",
        Duration::from_secs(10),
        || !building(),
    );
    assert_eq!(
        agent.up_pid("slow", "web.1"),
        Some(old_pid),
        "the old release's dyno was re-adopted"
    );
    let releases = agent.json(&["releases", "-a", "slow"]);
    assert_eq!(
        releases.as_array().map(|a| a.len()),
        Some(1),
        "no half release: {releases}"
    );
    assert!(
        std::fs::read_dir(agent.data_dir().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            <= 1,
        "build leftovers"
    );
}

#[test]
fn old_slugs_are_collected_and_rolling_back_to_one_says_so() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--keep-releases".into(), "2".into()],
        ..AgentOpts::default()
    });
    let mut slugs = Vec::new();
    for n in 1..=3 {
        let dir = app_dir(&[
            ("Procfile", "web: exec sleep 100000\n"),
            ("version.txt", &n.to_string()),
        ]);
        let r = if n == 1 {
            agent.create_and_deploy("gc", dir.path())
        } else {
            agent.deploy("gc", dir.path())
        };
        slugs.push(r["slug"].as_str().expect("slug").to_string());
    }
    let slug_dir = |s: &str| agent.data_dir().join("slugs").join(s);
    wait_for("v1's slug to be collected", Duration::from_secs(10), || {
        !slug_dir(&slugs[0]).exists()
    });
    assert!(
        slug_dir(&slugs[1]).is_dir() && slug_dir(&slugs[2]).is_dir(),
        "the last two are kept"
    );
    let out = agent.roboku(&["rollback", "v1", "-a", "gc"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("garbage-collected"),
        "{err}"
    );
    let back = agent.json(&["rollback", "v2", "-a", "gc"]);
    assert_eq!(back["version"], 4, "{back}");
}

#[test]
fn slug_built_once_deploys_without_building_on_the_robot() {
    let agent = Agent::start(AgentOpts::default());
    let src = app_dir(&[
        (
            "Procfile",
            "web: exec python3 -m http.server $PORT --bind 127.0.0.1\n",
        ),
        ("requirements.txt", ""),
    ]);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let slug = out_dir.path().join("py.slug");
    let built = Command::new(roboku_tests::bins::bin("roboku"))
        .args([
            "slug:build",
            src.path().to_str().expect("utf-8"),
            "-o",
            slug.to_str().expect("utf-8"),
        ])
        .output()
        .expect("slug:build runs");
    let err = String::from_utf8_lossy(&built.stderr).to_string();
    assert!(built.status.success(), "{err}");
    assert!(
        err.contains("Python app detected"),
        "built on the workstation side: {err}"
    );

    agent.ok(&["apps:create", "py"]);
    let r = agent.json(&[
        "deploy",
        "--slug",
        slug.to_str().expect("utf-8"),
        "-a",
        "py",
    ]);
    assert_eq!(r["status"], "succeeded", "{r}");
    let build_lines = agent.ok(&["logs", "-a", "py", "-d", "build"]);
    assert!(
        !build_lines.contains("detected"),
        "nothing was built on the robot: {build_lines}"
    );
    let port = agent.dyno("py", "web.1").expect("web.1")["port"]
        .as_u64()
        .expect("port") as u16;
    wait_for(
        "the slug's web dyno answers",
        Duration::from_secs(10),
        || {
            http::get(port, "/")
                .map(|r| r.status == 200)
                .unwrap_or(false)
        },
    );
}

#[test]
fn node_app_is_built_by_the_buildpack_and_answers_on_its_port() {
    let agent = Agent::start(AgentOpts::default());
    let server = "require('http').createServer((q, r) => r.end('node ok\\n')).listen(process.env.PORT, '127.0.0.1');\n";
    let app = app_dir(&[
        (
            "package.json",
            r#"{"name":"e2e-node","version":"1.0.0","scripts":{"start":"node server.js"}}"#,
        ),
        ("server.js", server),
        ("Procfile", "web: exec node server.js\n"),
    ]);
    agent.create_and_deploy("node", app.path());
    let logs = agent.ok(&["logs", "-a", "node", "-d", "build", "-n", "50"]);
    assert!(
        logs.to_lowercase().contains("node"),
        "the nodejs buildpack ran: {logs}"
    );
    wait_for("the node web dyno answers", Duration::from_secs(10), || {
        answer(&agent, "node") == "node ok"
    });
}

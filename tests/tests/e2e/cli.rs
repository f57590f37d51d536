//! The CLI as people use it: slugs built in CI for another CPU, `--json` everywhere, errors in
//! words.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::process::Command;

fn roboku(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(roboku_tests::bins::bin("roboku"))
        .args(args)
        .output()
        .expect("run roboku");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// CI (this machine's CPU) builds an aarch64 robot's slug: fine without native code, recorded
/// in the slug, deployable; with a native binary for the build host, refused by name.
#[test]
fn slug_build_for_another_cpu() {
    let other = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let src = app_dir(&[
        ("Procfile", "web: exec sleep 1000\n"),
        ("run.sh", "echo hi\n"),
    ]);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let slug = out_dir.path().join("nav.slug");
    let (src_s, slug_s) = (
        src.path().to_str().expect("utf-8"),
        slug.to_str().expect("utf-8"),
    );
    let (ok, out, err) = roboku(&["--json", "slug:build", src_s, "-o", slug_s, "--arch", other]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).expect("slug:build --json is JSON");
    assert_eq!(info["arch"], other, "{info}");

    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "nav"]);
    let r = agent.json(&["deploy", "--slug", slug_s, "-a", "nav"]);
    assert_eq!(
        r["status"], "succeeded",
        "no native code: runs anywhere: {r}"
    );

    std::fs::create_dir(src.path().join("bin")).expect("mkdir");
    std::fs::copy("/bin/true", src.path().join("bin/tool")).expect("copy an ELF binary");
    let native = out_dir.path().join("native.slug");
    let native_s = native.to_str().expect("utf-8");
    let (ok, _, err) = roboku(&["slug:build", src_s, "-o", native_s, "--arch", other]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "bin/tool is built for {} but the slug is for {other}",
            std::env::consts::ARCH
        )),
        "{err}"
    );
    assert!(!native.exists(), "no slug file is left behind");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The commands people reach for, and the errors they hit, in words (and as JSON with --json).
#[test]
fn the_cli_as_people_use_it() {
    let agent = Agent::start(AgentOpts::default());
    let src = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("nav", src.path());

    // Errors with --json are JSON on stdout, with the API's code.
    let out = agent.roboku(&["--json", "config", "-a", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(err["error"]["code"], "not_found", "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("nope"));

    // A dyno filter that names nothing is an error, not an empty wait.
    let out = agent.roboku(&["logs", "-a", "nav", "-d", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no dyno or process type \"nope\" in nav"),
        "{}",
        text(&out.stderr)
    );

    // Unsetting an absent var makes no release (and restarts nothing).
    let pid = agent.up_pid("nav", "web.1");
    let out = agent.ok(&["config:unset", "NOPE", "-a", "nav"]);
    assert!(out.contains("nothing changed"), "{out}");
    let releases = agent.json(&["releases", "-a", "nav"]);
    assert_eq!(releases.as_array().map(Vec::len), Some(1), "{releases}");
    assert_eq!(agent.up_pid("nav", "web.1"), pid);

    // config:set from stdin, as a .env file.
    let mut child = Command::new(roboku_tests::bins::bin("roboku"))
        .args(["config:set", "--file", "-", "-a", "nav"])
        .env("ROBOKU_SOCKET", agent.socket())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("config:set");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"# robot\nexport SPEED=3\nNAME='r 17'\n")
        .expect("write stdin");
    assert!(child.wait().expect("wait").success());
    let cfg = agent.json(&["config", "-a", "nav"]);
    assert_eq!(cfg, serde_json::json!({"SPEED": "3", "NAME": "r 17"}));

    // releases --num, newest first.
    let out = agent.ok(&["releases", "-a", "nav", "--num", "1"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("v2"), "{out}");

    // Events say what changed in words, not Rust debug text.
    agent.ok(&["ps:resize", "web", "--memory", "32M", "-a", "nav"]);
    let events = agent.ok(&["events", "-a", "nav"]);
    assert!(events.contains("memory 32M"), "{events}");
    assert!(
        !events.contains("Some(") && !events.contains("Limits {"),
        "{events}"
    );

    // deploy --slug of a directory is a usage error, not a build.
    let out = agent.roboku(&[
        "deploy",
        "--slug",
        src.path().to_str().expect("utf-8"),
        "-a",
        "nav",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is a directory"),
        "{}",
        text(&out.stderr)
    );

    // A config change of an app without dynos answers as a config change (its rollout has
    // nothing to wait for and ends before the caller is attached).
    agent.ok(&["ps:scale", "web=0", "-a", "nav"]);
    let out = agent.ok(&["config:set", "IDLE=1", "-a", "nav"]);
    assert!(
        out.contains("Setting IDLE and restarting nav... done"),
        "{out}"
    );
    agent.ok(&["ps:scale", "web=1", "-a", "nav"]);

    // An app.json key with a typo fails the deploy naming it; v3 keeps running.
    let typo = app_dir(&[
        ("Procfile", "web: exec sleep 1000\n"),
        (
            "app.json",
            r#"{"healthchecks": {"web": [{"uptime": 1, "initial_delay": 1}]}}"#,
        ),
    ]);
    let out = agent.roboku(&["deploy", typo.path().to_str().expect("utf-8"), "-a", "nav"]);
    assert!(!out.status.success());
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("initial_delay"), "{all}");
}

/// The README's first command, run as root from a checkout in a private directory (like one
/// under /root, mode 0700): `./.roboku` would be out of the app users' reach, so the developer
/// data moves to /var/tmp (said on stderr), the socket stays where `roboku` looks, and the
/// example app answers.
#[test]
fn developer_mode_from_a_private_directory_runs_the_example() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;
    let private = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 0700");
    let checkout = private.path().join("roboku");
    std::fs::create_dir(&checkout).expect("mkdir");
    let cgroup = format!("rk-e2e-devfb-{}", std::process::id());
    let port = 27400 + (std::process::id() % 50) as u16 * 10;
    let child = Command::new(roboku_tests::bins::bin("robokud"))
        .args(["--dev", "--cgroup-name", &cgroup, "--port-range"])
        .arg(format!("{port}-{}", port + 9))
        .current_dir(&checkout)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start robokud --dev");
    let socket = checkout.join(".roboku/robokud.sock");
    let ps = || {
        Command::new(roboku_tests::bins::bin("roboku"))
            .args(["--json", "ps", "-a", "hello"])
            .current_dir(&checkout)
            .env_remove("ROBOKU_SOCKET")
            .env_remove("ROBOKU_DATA_DIR")
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
    };
    roboku_tests::wait_for("the example's web.1 up", Duration::from_secs(60), || {
        ps().is_some_and(|v| v[0]["state"] == "up")
    });
    let port = ps().and_then(|v| v[0]["port"].as_u64()).expect("port") as u16;
    roboku_tests::wait_for("hello answers", Duration::from_secs(20), || {
        roboku_tests::http::get(port, "/").is_ok_and(|r| r.status == 200)
    });
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("robokud exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("developer data goes to /var/tmp/roboku-dev-"),
        "{err}"
    );
    assert!(
        out.status.success(),
        "robokud --dev exits cleanly on SIGTERM: {err}"
    );
    assert!(!socket.exists(), "the socket is removed on exit");
    if let Some(dir) = err
        .split("developer data goes to ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    roboku_tests::cgroups::destroy(&cgroup);
}

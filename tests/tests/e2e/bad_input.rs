//! Bad input of every kind gets a clear error and a non-zero exit, and disturbs nothing running.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::process::Output;
use std::time::Duration;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `roboku ARGS` failed with `code` and a message containing every one of `needles`.
fn refused(agent: &Agent, args: &[&str], code: i32, needles: &[&str]) {
    let out = agent.roboku(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "roboku {args:?}: want exit {code}, got {}\nstderr: {err}",
        out.status
    );
    for n in needles {
        assert!(err.contains(n), "roboku {args:?}: {n:?} not in: {err}");
    }
}

#[test]
fn bad_input_is_refused_clearly_and_nothing_running_is_disturbed() {
    let agent = Agent::start(AgentOpts::default());
    let good = app_dir(&[(
        "Procfile",
        "web: exec sleep 1000\nworker: exec sleep 1000\n",
    )]);
    agent.create_and_deploy("demo", good.path());
    agent.ok(&["ps:scale", "worker=1", "-a", "demo"]);
    let web = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let worker = agent.wait_up("demo", "worker.1", None, Duration::from_secs(10));
    let releases = agent.json(&["releases", "-a", "demo"]);
    let config = agent.json(&["config", "-a", "demo"]);

    let bad_procfile = app_dir(&[("Procfile", "web: exec sleep 1000\nthis line is wrong\n")]);
    let p = bad_procfile.path().to_str().expect("utf-8");
    refused(
        &agent,
        &["deploy", p, "-a", "demo"],
        1,
        &["Procfile", "line 2"],
    );

    let bad_env = app_dir(&[
        ("Procfile", "web: exec sleep 1000\n"),
        (".env", "GOOD=1\n=novalue\n"),
    ]);
    let p = bad_env.path().to_str().expect("utf-8");
    refused(&agent, &["deploy", p, "-a", "demo"], 1, &[".env", "line 2"]);

    let no_procfile = app_dir(&[("README", "no Procfile here\n")]);
    let p = no_procfile.path().to_str().expect("utf-8");
    let out = agent.roboku(&["deploy", p, "-a", "demo"]);
    assert!(!out.status.success(), "deploy without a Procfile succeeded");
    assert!(stderr(&out).contains("Procfile"), "{}", stderr(&out));

    refused(&agent, &["ps", "-a", "nope"], 1, &["nope"]);
    refused(&agent, &["ps:scale", "web=x", "-a", "demo"], 2, &["web=x"]);
    refused(
        &agent,
        &["ps:scale", "ghost=1", "-a", "demo"],
        1,
        &["ghost"],
    );
    refused(
        &agent,
        &["ps:resize", "ghost", "--memory", "32M", "-a", "demo"],
        1,
        &["ghost"],
    );
    refused(
        &agent,
        &["ps:resize", "web", "--memory", "12Q", "-a", "demo"],
        2,
        &["12Q"],
    );
    refused(
        &agent,
        &["ps:resize", "web", "--cpu=-1", "-a", "demo"],
        2,
        &["-1"],
    );
    refused(&agent, &["rollback", "v99", "-a", "demo"], 1, &["99"]);
    refused(&agent, &["apps:create", "Bad_Name"], 2, &["Bad_Name"]);

    // The agent itself checks what the CLI would never send.
    let r = agent.api("POST", "/v1/apps/demo/scale", Some("{not json"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "bad_request", "{}", r.body);
    let r = agent.api(
        "POST",
        "/v1/apps/demo/resize",
        Some(r#"{"ptype":"web","limits":{"cpu":-1.0}}"#),
    );
    assert!(
        (400..500).contains(&r.status),
        "negative cpu accepted: {} {}",
        r.status,
        r.body
    );
    assert!(r.json()["error"]["message"].is_string(), "{}", r.body);

    // Nothing moved.
    assert_eq!(agent.json(&["releases", "-a", "demo"]), releases);
    assert_eq!(agent.json(&["config", "-a", "demo"]), config);
    for (name, pid) in [("web.1", web), ("worker.1", worker)] {
        let d = agent.dyno("demo", name).expect("listed");
        assert_eq!(d["pid"].as_i64(), Some(pid), "{name} disturbed: {d}");
        assert_eq!(d["restarts"], 0, "{d}");
        assert_eq!(d["state"], "up", "{d}");
    }
    agent.ok(&["status"]);
}

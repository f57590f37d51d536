//! Environments and commands no process can be started with: refused at the door with the key
//! and the limit; one that still gets through (a 200 KB Procfile command: `Argument list too
//! long`) fails its release at once, not after the deploy timeout, and the old release runs on.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::time::{Duration, Instant};

#[test]
fn unstartable_config_is_refused_and_an_unstartable_dyno_fails_its_release_at_once() {
    let agent = Agent::start(AgentOpts::default());
    let good = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", good.path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));

    let r = agent.api(
        "PATCH",
        "/v1/apps/demo/config",
        Some(r#"{"set": {"NULLY": "a\u0000b"}}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("NULLY") && r.body.contains("NUL"),
        "{}",
        r.body
    );

    // 200 KB over the API (more than the CLI's own argv could carry), 100 KB through the CLI.
    let body = format!(r#"{{"set": {{"BIG": "{}"}}}}"#, "x".repeat(200 * 1024));
    let r = agent.api("PATCH", "/v1/apps/demo/config", Some(&body));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("BIG") && r.body.contains("65536"),
        "{}",
        r.body
    );
    let big = format!("BIG={}", "x".repeat(100 * 1024));
    let out = agent.roboku(&["config:set", &big, "-a", "demo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("BIG") && err.contains("65536"), "{err}");

    let env_line = format!("HUGE={}\n", "y".repeat(1 << 20));
    let dotenv = app_dir(&[("Procfile", "web: exec sleep 1000\n"), (".env", &env_line)]);
    let out = agent.roboku(&["deploy", dotenv.path().to_str().unwrap(), "-a", "demo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(".env") && err.contains("HUGE"), "{err}");

    // Through the door, but no kernel starts it.
    let cmd = format!("web: exec sleep 1000 # {}\n", "z".repeat(200 * 1024));
    let unstartable = app_dir(&[("Procfile", &cmd)]);
    let started = Instant::now();
    let out = agent.roboku(&["deploy", unstartable.path().to_str().unwrap(), "-a", "demo"]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "deploy of an unstartable dyno succeeded"
    );
    assert!(err.contains("Argument list too long"), "{err}");
    assert!(took < Duration::from_secs(30), "failed only after {took:?}");
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let d = agent.dyno("demo", "web.1").expect("web.1");
    assert_eq!(d["release"], 1, "the old release runs again: {d}");
}

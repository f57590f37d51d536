//! `--gate-timeout` on `rollback`, `ps:restart` and `ps:scale`, as on `deploy` and
//! `config:set`: against a closed gate each gives up after the limit with the gate named, and
//! nothing is applied (no release, the same pids, the same formation). A local scale without it
//! applies at once, as before.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::time::Duration;

#[test]
fn rollback_restart_and_scale_give_up_on_a_closed_gate_and_apply_nothing() {
    let agent = Agent::start(AgentOpts::default());
    let app = |tag: &str| app_dir(&[("Procfile", "worker: exec sleep 600\n"), ("VERSION", tag)]);
    agent.create_and_deploy("nav", app("one").path());
    agent.deploy("nav", app("two").path());
    agent.ok(&["ps:scale", "worker=1", "-a", "nav"]);
    let pid = agent.wait_up("nav", "worker.1", None, Duration::from_secs(20));
    let releases = agent.json(&["releases", "-a", "nav"]);
    // A file that never exists: the gate stays closed.
    agent.ok(&[
        "gates:set",
        "docked",
        "--file",
        "/nonexistent/roboku-docked",
        "-a",
        "nav",
    ]);

    for args in [
        &["rollback", "--gate-timeout", "1s", "-a", "nav"][..],
        &["ps:restart", "--gate-timeout", "1s", "-a", "nav"][..],
        &["ps:scale", "worker=2", "--gate-timeout", "1s", "-a", "nav"][..],
    ] {
        let out = agent.roboku(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("gave up after waiting") && err.contains("gate docked"),
            "{args:?}: {err}"
        );
        assert!(err.contains("nothing was applied"), "{args:?}: {err}");
    }
    assert_eq!(agent.json(&["releases", "-a", "nav"]), releases);
    assert_eq!(agent.up_pid("nav", "worker.1"), Some(pid));
    let ps = agent.ps("nav");
    assert_eq!(ps.len(), 1, "still one worker: {ps:?}");

    // Without the flag a local scale is not gated (only the fleet's is).
    agent.ok(&["ps:scale", "worker=2", "-a", "nav"]);
    agent.wait_up("nav", "worker.2", None, Duration::from_secs(20));
}

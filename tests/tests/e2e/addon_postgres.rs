//! The `postgres` add-on and `addons:backup`, with a real PostgreSQL (Debian's `postgresql`):
//! an app writes and reads a row through `DATABASE_URL` (with `psql` in its one-off dyno); the
//! server robokud runs is not root, is restarted after `kill -9` with the data kept; a second
//! app attached gets a role of its own on the same database, useless once detached; a backup is
//! a dump with the row in it, root's 0600; destroy removes the server and its dir. Where
//! PostgreSQL is not installed, the test checks the clear refusal instead. sqlite's backup is a
//! whole database; an mqtt add-on with nothing saved says so.

use super::addons::{addon, config, mode_uid, run, run_ok, uid_of};
use roboku_tests::{alive, app_dir, kill, wait_for, Agent, AgentOpts};
use std::path::PathBuf;
use std::time::Duration;

const SLEEPER: &str = "web: exec sleep 100000\n";

fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("bin/postgres").is_file())
}

/// Waits until the add-on is up and ready (roles applied) with a pid other than `not`.
fn wait_ready(agent: &Agent, app: &str, name: &str, not: Option<i64>) -> i64 {
    let mut pid = None;
    wait_for(
        &format!("{name} up and ready (not {not:?})"),
        Duration::from_secs(120),
        || {
            pid = addon(agent, app, name)
                .filter(|a| a["state"] == "up")
                .and_then(|a| a["pid"].as_i64())
                .filter(|p| Some(*p) != not);
            pid.is_some()
        },
    );
    pid.expect("set by wait_for")
}

/// The path `addons:backup` printed.
fn backup(agent: &Agent, app: &str, name: &str) -> PathBuf {
    let out = agent.ok(&["addons:backup", name, "-a", app]);
    let path = out
        .split_whitespace()
        .find(|w| w.starts_with('/'))
        .unwrap_or_else(|| panic!("no path in: {out}"));
    PathBuf::from(path)
}

const WRITE: &str = r#"psql -X -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "CREATE TABLE notes (t text); INSERT INTO notes VALUES ('kept-row')""#;
const READ: &str =
    r#"psql -X -tA -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "SELECT t FROM notes ORDER BY t""#;

#[test]
fn postgres_serves_an_app_survives_a_kill_shares_with_roles_backs_up_and_goes() {
    let agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    agent.create_and_deploy("nav", app_dir(&[("Procfile", SLEEPER)]).path());
    let out = agent.roboku(&["addons:create", "postgres", "-a", "nav"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !postgres_installed() {
        // The degraded path: a clear refusal naming the package, nothing recorded.
        assert!(!out.status.success(), "created without postgres: {text}");
        assert!(text.contains("apt-get install postgresql"), "{text}");
        assert!(config(&agent, "nav").get("DATABASE_URL").is_none());
        assert_eq!(agent.json(&["addons", "-a", "nav"]), serde_json::json!([]));
        return;
    }
    assert!(out.status.success(), "{text}");
    // The CLI waited for initdb and the roles: the add-on is ready when it returns.
    let a = addon(&agent, "nav", "nav-postgres").expect("listed");
    assert_eq!(a["state"], "up", "{a}");
    let pid = a["pid"].as_i64().expect("pid");
    let url = config(&agent, "nav")["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL")
        .to_string();
    assert!(url.starts_with("postgres://nav-"), "{url}");
    assert!(url.ends_with("/nav_postgres"), "{url}");
    let dir = data.join("addons/nav-postgres");
    let uid = uid_of(pid);
    assert_ne!(uid, 0, "the server is not root");
    assert_eq!(mode_uid(&dir), (0o700, uid));
    assert_eq!(mode_uid(&dir.join("data")), (0o700, uid));
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .contains("_addons/nav-postgres"),
        "in its own cgroup"
    );

    run_ok(&agent, "nav", WRITE);
    assert_eq!(run_ok(&agent, "nav", READ).trim(), "kept-row");
    // No password, no way in: scram on loopback.
    let anon = url.replacen("postgres://", "postgres://x", 1);
    let (code, all) = run(&agent, "nav", &format!("psql -X \"{anon}\" -c 'select 1'"));
    assert_ne!(code, 0, "a wrong user got in: {all}");

    // Killed: restarted, the data kept.
    assert!(kill(pid, libc::SIGKILL));
    let pid2 = wait_ready(&agent, "nav", "nav-postgres", Some(pid));
    assert!(!alive(pid));
    assert_eq!(run_ok(&agent, "nav", READ).trim(), "kept-row");

    // A second app: a role of its own on the same database, with the same rights.
    agent.create_and_deploy("ui", app_dir(&[("Procfile", SLEEPER)]).path());
    agent.ok(&["addons:attach", "nav-postgres", "-a", "ui"]);
    let ui_url = config(&agent, "ui")["DATABASE_URL"]
        .as_str()
        .expect("ui's DATABASE_URL")
        .to_string();
    assert!(ui_url.starts_with("postgres://ui-"), "{ui_url}");
    assert_eq!(run_ok(&agent, "ui", READ).trim(), "kept-row");
    run_ok(
        &agent,
        "ui",
        r#"psql -X -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "INSERT INTO notes VALUES ('ui-row')""#,
    );
    assert_eq!(run_ok(&agent, "nav", READ).trim(), "kept-row\nui-row");

    // Detached: its var goes and its role no longer logs in (the CLI waited for that).
    agent.ok(&["addons:detach", "nav-postgres", "-a", "ui"]);
    assert!(config(&agent, "ui").get("DATABASE_URL").is_none());
    let (code, all) = run(
        &agent,
        "ui",
        &format!("psql -X -v ON_ERROR_STOP=1 \"{ui_url}\" -c 'select 1'"),
    );
    assert_ne!(code, 0, "a detached app still gets in: {all}");
    assert_eq!(run_ok(&agent, "nav", READ).trim(), "kept-row\nui-row");

    // A backup: a dump with the rows, root's 0600, under backups/nav/, counted by `disk`.
    let path = backup(&agent, "nav", "nav-postgres");
    assert!(
        path.starts_with(data.join("backups/nav")),
        "{}",
        path.display()
    );
    assert!(path.to_string_lossy().ends_with(".sql"));
    assert_eq!(mode_uid(&path), (0o600, 0));
    assert_eq!(mode_uid(&data.join("backups")).0, 0o700);
    let dump = std::fs::read_to_string(&path).expect("dump");
    assert!(
        dump.contains("kept-row") && dump.contains("ui-row"),
        "{dump}"
    );
    let disk = agent.ok(&["disk"]);
    assert!(disk.contains("add-on backups"), "{disk}");
    // -o: a copy on the CLI's side too, whole.
    let here = tempfile::tempdir().expect("tempdir");
    let out = here.path().join("nav.sql");
    let said = agent.ok(&[
        "addons:backup",
        "nav-postgres",
        "-a",
        "nav",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(said.contains("nav.sql"), "{said}");
    assert_eq!(mode_uid(&out).0, 0o600);
    let copy = std::fs::read_to_string(&out).expect("the copy");
    assert!(
        copy.contains("kept-row") && copy.contains("ui-row"),
        "{copy}"
    );
    assert!(
        copy.contains("PostgreSQL database dump complete"),
        "whole: {copy}"
    );

    // Destroyed: the server and its dir are gone.
    agent.ok(&[
        "addons:destroy",
        "nav-postgres",
        "-a",
        "nav",
        "--confirm",
        "nav",
    ]);
    wait_for("the server to stop", Duration::from_secs(30), || {
        !alive(pid2)
    });
    wait_for("its dir to go", Duration::from_secs(30), || !dir.exists());
    assert!(config(&agent, "nav").get("DATABASE_URL").is_none());
}

#[test]
fn sqlite_backups_are_whole_databases_and_an_empty_bus_says_so() {
    let agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    agent.create_and_deploy("nav", app_dir(&[("Procfile", SLEEPER)]).path());
    agent.ok(&["addons:create", "sqlite", "-a", "nav"]);
    run_ok(
        &agent,
        "nav",
        r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
db.execute('PRAGMA journal_mode=WAL')
db.execute('CREATE TABLE notes (text TEXT)')
db.execute(\"INSERT INTO notes VALUES ('in-the-backup')\")
db.commit()
""#,
    );
    let path = backup(&agent, "nav", "nav-sqlite");
    assert!(
        path.starts_with(data.join("backups/nav")),
        "{}",
        path.display()
    );
    assert_eq!(mode_uid(&path), (0o600, 0));
    let db =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the backup opens");
    let t: String = db
        .query_row("SELECT text FROM notes", [], |r| r.get(0))
        .expect("the row");
    assert_eq!(t, "in-the-backup");

    // Another app cannot back up what it is not attached to.
    agent.create_and_deploy("ui", app_dir(&[("Procfile", SLEEPER)]).path());
    let out = agent.roboku(&["addons:backup", "nav-sqlite", "-a", "ui"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("not attached to ui"),
        "{text}"
    );

    // A broker that has saved nothing: a clear refusal, no file.
    agent.ok(&["addons:create", "mqtt", "-a", "ui"]);
    let out = agent.roboku(&["addons:backup", "ui-mqtt", "-a", "ui"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("nothing to back up"),
        "{text}"
    );
    assert!(!data.join("backups/ui").exists());
}

/// robokud SIGKILLed with its postgres running: at the next start the dead agent's server (and
/// its backends) is killed, a fresh one serves the same data.
#[test]
fn a_postgres_left_by_a_killed_robokud_is_replaced_with_its_data() {
    if !postgres_installed() {
        // Checked for what it says by the test above; here there is nothing more to check.
        let agent = Agent::start(AgentOpts::default());
        agent.create_and_deploy("nav", app_dir(&[("Procfile", SLEEPER)]).path());
        let out = agent.roboku(&["addons:create", "postgres", "-a", "nav"]);
        assert!(!out.status.success(), "created without postgres");
        return;
    }
    let mut agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("nav", app_dir(&[("Procfile", SLEEPER)]).path());
    agent.ok(&["addons:create", "postgres", "-a", "nav"]);
    run_ok(&agent, "nav", WRITE);
    let web = agent.wait_up("nav", "web.1", None, Duration::from_secs(20));
    let pid = wait_ready(&agent, "nav", "nav-postgres", None);
    // The server and its backends, all of the dead agent's.
    let left: Vec<i64> = roboku_tests::tagged(agent.data_dir())
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| *p != web)
        .collect();
    assert!(left.contains(&pid), "{left:?} has the server {pid}");
    agent.kill9_and_restart("stop");
    let pid2 = wait_ready(&agent, "nav", "nav-postgres", Some(pid));
    for p in &left {
        wait_for(
            &format!("the dead agent's postgres process {p} to be gone"),
            Duration::from_secs(30),
            || !alive(*p),
        );
    }
    assert!(alive(pid2));
    assert_eq!(run_ok(&agent, "nav", READ).trim(), "kept-row");
}

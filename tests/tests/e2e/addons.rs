//! Add-ons and persistent data, as a user meets them: `addons:create sqlite` and `mqtt` give an
//! app `DATABASE_URL` and `MQTT_URL` that its dynos (one-offs here) use with python's sqlite3
//! and mosquitto_pub/sub; the data survives a deploy and a rollback; the Mosquitto robokud runs
//! for the add-on is not root, is restarted after `kill -9` and stops with robokud; another app
//! can neither open the first app's data nor log in to the broker until it is attached (with
//! credentials of its own, useless once detached); destroy removes the add-on, its files and
//! its config vars. Every agent here starts on a fresh data dir it lays out itself.

use roboku_tests::{alive, app_dir, kill, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const SLEEPER: &str = "web: exec sleep 100000\n";

/// `roboku run -a app -- sh -c script` as the app's dyno would run it: (exit code, stdout,
/// stdout and stderr).
pub(crate) fn run_out(agent: &Agent, app: &str, script: &str) -> (i32, String, String) {
    let out = agent.roboku(&["run", "-a", app, "--", "sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout, all)
}

/// (exit code, everything it printed).
pub(crate) fn run(agent: &Agent, app: &str, script: &str) -> (i32, String) {
    let (code, _, all) = run_out(agent, app, script);
    (code, all)
}

/// Its stdout, asserting it succeeded.
pub(crate) fn run_ok(agent: &Agent, app: &str, script: &str) -> String {
    let (code, stdout, all) = run_out(agent, app, script);
    assert_eq!(code, 0, "{app}: {script}\n{all}");
    stdout
}

pub(crate) fn addon(agent: &Agent, app: &str, name: &str) -> Option<Value> {
    match agent.json(&["addons", "-a", app]) {
        Value::Array(v) => v.into_iter().find(|a| a["name"] == name),
        other => panic!("addons --json is not a list: {other}"),
    }
}

/// Waits until the add-on's server is up with a pid other than `not`; that pid.
pub(crate) fn wait_server_up(agent: &Agent, app: &str, name: &str, not: Option<i64>) -> i64 {
    let mut pid = None;
    wait_for(
        &format!("{name} up (not {not:?})"),
        Duration::from_secs(20),
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

pub(crate) fn config(agent: &Agent, app: &str) -> Value {
    agent.json(&["config", "-a", app])
}

pub(crate) fn uid_of(pid: i64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("Uid")
}

pub(crate) fn mode_uid(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid())
}

const SQL_WRITE: &str = r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
db.execute('CREATE TABLE IF NOT EXISTS notes (text TEXT)')
db.execute(\"INSERT INTO notes VALUES ('kept')\")
db.commit()
" && echo on-disk > "$ROBOKU_DATA/plain.txt""#;

const SQL_READ: &str = r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
print('rows', [r[0] for r in db.execute('SELECT text FROM notes')])
" && cat "$ROBOKU_DATA/plain.txt""#;

#[test]
fn sqlite_and_mqtt_addons_serve_the_app_keep_its_data_and_keep_other_apps_out() {
    let mut agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    let src = app_dir(&[("Procfile", SLEEPER)]);
    agent.create_and_deploy("nav", src.path());
    let nav_uid = agent.json(&["apps:info", "-a", "nav"])["uid"]
        .as_u64()
        .unwrap() as u32;

    // The persistent data dir: the app's own, private, in its env.
    let nav_data = data.join("data/nav");
    assert_eq!(mode_uid(&nav_data), (0o700, nav_uid));
    assert_eq!(mode_uid(&data.join("data")).0, 0o711);
    let env = run_ok(&agent, "nav", "echo \"data=$ROBOKU_DATA\"");
    assert!(
        env.contains(&format!("data={}", nav_data.display())),
        "{env}"
    );

    // Bad input is refused, naming what was wrong; nothing changes.
    let bad = agent.roboku(&["addons:create", "mysql", "-a", "nav"]);
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && text.contains("sqlite, mqtt, redis, postgres"),
        "{text}"
    );

    let out = agent.ok(&["addons:create", "sqlite", "-a", "nav"]);
    assert!(out.contains("v2"), "a new release: {out}");
    let out = agent.ok(&["addons:create", "mqtt", "-a", "nav"]);
    assert!(out.contains("v3"), "a new release: {out}");
    let cfg = config(&agent, "nav");
    let db_path = nav_data.join("db.sqlite3");
    assert_eq!(
        cfg["DATABASE_URL"],
        format!("sqlite:///{}", db_path.display()),
        "Heroku-style URL, 4 slashes before the absolute path"
    );
    let mqtt_url = cfg["MQTT_URL"].as_str().expect("MQTT_URL").to_string();
    assert!(
        mqtt_url.starts_with("mqtt://nav-") && mqtt_url.contains("@127.0.0.1:"),
        "{mqtt_url}"
    );
    assert_eq!(mode_uid(&db_path), (0o600, nav_uid));

    // The broker: its own uid (neither root nor the app's), private files, supervised.
    let pid = wait_server_up(&agent, "nav", "nav-mqtt", None);
    let broker_uid = uid_of(pid);
    assert!(
        broker_uid != 0 && broker_uid != nav_uid,
        "broker runs as {broker_uid}"
    );
    let dir = data.join("addons/nav-mqtt");
    assert_eq!(mode_uid(&dir), (0o700, broker_uid));
    for f in ["mosquitto.conf", "passwd", "acl"] {
        assert_eq!(mode_uid(&dir.join(f)), (0o600, broker_uid), "{f}");
    }
    // In a cgroup of its own beside the apps', with the add-on limits (cgroup v1 here).
    let cg = format!("{}/_addons/nav-mqtt", agent.cgroup_name());
    assert!(
        roboku_tests::cgroups::procs_in(&cg).contains(&pid),
        "the broker is in {cg}"
    );
    let mem = std::fs::read_to_string(format!("/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes"))
        .expect("memory limit of the add-on's cgroup");
    assert_eq!(mem.trim(), (512u64 << 20).to_string());
    let listed = addon(&agent, "nav", "nav-sqlite").expect("listed");
    assert_eq!(listed["state"], "provisioned");
    assert_eq!(listed["var"], "DATABASE_URL");

    // The app uses both.
    run_ok(&agent, "nav", SQL_WRITE);
    let pubsub = "mosquitto_pub -L \"$MQTT_URL/nav/pose\" -r -q 1 -m x=1 && \
                  mosquitto_sub -L \"$MQTT_URL/nav/pose\" -C 1 -W 10";
    assert_eq!(run_ok(&agent, "nav", pubsub).trim(), "x=1");

    // Data survives a deploy and a rollback (to a release from before the add-ons, which
    // keeps the add-ons' vars: add-ons are not rolled back with the code).
    agent.deploy("nav", src.path());
    assert!(run_ok(&agent, "nav", SQL_READ).contains("rows ['kept']\non-disk"));
    agent.ok(&["rollback", "v1", "-a", "nav"]);
    let cfg = config(&agent, "nav");
    assert_eq!(cfg["MQTT_URL"], mqtt_url.as_str(), "{cfg}");
    assert!(run_ok(&agent, "nav", SQL_READ).contains("rows ['kept']\non-disk"));

    // Killed with SIGKILL, the broker comes back (and serves again).
    assert!(kill(pid, libc::SIGKILL));
    let pid2 = wait_server_up(&agent, "nav", "nav-mqtt", Some(pid));
    assert!(addon(&agent, "nav", "nav-mqtt").unwrap()["restarts"].as_u64() >= Some(1));
    let again = "mosquitto_pub -L \"$MQTT_URL/nav/pose\" -r -q 1 -m x=2 && \
                 mosquitto_sub -L \"$MQTT_URL/nav/pose\" -C 1 -W 10";
    assert_eq!(run_ok(&agent, "nav", again).trim(), "x=2");

    // Another app: no way into nav's data, nor onto the broker without being attached.
    agent.create_and_deploy("ui", src.path());
    let port = mqtt_url.rsplit(':').next().unwrap().to_string();
    let (code, text) = run(&agent, "ui", &format!("cat {}", db_path.display()));
    assert_ne!(code, 0, "ui read nav's database: {text}");
    assert!(text.contains("Permission denied"), "{text}");
    let (code, text) = run(&agent, "ui", &format!("ls {}", nav_data.display()));
    assert!(code != 0 && text.contains("Permission denied"), "{text}");
    let (code, text) = run(&agent, "ui", &format!("cat {}/passwd", dir.display()));
    assert!(code != 0 && text.contains("Permission denied"), "{text}");
    let anon = format!("mosquitto_sub -h 127.0.0.1 -p {port} -t '#' -C 1 -W 3");
    let (code, text) = run(&agent, "ui", &anon);
    assert_ne!(code, 0, "anonymous client got in: {text}");
    assert!(text.to_lowercase().contains("not authori"), "{text}");
    let guess = format!("mosquitto_sub -h 127.0.0.1 -p {port} -u nav -P guess -t '#' -C 1 -W 3");
    let (code, text) = run(&agent, "ui", &guess);
    assert!(
        code != 0 && text.to_lowercase().contains("not authori"),
        "{text}"
    );

    // sqlite cannot be shared (uids); mqtt can, with ui's own credentials.
    let refused = agent.roboku(&["addons:attach", "nav-sqlite", "-a", "ui"]);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && text.contains("only nav's uid"),
        "{text}"
    );
    agent.ok(&["addons:attach", "nav-mqtt", "-a", "ui"]);
    let ui_url = config(&agent, "ui")["MQTT_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ui_url.starts_with("mqtt://ui-"), "ui's own user: {ui_url}");
    assert_ne!(ui_url, mqtt_url);
    let listen = "mosquitto_sub -L \"$MQTT_URL/nav/pose\" -C 1 -W 10";
    assert_eq!(
        run_ok(&agent, "ui", listen).trim(),
        "x=2",
        "ui hears nav on the bus"
    );
    let owners = addon(&agent, "ui", "nav-mqtt").unwrap();
    assert_eq!(owners["attached"], serde_json::json!(["nav", "ui"]));

    // Detached: the var goes, and the credentials ui had stop working.
    agent.ok(&["addons:detach", "nav-mqtt", "-a", "ui"]);
    assert!(config(&agent, "ui").get("MQTT_URL").is_none());
    let stale = format!("mosquitto_sub -L '{ui_url}/nav/pose' -C 1 -W 3");
    wait_for(
        "ui's old credentials refused",
        Duration::from_secs(10),
        || {
            let (code, text) = run(&agent, "ui", &stale);
            code != 0 && text.to_lowercase().contains("not authori")
        },
    );

    // Destroy: confirm needed; then the server, the files and the vars go.
    let unconfirmed = agent.roboku(&["addons:destroy", "nav-mqtt", "-a", "nav"]);
    let text = String::from_utf8_lossy(&unconfirmed.stderr);
    assert!(
        !unconfirmed.status.success() && text.contains("--confirm nav"),
        "{text}"
    );
    assert!(alive(pid2), "a refused destroy leaves the broker running");
    agent.ok(&[
        "addons:destroy",
        "nav-mqtt",
        "-a",
        "nav",
        "--confirm",
        "nav",
    ]);
    assert!(config(&agent, "nav").get("MQTT_URL").is_none());
    assert!(addon(&agent, "nav", "nav-mqtt").is_none());
    wait_for(
        "the destroyed broker and its files to go",
        Duration::from_secs(15),
        || !alive(pid2) && !dir.exists(),
    );
    agent.ok(&[
        "addons:destroy",
        "nav-sqlite",
        "-a",
        "nav",
        "--confirm",
        "nav",
    ]);
    assert!(config(&agent, "nav").get("DATABASE_URL").is_none());
    assert!(!db_path.exists());
    assert!(
        nav_data.join("plain.txt").exists(),
        "the data dir itself stays the app's"
    );

    // A new broker stops with robokud.
    agent.ok(&["addons:create", "mqtt", "-a", "ui"]);
    let pid3 = wait_server_up(&agent, "ui", "ui-mqtt", None);
    agent.stop();
    assert!(!alive(pid3), "the broker stopped with robokud");
}

#[test]
fn the_data_dir_moves_with_a_rename_and_goes_with_the_app() {
    let agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    agent.create_and_deploy("keep", app_dir(&[("Procfile", SLEEPER)]).path());
    run_ok(&agent, "keep", "echo kept > \"$ROBOKU_DATA/f\"");
    agent.ok(&["apps:rename", "keep", "kept"]);
    assert!(!data.join("data/keep").exists());
    let text = run_ok(
        &agent,
        "kept",
        "echo \"$ROBOKU_DATA\"; cat \"$ROBOKU_DATA/f\"",
    );
    assert_eq!(
        text,
        format!("{}\nkept\n", data.join("data/kept").display())
    );
    agent.ok(&["apps:destroy", "kept", "--confirm", "kept"]);
    wait_for("the data dir to go", Duration::from_secs(10), || {
        !data.join("data/kept").exists()
    });
}

#[test]
fn redis_is_offered_where_redis_server_is_installed_and_named_where_not() {
    let agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("ui", app_dir(&[("Procfile", SLEEPER)]).path());
    let installed = ["/usr/bin/redis-server", "/usr/sbin/redis-server"]
        .iter()
        .any(|p| Path::new(p).exists());
    let out = agent.roboku(&["addons:create", "redis", "-a", "ui"]);
    if installed {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_server_up(&agent, "ui", "ui-redis", None);
        assert!(config(&agent, "ui")["REDIS_URL"]
            .as_str()
            .unwrap()
            .starts_with("redis://ui-"));
    } else {
        // This host has no redis-server: the degraded path, checked for what it says.
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "created without redis-server");
        assert!(text.contains("apt-get install redis-server"), "{text}");
        assert!(config(&agent, "ui").get("REDIS_URL").is_none());
        assert_eq!(agent.json(&["addons", "-a", "ui"]), serde_json::json!([]));
    }
}

/// robokud SIGKILLed inside `addons:create mqtt`, after the add-on was recorded and its
/// Mosquitto started but before its config var was stored: at the next start no broker of the
/// dead agent is left, the add-on exists whole (server up, `MQTT_URL` stored and working).
#[test]
fn a_kill_9_during_addons_create_leaves_no_orphan_broker_and_a_whole_addon() {
    let mut agent = Agent::start(AgentOpts::default());
    let src = app_dir(&[("Procfile", SLEEPER)]);
    agent.create_and_deploy("nav", src.path());
    agent.restart_with_fault("addon.recorded");
    let out = agent.roboku(&["addons:create", "mqtt", "-a", "nav"]);
    assert!(!out.status.success(), "the agent died mid-way");
    agent.wait_killed(Duration::from_secs(30));
    // What the dead agent left running (web.1, and the broker if it had forked yet).
    let left: Vec<i64> = roboku_tests::tagged(agent.data_dir())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    agent.respawn();
    let pid = wait_server_up(&agent, "nav", "nav-mqtt", None);
    let web = agent.wait_up("nav", "web.1", None, Duration::from_secs(20));
    for p in left.iter().filter(|p| **p != web) {
        wait_for(
            &format!("the dead agent's broker {p} to be gone"),
            Duration::from_secs(20),
            || !alive(*p),
        );
    }
    wait_for(
        "only the live broker and web.1 carry the agent's tag",
        Duration::from_secs(20),
        || {
            let mut pids: Vec<i64> = roboku_tests::tagged(agent.data_dir())
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            pids.sort_unstable();
            let mut want = vec![pid, web];
            want.sort_unstable();
            pids == want
        },
    );
    let cfg = config(&agent, "nav");
    assert!(
        cfg["MQTT_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("mqtt://nav-")),
        "the var is stored: {cfg}"
    );
    let pubsub = "mosquitto_pub -L \"$MQTT_URL/nav/pose\" -r -q 1 -m x=1 && \
                  mosquitto_sub -L \"$MQTT_URL/nav/pose\" -C 1 -W 10";
    assert_eq!(run_ok(&agent, "nav", pubsub).trim(), "x=1");
}

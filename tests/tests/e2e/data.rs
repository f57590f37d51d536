//! Data snapshots and `rollback --with-data`, as a user meets them: nav keeps a counter file and
//! a sqlite database (its add-on) in `ROBOKU_DATA`; each release that replaces another
//! snapshots the data; `rollback vN --with-data` stops nav, brings vN's data back and starts it
//! on the rollback release, while another app's data is untouched; the data it replaced is kept
//! as a snapshot, so a second `--with-data` rollback undoes it. A release without a snapshot is
//! refused, naming what there is, and nothing running is disturbed. Killed with SIGKILL before,
//! during and after the swap, robokud comes back with whole data, never a mix.

use roboku_tests::{app_dir, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const SLEEPER: &str = "web: exec sleep 100000\n";

fn nav_src(code: &str) -> tempfile::TempDir {
    app_dir(&[("Procfile", SLEEPER), ("version.txt", code)])
}

fn run_ok(agent: &Agent, app: &str, script: &str) -> String {
    let out = agent.roboku(&["run", "-a", app, "--", "sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{app}: {script}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Adds `note` to nav's database (in WAL mode) and writes `count` to its counter file.
fn write(agent: &Agent, note: &str, count: u32) {
    let script = format!(
        r#"python3 -c "
import os, sqlite3, sys
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
db.execute('PRAGMA journal_mode=WAL')
db.execute('CREATE TABLE IF NOT EXISTS notes (text TEXT)')
db.execute('INSERT INTO notes VALUES (?)', (sys.argv[1],))
db.commit()
" {note} && echo {count} > "$ROBOKU_DATA/counter""#
    );
    run_ok(agent, "nav", &script);
}

/// What nav's dyno sees: `notes=[...] counter=N`.
fn read(agent: &Agent) -> String {
    let script = r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
print('notes=' + ','.join(r[0] for r in db.execute('SELECT text FROM notes ORDER BY rowid')), end=' ')
" && echo "counter=$(cat "$ROBOKU_DATA/counter")""#;
    run_ok(agent, "nav", script).trim().to_string()
}

fn current(agent: &Agent, app: &str) -> Value {
    match agent.json(&["releases", "-a", app]) {
        Value::Array(v) => v
            .into_iter()
            .find(|r| r["current"] == true)
            .expect("a current release"),
        other => panic!("releases --json is not a list: {other}"),
    }
}

fn mode_uid(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid())
}

/// nav at v4 with v3's data snapshotted (`notes=one counter=1`) and live data
/// `notes=one,two counter=2`. v1 had no data when v2 replaced it: it has no snapshot.
fn nav_with_two_states(agent: &Agent) {
    agent.create_and_deploy("nav", nav_src("one").path());
    agent.deploy("nav", nav_src("one").path());
    let out = agent.ok(&["addons:create", "sqlite", "-a", "nav"]);
    assert!(out.contains("v3"), "{out}");
    write(agent, "one", 1);
    assert_eq!(agent.deploy("nav", nav_src("two").path())["version"], 4);
    write(agent, "two", 2);
    assert_eq!(read(agent), "notes=one,two counter=2");
}

#[test]
fn rollback_with_data_brings_a_releases_data_back_and_can_be_undone() {
    let agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    agent.create_and_deploy("ui", app_dir(&[("Procfile", SLEEPER)]).path());
    run_ok(&agent, "ui", "echo ui-1 > \"$ROBOKU_DATA/state\"");
    nav_with_two_states(&agent);
    run_ok(&agent, "ui", "echo ui-2 > \"$ROBOKU_DATA/state\"");

    // Snapshots are root's alone; v1 had no data when v2 replaced it, so it has none.
    let snaps = data.join("snapshots/nav");
    assert_eq!(mode_uid(&data.join("snapshots")), (0o700, 0));
    assert_eq!(mode_uid(&snaps), (0o700, 0));
    assert!(snaps.join("v3").is_dir() && !snaps.join("v1").exists());
    let web = agent.wait_up("nav", "web.1", None, Duration::from_secs(10));

    let bad = agent.roboku(&["rollback", "v1", "-a", "nav", "--with-data"]);
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success()
            && text.contains("v1 of nav has no data snapshot")
            && text.contains("v3, v2"),
        "{text}"
    );
    assert_eq!(current(&agent, "nav")["version"], 4, "nothing changed");
    assert_eq!(agent.up_pid("nav", "web.1"), Some(web), "nothing restarted");

    let out = agent.ok(&["rollback", "v3", "-a", "nav", "--with-data"]);
    assert!(out.contains("v5") && out.contains("with its data"), "{out}");
    assert_eq!(read(&agent), "notes=one counter=1", "v3's data is back");
    let now = current(&agent, "nav");
    assert_eq!(now["version"], 5);
    assert!(
        now["description"]
            .as_str()
            .is_some_and(|d| d.contains("Rollback to v3") && d.contains("data")),
        "{now}"
    );
    let new_web = agent.wait_up("nav", "web.1", Some(web), Duration::from_secs(10));
    assert_eq!(agent.dyno("nav", "web.1").expect("web.1")["release"], 5);
    assert_ne!(new_web, web);
    assert_eq!(
        std::fs::read_to_string(data.join("data/ui/state")).unwrap(),
        "ui-2\n",
        "another app's data is untouched"
    );
    assert_eq!(
        std::fs::read_to_string(snaps.join("v4/counter")).unwrap(),
        "2\n",
        "the data replaced is kept as v4's snapshot"
    );
    assert!(!snaps.join("restore.json").exists() && !snaps.join(".restore").exists());

    // Undone the same way.
    let out = agent.ok(&["rollback", "v4", "-a", "nav", "--with-data"]);
    assert!(out.contains("v6"), "{out}");
    assert_eq!(read(&agent), "notes=one,two counter=2");

    // A plain rollback keeps the data as it is.
    agent.ok(&["rollback", "v3", "-a", "nav"]);
    assert_eq!(read(&agent), "notes=one,two counter=2");

    // `roboku disk` counts them.
    let disk = agent.json(&["disk"]);
    let rows = disk["rows"].as_array().expect("rows");
    let snap_bytes = rows
        .iter()
        .find(|r| r["what"] == "data snapshots" && r["app"] == "nav")
        .and_then(|r| r["bytes"].as_u64())
        .unwrap_or_else(|| panic!("no data snapshots row: {disk}"));
    assert!(snap_bytes > 0, "{disk}");
}

#[test]
fn a_kill_9_mid_restore_leaves_whole_data() {
    // Before the swap, just after it (old data not yet filed as a snapshot), and after it with
    // no rollback release made: every time the data that was live comes back whole.
    for point in [
        "restore.journaled",
        "restore.swapped",
        "restore.before_release",
    ] {
        let mut agent = Agent::start(AgentOpts::default());
        nav_with_two_states(&agent);
        let snaps = agent.data_dir().join("snapshots/nav");
        agent.restart_with_fault(point);
        let out = agent.roboku(&["rollback", "v3", "-a", "nav", "--with-data"]);
        assert!(!out.status.success(), "{point}: the agent died mid-way");
        agent.wait_killed(Duration::from_secs(30));
        agent.respawn();
        agent.wait_up("nav", "web.1", None, Duration::from_secs(20));
        assert_eq!(read(&agent), "notes=one,two counter=2", "{point}");
        assert_eq!(current(&agent, "nav")["version"], 4, "{point}");
        assert!(
            !snaps.join("restore.json").exists() && !snaps.join(".restore").exists(),
            "{point}: the restore is settled"
        );
        // And it can be done now.
        agent.ok(&["rollback", "v3", "-a", "nav", "--with-data"]);
        wait_for("nav back up", Duration::from_secs(20), || {
            agent.up_pid("nav", "web.1").is_some()
        });
        assert_eq!(read(&agent), "notes=one counter=1", "{point}");
    }
}

/// nav's first code: refuses to start on data holding a `poison` file.
const PICKY: &str = "web: test ! -e \"$ROBOKU_DATA/poison\" && exec sleep 100000\n";

/// nav at v3 (code that ignores `poison`) with v2's data snapshotted (`notes=one counter=1` and
/// a `poison` file, written while v2's dyno ran) and live data `notes=one,two counter=2`:
/// `rollback v2 --with-data` makes a release (v4) whose dyno exits at once.
fn nav_with_a_poisoned_v2(agent: &Agent) {
    agent.create_and_deploy("nav", app_dir(&[("Procfile", PICKY)]).path());
    let out = agent.ok(&["addons:create", "sqlite", "-a", "nav"]);
    assert!(out.contains("v2"), "{out}");
    write(agent, "one", 1);
    run_ok(agent, "nav", "touch \"$ROBOKU_DATA/poison\"");
    assert_eq!(agent.deploy("nav", nav_src("two").path())["version"], 3);
    write(agent, "two", 2);
    assert_eq!(read(agent), "notes=one,two counter=2");
}

fn status_of(agent: &Agent, version: u64) -> String {
    match agent.json(&["releases", "-a", "nav"]) {
        Value::Array(v) => v
            .iter()
            .find(|r| r["version"] == version)
            .and_then(|r| r["status"].as_str())
            .unwrap_or_else(|| panic!("no v{version} in {v:?}"))
            .to_string(),
        other => panic!("releases --json is not a list: {other}"),
    }
}

/// After a failed with-data rollback to v2: v3 runs again on its own data, v4 failed, the
/// restore is settled and v2's snapshot is still there to try again.
fn v3_is_back_with_its_data(agent: &Agent, why: &str) {
    let snaps = agent.data_dir().join("snapshots/nav");
    agent.wait_up("nav", "web.1", None, Duration::from_secs(20));
    assert_eq!(current(agent, "nav")["version"], 3, "{why}");
    assert_eq!(
        agent.dyno("nav", "web.1").expect("web.1")["release"],
        3,
        "{why}"
    );
    assert_eq!(
        read(agent),
        "notes=one,two counter=2",
        "{why}: v3's own data"
    );
    assert_eq!(status_of(agent, 4), "failed", "{why}");
    assert!(
        !snaps.join("restore.json").exists() && !snaps.join(".restore").exists(),
        "{why}: the restore is settled"
    );
    assert!(
        snaps.join("v2/poison").exists(),
        "{why}: v2's snapshot is kept"
    );
}

#[test]
fn a_failed_rollback_with_data_puts_the_data_of_the_release_before_back() {
    let agent = Agent::start(AgentOpts::default());
    nav_with_a_poisoned_v2(&agent);
    let out = agent.roboku(&["rollback", "v2", "-a", "nav", "--with-data"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("release v4 failed") && text.contains("v3"),
        "{text}"
    );
    v3_is_back_with_its_data(&agent, "rolled back");
    // The restore is not stuck: a release goes through.
    agent.ok(&["config:set", "A=1", "-a", "nav"]);
    assert_eq!(read(&agent), "notes=one,two counter=2");
}

#[test]
fn a_kill_9_while_a_with_data_rollback_rolls_out_or_fails_never_leaves_old_code_on_vns_data() {
    // While its dynos start (not yet judged), once it was marked failed, and once its dynos are
    // down with vN's data not yet swapped out: every time the release before comes back with
    // its own data.
    for point in ["rollout.switched", "rollout.failed", "restore.undoing"] {
        let mut agent = Agent::start(AgentOpts::default());
        nav_with_a_poisoned_v2(&agent);
        agent.restart_with_fault(point);
        let out = agent.roboku(&["rollback", "v2", "-a", "nav", "--with-data"]);
        assert!(!out.status.success(), "{point}: the agent died mid-way");
        agent.wait_killed(Duration::from_secs(30));
        agent.respawn();
        v3_is_back_with_its_data(&agent, point);
    }
}

#[test]
fn rename_moves_database_url_and_snapshots_with_the_app() {
    let agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    nav_with_two_states(&agent);
    agent.ok(&["apps:rename", "nav", "rover"]);
    let cfg = agent.json(&["config", "-a", "rover"]);
    assert_eq!(
        cfg["DATABASE_URL"],
        format!("sqlite:///{}", data.join("data/rover/db.sqlite3").display()),
        "the stored var names the moved file"
    );
    assert!(data.join("snapshots/rover/v3").is_dir() && !data.join("snapshots/nav").exists());
    let out = agent.ok(&["rollback", "v3", "-a", "rover", "--with-data"]);
    assert!(out.contains("with its data"), "{out}");
    let script = r#"python3 -c "
import os, sqlite3
db = sqlite3.connect(os.environ['DATABASE_URL'][len('sqlite:///'):])
print(','.join(r[0] for r in db.execute('SELECT text FROM notes')))
""#;
    assert_eq!(run_ok(&agent, "rover", script).trim(), "one");
}

#[test]
fn an_addon_whose_config_var_is_refused_is_not_created() {
    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "nav"]);
    // The config nearly fills a dyno's environment (512 KiB): DATABASE_URL no longer fits.
    let big = "x".repeat(65_000);
    let mut args: Vec<String> = vec!["config:set".into(), "-a".into(), "nav".into()];
    args.extend((0..8).map(|i| format!("B{i}={big}")));
    args.push(format!("C={}", "y".repeat(4_222)));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    agent.ok(&refs);
    let out = agent.roboku(&["addons:create", "sqlite", "-a", "nav"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && text.contains("cannot create nav-sqlite")
            && text.contains("total"),
        "{text}"
    );
    assert_eq!(agent.json(&["addons", "-a", "nav"]), Value::Array(vec![]));
    let db = agent.data_dir().join("data/nav/db.sqlite3");
    wait_for(
        "the refused add-on's file to go",
        Duration::from_secs(10),
        || !db.exists(),
    );
    assert!(agent
        .json(&["config", "-a", "nav"])
        .get("DATABASE_URL")
        .is_none());
    // Once there is room, the same name is free.
    agent.ok(&["config:unset", "C", "-a", "nav"]);
    agent.ok(&["addons:create", "sqlite", "-a", "nav"]);
    let all = agent.json(&["addons", "-a", "nav"]);
    assert_eq!(all[0]["name"], "nav-sqlite", "{all}");
}

#[test]
fn an_app_that_opts_out_of_snapshots_has_none_and_rollback_with_data_says_why() {
    let agent = Agent::start(AgentOpts::default());
    let data = agent.data_dir().to_path_buf();
    // nav (big data) opts out; ui keeps its snapshots.
    agent.create_and_deploy("nav", nav_src("one").path());
    agent.create_and_deploy("ui", app_dir(&[("Procfile", SLEEPER)]).path());
    let out = agent.ok(&["data:snapshots", "off", "-a", "nav"]);
    assert!(out.contains("Data snapshots of nav: off"), "{out}");
    assert!(agent.ok(&["data:snapshots", "-a", "ui"]).contains(": on"));
    assert!(agent
        .ok(&["apps:info", "-a", "nav"])
        .contains("snapshots off"));
    assert_eq!(
        agent.json(&["apps:info", "-a", "nav"])["data_snapshots"],
        false
    );
    assert_eq!(
        agent.json(&["apps:info", "-a", "ui"])["data_snapshots"],
        true
    );
    run_ok(&agent, "nav", "echo 1 > \"$ROBOKU_DATA/counter\"");
    run_ok(&agent, "ui", "echo 1 > \"$ROBOKU_DATA/state\"");
    assert_eq!(agent.deploy("nav", nav_src("two").path())["version"], 2);
    assert_eq!(
        agent.deploy("ui", app_dir(&[("Procfile", SLEEPER)]).path())["version"],
        2
    );
    assert!(!data.join("snapshots/nav/v1").exists(), "nav opted out");
    assert!(
        data.join("snapshots/ui/v1").is_dir(),
        "ui keeps its snapshots"
    );
    let bad = agent.roboku(&["rollback", "v1", "-a", "nav", "--with-data"]);
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success()
            && text.contains("v1 of nav has no data snapshot")
            && text.contains("data snapshots were off for nav"),
        "{text}"
    );
    assert_eq!(current(&agent, "nav")["version"], 2, "nothing changed");
    // On again: the next replaced release has its snapshot; the old one still says why not.
    agent.ok(&["data:snapshots", "on", "-a", "nav"]);
    assert_eq!(agent.deploy("nav", nav_src("three").path())["version"], 3);
    assert!(data.join("snapshots/nav/v2").is_dir());
    let out = agent.ok(&["rollback", "v2", "-a", "nav", "--with-data"]);
    assert!(out.contains("with its data"), "{out}");
    let bad = agent.roboku(&["rollback", "v1", "-a", "nav", "--with-data"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("data snapshots were off for nav"));
}

#[test]
fn a_kill_9_while_a_snapshot_is_replaced_keeps_one_whole_copy() {
    // v2 fails, so v1 stays current with its snapshot; the next release snapshots v1 again and
    // robokud is killed between moving the old copy aside and putting the new one in place.
    let mut agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy("nav", nav_src("one").path());
    run_ok(&agent, "nav", "echo 1 > \"$ROBOKU_DATA/counter\"");
    let bad = app_dir(&[("Procfile", "web: exit 1\n")]);
    let out = agent.roboku(&["deploy", bad.path().to_str().expect("utf-8"), "-a", "nav"]);
    assert!(!out.status.success(), "the crashing release deployed");
    let snaps = agent.data_dir().join("snapshots/nav");
    let counter = |dir: &str| std::fs::read_to_string(snaps.join(dir).join("counter")).ok();
    assert_eq!(counter("v1").as_deref(), Some("1\n"));
    run_ok(&agent, "nav", "echo 2 > \"$ROBOKU_DATA/counter\"");
    agent.restart_with_fault("snapshot.replacing");
    let out = agent.roboku(&[
        "deploy",
        nav_src("two").path().to_str().expect("utf-8"),
        "-a",
        "nav",
    ]);
    assert!(!out.status.success(), "the agent died mid-way");
    agent.wait_killed(Duration::from_secs(30));
    assert!(
        snaps.join("v1.old").exists() && !snaps.join("v1").exists(),
        "killed between the renames"
    );
    agent.respawn();
    agent.wait_up("nav", "web.1", None, Duration::from_secs(20));
    assert_eq!(
        counter("v1").as_deref(),
        Some("2\n"),
        "the fresh copy is in place"
    );
    let left: Vec<String> = std::fs::read_dir(&snaps)
        .expect("snapshots")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["v1"], "nothing else is left");
    assert_eq!(agent.deploy("nav", nav_src("two").path())["version"], 3);
}

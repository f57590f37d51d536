//! What every fault run checks afterwards, and how many runs a scenario makes.

use roboku_tests::{tagged, Agent};
use serde_json::Value;
use std::collections::BTreeSet;

/// Runs per scenario: `ROBOKU_FAULT_RUNS`, else `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("ROBOKU_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// No process outside the store's records: every process the agent ever tagged belongs to the
/// session of a dyno `ps` lists (its children inherit the tag and the session). A process of a
/// dyno being killed may outlive its session leader for a moment: only one still there after
/// 5 s is a leak.
pub fn only_recorded_processes(agent: &Agent, apps: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut leaders = BTreeSet::new();
        for app in apps {
            for d in agent.ps(app) {
                if let Some(pid) = d["pid"].as_i64() {
                    leaders.insert(pid);
                }
            }
        }
        let strays: Vec<(i64, i64)> = tagged(agent.data_dir())
            .into_iter()
            .filter(|(_, sid)| !leaders.contains(sid))
            .collect();
        if strays.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "processes (pid, session) outside the store's records for 5s: {strays:?}; recorded: {leaders:?}"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The app's releases, newest first.
pub fn releases(agent: &Agent, app: &str) -> Vec<Value> {
    match agent.json(&["releases", "-a", app]) {
        Value::Array(v) => v,
        other => panic!("releases --json is not a list: {other}"),
    }
}

/// One whole release current, none left `deploying`; the current one `succeeded`.
pub fn settled_release(agent: &Agent, app: &str) -> Value {
    let all = releases(agent, app);
    let current: Vec<&Value> = all.iter().filter(|r| r["current"] == true).collect();
    assert_eq!(current.len(), 1, "exactly one current release: {all:#?}");
    assert!(
        all.iter().all(|r| r["status"] != "deploying"),
        "a release left deploying: {all:#?}"
    );
    assert_eq!(current[0]["status"], "succeeded", "{all:#?}");
    current[0].clone()
}

/// Instance cgroups: one per running dyno (the crashed and replaced ones removed) besides those
/// of its waiting spare, no build left.
pub fn no_leaked_cgroups(agent: &Agent, app: &str) {
    let rel = format!("{}/{app}", agent.cgroup_name());
    let builds = format!("{}/_builds", agent.cgroup_name());
    let names = |rel: &str| -> Vec<String> {
        roboku_tests::cgroups::children(rel, "")
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let ps = agent.ps(app);
        let up: BTreeSet<String> = ps
            .iter()
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .collect();
        let spare_dirs: Vec<String> = roboku_tests::spares(agent.data_dir())
            .into_iter()
            .filter_map(|(_, inst)| Some(inst.strip_prefix(&format!("{app}/"))?.to_string()))
            .collect();
        let dirs: Vec<String> = names(&rel)
            .into_iter()
            .filter(|d| !spare_dirs.contains(d))
            .collect();
        let per_dyno: BTreeSet<String> = dirs
            .iter()
            .filter_map(|d| d.split_once('@').map(|(n, _)| n.to_string()))
            .collect();
        let left = names(&builds);
        if dirs.len() == up.len() && per_dyno == up && left.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let last = format!("instance dirs {dirs:?}, dynos {up:?}, build dirs {left:?}");
            let procs: Vec<(String, Vec<i64>)> = dirs
                .iter()
                .map(|d| {
                    (
                        d.clone(),
                        roboku_tests::cgroups::procs_in(&format!("{rel}/{d}")),
                    )
                })
                .collect();
            // Which hierarchies still hold each dir: a removal cut short leaves some only.
            let held: Vec<(String, Vec<&str>)> = dirs
                .iter()
                .map(|d| {
                    let there = ["memory", "pids", "cpuacct", "cpu,cpuacct"]
                        .into_iter()
                        .filter(|h| {
                            std::path::Path::new("/sys/fs/cgroup")
                                .join(h)
                                .join(&rel)
                                .join(d)
                                .is_dir()
                        })
                        .collect();
                    (d.clone(), there)
                })
                .collect();
            panic!(
                "leaked cgroups after 15s: {last}; processes in them: {procs:?}; \
                 hierarchies holding them: {held:?}; ps: {ps:?}"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Slug dirs: only those of the newest `keep` releases, the current one and the newest good one.
pub fn slugs_collected(agent: &Agent, app: &str, keep: usize) {
    let dir = agent.data_dir().join("slugs");
    roboku_tests::wait_for(
        "slugs collected",
        std::time::Duration::from_secs(15),
        || {
            let all = releases(agent, app);
            let mut kept: BTreeSet<String> = all
                .iter()
                .take(keep)
                .filter_map(|r| r["slug"].as_str().map(str::to_owned))
                .collect();
            for r in all
                .iter()
                .filter(|r| r["current"] == true)
                .chain(all.iter().find(|r| r["status"] == "succeeded"))
            {
                if let Some(s) = r["slug"].as_str() {
                    kept.insert(s.to_string());
                }
            }
            let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect();
            on_disk.is_subset(&kept) && kept.iter().all(|s| on_disk.contains(s))
        },
    );
}

/// `PRAGMA integrity_check` of the agent's store answers `ok` (read-only, beside the agent).
pub fn integrity_ok(agent: &Agent) {
    let path = agent.data_dir().join("roboku.db");
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let answer: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("integrity_check {}: {e}", path.display()));
    assert_eq!(answer, "ok", "{}", path.display());
}

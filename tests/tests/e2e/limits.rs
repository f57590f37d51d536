//! Resource limits enforced by cgroups v1: the memory limit OOM-kills only the dyno that broke
//! it, and a pids limit contains a fork bomb.

use roboku_tests::{alive, app_dir, cgroups, holds_for, wait_for, Agent, AgentOpts};
use std::time::Duration;

const HOG: &str =
    "import time\nb = b'x' * (200 * 1024 * 1024)\nprint('allocated', flush=True)\ntime.sleep(60)\n";

#[test]
fn memory_limit_oom_kills_the_hog_and_spares_its_neighbour() {
    let agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[
        (
            "Procfile",
            "hog: exec python3 hog.py\nneighbour: exec sleep 1000\n",
        ),
        ("hog.py", HOG),
    ]);
    agent.create_and_deploy("demo", app.path());
    let formation = agent.json(&["ps:resize", "hog", "--memory", "32M", "-a", "demo"]);
    let hog = formation
        .as_array()
        .and_then(|f| f.iter().find(|e| e["ptype"] == "hog"))
        .unwrap_or_else(|| panic!("{formation}"));
    assert_eq!(hog["limits"]["memory_max"], 32 * 1024 * 1024, "{formation}");
    assert_eq!(hog["limits_enforced"], true, "{formation}");

    agent.ok(&["ps:scale", "neighbour=1", "-a", "demo"]);
    let neighbour = agent.wait_up("demo", "neighbour.1", None, Duration::from_secs(10));
    agent.ok(&["ps:scale", "hog=1", "-a", "demo"]);

    let mut d = None;
    wait_for("hog.1 OOM-killed", Duration::from_secs(20), || {
        d = agent
            .dyno("demo", "hog.1")
            .filter(|d| d["last_exit"]["oom"] == true);
        d.is_some()
    });
    let d = d.expect("set");
    assert!(d["oom_kills"].as_u64().expect("oom_kills") >= 1, "{d}");
    assert!(
        d["last_exit"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("OOM")),
        "{d}"
    );
    let lines = agent.log_lines(&["-a", "demo", "--source", "roboku", "-d", "hog.1"]);
    assert!(
        lines
            .iter()
            .any(|l| l["line"].as_str().is_some_and(|s| s.contains("R14"))),
        "{lines:#?}"
    );
    assert!(
        !agent
            .log_lines(&["-a", "demo", "--source", "app", "-d", "hog.1"])
            .iter()
            .any(|l| l["line"] == "allocated"),
        "the hog got its 200M past a 32M limit"
    );
    let events = agent.json(&["events", "-a", "demo"]);
    assert!(
        events.to_string().to_lowercase().contains("oom"),
        "no oom event: {events}"
    );
    wait_for("hog.1 restarted", Duration::from_secs(10), || {
        agent
            .dyno("demo", "hog.1")
            .and_then(|d| d["restarts"].as_u64())
            .is_some_and(|r| r >= 2)
    });
    let n = agent.dyno("demo", "neighbour.1").expect("neighbour listed");
    assert_eq!(n["pid"].as_i64(), Some(neighbour), "{n}");
    assert_eq!(n["restarts"], 0, "{n}");
    assert!(alive(neighbour));
}

#[test]
fn pids_limit_contains_a_fork_bomb() {
    let agent = Agent::start(AgentOpts::default());
    let app = app_dir(&[(
        "Procfile",
        "bomb: while true; do sleep 100 & done\nneighbour: exec sleep 1000\n",
    )]);
    agent.create_and_deploy("demo", app.path());
    agent.ok(&["ps:resize", "bomb", "--pids", "20", "-a", "demo"]);
    agent.ok(&["ps:scale", "neighbour=1", "-a", "demo"]);
    let neighbour = agent.wait_up("demo", "neighbour.1", None, Duration::from_secs(10));
    agent.ok(&["ps:scale", "bomb=1", "-a", "demo"]);

    let app_cgroup = format!("{}/demo", agent.cgroup_name());
    // Tasks in each instance cgroup of bomb.1 (a crashed instance's cgroup may linger while
    // its replacement starts; the limit is per instance).
    let bomb_tasks = || -> Vec<(String, usize)> {
        cgroups::children(&app_cgroup, "bomb.1@")
            .iter()
            .map(|dir| {
                let n = std::fs::read_to_string(dir.join("pids.current"))
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                (dir.display().to_string(), n)
            })
            .collect()
    };
    wait_for("the bomb to reach its cap", Duration::from_secs(15), || {
        bomb_tasks().iter().any(|(_, n)| *n >= 18)
    });
    // Every instance group that holds processes has the limit. (A group being made has no
    // process yet and still reads "max"; one being removed after a crash may not be readable.)
    for dir in cgroups::children(&app_cgroup, "bomb.1@") {
        let busy =
            std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty());
        if let (true, Ok(max)) = (busy, std::fs::read_to_string(dir.join("pids.max"))) {
            assert_eq!(max.trim(), "20", "{}", dir.display());
        }
    }
    let mut last: (Vec<(String, usize)>, Option<u64>) = (Vec::new(), None);
    holds_for("bomb at most 20 tasks", Duration::from_secs(2), || {
        last = (
            bomb_tasks(),
            agent
                .dyno("demo", "bomb.1")
                .and_then(|d| d["pids"].as_u64()),
        );
        let ok = last.0.iter().all(|(_, n)| *n <= 20) && last.1.is_none_or(|p| p <= 20);
        if !ok {
            eprintln!("over the limit: cgroups {:?}, ps pids {:?}", last.0, last.1);
        }
        ok
    });
    // The host is fine: the agent answers and the neighbour never noticed.
    agent.ok(&["status"]);
    assert_eq!(agent.up_pid("demo", "neighbour.1"), Some(neighbour));

    agent.ok(&["ps:scale", "bomb=0", "-a", "demo"]);
    wait_for("the bomb cleaned up", Duration::from_secs(10), || {
        cgroups::children(&app_cgroup, "bomb.1@").is_empty()
            && agent.dyno("demo", "bomb.1").is_none()
    });
    // Besides the neighbour, only its spare (its next instance, waiting) may be there.
    let spares: Vec<i64> = roboku_tests::spares(agent.data_dir())
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    let left: Vec<i64> = cgroups::procs_in(&app_cgroup)
        .into_iter()
        .filter(|p| !spares.contains(p))
        .collect();
    assert_eq!(left.len(), 1, "only the neighbour should be left: {left:?}");
    assert_eq!(agent.up_pid("demo", "neighbour.1"), Some(neighbour));
}

/// Limits this robot cannot give are refused when set, naming what was asked and what there is;
/// and a dyno whose cgroup cannot be set up (limits stored by an older robokud that accepted
/// them) is not started unconfined: the start fails, visibly in ps, logs and events.
#[test]
fn impossible_limits_are_refused_and_never_leave_a_dyno_unconfined() {
    let mut agent = Agent::start(AgentOpts::default());
    agent.create_and_deploy(
        "lim",
        app_dir(&[("Procfile", "web: exec sleep 100000\n")]).path(),
    );
    agent.wait_up("lim", "web.1", None, Duration::from_secs(20));
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("online cpus");
    let cpus = online
        .trim()
        .split([',', '-'])
        .filter_map(|c| c.parse::<u32>().ok())
        .max();
    let absent = (cpus.expect("a cpu") + 5).to_string();
    for (args, needles) in [
        (
            vec!["--cpuset", absent.as_str()],
            vec![
                format!("cpuset {absent}: this robot has no CPU {absent}"),
                format!("it has CPUs {}", online.trim()),
            ],
        ),
        (
            vec!["--memory", "64T"],
            vec!["memory 65536.0G: this robot has".to_string()],
        ),
        (
            vec!["--pids", "99999999999"],
            vec!["kernel.pid_max".to_string()],
        ),
        (
            vec!["--cpu", "512"],
            vec!["cpu 512 cores: this robot has".to_string()],
        ),
    ] {
        let mut all = vec!["ps:resize", "web", "-a", "lim"];
        all.extend(args.iter().copied());
        let out = agent.roboku(&all);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{all:?} was accepted");
        for n in needles {
            assert!(err.contains(&n), "{all:?}: expected {n:?} in {err}");
        }
    }
    let formation = agent.api("GET", "/v1/apps/lim/formation", None).json();
    assert_eq!(
        formation[0]["limits"]["cpuset"],
        serde_json::Value::Null,
        "{formation}"
    );

    // What an older robokud stored without checking: a cpuset this host does not have.
    {
        let mut store =
            robokud::store::Store::open(&agent.data_dir().join("roboku.db")).expect("open store");
        store
            .save_formation(
                "lim",
                &[robokud::store::FormationRow {
                    ptype: "web".into(),
                    count: 1,
                    limits: roboku_wire::Limits {
                        cpuset: Some(absent.clone()),
                        memory_max: Some(64 << 20),
                        ..Default::default()
                    },
                }],
            )
            .expect("save formation");
    }
    agent.restart("stop");
    wait_for(
        "the failed start to show in ps",
        Duration::from_secs(20),
        || {
            agent.dyno("lim", "web.1").is_some_and(|d| {
                d["last_exit"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("not starting unconfined"))
            })
        },
    );
    holds_for(
        "web.1 never runs unconfined",
        Duration::from_secs(3),
        || {
            agent.up_pid("lim", "web.1").is_none()
                && agent
                    .dyno("lim", "web.1")
                    .is_some_and(|d| d["pid"].is_null() || d["state"] != "up")
        },
    );
    let logs = agent.ok(&["logs", "-a", "lim", "-d", "web.1", "-n", "50"]);
    assert!(
        logs.contains("cgroup setup failed, not starting unconfined"),
        "{logs}"
    );
    assert!(logs.contains("cpuset"), "names the failing step: {logs}");
    let events = agent.ok(&["events", "-a", "lim"]);
    assert!(events.contains("not starting unconfined"), "{events}");
    let formation = agent.api("GET", "/v1/apps/lim/formation", None).json();
    assert_eq!(formation[0]["limits_enforced"], true, "{formation}");

    // Clearing the bad limit brings it up, confined.
    agent.ok(&["ps:resize", "web", "--clear", "cpuset", "-a", "lim"]);
    let pid = agent.wait_up("lim", "web.1", None, Duration::from_secs(20));
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    assert!(cg.contains(agent.cgroup_name()), "in roboku's cgroup: {cg}");
}

/// The release phase is a dyno too: it runs in a cgroup of its own with the app's limits.
#[test]
fn release_phase_runs_confined() {
    let agent = Agent::start(AgentOpts::default());
    let side = roboku_tests::world_writable_dir();
    let out = side.path().join("release-cgroup");
    agent.ok(&["apps:create", "rel"]);
    agent.ok(&["config:set", &format!("OUT={}", out.display()), "-a", "rel"]);
    agent.deploy(
        "rel",
        app_dir(&[(
            "Procfile",
            "release: cat /proc/self/cgroup > \"$OUT\"\nweb: exec sleep 100000\n",
        )])
        .path(),
    );
    let text = std::fs::read_to_string(&out).expect("the release phase wrote its cgroups");
    let memory = text
        .lines()
        .find(|l| l.contains(":memory:"))
        .unwrap_or_else(|| panic!("no memory line: {text}"));
    assert!(
        memory.contains(&format!("/{}/rel/release.1@", agent.cgroup_name())),
        "{memory}"
    );
}

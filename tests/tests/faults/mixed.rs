//! The fault-injection loop: deploys (good and failing), scales, config changes and rollbacks
//! (each followed by slug GC, `--keep-releases 2`), with robokud SIGKILLed at one of its fault
//! points or at a varied moment from outside, then restarted; after every run the invariants of
//! [`super::kit`] hold. Prints one summary line (`faults: ...`) for docs/RELIABILITY.md.

use super::kit;
use roboku_tests::{app_dir, bins::bin, kill, wait_for, Agent, AgentOpts};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    DeployGood,
    DeployBad,
    Scale,
    Config,
    Rollback,
}

const OPS: [Op; 5] = [
    Op::DeployGood,
    Op::DeployBad,
    Op::Scale,
    Op::Config,
    Op::Rollback,
];

/// The fault points each operation passes.
fn points(op: Op) -> &'static [&'static str] {
    match op {
        Op::DeployGood => &[
            "release.created",
            "rollout.switched",
            "spawn.forked",
            "rollout.gated",
            "gc.removing",
        ],
        Op::DeployBad => &["release.created", "rollout.switched", "rollout.failed"],
        Op::Scale => &["spawn.forked"],
        Op::Config | Op::Rollback => &[
            "release.created",
            "rollout.switched",
            "spawn.forked",
            "rollout.gated",
        ],
    }
}

/// How robokud dies in one run.
#[derive(Debug, Clone)]
enum Kill {
    /// At its own fault point (`name:n`); killed from outside if the point is never reached.
    Point(String),
    /// From outside, this long after the operation was sent (varied timing is the point here,
    /// nothing waits on it).
    After(Duration),
}

struct Args {
    cmd: Vec<String>,
    /// What must be true after the restart if the CLI reported success.
    expect: Expect,
}

enum Expect {
    Current { description_prefix: String },
    Formation(u64),
    Config(String, String),
    Nothing,
}

fn args(op: Op, run: usize, good: &str, bad: &str) -> Args {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match op {
        Op::DeployGood => Args {
            cmd: s(&["deploy", good, "-a", "demo", "-m", &format!("good {run}")]),
            expect: Expect::Current {
                description_prefix: format!("good {run}"),
            },
        },
        Op::DeployBad => Args {
            cmd: s(&["deploy", bad, "-a", "demo", "-m", &format!("bad {run}")]),
            expect: Expect::Nothing,
        },
        Op::Scale => {
            let n = 1 + (run % 3) as u64;
            Args {
                cmd: s(&["ps:scale", &format!("web={n}"), "-a", "demo"]),
                expect: Expect::Formation(n),
            }
        }
        Op::Config => Args {
            cmd: s(&["config:set", &format!("RUN=r{run}"), "-a", "demo"]),
            expect: Expect::Config("RUN".into(), format!("r{run}")),
        },
        Op::Rollback => Args {
            cmd: s(&["rollback", "-a", "demo"]),
            expect: Expect::Current {
                description_prefix: "Rollback to".into(),
            },
        },
    }
}

fn formation_web(agent: &Agent) -> u64 {
    let f = agent.api("GET", "/v1/apps/demo/formation", None).json();
    f.as_array()
        .and_then(|a| a.iter().find(|e| e["ptype"] == "web"))
        .and_then(|e| e["count"].as_u64())
        .unwrap_or(0)
}

/// Every invariant after a restart; `what` names the run for failure messages.
fn invariants(agent: &Agent, what: &str, keep: usize) {
    wait_for(
        &format!("{what}: no release deploying"),
        Duration::from_secs(60),
        || {
            kit::releases(agent, "demo")
                .iter()
                .all(|r| r["status"] != "deploying")
        },
    );
    let current = kit::settled_release(agent, "demo");
    let all = kit::releases(agent, "demo");
    for r in &all {
        let failing = r["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("bad "));
        assert!(
            !(failing && r["status"] == "succeeded"),
            "{what}: a release that fails its gate is succeeded: {r}"
        );
    }
    let version = current["version"].clone();
    let want = formation_web(agent);
    wait_for(
        &format!("{what}: {want} web dynos up on v{version}"),
        Duration::from_secs(30),
        || {
            let ps = agent.ps("demo");
            ps.len() as u64 == want
                && ps
                    .iter()
                    .all(|d| d["state"] == "up" && d["release"] == version)
        },
    );
    kit::only_recorded_processes(agent, &["demo"]);
    kit::no_leaked_cgroups(agent, "demo");
    let tmp = agent.data_dir().join("tmp");
    wait_for(
        &format!("{what}: no temp dirs left"),
        Duration::from_secs(10),
        || std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0,
    );
    kit::slugs_collected(agent, "demo", keep);
    kit::integrity_ok(agent);
}

fn acked(agent: &Agent, expect: &Expect, what: &str) {
    match expect {
        Expect::Current { description_prefix } => {
            let cur = kit::settled_release(agent, "demo");
            assert!(
                cur["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(description_prefix.as_str())),
                "{what}: acknowledged release lost: current is {cur}"
            );
        }
        Expect::Formation(n) => {
            assert_eq!(formation_web(agent), *n, "{what}: acknowledged scale lost")
        }
        Expect::Config(k, v) => {
            let c = agent.json(&["config", "-a", "demo"]);
            assert_eq!(
                c[k.as_str()],
                Value::String(v.clone()),
                "{what}: acknowledged config lost: {c}"
            );
        }
        Expect::Nothing => {}
    }
}

#[test]
fn kill_9_at_every_step_of_deploy_scale_config_rollback_and_gc() {
    let runs = kit::runs(1);
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        extra: vec!["--keep-releases".into(), "2".into()],
        ..AgentOpts::default()
    });
    let good = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    let bad = super::rollout::bad();
    let (good_s, bad_s) = (
        good.path().to_str().expect("utf-8"),
        bad.path().to_str().expect("utf-8"),
    );
    agent.create_and_deploy("demo", good.path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let (mut injected, mut fired, mut acks) = (0, 0, 0);
    let mut seen_points = BTreeSet::new();
    for run in 0..runs {
        for (i, op) in OPS.iter().enumerate() {
            let pts = points(*op);
            let kill_how = if (run + i) % 2 == 0 {
                let p = pts[(run / 2) % pts.len()];
                // Forks happen several times per operation; the other points once.
                let n = if p == "spawn.forked" { 1 + run % 3 } else { 1 };
                Kill::Point(format!("{p}:{n}"))
            } else {
                Kill::After(Duration::from_millis(((run * 37 + i * 101) % 1500) as u64))
            };
            let what = format!("run {run} {op:?} killed {kill_how:?}");
            let a = args(*op, run, good_s, bad_s);
            if *op == Op::DeployGood {
                // A new slug each time, so slug GC has old ones to delete.
                std::fs::write(good.path().join("run.txt"), format!("{run}\n"))
                    .expect("write run.txt");
            }
            if let Kill::Point(p) = &kill_how {
                agent.restart_with_fault(p);
                seen_points.insert(p.split(':').next().unwrap_or_default().to_string());
            }
            let mut cli = Command::new(bin("roboku"))
                .args(&a.cmd)
                .env("ROBOKU_SOCKET", agent.socket())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run roboku");
            let ok = match &kill_how {
                Kill::Point(_) => cli.wait().expect("wait roboku").success(),
                Kill::After(d) => {
                    std::thread::sleep(*d); // the fault's timing, not a synchronisation
                    kill(agent.pid() as i64, libc::SIGKILL);
                    cli.wait().expect("wait roboku").success()
                }
            };
            injected += 1;
            // A point the operation never reached (the CLI answered, the agent lives on): the
            // kill below comes from outside instead.
            let died =
                matches!(kill_how, Kill::Point(_)) && agent.exits_within(Duration::from_secs(3));
            if died {
                fired += 1;
            }
            agent.kill9_and_restart("leave");
            eprintln!("{what}: acknowledged {ok}, died at its point {died}");
            invariants(&agent, &what, 2);
            if ok {
                acks += 1;
                acked(&agent, &a.expect, &what);
            }
        }
    }
    eprintln!(
        "faults: {injected} kill -9 injected ({fired} at fault points {seen_points:?}, the rest from outside), {runs} runs x {} operations, {acks} acknowledged writes all present, 0 invariant violations",
        OPS.len()
    );
}

#[test]
fn kill_9_while_collecting_slugs_keeps_every_slug_still_needed_and_finishes_at_start() {
    let runs = kit::runs(1);
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        extra: vec!["--keep-releases".into(), "1".into()],
        ..AgentOpts::default()
    });
    let good = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", good.path());
    agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    for run in 0..runs {
        // A new slug: committing it makes the previous one garbage, deleted at the fault point.
        std::fs::write(good.path().join("run.txt"), format!("{run}\n")).expect("write run.txt");
        agent.restart_with_fault("gc.removing");
        let _ = agent.roboku(&["deploy", good.path().to_str().expect("utf-8"), "-a", "demo"]);
        agent.wait_killed(Duration::from_secs(60));
        agent.respawn();
        invariants(&agent, &format!("gc run {run}"), 1);
    }
    eprintln!("faults: {runs} kill -9 while deleting an unreferenced slug, every needed slug kept, the rest collected at start");
}

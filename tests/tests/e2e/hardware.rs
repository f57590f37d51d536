//! Robot hardware per process type: a dyno opens a `root:dialout 0660` device node when its type
//! has the `dialout` group and cannot without it; real-time scheduling shows in `chrt -p` inside
//! the dyno; what the host cannot give is refused when set, naming why.

use roboku_tests::{app_dir, wait_for, world_writable_dir, Agent, AgentOpts};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Records what the dyno can do into `$SIDE/probe.<pid>`, then idles.
const PROBE: &str = r#"{
  id -G
  chrt -p $$
  if ( : < "$NODE" ) 2>/dev/null; then echo OPEN-OK; else echo OPEN-DENIED; fi
} > "$SIDE/.probe.$$" 2>&1
mv "$SIDE/.probe.$$" "$SIDE/probe.$$"
exec sleep 100000
"#;

fn probe(agent: &Agent, side: &Path, not: Option<i64>) -> (i64, String) {
    let pid = agent.wait_up("hw", "web.1", not, Duration::from_secs(20));
    let file = side.join(format!("probe.{pid}"));
    wait_for("the dyno's probe", Duration::from_secs(10), || {
        file.exists()
    });
    (pid, std::fs::read_to_string(&file).expect("read probe"))
}

fn gid_of(group: &str) -> String {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .unwrap_or_else(|| panic!("group {group} exists on this host"))
        .to_string()
}

fn refused(agent: &Agent, args: &[&str], needle: &str) {
    let mut all = vec!["ps:resize", "web", "-a", "hw"];
    all.extend_from_slice(args);
    let out = agent.roboku(&all);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{all:?} was accepted");
    assert!(
        err.contains(needle),
        "{all:?}: expected {needle:?} in {err}"
    );
}

#[test]
fn device_groups_and_realtime_policy_reach_the_dyno() {
    let agent = Agent::start(AgentOpts::default());
    let side = world_writable_dir();
    // A serial port as udev makes one: a character device, root:dialout 0660.
    let node = side.path().join("ttyFAKE0");
    let made = Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(made.success(), "mknod");
    for (cmd, arg) in [("chown", "root:dialout"), ("chmod", "0660")] {
        let ok = Command::new(cmd).arg(arg).arg(&node).status().expect(cmd);
        assert!(ok.success(), "{cmd}");
    }

    agent.ok(&["apps:create", "hw"]);
    agent.ok(&[
        "config:set",
        &format!("SIDE={}", side.path().display()),
        &format!("NODE={}", node.display()),
        "-a",
        "hw",
    ]);
    let src = app_dir(&[("Procfile", "web: exec sh probe.sh\n"), ("probe.sh", PROBE)]);
    agent.deploy("hw", src.path());
    let (pid, out) = probe(&agent, side.path(), None);
    assert!(
        out.contains("OPEN-DENIED"),
        "no dialout, no serial port:\n{out}"
    );
    assert!(out.contains("SCHED_OTHER"), "{out}");

    let dialout = gid_of("dialout");
    let video = gid_of("video");
    let text = agent.ok(&[
        "ps:resize",
        "web",
        "--groups",
        "dialout,video",
        "--rt",
        "fifo:10",
        "-a",
        "hw",
    ]);
    assert!(text.contains("groups dialout,video, rt fifo:10"), "{text}");
    let (pid2, out) = probe(&agent, side.path(), Some(pid));
    assert!(
        out.contains("OPEN-OK"),
        "with dialout the port opens:\n{out}"
    );
    let ids: Vec<&str> = out.lines().next().unwrap_or("").split(' ').collect();
    assert!(
        ids.contains(&dialout.as_str()) && ids.contains(&video.as_str()),
        "id -G shows both groups: {out}"
    );
    assert!(
        out.contains("SCHED_FIFO"),
        "chrt -p shows the policy:\n{out}"
    );
    assert!(out.contains("priority: 10"), "{out}");

    // What the host cannot give, refused when set.
    refused(
        &agent,
        &["--groups", "no-such-group"],
        "no group \"no-such-group\"",
    );
    refused(&agent, &["--rt", "fifo:0"], "fifo:PRIO or rr:PRIO");
    let rt_groups = Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists();
    let with_cpu = agent.roboku(&["ps:resize", "web", "--cpu", "0.5", "-a", "hw"]);
    if rt_groups {
        // This kernel schedules real time per cgroup (v1 RT_GROUP_SCHED): a dyno in a quota'd
        // cpu group would get no real-time budget, so the combination is refused.
        let err = String::from_utf8_lossy(&with_cpu.stderr);
        assert!(!with_cpu.status.success(), "--cpu with --rt accepted");
        assert!(
            err.contains("cpu.rt_runtime_us") && err.contains("--clear cpu"),
            "{err}"
        );
    } else {
        assert!(with_cpu.status.success(), "{with_cpu:?}");
    }
    assert_eq!(
        agent.up_pid("hw", "web.1"),
        Some(pid2),
        "refusals disturb nothing"
    );

    agent.ok(&["ps:resize", "web", "--clear", "groups,rt,cpu", "-a", "hw"]);
    let (_, out) = probe(&agent, side.path(), Some(pid2));
    assert!(out.contains("OPEN-DENIED"), "groups cleared:\n{out}");
    assert!(out.contains("SCHED_OTHER"), "{out}");
}

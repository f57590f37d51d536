//! Crash replacement without an RCU grace period: a root robokud makes sure the cgroup mount
//! option favordynmods is on (docs/supervision.md), and `roboku status` says so.

use roboku_tests::{Agent, AgentOpts};

/// The mount points in `/proc/self/mountinfo` whose superblock options carry favordynmods.
fn favoring_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let fstype = f.get(sep + 1)?;
            let opts = f.get(sep + 3)?;
            (fstype.starts_with("cgroup") && opts.split(',').any(|o| o == "favordynmods"))
                .then(|| f[4].to_string())
        })
        .collect()
}

/// The running kernel's (major, minor).
fn kernel() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut it = r.trim().split(['.', '-']).map(|x| x.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn a_root_agent_says_joins_are_fast_and_the_mount_is_there() {
    let agent = Agent::start(AgentOpts::default());
    let status = agent.json(&["status"]);
    let cg = &status["cgroup"];
    assert_eq!(cg["enforced"], true, "{status}");
    if kernel() < (6, 1) {
        // favordynmods came with Linux 6.1: here the degraded report is what is checked.
        eprintln!(
            "kernel {:?} < 6.1: checking that joins are reported slow, with why",
            kernel()
        );
        let joins = cg["joins"].as_str().unwrap_or_default();
        assert!(joins.starts_with("slow: ") && joins.len() > 6, "{status}");
        let doctor = agent.roboku(&["doctor"]);
        let out = String::from_utf8_lossy(&doctor.stdout);
        assert!(
            out.lines()
                .any(|l| l.contains("cgroups") && l.starts_with("warn")),
            "{out}"
        );
        return;
    }
    let joins = cg["joins"]
        .as_str()
        .unwrap_or_else(|| panic!("no joins: {status}"));
    let mount = joins
        .strip_prefix("fast (favordynmods, ")
        .and_then(|m| m.strip_suffix(')'))
        .unwrap_or_else(|| panic!("joins not fast: {joins}"));
    let mounts = favoring_mounts();
    assert!(
        mounts.iter().any(|m| m == mount),
        "status names {mount}, mountinfo's favordynmods mounts are {mounts:?}"
    );
    let text = agent.ok(&["status"]);
    assert!(text.contains(&format!("; joins {joins}")), "{text}");
    let doctor = agent.roboku(&["doctor"]);
    let out = String::from_utf8_lossy(&doctor.stdout);
    let line = out
        .lines()
        .find(|l| l.contains("cgroups"))
        .unwrap_or_else(|| panic!("no cgroups line: {out}"));
    assert!(
        line.starts_with("ok") && line.contains("joins fast"),
        "{line}"
    );
}

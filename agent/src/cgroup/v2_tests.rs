//! v2 against a temp dir laid out like a cgroup2 mount, files pre-created as the kernel would.

use super::*;
use std::fs;
use tempfile::TempDir;

fn put(dir: &Path, file: &str, text: &str) {
    fs::write(dir.join(file), text).unwrap();
}

fn get(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_string()
}

/// A unified mount with roboku's root and app level already there. The app level lacks
/// cpuset (its parent did not enable it), so the dyno has no `cpuset.cpus`.
fn v2_mount() -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path();
    put(
        m,
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    put(m, "cgroup.subtree_control", "memory\n");
    let root = m.join("roboku");
    fs::create_dir_all(root.join("demo/web.1")).unwrap();
    put(&root, "cgroup.controllers", "cpuset cpu memory pids\n");
    put(&root, "cgroup.subtree_control", "\n");
    put(
        &root.join("demo"),
        "cgroup.controllers",
        "cpu memory pids\n",
    );
    put(&root.join("demo"), "cgroup.subtree_control", "\n");
    let dyno = root.join("demo/web.1");
    for (f, v) in [
        ("memory.max", "max"),
        ("memory.high", "max"),
        ("memory.swap.max", "max"),
        ("cpu.max", "max 100000"),
        ("pids.max", "max"),
        ("cgroup.procs", ""),
    ] {
        put(&dyno, f, v);
    }
    tmp
}

#[test]
fn subtree_root_sits_beside_a_delegated_agent() {
    let m = Path::new("/sys/fs/cgroup");
    assert_eq!(v2_subtree_root(m, "roboku", "0::/\n"), m.join("roboku"));
    assert_eq!(
        v2_subtree_root(m, "roboku", "0::/system.slice/robokud.service/supervisor\n"),
        m.join("system.slice/robokud.service/roboku")
    );
    let hybrid = "4:memory:/x\n1:name=systemd:/init.scope\n0::/init.scope\n";
    assert_eq!(
        v2_subtree_root(m, "r", hybrid),
        m.join("r"),
        "parent of /init.scope is /"
    );
    assert_eq!(v2_subtree_root(m, "r", ""), m.join("r"), "no unified line");
}

#[test]
fn open_needs_memory_and_pids() {
    let tmp = tempfile::tempdir().unwrap();
    put(tmp.path(), "cgroup.controllers", "cpu io memory\n");
    let err = V2::open(tmp.path(), v2_subtree_root(tmp.path(), "roboku", "0::/\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pids"), "{err}");
    put(tmp.path(), "cgroup.controllers", "cpu io memory pids\n");
    let d = V2::open(tmp.path(), v2_subtree_root(tmp.path(), "roboku", "0::/\n")).unwrap();
    assert!(tmp.path().join("roboku").is_dir());
    assert_eq!(
        d.status().root,
        tmp.path().join("roboku").display().to_string()
    );
}

#[test]
fn create_enables_controllers_top_down_and_writes_limits() {
    let tmp = v2_mount();
    let m = tmp.path();
    let d = V2::new(m.join("roboku"));
    let limits = Limits {
        memory_max: Some(64 << 20),
        memory_high: Some(48 << 20),
        cpu: Some(1.5),
        pids: Some(20),
        cpuset: None,
        nice: None,
        ..Limits::default()
    };
    d.create("demo/web.1", &limits).unwrap();
    assert_eq!(
        get(m, "cgroup.subtree_control"),
        "+cpuset +cpu +pids",
        "memory was already on"
    );
    assert_eq!(
        get(&m.join("roboku"), "cgroup.subtree_control"),
        "+cpuset +cpu +memory +pids"
    );
    assert_eq!(
        get(&m.join("roboku/demo"), "cgroup.subtree_control"),
        "+cpu +memory +pids"
    );
    assert!(
        !m.join("roboku/demo/web.1/cgroup.subtree_control").exists(),
        "not on the leaf"
    );

    let dyno = m.join("roboku/demo/web.1");
    assert_eq!(get(&dyno, "memory.max"), "67108864");
    assert_eq!(get(&dyno, "memory.swap.max"), "0", "no escape into swap");
    assert_eq!(get(&dyno, "memory.high"), "50331648");
    assert_eq!(get(&dyno, "cpu.max"), "150000 100000");
    assert_eq!(get(&dyno, "pids.max"), "20");
    assert!(
        !dyno.join("cpuset.cpus").exists(),
        "absent controller + no limit = untouched"
    );

    d.update("demo/web.1", &Limits::default()).unwrap();
    for (f, v) in [
        ("memory.max", "max"),
        ("memory.swap.max", "max"),
        ("memory.high", "max"),
        ("cpu.max", "max 100000"),
        ("pids.max", "max"),
    ] {
        assert_eq!(get(&dyno, f), v, "{f}");
    }

    let err = d
        .update(
            "demo/web.1",
            &Limits {
                cpuset: Some("0".into()),
                ..Limits::default()
            },
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("cpuset.cpus"),
        "a limit the host cannot enforce is an error: {err}"
    );
}

#[test]
fn cpuset_limit_and_its_reset_to_inherit() {
    let tmp = v2_mount();
    let dyno = tmp.path().join("roboku/demo/web.1");
    put(&dyno, "cpuset.cpus", "");
    let d = V2::new(tmp.path().join("roboku"));
    d.update(
        "demo/web.1",
        &Limits {
            cpuset: Some("1".into()),
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(get(&dyno, "cpuset.cpus"), "1");
    d.update("demo/web.1", &Limits::default()).unwrap();
    assert_eq!(
        fs::read_to_string(dyno.join("cpuset.cpus")).unwrap(),
        "\n",
        "empty = inherit"
    );
}

#[test]
fn stats_read_working_set_cpu_pids_and_oom_kills() {
    let tmp = v2_mount();
    let dyno = tmp.path().join("roboku/demo/web.1");
    put(&dyno, "memory.current", "1000\n");
    put(
        &dyno,
        "memory.stat",
        "anon 600\nfile 400\nactive_file 100\ninactive_file 300\n",
    );
    put(
        &dyno,
        "cpu.stat",
        "usage_usec 7\nuser_usec 5\nsystem_usec 2\n",
    );
    put(&dyno, "pids.current", "2\n");
    put(
        &dyno,
        "memory.events",
        "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n",
    );
    put(&dyno, "cgroup.procs", "10\n11\n");
    let d = V2::new(tmp.path().join("roboku"));
    let want = CgroupStats {
        memory_bytes: 700,
        cpu_usage_ns: 7000,
        pids: 2,
        oom_kills: 1,
        charge: 1000,
    };
    assert_eq!(d.stats("demo/web.1").unwrap(), want);
    assert_eq!(d.memory_charge("demo/web.1").unwrap(), 1000);
    assert_eq!(d.pids("demo/web.1").unwrap(), vec![10, 11]);
    let err = d.stats("demo/web.9").unwrap_err().to_string();
    assert!(err.contains("demo/web.9/memory.current"), "{err}");
}

#[test]
fn kill_all_uses_cgroup_kill_then_waits_for_empty() {
    let tmp = v2_mount();
    let dyno = tmp.path().join("roboku/demo/web.1");
    let d = V2::new(tmp.path().join("roboku")).with_kill_timeout(Duration::from_millis(50));
    d.kill_all("demo/web.1").unwrap();
    put(&dyno, "cgroup.kill", "");
    d.kill_all("demo/web.1").unwrap();
    assert_eq!(get(&dyno, "cgroup.kill"), "1");
    // A pid that never leaves (the file is not the kernel's): bounded wait, then an error.
    put(&dyno, "cgroup.procs", "2147483647\n");
    let err = d.kill_all("demo/web.1").unwrap_err();
    assert!(
        matches!(&err, CgroupError::NotEmpty { pids, .. } if pids == &[i32::MAX]),
        "{err}"
    );
    d.kill_all("demo/gone").unwrap();
}

#[test]
fn join_and_remove() {
    let tmp = v2_mount();
    let d = V2::new(tmp.path().join("roboku"));
    let mut files = d.join_files("demo/web.1").unwrap();
    assert_eq!(files.len(), 1);
    std::io::Write::write_all(&mut files[0], b"0").unwrap();
    let dyno = tmp.path().join("roboku/demo/web.1");
    assert_eq!(get(&dyno, "cgroup.procs"), "0");
    assert!(d.join_files("demo/web.2").is_err());
    assert!(d.remove("demo/web.1").is_err(), "not empty = busy");
    fs::remove_dir_all(&dyno).unwrap();
    fs::create_dir(&dyno).unwrap();
    d.remove("demo/web.1").unwrap();
    assert!(!dyno.exists());
    d.remove("demo/web.1").unwrap();
}

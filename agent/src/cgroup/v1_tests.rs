//! v1 against a temp dir laid out like a v1 mount. A plain mkdir creates no interface files,
//! so [`kernel_mkdir`] plays the kernel: it pre-creates each level with the files cgroupfs would.

use super::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use tempfile::TempDir;

const UNLIMITED_BYTES: &str = "9223372036854771712";

fn put(dir: &Path, file: &str, text: &str) {
    fs::write(dir.join(file), text).unwrap();
}

fn get(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_string()
}

/// A Debian-style v1 mount: memory, pids, cpuset, a joined `cpu,cpuacct` with `cpu` and
/// `cpuacct` symlinks to it, no freezer.
fn v1_mount() -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path();
    for h in ["memory", "pids", "cpu,cpuacct", "cpuset"] {
        fs::create_dir(m.join(h)).unwrap();
        put(&m.join(h), "cgroup.procs", "1\n");
    }
    symlink("cpu,cpuacct", m.join("cpu")).unwrap();
    symlink("cpu,cpuacct", m.join("cpuacct")).unwrap();
    put(&m.join("memory"), "memory.limit_in_bytes", UNLIMITED_BYTES);
    put(&m.join("cpu,cpuacct"), "cpu.cfs_quota_us", "-1");
    put(&m.join("cpu,cpuacct"), "cpuacct.usage", "1");
    put(&m.join("cpuset"), "cpuset.cpus", "0-3\n");
    put(&m.join("cpuset"), "cpuset.mems", "0\n");
    tmp
}

/// What the kernel does on mkdir in each hierarchy: the dir with its interface files.
fn kernel_mkdir(mount: &Path, rel: &str) {
    for dir in levels(&mount.join("memory/roboku"), rel) {
        fs::create_dir_all(&dir).unwrap();
        for f in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            put(&dir, f, UNLIMITED_BYTES);
        }
        put(&dir, "memory.soft_limit_in_bytes", UNLIMITED_BYTES);
        put(&dir, "cgroup.procs", "");
    }
    for dir in levels(&mount.join("pids/roboku"), rel) {
        fs::create_dir_all(&dir).unwrap();
        put(&dir, "pids.max", "max");
        put(&dir, "cgroup.procs", "");
    }
    for dir in levels(&mount.join("cpu,cpuacct/roboku"), rel) {
        fs::create_dir_all(&dir).unwrap();
        put(&dir, "cpu.cfs_period_us", "100000");
        put(&dir, "cpu.cfs_quota_us", "-1");
        put(&dir, "cgroup.procs", "");
    }
    for dir in levels(&mount.join("cpuset/roboku"), rel) {
        fs::create_dir_all(&dir).unwrap();
        put(&dir, "cpuset.cpus", "\n");
        put(&dir, "cpuset.mems", "\n");
        put(&dir, "cgroup.procs", "");
    }
}

fn driver(mount: &Path) -> V1 {
    V1::find(mount, "roboku").expect("memory and pids are mounted")
}

#[test]
fn finds_hierarchies_and_counts_a_joined_mount_once() {
    let tmp = v1_mount();
    let d = driver(tmp.path());
    assert_eq!(d.hierarchies.len(), 4, "{:?}", d.hierarchies);
    assert_eq!(d.cpu, d.cpuacct);
    assert!(d.cpu.as_ref().unwrap().ends_with("cpu,cpuacct"));
    assert!(d.freezer.is_none());
    let s = d.status();
    assert_eq!((s.mode.as_str(), s.enforced), ("v1", true));
    assert!(
        s.root.ends_with("/{memory,pids,cpu,cpuacct,cpuset}/roboku"),
        "{}",
        s.root
    );

    fs::remove_file(tmp.path().join("pids/cgroup.procs")).unwrap();
    assert!(V1::find(tmp.path(), "roboku").is_none(), "pids is required");
}

#[test]
fn create_makes_every_level_copies_cpusets_and_writes_limits() {
    let tmp = v1_mount();
    let m = tmp.path();
    kernel_mkdir(m, "demo/web.1");
    let d = driver(m);
    let limits = Limits {
        memory_max: Some(64 << 20),
        memory_high: Some(48 << 20),
        cpu: Some(0.5),
        pids: Some(20),
        cpuset: Some("1".into()),
        nice: Some(10),
        ..Limits::default()
    };
    d.create("demo/web.1", &limits).unwrap();

    for level in ["cpuset/roboku", "cpuset/roboku/demo"] {
        assert_eq!(get(&m.join(level), "cpuset.cpus"), "0-3", "{level}");
        assert_eq!(get(&m.join(level), "cpuset.mems"), "0", "{level}");
    }
    let cs = m.join("cpuset/roboku/demo/web.1");
    assert_eq!(
        (get(&cs, "cpuset.cpus"), get(&cs, "cpuset.mems")),
        ("1".into(), "0".into())
    );
    let mem = m.join("memory/roboku/demo/web.1");
    assert_eq!(get(&mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(
        get(&mem, "memory.memsw.limit_in_bytes"),
        "67108864",
        "no escape into swap"
    );
    assert_eq!(get(&mem, "memory.soft_limit_in_bytes"), "50331648");
    let cpu = m.join("cpu,cpuacct/roboku/demo/web.1");
    assert_eq!(
        (
            get(&cpu, "cpu.cfs_period_us"),
            get(&cpu, "cpu.cfs_quota_us")
        ),
        ("100000".into(), "50000".into())
    );
    assert_eq!(get(&m.join("pids/roboku/demo/web.1"), "pids.max"), "20");

    // Back to unlimited: every file reset, cpuset widened to the parent's.
    d.update("demo/web.1", &Limits::default()).unwrap();
    assert_eq!(get(&mem, "memory.limit_in_bytes"), "-1");
    assert_eq!(get(&mem, "memory.memsw.limit_in_bytes"), "-1");
    assert_eq!(get(&mem, "memory.soft_limit_in_bytes"), "-1");
    assert_eq!(get(&cpu, "cpu.cfs_quota_us"), "-1");
    assert_eq!(get(&m.join("pids/roboku/demo/web.1"), "pids.max"), "max");
    assert_eq!(get(&cs, "cpuset.cpus"), "0-3");
}

#[test]
fn memsw_goes_first_only_when_the_limit_grows() {
    assert!(
        memsw_first(32 << 20, Some(64 << 20)),
        "raising: memsw first"
    );
    assert!(memsw_first(32 << 20, None), "unlimited is raising");
    assert!(
        !memsw_first(64 << 20, Some(32 << 20)),
        "lowering: limit first"
    );
}

#[test]
fn without_memsw_only_the_limit_is_written() {
    let tmp = v1_mount();
    kernel_mkdir(tmp.path(), "demo/web.1");
    let mem = tmp.path().join("memory/roboku/demo/web.1");
    fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    let d = driver(tmp.path());
    d.create(
        "demo/web.1",
        &Limits {
            memory_max: Some(1 << 20),
            ..Limits::default()
        },
    )
    .unwrap();
    assert_eq!(get(&mem, "memory.limit_in_bytes"), "1048576");
    assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
}

#[test]
fn a_limit_for_an_unmounted_controller_is_an_error_not_silence() {
    let tmp = v1_mount();
    let m = tmp.path();
    for link in ["cpu", "cpuacct"] {
        fs::remove_file(m.join(link)).unwrap();
    }
    fs::remove_dir_all(m.join("cpu,cpuacct")).unwrap();
    kernel_mkdir(m, "demo/web.1");
    let d = driver(m);
    d.create("demo/web.1", &Limits::default()).unwrap();
    let before = get(&m.join("memory/roboku/demo/web.1"), "memory.limit_in_bytes");
    let limits = Limits {
        cpu: Some(1.0),
        memory_max: Some(1 << 20),
        ..Limits::default()
    };
    let err = d.update("demo/web.1", &limits).unwrap_err();
    assert!(
        matches!(&err, CgroupError::Invalid(m) if m.contains("no cpu hierarchy")),
        "{err}"
    );
    let mem = m.join("memory/roboku/demo/web.1");
    assert_eq!(
        get(&mem, "memory.limit_in_bytes"),
        before,
        "refused before anything was written"
    );
}

#[test]
fn stats_read_working_set_cpu_pids_and_oom_kills() {
    let tmp = v1_mount();
    let m = tmp.path();
    kernel_mkdir(m, "demo/web.1");
    let mem = m.join("memory/roboku/demo/web.1");
    put(&mem, "memory.usage_in_bytes", "1000\n");
    put(
        &mem,
        "memory.stat",
        "cache 400\ninactive_file 100\ntotal_inactive_file 300\n",
    );
    put(
        &mem,
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    put(
        &m.join("cpu,cpuacct/roboku/demo/web.1"),
        "cpuacct.usage",
        "5555\n",
    );
    put(&m.join("pids/roboku/demo/web.1"), "pids.current", "2\n");
    put(&mem, "cgroup.procs", "10\n11\n");
    let d = driver(m);
    let want = CgroupStats {
        memory_bytes: 700,
        cpu_usage_ns: 5555,
        pids: 2,
        oom_kills: 3,
        charge: 1000,
    };
    assert_eq!(d.stats("demo/web.1").unwrap(), want);
    assert_eq!(d.memory_charge("demo/web.1").unwrap(), 1000);
    assert_eq!(d.pids("demo/web.1").unwrap(), vec![10, 11]);

    put(&mem, "memory.usage_in_bytes", "garbage");
    let err = d.stats("demo/web.1").unwrap_err().to_string();
    assert!(err.contains("memory.usage_in_bytes"), "{err}");
}

#[test]
fn join_files_cover_every_hierarchy() {
    let tmp = v1_mount();
    let m = tmp.path();
    kernel_mkdir(m, "demo/web.1");
    let files = driver(m).join_files("demo/web.1").unwrap();
    assert_eq!(files.len(), 4);
    for mut f in files {
        std::io::Write::write_all(&mut f, b"0").unwrap();
    }
    for h in ["memory", "pids", "cpu,cpuacct", "cpuset"] {
        assert_eq!(
            get(&m.join(h).join("roboku/demo/web.1"), "cgroup.procs"),
            "0",
            "{h}"
        );
    }
}

#[test]
fn remove_names_a_busy_dir_and_tolerates_missing_ones() {
    let tmp = v1_mount();
    let m = tmp.path();
    kernel_mkdir(m, "demo/web.1");
    let d = driver(m);
    // A dir that still has entries fails like a busy cgroup does.
    let err = d.remove("demo/web.1").unwrap_err().to_string();
    assert!(
        err.contains("remove cgroup dir") && err.contains("demo/web.1"),
        "{err}"
    );
    for h in ["memory", "pids", "cpu,cpuacct", "cpuset"] {
        let dir = m.join(h).join("roboku/demo/web.1");
        for e in fs::read_dir(&dir).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    d.remove("demo/web.1").unwrap();
    for h in ["memory", "pids", "cpu,cpuacct", "cpuset"] {
        assert!(!m.join(h).join("roboku/demo/web.1").exists(), "{h}");
        assert!(m.join(h).join("roboku/demo").exists(), "{h}: parents stay");
    }
    d.remove("demo/web.1").unwrap();
}

#[test]
fn children_include_a_dir_left_in_one_hierarchy_only() {
    let tmp = v1_mount();
    let m = tmp.path();
    kernel_mkdir(m, "demo/web.1@7");
    kernel_mkdir(m, "demo/web.1@9");
    // A removal cut short: web.1@7 is gone from memory (the hierarchy listed first) but its
    // pids dir was busy, or robokud died before the next rmdir.
    fs::remove_dir_all(m.join("memory/roboku/demo/web.1@7")).unwrap();
    let d = driver(m);
    assert_eq!(d.children("demo"), ["web.1@7", "web.1@9"]);
    assert_eq!(d.children(""), ["demo"]);
    // And the sweep's removal takes what is left, tolerating the missing memory dir.
    for h in ["pids", "cpu,cpuacct", "cpuset"] {
        let dir = m.join(h).join("roboku/demo/web.1@7");
        for e in fs::read_dir(&dir).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    d.remove("demo/web.1@7").unwrap();
    assert_eq!(d.children("demo"), ["web.1@9"]);
}

#[test]
fn kill_all_kills_listed_pids_and_reports_a_cgroup_that_never_empties() {
    let tmp = v1_mount();
    let m = tmp.path();
    kernel_mkdir(m, "demo/web.1");
    let d = driver(m).with_kill_timeout(Duration::from_millis(100));
    d.kill_all("demo/web.1").unwrap();
    d.kill_all("demo/never-created").unwrap();

    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    put(
        &m.join("memory/roboku/demo/web.1"),
        "cgroup.procs",
        &format!("{}\n", child.id()),
    );
    // The file is not the kernel's: the pid never leaves it, so the driver must give up.
    let err = d.kill_all("demo/web.1").unwrap_err();
    assert!(
        matches!(&err, CgroupError::NotEmpty { pids, .. } if pids == &[child.id() as i32]),
        "{err}"
    );
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn bad_paths_touch_nothing() {
    let tmp = v1_mount();
    let d = driver(tmp.path());
    for rel in ["../escape", "/abs", ""] {
        assert!(
            matches!(
                d.create(rel, &Limits::default()),
                Err(CgroupError::Invalid(_))
            ),
            "{rel:?}"
        );
        assert!(
            matches!(d.remove(rel), Err(CgroupError::Invalid(_))),
            "{rel:?}"
        );
    }
    assert!(!tmp.path().join("memory/roboku").exists());
    assert!(!tmp.path().join("escape").exists());
}

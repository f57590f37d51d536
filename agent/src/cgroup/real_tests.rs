//! `detect` and the driver it picks, against this host's real cgroups (and temp-dir mounts).
//! As root they create `roboku-test-<random>` subtrees, run real processes in them and remove
//! them again (a drop guard cleans up on failure too). Not as root they assert the degraded
//! `none` driver and say so on stderr: they never skip silently.

use super::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const MOUNT: &str = "/sys/fs/cgroup";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn test_name() -> String {
    format!("roboku-test-{:08x}", {
        use rand::{rngs::SmallRng, Rng, SeedableRng};
        SmallRng::from_entropy().gen::<u32>()
    })
}

/// Removes every cgroup dir named `name` under the mount (each v1 hierarchy, or the v2 root),
/// killing what is left inside first. Runs on drop, so a failed assertion still cleans up.
struct Cleanup {
    dirs: Vec<PathBuf>,
}

impl Cleanup {
    fn new(mount: &Path, name: &str, v2_root: Option<PathBuf>) -> Self {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(mount)
            .map(|rd| rd.flatten().map(|e| e.path().join(name)).collect())
            .unwrap_or_default();
        dirs.push(mount.join(name));
        dirs.extend(v2_root);
        Cleanup { dirs }
    }
}

fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&e.path());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
        for pid in files::read_pids(&dir.join("cgroup.procs")).unwrap_or_default() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            remove_tree(dir);
        }
    }
}

/// A command whose child joins the cgroup between fork and exec, as the supervisor does.
fn spawn_in(driver: &dyn CgroupDriver, rel: &str, cmd: &mut Command) -> std::process::Child {
    let files = driver.join_files(rel).unwrap();
    let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: only write(2) on fds opened before fork: async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(files);
    child
}

/// Degraded mode: checked and announced, never skipped silently.
fn assert_not_root_degrades(driver: &dyn CgroupDriver, test: &str) {
    let st = driver.status();
    assert_eq!((st.mode.as_str(), st.enforced), ("none", false));
    let reason = st.reason.unwrap_or_default();
    assert!(reason.contains("not running as root"), "{reason}");
    eprintln!("{test}: not root, so asserted the degraded driver instead: {reason}");
}

/// The driver detect picks on this host, which as root must enforce (v1 here: no
/// cgroup.controllers at the mount, memory and pids hierarchies present).
fn enforced_driver(name: &str) -> Box<dyn CgroupDriver> {
    let d = detect(PathBuf::from(MOUNT), name, true, None);
    let st = d.status();
    assert!(
        st.enforced,
        "root on a host with cgroups must enforce: {st:?}"
    );
    if !Path::new(MOUNT).join("cgroup.controllers").exists() {
        assert_eq!(st.mode, "v1", "{st:?}");
    }
    d
}

/// Reads a limit back from the real files: `v1_hierarchy/v1_file` or `v2_file`.
fn read_limit(d: &dyn CgroupDriver, name: &str, rel: &str, v1: (&str, &str), v2: &str) -> String {
    let st = d.status();
    let path = if st.mode == "v1" {
        Path::new(MOUNT).join(v1.0).join(name).join(rel).join(v1.1)
    } else {
        Path::new(&st.root).join(rel).join(v2)
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .into()
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn v2_root_of(d: &dyn CgroupDriver) -> Option<PathBuf> {
    let st = d.status();
    (st.mode == "v2").then(|| PathBuf::from(st.root))
}

#[test]
fn real_cgroup_limits_join_stats_kill_remove() {
    let name = test_name();
    let mut guard = Cleanup::new(Path::new(MOUNT), &name, None);
    if !is_root() {
        return assert_not_root_degrades(&*detect(MOUNT.into(), &name, true, None), "real_cgroup");
    }
    let d = enforced_driver(&name);
    guard.dirs.extend(v2_root_of(&*d));
    let limits = Limits {
        memory_max: Some(64 << 20),
        pids: Some(50),
        ..Limits::default()
    };
    d.create("x", &limits).unwrap();
    assert_eq!(
        read_limit(
            &*d,
            &name,
            "x",
            ("memory", "memory.limit_in_bytes"),
            "memory.max"
        ),
        "67108864"
    );
    assert_eq!(
        read_limit(&*d, &name, "x", ("pids", "pids.max"), "pids.max"),
        "50"
    );
    d.update(
        "x",
        &Limits {
            pids: Some(40),
            ..limits.clone()
        },
    )
    .unwrap();
    assert_eq!(
        read_limit(&*d, &name, "x", ("pids", "pids.max"), "pids.max"),
        "40"
    );

    let mut child = spawn_in(&*d, "x", Command::new("sleep").arg("30"));
    let pid = child.id() as i32;
    // spawn() returns after exec succeeded, so the child has joined already.
    assert!(d.pids("x").unwrap().contains(&pid));
    let stats = wait_for("memory charged to the cgroup", || {
        d.stats("x").ok().filter(|s| s.memory_bytes > 0)
    });
    assert!(stats.pids >= 1, "{stats:?}");

    if d.status().mode == "v1" {
        // Without a CPU limit the dyno is not in the cpu or cpuset hierarchy (each join costs a
        // migration); a resize that adds those limits moves the running process in.
        let procs = |h: &str| {
            let p = Path::new(MOUNT).join(h).join(&name).join("x/cgroup.procs");
            files::read_pids(&p).unwrap_or_default()
        };
        assert!(
            !procs("cpuset").contains(&pid),
            "no cpuset group without a CPU list"
        );
        d.update(
            "x",
            &Limits {
                cpu: Some(0.5),
                cpuset: Some("0".into()),
                ..limits.clone()
            },
        )
        .unwrap();
        assert!(
            procs("cpuset").contains(&pid),
            "moved into the new cpuset group"
        );
        assert!(procs("cpu").contains(&pid), "and into the cpu group");
        assert_eq!(
            read_limit(&*d, &name, "x", ("cpuset", "cpuset.cpus"), "cpuset.cpus"),
            "0"
        );
    }

    d.kill_all("x").unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert!(d.pids("x").unwrap().is_empty());
    d.remove("x").unwrap();
    assert!(
        d.pids("x").unwrap().is_empty(),
        "a removed cgroup lists nothing"
    );
    assert!(d.stats("x").is_err(), "a removed cgroup has no stats");
}

#[test]
fn real_memory_limit_oom_kills_and_is_counted() {
    let name = test_name();
    let mut guard = Cleanup::new(Path::new(MOUNT), &name, None);
    if !is_root() {
        return assert_not_root_degrades(&*detect(MOUNT.into(), &name, true, None), "real_oom");
    }
    let d = enforced_driver(&name);
    guard.dirs.extend(v2_root_of(&*d));
    d.create(
        "oom",
        &Limits {
            memory_max: Some(32 << 20),
            pids: Some(50),
            ..Limits::default()
        },
    )
    .unwrap();
    // tail keeps the last "line" in memory: 200 MiB without a newline, under a 32 MiB limit.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "head -c 200M /dev/zero | tail"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = spawn_in(&*d, "oom", &mut cmd).wait().unwrap();
    assert!(
        !status.success(),
        "200 MiB fit under a 32 MiB limit: {status:?}"
    );
    let stats = d.stats("oom").unwrap();
    assert!(stats.oom_kills >= 1, "{stats:?}");
    d.kill_all("oom").unwrap();
    d.remove("oom").unwrap();
}

#[test]
fn detect_turned_off_is_none() {
    let d = detect(PathBuf::from(MOUNT), "roboku", false, None);
    let st = d.status();
    assert_eq!((st.mode.as_str(), st.enforced), ("none", false));
    assert_eq!(st.reason.as_deref(), Some("cgroups turned off in settings"));
}

#[test]
fn detect_in_temp_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path();
    let mode = |name: &str| {
        let st = detect(m.to_path_buf(), name, true, None).status();
        (st.mode, st.reason.unwrap_or_default())
    };
    if !is_root() {
        let (mode, reason) = mode("roboku");
        assert_eq!(mode, "none");
        assert!(reason.contains("not running as root"), "{reason}");
        eprintln!("detect_in_temp_mounts: not root, so asserted the degraded driver: {reason}");
        return;
    }
    let (none, reason) = mode("roboku");
    assert_eq!(none, "none");
    assert!(reason.contains("no usable cgroups"), "{reason}");
    assert!(mode("../up").1.contains("bad cgroup name"));
    assert!(mode("a/b").1.contains("bad cgroup name"));

    // v1: memory and pids hierarchies; detect creates the subtree root in each.
    for (dir, marker) in [
        ("memory", "memory.limit_in_bytes"),
        ("pids", "cgroup.procs"),
    ] {
        std::fs::create_dir(m.join(dir)).unwrap();
        std::fs::write(m.join(dir).join(marker), "").unwrap();
    }
    assert_eq!(mode("roboku").0, "v1");
    assert!(m.join("memory/roboku").is_dir() && m.join("pids/roboku").is_dir());

    // v2 wins when the mount is unified; it needs memory and pids.
    std::fs::write(m.join("cgroup.controllers"), "cpu io memory\n").unwrap();
    let (none, reason) = mode("roboku");
    assert_eq!(none, "none");
    assert!(
        reason.contains("cgroup v2") && reason.contains("pids"),
        "{reason}"
    );
    std::fs::write(m.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let root = v2_subtree_root(m, "roboku", &own);
    std::fs::create_dir_all(root.parent().unwrap()).unwrap();
    let st = detect(m.to_path_buf(), "roboku", true, None).status();
    assert_eq!((st.mode.as_str(), st.enforced), ("v2", true));
    assert_eq!(st.root, root.display().to_string());
    assert!(root.is_dir());
}

use super::*;

/// This machine's (v1 hybrid) mountinfo, cut down, plus a favordynmods mount and a path with a
/// space in it.
const HYBRID: &str = "\
22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// Debian 12 under systemd: cgroup v2 only.
const UNIFIED: &str = "\
26 21 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

fn point(m: &CgroupMount) -> &str {
    m.point.to_str().unwrap()
}

#[test]
fn mountinfo_keeps_cgroup_mounts_with_both_option_lists() {
    let mounts = parse_mountinfo(HYBRID);
    let points: Vec<&str> = mounts.iter().map(point).collect();
    assert_eq!(
        points,
        [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified"
        ]
    );
    assert_eq!(mounts[0].fstype, "cgroup");
    assert_eq!(mounts[0].super_opts, ["rw", "memory"]);
    assert_eq!(mounts[2].fstype, "cgroup2");
    assert!(mounts.iter().all(|m| !m.favors()));

    let m = &parse_mountinfo(UNIFIED)[0];
    assert_eq!(point(m), "/sys/fs/cgroup");
    assert_eq!(
        m.mount_opts,
        ["rw", "nosuid", "nodev", "noexec", "relatime"]
    );
    assert_eq!(m.super_opts, ["rw", "nsdelegate", "memory_recursiveprot"]);
}

#[test]
fn mountinfo_reads_favordynmods_escapes_and_skips_junk() {
    let text = "\
50 23 0:60 / /run/roboku-favordynmods rw,relatime shared:30 master:2 - cgroup cgroup rw,none,favordynmods,name=roboku-favor
51 23 0:61 / /tmp/with\\040space rw - cgroup2 cgroup2 rw,favordynmods
garbage line
52 23 0:62 / /x rw - cgroup
";
    let mounts = parse_mountinfo(text);
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    assert_eq!(point(&mounts[0]), MOUNT_DIR);
    assert!(mounts[0].favors());
    assert_eq!(point(&mounts[1]), "/tmp/with space");
    assert!(mounts[1].favors());
    // No superblock options at all: kept, but favours nothing.
    assert_eq!(point(&mounts[2]), "/x");
    assert!(!mounts[2].favors());
    assert_eq!(unescape("a\\134b\\011c\\9"), "a\\b\tc\\9");
}

fn favoring(at: &str) -> CgroupMount {
    CgroupMount {
        point: at.into(),
        fstype: "cgroup".into(),
        mount_opts: vec!["rw".into()],
        super_opts: vec!["rw".into(), "none".into(), OPTION.into()],
    }
}

#[test]
fn the_decision() {
    let plain = parse_mountinfo(HYBRID);
    assert_eq!(plan(true, true, &plain), Plan::MountNamed);
    let Plan::Slow(why) = plan(true, false, &plain) else {
        panic!("not root must be slow")
    };
    assert!(why.contains("not root"), "{why}");
    let Plan::Slow(why) = plan(false, true, &plain) else {
        panic!("off must be slow")
    };
    assert!(why.contains("--no-favordynmods"), "{why}");

    // A mount with the option is used, ours first, whether or not the setting is on.
    let mut with = plain.clone();
    with.push(favoring("/run/someone-else"));
    assert_eq!(
        plan(true, true, &with),
        Plan::Use("/run/someone-else".into())
    );
    assert_eq!(
        plan(false, false, &with),
        Plan::Use("/run/someone-else".into())
    );
    with.push(favoring(MOUNT_DIR));
    assert_eq!(plan(true, true, &with), Plan::Use(MOUNT_DIR.into()));
}

#[test]
fn a_failed_named_mount_falls_back_to_the_cgroup2_mount_unless_the_kernel_is_too_old() {
    let unified = parse_mountinfo(UNIFIED);
    let old = after_mount_error(libc::EINVAL, &unified).unwrap_err();
    assert!(old.contains("Linux 6.1"), "{old}");
    assert!(old.contains(MOUNT_DIR), "{old}");
    let m = after_mount_error(libc::ENODEV, &unified).unwrap();
    assert_eq!(point(&m), "/sys/fs/cgroup");
    let (flags, data) = remount_args(&m);
    assert_eq!(data, "nsdelegate,memory_recursiveprot,favordynmods");
    let want = libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    assert_eq!(flags & want, want, "per-mount flags kept");
    assert_eq!(flags & libc::MS_RDONLY, 0);
    let none = after_mount_error(libc::ENODEV, &[]).unwrap_err();
    assert!(none.contains("no cgroup2 mount"), "{none}");
}

#[test]
fn status_lines() {
    let fast = Joins::Fast {
        mount: MOUNT_DIR.into(),
        how: How::Mounted,
    };
    assert_eq!(fast.line(), "fast (favordynmods, /run/roboku-favordynmods)");
    let slow = Joins::Slow { why: "off".into() };
    assert_eq!(slow.line(), "slow: off");
}

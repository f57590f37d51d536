//! The favordynmods switch, owned by the bench so the comparison is fair: the cgroup mount
//! option (Linux 6.1+, docs/supervision.md) is global, so one hierarchy carrying it makes every
//! contender's cgroup joins skip the RCU grace period. The bench mounts an empty named v1
//! hierarchy with it at [`DIR`] only while a contender that wants it runs (robokud, started with
//! `--no-favordynmods`, and floor+cg+fdm) and unmounts it for the others, so floor+cg measures
//! the slow path. A favordynmods mount the bench did not make (a robokud's
//! `/run/roboku-favordynmods`, say) skews everyone: it is reported, never touched.
//!
//! Linux 6.18 and later: the first favordynmods mount since boot switches `cgroup.procs` writes
//! to a per-threadgroup rwsem for good (`cgroup_enable_per_threadgroup_rwsem` is one-way), so
//! unmounting no longer brings the grace period back: floor+cg then measures the fast path too,
//! and only a fresh boot on which nothing mounted favordynmods shows the slow one. The page says
//! so ([`latches`]).

use std::ffi::CString;
use std::path::Path;

pub const DIR: &str = "/run/roboku-bench-fdm";
const NAME: &str = "roboku-bench-fdm";

/// Mount points of `/proc/self/mountinfo` whose superblock options carry favordynmods.
pub fn mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_else(|e| panic!("read /proc/self/mountinfo: {e}"));
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().skip(6).position(|x| *x == "-")? + 6;
            let cgroup = f.get(sep + 1)?.starts_with("cgroup");
            let favors = f.get(sep + 3)?.split(',').any(|o| o == "favordynmods");
            (cgroup && favors).then(|| f[4].to_string())
        })
        .collect()
}

/// Favordynmods mounts that are not the bench's.
pub fn foreign() -> Vec<String> {
    mounts().into_iter().filter(|m| m != DIR).collect()
}

/// The bench's mount; unmounted when dropped.
pub struct Switch {
    on: bool,
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| panic!("{s:?} holds a NUL"))
}

impl Switch {
    /// Off, taking away a mount of ours an earlier bench killed midway left behind.
    pub fn new() -> Switch {
        let mut s = Switch {
            on: mounts().iter().any(|m| m == DIR),
        };
        s.set(false);
        s
    }

    /// Mounts or unmounts the bench's hierarchy; panics naming the path when the kernel says no.
    pub fn set(&mut self, on: bool) {
        if on == self.on {
            return;
        }
        let dir = cstr(DIR);
        let rc = if on {
            if let Err(e) = std::fs::create_dir(DIR) {
                assert!(
                    e.kind() == std::io::ErrorKind::AlreadyExists && Path::new(DIR).is_dir(),
                    "mkdir {DIR}: {e}"
                );
            }
            let (src, fstype) = (cstr("cgroup"), cstr("cgroup"));
            let data = cstr(&format!("none,name={NAME},favordynmods"));
            // SAFETY: NUL-terminated strings that outlive the call.
            unsafe {
                libc::mount(
                    src.as_ptr(),
                    dir.as_ptr(),
                    fstype.as_ptr(),
                    0,
                    data.as_ptr().cast(),
                )
            }
        } else {
            // SAFETY: as above.
            unsafe { libc::umount(dir.as_ptr()) }
        };
        assert!(
            rc == 0,
            "{} {DIR} (favordynmods, needs Linux 6.1+): {}",
            if on { "mount" } else { "umount" },
            std::io::Error::last_os_error()
        );
        self.on = on;
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if self.on {
            let dir = cstr(DIR);
            // SAFETY: as above.
            unsafe { libc::umount(dir.as_ptr()) };
        }
    }
}

/// Whether this kernel keeps joins fast after favordynmods is unmounted (6.18+, see above).
pub fn latches(kernel: &str) -> bool {
    let mut parts = kernel.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 18)
}

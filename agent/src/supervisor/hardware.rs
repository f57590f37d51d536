//! Robot hardware for a process type: extra supplementary groups (device nodes such as a
//! `root:dialout 0660` serial port) and real-time scheduling (SCHED_FIFO/RR), checked when they
//! are set so a dyno never fails later for a reason that was knowable then.
//!
//! Real time is refused where the kernel would refuse it: `kernel.sched_rt_runtime_us = 0`, or
//! cgroup v1 real-time group scheduling (`cpu.rt_runtime_us` exists) where the dyno's cpu
//! cgroup has no real-time budget: robokud's own one, or the per-dyno group a `--cpu` quota
//! creates (new groups start at 0).

use roboku_wire::{parse_rt, RtPolicy};
use std::path::Path;

/// The gids of `names`, or an error naming the group the host does not have.
pub fn resolve_groups(names: &[String]) -> Result<Vec<u32>, String> {
    names
        .iter()
        .map(|name| match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(format!(
                "no group {name:?} on this robot (see /etc/group; device groups are e.g. dialout, video, plugdev, gpio)"
            )),
            Err(e) => Err(format!("looking up group {name:?}: {e}")),
        })
        .collect()
}

/// `(policy, priority)` for `sched_setscheduler`.
pub fn rt_params(rt: &str) -> Result<(i32, i32), String> {
    let (policy, prio) = parse_rt(rt)?;
    let policy = match policy {
        RtPolicy::Fifo => libc::SCHED_FIFO,
        RtPolicy::Rr => libc::SCHED_RR,
    };
    Ok((policy, i32::from(prio)))
}

/// Whether dynos may run with real-time policy `rt` on this host; `cpu_quota`: the process type
/// also has a `--cpu` limit (its dynos then sit in a cpu cgroup of their own on v1).
pub fn check_rt(rt: &str, cpu_quota: bool, cgroup_mount: &Path) -> Result<(), String> {
    rt_params(rt)?;
    let global = Path::new("/proc/sys/kernel/sched_rt_runtime_us");
    if read_i64(global) == Some(0) {
        return Err(format!(
            "--rt {rt}: the kernel gives real-time tasks no CPU time ({} is 0)",
            global.display()
        ));
    }
    let cpu = cgroup_mount.join("cpu");
    if !cpu.join("cpu.rt_runtime_us").exists() {
        return Ok(()); // no real-time group scheduling: the global budget applies
    }
    if cpu_quota {
        return Err(format!(
            "--rt {rt} cannot be combined with --cpu on this robot: its kernel schedules real \
             time per cgroup ({}/…/cpu.rt_runtime_us) and the cpu cgroup a quota puts each dyno \
             in has no real-time budget, so the kernel would refuse SCHED_FIFO/RR; clear the cpu \
             limit (--clear cpu) for this process type",
            cpu.display()
        ));
    }
    let own = own_cpu_cgroup().unwrap_or_default();
    let file = cpu
        .join(own.trim_start_matches('/'))
        .join("cpu.rt_runtime_us");
    if read_i64(&file) == Some(0) {
        return Err(format!(
            "--rt {rt}: {} is 0, so robokud's cpu cgroup (which its dynos share) may not run \
             real-time tasks; give it a budget (e.g. `echo 100000 > {}`) or run robokud where \
             there is one",
            file.display(),
            file.display()
        ));
    }
    Ok(())
}

fn read_i64(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// robokud's own path in the v1 cpu hierarchy (`/proc/self/cgroup`, the line naming `cpu`).
fn own_cpu_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "cpu")
            .then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rt_policies_parse() {
        assert_eq!(rt_params("fifo:10"), Ok((libc::SCHED_FIFO, 10)));
        assert_eq!(rt_params("rr:99"), Ok((libc::SCHED_RR, 99)));
        for bad in ["fifo", "fifo:0", "fifo:100", "idle:1", "rr:x", ""] {
            let e = rt_params(bad).unwrap_err();
            assert!(e.contains("fifo:PRIO or rr:PRIO"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn unknown_groups_are_named() {
        assert_eq!(resolve_groups(&["root".into()]), Ok(vec![0]));
        let e = resolve_groups(&["root".into(), "no-such-group-x".into()]).unwrap_err();
        assert!(e.contains("\"no-such-group-x\""), "{e}");
    }

    #[test]
    fn rt_with_a_cpu_quota_is_refused_under_rt_group_scheduling() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(check_rt("fifo:5", true, tmp.path()), Ok(()), "no rt groups");
        std::fs::create_dir(tmp.path().join("cpu")).unwrap();
        std::fs::write(tmp.path().join("cpu/cpu.rt_runtime_us"), "950000\n").unwrap();
        let e = check_rt("fifo:5", true, tmp.path()).unwrap_err();
        assert!(e.contains("--clear cpu"), "{e}");
    }
}

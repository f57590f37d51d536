//! What `/proc` says about a process: its start time (to tell a re-used pid from the dyno we
//! started), resident memory and CPU time (when no cgroup can tell us).

use std::path::Path;

/// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot. `None` if gone.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).and_then(|f| f.get(19).and_then(|s| s.parse().ok()))
}

/// Field 6 of `/proc/<pid>/stat`: the session id (a dyno's shell leads its own session).
pub fn session(pid: i32) -> Option<i32> {
    stat_fields(pid).and_then(|f| f.get(3).and_then(|s| s.parse().ok()))
}

/// The process exited and waits to be reaped (state `Z`): it holds no ports or files any more.
pub fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"))
}

/// utime + stime of the process, nanoseconds.
pub fn cpu_ns(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// Resident set size, bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fields after the `(comm)` of `/proc/<pid>/stat`, so field 3 (state) is index 0.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert!(session(me).is_some());
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_ns(me).is_some());
        assert_eq!(start_time(i32::MAX), None);
    }
}

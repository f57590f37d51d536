//! Looking at and signalling host processes by pid.

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Sends `sig` to `pid`; true if it was delivered.
pub fn kill(pid: i64, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// `(pid, session id)` of every live process carrying the dyno tag of the agent on `data_dir`
/// (`ROBOKU_AGENT=<data dir>` in its environment): whatever that agent ever started, except the
/// spares waiting to be released (see [`spares`]).
pub fn tagged(data_dir: &std::path::Path) -> Vec<(i64, i64)> {
    let spares: Vec<i64> = spares(data_dir).into_iter().map(|(pid, _)| pid).collect();
    all_tagged(data_dir)
        .into_iter()
        .filter(|(pid, _)| !spares.contains(pid))
        .collect()
}

/// `(pid, instance)` of the agent's spares: tagged shells that lead their own session and still
/// wait on the pipe robokud releases them through (their stdin; a dyno's is `/dev/null`).
pub fn spares(data_dir: &std::path::Path) -> Vec<(i64, String)> {
    all_tagged(data_dir)
        .into_iter()
        .filter(|(pid, sid)| pid == sid && is_waiting_spare(*pid))
        .filter_map(|(pid, _)| Some((pid, instance_of(pid)?)))
        .collect()
}

fn is_waiting_spare(pid: i64) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap_or_default();
    comm.trim() == "sh" && stdin.to_string_lossy().starts_with("pipe:")
}

/// The `ROBOKU_INSTANCE` tag of `pid` (`demo/web.1@17`).
pub fn instance_of(pid: i64) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"ROBOKU_INSTANCE="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn all_tagged(data_dir: &std::path::Path) -> Vec<(i64, i64)> {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let want = format!("ROBOKU_AGENT={}", dir.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if !env.split(|&b| b == 0).any(|v| v == want.as_bytes()) || !alive(pid) {
            continue;
        }
        let sid = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(3)?.parse().ok())
            });
        if let Some(sid) = sid {
            out.push((pid, sid));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_sees_live_processes_and_not_reaped_or_missing_ones() {
        assert!(alive(std::process::id() as i64));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i64;
        child.wait().expect("wait");
        assert!(
            !alive(pid)
                || std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| !c.starts_with("true"))
        );
        assert!(!alive(i32::MAX as i64));
    }
}

//! The process table as the bench sees a manager from the outside: who descends from it, which
//! of those are dynos (the Procfile's `sleep`) and which are helpers (everything else), and
//! per-thread CPU and context-switch counters. Read from /proc only (this kernel has no
//! `/proc/PID/task/TID/children`, so a scan lists every process).

use std::collections::{HashMap, HashSet};

/// The dyno command every manager runs: `sleep 100000`, so a dyno is a descendant named sleep.
pub const DYNO_COMM: &str = "sleep";

/// `(ppid, comm)` of `pid`, from `/proc/PID/stat`.
pub fn stat(pid: i32) -> Option<(i32, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    if rest.first() == Some(&"Z") {
        return None;
    }
    Some((rest.get(1)?.parse().ok()?, comm))
}

/// utime + stime of the whole process (dead threads included), in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(close) = text.rfind(')') else {
        return 0;
    };
    let f: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Whether `pid` still runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some()
}

pub fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A manager's live process tree at one moment.
pub struct Tree {
    pub dynos: Vec<i32>,
    pub helpers: Vec<i32>,
}

pub fn tree(root: i32) -> Tree {
    let mut kids: HashMap<i32, Vec<(i32, String)>> = HashMap::new();
    for pid in pids() {
        if let Some((ppid, comm)) = stat(pid) {
            kids.entry(ppid).or_default().push((pid, comm));
        }
    }
    let mut t = Tree {
        dynos: Vec::new(),
        helpers: Vec::new(),
    };
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (c, comm) in kids.remove(&p).unwrap_or_default() {
            if comm == DYNO_COMM {
                t.dynos.push(c);
            } else {
                t.helpers.push(c);
            }
            frontier.push(c);
        }
    }
    t
}

/// Whether `pid` descends from `root` (walking up at most 6 parents).
pub fn descends(pid: i32, root: i32) -> bool {
    let mut p = pid;
    for _ in 0..6 {
        match stat(p) {
            Some((pp, _)) if pp == root => return true,
            Some((pp, _)) if pp > 1 => p = pp,
            _ => return false,
        }
    }
    false
}

/// Run time (ns, from schedstat) and context switches (voluntary + involuntary) per thread.
pub type Threads = HashMap<(i32, i32), (u64, u64)>;

pub fn threads(pids: &[i32]) -> Threads {
    let mut out = Threads::new();
    for &pid in pids {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for e in rd.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let base = format!("/proc/{pid}/task/{tid}");
            let ns = std::fs::read_to_string(format!("{base}/schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok());
            let sw = std::fs::read_to_string(format!("{base}/status"))
                .ok()
                .map(|s| {
                    s.lines()
                        .filter(|l| l.contains("ctxt_switches:"))
                        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                        .sum()
                });
            if let (Some(ns), Some(sw)) = (ns, sw) {
                out.insert((pid, tid), (ns, sw));
            }
        }
    }
    out
}

/// (CPU ns, context switches) spent between two readings by the threads present in both, so a
/// thread that exited (or started) in between cannot make the sum negative or inflate it.
pub fn spent(before: &Threads, after: &Threads) -> (u64, u64) {
    let common: HashSet<_> = before.keys().filter(|k| after.contains_key(k)).collect();
    common.iter().fold((0, 0), |(ns, sw), k| {
        let (n0, s0) = before[k];
        let (n1, s1) = after[k];
        (ns + n1.saturating_sub(n0), sw + s1.saturating_sub(s0))
    })
}

fn kb(path: String, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn rss_kb(pid: i32) -> u64 {
    kb(format!("/proc/{pid}/status"), "VmRSS")
}

pub fn pss_kb(pid: i32) -> u64 {
    kb(format!("/proc/{pid}/smaps_rollup"), "Pss")
}

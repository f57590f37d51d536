//! One cycle of the workloads against one contender at one N, measured from the outside:
//! launch -> all N running, start-up CPU, manager RSS and manager + helpers PSS, idle CPU and
//! wake-ups over a window, kill one dyno -> its replacement running (several kills, each after
//! the backoff reset), and stop all. A workload a contender cannot do is a finding (text), not
//! a number; a contender that cannot run at all is an error.

use crate::agent::Agent;
use crate::managers::{self, Kind, Running, Tools};
use crate::procs;
use std::collections::HashSet;
use std::time::{Duration, Instant};

pub struct Config {
    pub ns: Vec<usize>,
    pub iterations: usize,
    pub idle: Duration,
    pub kills: usize,
}

/// Pause after each launch and between kills: longer than robokud's `--backoff-reset-secs 1`,
/// so every kill is a first crash.
const SETTLE: Duration = Duration::from_millis(1300);

#[derive(Default)]
pub struct Cycle {
    pub launch_ms: f64,
    pub startup_cpu_ms: f64,
    pub rss_kb: u64,
    pub pss_kb: u64,
    pub helpers: usize,
    pub idle_cpu_pct: f64,
    pub wakeups_per_s: f64,
    pub kills_ms: Vec<f64>,
    pub stop_ms: Option<f64>,
    pub findings: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ticks_ms(ticks: u64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1e3 / hz
}

fn tree_ticks(root: i32, helpers: &[i32]) -> u64 {
    std::iter::once(root)
        .chain(helpers.iter().copied())
        .map(procs::cpu_ticks)
        .sum()
}

pub fn cycle(
    kind: Kind,
    n: usize,
    cfg: &Config,
    tools: &Tools,
    agent: &Agent,
) -> Result<Cycle, String> {
    let mut c = Cycle::default();
    let cpu0 = if kind == Kind::Robokud {
        procs::cpu_ticks(agent.pid)
    } else {
        0
    };
    let t = Instant::now();
    let mut run = managers::start(kind, n, tools, agent)?;
    let tree = run.wait_dynos(n, Duration::from_secs(120))?;
    c.launch_ms = ms(t.elapsed());
    c.startup_cpu_ms = ticks_ms(tree_ticks(run.root, &tree.helpers).saturating_sub(cpu0));

    std::thread::sleep(SETTLE);
    let tree = procs::tree(run.root);
    run.seen.extend(&tree.dynos);
    c.helpers = tree.helpers.len();
    c.rss_kb = procs::rss_kb(run.root);
    c.pss_kb = std::iter::once(run.root)
        .chain(tree.helpers.iter().copied())
        .map(procs::pss_kb)
        .sum();

    let mine: Vec<i32> = std::iter::once(run.root).chain(tree.helpers).collect();
    let before = procs::threads(&mine);
    let w = Instant::now();
    std::thread::sleep(cfg.idle);
    let after = procs::threads(&mine);
    let secs = w.elapsed().as_secs_f64();
    let (ns, switches) = procs::spent(&before, &after);
    c.idle_cpu_pct = ns as f64 / 1e9 / secs * 100.0;
    c.wakeups_per_s = switches as f64 / secs;

    if kind.respawns() {
        for k in 0..cfg.kills {
            if k > 0 {
                std::thread::sleep(SETTLE);
            }
            match kill_one(&mut run, n, k) {
                Ok(d) => c.kills_ms.push(ms(d)),
                Err(e) => {
                    c.findings.push(e);
                    break;
                }
            }
        }
        std::thread::sleep(SETTLE);
    }
    match run.stop(agent) {
        Ok(d) => c.stop_ms = Some(ms(d)),
        Err(e) => c.findings.push(format!("stop all: {e}")),
    }
    Ok(c)
}

/// SIGKILL one dyno; the time until a new dyno (a `sleep` that was not there before) runs under
/// the same manager.
fn kill_one(run: &mut Running, n: usize, k: usize) -> Result<Duration, String> {
    let tree = run.wait_dynos(n, Duration::from_secs(30))?;
    let mut dynos = tree.dynos;
    dynos.sort_unstable();
    let victim = dynos[(k * 7 + n / 2) % dynos.len()];
    let known: HashSet<i32> = procs::pids().into_iter().collect();
    let t = Instant::now();
    // SAFETY: kill has no memory-safety preconditions; victim is a live dyno of ours.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let deadline = t + Duration::from_secs(10);
    loop {
        for pid in procs::pids() {
            if known.contains(&pid) {
                continue;
            }
            if let Some((_, comm)) = procs::stat(pid) {
                if comm == procs::DYNO_COMM && procs::descends(pid, run.root) {
                    run.seen.insert(pid);
                    return Ok(t.elapsed());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "kill -9 of one dyno: no replacement within 10 s ({} dynos left)",
                procs::tree(run.root).dynos.len()
            ));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// What foreman and honcho do when one of their dynos is killed (once per run): how many of the
/// other dynos survive and whether the manager stays.
pub fn crash_probe(kind: Kind, n: usize, tools: &Tools, agent: &Agent) -> Result<String, String> {
    let mut run = managers::start(kind, n, tools, agent)?;
    let tree = run.wait_dynos(n, Duration::from_secs(120))?;
    std::thread::sleep(SETTLE);
    let victim = tree.dynos[0];
    let t = Instant::now();
    // SAFETY: as in kill_one.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let deadline = t + Duration::from_secs(10);
    let others: Vec<i32> = tree.dynos[1..].to_vec();
    loop {
        let left = others.iter().filter(|&&p| procs::alive(p)).count();
        let exited = !run.manager_alive();
        // A replacement is a dyno that was not there before the kill (the victim itself may
        // take a moment to die).
        let replaced = procs::tree(run.root)
            .dynos
            .iter()
            .any(|p| !tree.dynos.contains(p));
        if replaced {
            return Ok(format!(
                "kill -9 of one dyno: replaced after {:.0} ms",
                ms(t.elapsed())
            ));
        }
        if exited && left == 0 {
            return Ok(format!(
                "kill -9 of one dyno: {} stopped the other {} dynos and exited ({:.0} ms); \
                 no replacement",
                kind.name(),
                others.len(),
                ms(t.elapsed())
            ));
        }
        if Instant::now() >= deadline {
            return Ok(format!(
                "kill -9 of one dyno: no replacement within 10 s; {left}/{} others still \
                 running, manager {}",
                others.len(),
                if exited { "exited" } else { "running" }
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

//! Issue 15's workloads beyond the process-manager cycle, run after it: the chatty dyno
//! ([`chatty`]), the deploy of a prebuilt slug ([`slug`]) and the MQTT command -> ACCEPTED
//! ([`mqtt`]). Each iteration runs every contender of a workload once, the order rotated per
//! iteration as the cycle's is. robokud is a fresh agent of its own here (the log quota raised
//! so that every line of the chatty dyno stays in its store); the MQTT workload runs a robokud
//! process of the fleet kit's on a broker of its own.
//!
//! A workload that panics (the kits assert) becomes a failure line; the others still run and the
//! page is still written.
//! `ROBOKU_BENCH_WORKLOADS=cycle,chatty,slug,mqtt` picks workloads (default: all);
//! `ROBOKU_BENCH_LOG_MB` sets the chatty dyno's output (default 50, tiny 5).

use crate::agent::{Agent, Bins};
use crate::managers::{Kind, Tools};
use crate::series::Series;
use crate::workloads::Config;
use crate::{chatty, loglines, mqtt, slug};
use std::panic::AssertUnwindSafe;

/// Every workload's name for `ROBOKU_BENCH_WORKLOADS`.
pub const WORKLOADS: [&str; 4] = ["cycle", "chatty", "slug", "mqtt"];

/// Whether `ROBOKU_BENCH_WORKLOADS` (default: all) picks `workload`.
pub fn wants(workload: &str) -> bool {
    match std::env::var("ROBOKU_BENCH_WORKLOADS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| w.trim() == workload),
        _ => true,
    }
}

/// What the three workloads measured.
#[derive(Default)]
pub struct Extra {
    pub mb: usize,
    /// The writer alone with stdout on /dev/null, ms.
    pub devnull_ms: Vec<f64>,
    pub chatty: Vec<(Kind, chatty::Sample)>,
    pub deploys: Vec<(Kind, f64)>,
    pub mqtt: Vec<mqtt::Round>,
    pub ran: Vec<&'static str>,
    pub failures: Vec<String>,
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            Err(format!("{what}: {msg}"))
        }
    }
}

/// The order of `kinds` in iteration `it`.
fn rotated(kinds: &[Kind], it: usize) -> impl Iterator<Item = Kind> + '_ {
    (0..kinds.len()).map(move |j| kinds[(j + it) % kinds.len()])
}

fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

pub fn run(bins: &Bins, tools: &Tools, kinds: &[Kind], cfg: &Config) -> Extra {
    let tiny = std::env::var_os("ROBOKU_BENCH_TINY").is_some();
    let mut x = Extra {
        mb: std::env::var("ROBOKU_BENCH_LOG_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if tiny { 5 } else { 50 })
            .max(1),
        ..Extra::default()
    };
    let picked = |list: &[Kind]| -> Vec<Kind> {
        list.iter().copied().filter(|k| kinds.contains(k)).collect()
    };
    if wants("chatty") || wants("slug") {
        // Kept until the agent is gone: robokud reads its config from here.
        let conf_dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"));
        let agent = conf_dir.as_ref().map_err(Clone::clone).and_then(|d| {
            let conf = d.path().join("robokud.toml");
            let text = format!("log_quota_bytes = {}\n", loglines::quota_for(x.mb));
            std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))?;
            guarded("start robokud for chatty/slug", || {
                let c = conf.display().to_string();
                Ok(Agent::start_with(
                    bins,
                    &["--dashboard", "off", "--config", &c],
                ))
            })
        });
        match agent {
            Err(e) => x.failures.push(e),
            Ok(agent) => {
                if wants("chatty") {
                    x.ran.push("chatty");
                    chatty_all(&mut x, tools, &agent, &picked(&chatty::CAPTURERS), cfg);
                }
                if wants("slug") {
                    x.ran.push("slug");
                    slug_all(&mut x, tools, &agent, &picked(&slug::DEPLOYERS), cfg);
                }
            }
        }
    }
    if wants("mqtt") && kinds.contains(&Kind::Robokud) {
        x.ran.push("mqtt");
        let rounds = if tiny { 5 } else { 20 } * cfg.iterations;
        let r = guarded("mqtt", || {
            let mut m = mqtt::Mqtt::start()?;
            let mut out = Vec::new();
            for i in 0..rounds {
                eprintln!("mqtt round {}/{rounds} (load {})", i + 1, load1());
                out.push(m.round()?);
            }
            Ok(out)
        });
        match r {
            Ok(rounds) => x.mqtt = rounds,
            Err(e) => x.failures.push(e),
        }
    }
    x
}

fn chatty_all(x: &mut Extra, tools: &Tools, agent: &Agent, kinds: &[Kind], cfg: &Config) {
    let mut c = chatty::Chatty::new(x.mb, tools, agent);
    for it in 0..cfg.iterations {
        for kind in rotated(kinds, it) {
            // The floor of the slowdown, run next to every contender's run (one cold run
            // would weigh on every ratio).
            match guarded("chatty: the writer to /dev/null", || c.devnull()) {
                Ok(ms) => x.devnull_ms.push(ms),
                Err(e) => x.failures.push(e),
            }
            eprintln!(
                "chatty {}/{} {} ({} MB, load {})",
                it + 1,
                cfg.iterations,
                kind.name(),
                x.mb,
                load1()
            );
            match guarded(&format!("chatty: {}", kind.name()), || c.run(kind)) {
                Ok(s) => x.chatty.push((kind, s)),
                Err(e) => x.failures.push(e),
            }
        }
    }
}

fn slug_all(x: &mut Extra, tools: &Tools, agent: &Agent, kinds: &[Kind], cfg: &Config) {
    let slugs = guarded("slug: build the slugs", || {
        slug::Slugs::prepare(tools, agent, cfg.iterations + 1)
    });
    let mut slugs = match slugs {
        Ok(s) => s,
        Err(e) => return x.failures.push(e),
    };
    let mut broken: Vec<Kind> = Vec::new();
    for &kind in kinds {
        if let Err(e) = guarded(&format!("slug: {} warm-up", kind.name()), || {
            slugs.deploy(kind)
        }) {
            x.failures.push(e);
            broken.push(kind);
        }
    }
    for it in 0..cfg.iterations {
        for kind in rotated(kinds, it).filter(|k| !broken.contains(k)) {
            eprintln!(
                "slug deploy {}/{} {} (load {})",
                it + 1,
                cfg.iterations,
                kind.name(),
                load1()
            );
            match guarded(&format!("slug: {}", kind.name()), || slugs.deploy(kind)) {
                Ok(d) => x.deploys.push((kind, d.as_secs_f64() * 1e3)),
                Err(e) => x.failures.push(e),
            }
        }
    }
}

/// `get` of every sample of `kind` in `samples`.
pub fn series_of<S>(
    samples: &[(Kind, S)],
    kind: Kind,
    unit: &'static str,
    get: impl Fn(&S) -> f64,
) -> Series {
    let mut s = Series::new(unit);
    for (k, v) in samples {
        if *k == kind {
            s.push(get(v));
        }
    }
    s
}

/// Every workload is known to [`wants`] (a typo in `ROBOKU_BENCH_WORKLOADS` would silently run
/// nothing).
pub fn check_workloads() -> Result<(), String> {
    let Ok(v) = std::env::var("ROBOKU_BENCH_WORKLOADS") else {
        return Ok(());
    };
    for w in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if !WORKLOADS.contains(&w) {
            return Err(format!(
                "ROBOKU_BENCH_WORKLOADS names {w:?}; the workloads are {}",
                WORKLOADS.join(", ")
            ));
        }
    }
    Ok(())
}

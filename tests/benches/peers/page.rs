//! The samples of every cycle turned into the BENCHMARKS page (Markdown), its JSON twin and
//! two SVG plots: medians with their spread, ratios to floor+cg and to the best peer, and the
//! issue's targets marked met or not met with the figure measured in this same run.

use crate::managers::{Kind, ALL, PEERS};
use crate::series::{round, Series};
use crate::svg;
use crate::workloads::{Config, Cycle};
use serde_json::{json, Value};
use std::collections::HashMap;

pub struct Meta<'a> {
    pub cfg: &'a Config,
    pub loads: Vec<f64>,
    pub secs: f64,
    pub kernel: String,
    pub cpus: usize,
    /// favordynmods mounts the bench did not make, seen at any point of the run.
    pub foreign_fdm: Vec<String>,
}

pub struct Out {
    pub json: Value,
    pub markdown: String,
    pub svgs: Vec<(String, String)>,
    pub summary: String,
}

struct Metric {
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    get: fn(&Cycle) -> Vec<f64>,
}

static METRICS: [Metric; 9] = [
    Metric {
        key: "launch_ms",
        title: "launch -> N dynos running",
        unit: "ms",
        get: |c| vec![c.launch_ms],
    },
    Metric {
        key: "startup_cpu_ms",
        title: "start-up CPU, manager + helpers",
        unit: "ms",
        get: |c| vec![c.startup_cpu_ms],
    },
    Metric {
        key: "rss_mib",
        title: "manager RSS",
        unit: "MiB",
        get: |c| vec![c.rss_kb as f64 / 1024.0],
    },
    Metric {
        key: "pss_mib",
        title: "manager + helpers PSS",
        unit: "MiB",
        get: |c| vec![c.pss_kb as f64 / 1024.0],
    },
    Metric {
        key: "helpers",
        title: "helper processes (not the dyno's command)",
        unit: "count",
        get: |c| vec![c.helpers as f64],
    },
    Metric {
        key: "idle_cpu_pct",
        title: "idle CPU, manager + helpers",
        unit: "% of a core",
        get: |c| vec![c.idle_cpu_pct],
    },
    Metric {
        key: "wakeups_per_s",
        title: "idle wake-ups (context switches)",
        unit: "/s",
        get: |c| vec![c.wakeups_per_s],
    },
    Metric {
        key: "kill_ms",
        title: "kill -9 one dyno -> replacement running",
        unit: "ms",
        get: |c| c.kills_ms.clone(),
    },
    Metric {
        key: "stop_ms",
        title: "stop all (robokud: scale N -> 0, cgroups gone)",
        unit: "ms",
        get: |c| c.stop_ms.into_iter().collect(),
    },
];

type Cycles = HashMap<(Kind, usize), Vec<Cycle>>;

fn series(cycles: &Cycles, m: &Metric, kind: Kind, n: usize) -> Series {
    let mut s = Series::new(m.unit);
    for c in cycles.get(&(kind, n)).into_iter().flatten() {
        for v in (m.get)(c) {
            s.push(v);
        }
    }
    s
}

pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v.abs() >= 100.0 || (v == v.trunc() && v.abs() < 1e6) {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub fn cell(s: &Series) -> String {
    if s.samples.is_empty() {
        return "—".into();
    }
    if s.samples.len() == 1 {
        return num(s.median());
    }
    format!("{} ({}–{})", num(s.median()), num(s.min()), num(s.max()))
}

/// The peer with the lowest median for `m` at `n` (only peers that have a sample).
fn best_peer(cycles: &Cycles, m: &Metric, n: usize) -> Option<(Kind, f64)> {
    PEERS
        .iter()
        .map(|&k| (k, series(cycles, m, k, n).median()))
        .filter(|(_, v)| v.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn metric(key: &str) -> &'static Metric {
    METRICS
        .iter()
        .find(|m| m.key == key)
        .unwrap_or_else(|| panic!("no metric {key}"))
}

/// One row of a page's targets table (the cycles' here, the extra workloads' in extra_page.rs).
pub struct Target {
    pub text: String,
    pub figure: String,
    pub met: Option<bool>,
}

fn targets(cycles: &Cycles, ns: &[usize]) -> Vec<Target> {
    let big = *ns.iter().max().unwrap_or(&0);
    let med = |key: &str, k: Kind, n: usize| series(cycles, metric(key), k, n).median();
    let mut out = Vec::new();
    let kill = series(cycles, metric("kill_ms"), Kind::Robokud, big);
    let piku = series(cycles, metric("kill_ms"), Kind::Uwsgi, big);
    out.push(Target {
        text: "kill -> replacement under 5 ms median and under 15 ms max, ahead of piku's median"
            .into(),
        figure: format!(
            "N={big}: robokud {} / {} ms (median / max), piku {} / {} ms",
            num(kill.median()),
            num(kill.max()),
            num(piku.median()),
            num(piku.max())
        ),
        met: kill
            .median()
            .is_finite()
            .then(|| kill.median() < 5.0 && kill.max() < 15.0 && kill.median() < piku.median()),
    });
    let pss = med("pss_mib", Kind::Robokud, big);
    let foreman = med("pss_mib", Kind::Foreman, big);
    let helpers = med("helpers", Kind::Robokud, big);
    out.push(Target {
        text: "no helper process per dyno; total PSS under 15 MiB and under foreman's".into(),
        figure: format!(
            "N={big}: robokud {} helpers, {} MiB; foreman {} MiB",
            num(helpers),
            num(pss),
            num(foreman)
        ),
        met: pss
            .is_finite()
            .then_some(helpers == 0.0 && pss < 15.0 && pss < foreman),
    });
    let cpu = med("idle_cpu_pct", Kind::Robokud, big);
    let wake = med("wakeups_per_s", Kind::Robokud, big);
    out.push(Target {
        text: "idle CPU under 0.05 % with the default sampling, at most 1 wake-up/s".into(),
        figure: format!("N={big}: robokud {} %, {} wake-ups/s", num(cpu), num(wake)),
        met: cpu.is_finite().then_some(cpu < 0.05 && wake <= 1.0),
    });
    let mut parts = Vec::new();
    let mut ok = true;
    let mut any = false;
    for &n in ns.iter().filter(|&&n| n >= 100) {
        let r = med("launch_ms", Kind::Robokud, n) / med("launch_ms", Kind::FloorCg, n);
        parts.push(format!("N={n}: {}x", num(r)));
        ok &= r <= 1.5;
        any |= r.is_finite();
    }
    out.push(Target {
        text: "launch to N running within 1.5x floor+cg at N = 100 and 500".into(),
        figure: if parts.is_empty() {
            "not run (no N >= 100)".into()
        } else {
            parts.join(", ")
        },
        met: any.then_some(ok),
    });
    let per = med("startup_cpu_ms", Kind::Robokud, big) / big.max(1) as f64;
    out.push(Target {
        text: "start-up CPU under 0.5 ms per dyno".into(),
        figure: format!("N={big}: {} ms per dyno", num(per)),
        met: per.is_finite().then_some(per < 0.5),
    });
    let r = med("stop_ms", Kind::Robokud, big) / med("stop_ms", Kind::FloorCg, big);
    out.push(Target {
        text: "stop all within 1.5x floor+cg".into(),
        figure: format!("N={big}: {}x", num(r)),
        met: r.is_finite().then_some(r <= 1.5),
    });
    out.push(Target {
        text: "1,000 agents converge on a group deploy in waves in under 10 s".into(),
        figure: "measured by `cargo bench --bench fleet` (docs/fleet-protocol.md: 5.05 s to the \
                 last SUCCEEDED, 1,000 in-process agents + 10 robokud on one Mosquitto)"
            .into(),
        met: None,
    });
    // The log throughput target is the chatty dyno's: see extra_page.rs.
    out
}

/// The Markdown table of `targets` (header included); `none`: the verdict of a row without one.
pub fn targets_table(targets: &[Target], none: &'static str) -> Vec<String> {
    let mut out = vec![
        "| target | figure | verdict |".to_string(),
        "|---|---|---|".to_string(),
    ];
    out.extend(
        targets
            .iter()
            .map(|t| format!("| {} | {} | {} |", t.text, t.figure, verdict(t, none))),
    );
    out
}

/// A target's verdict; `none`: what a row without one says.
pub fn verdict(t: &Target, none: &'static str) -> &'static str {
    match t.met {
        Some(true) => "met",
        Some(false) => "not met",
        None => none,
    }
}

pub fn render(
    meta: &Meta,
    cycles: &Cycles,
    probes: &[(Kind, usize, String)],
    failures: &[String],
) -> Out {
    let ns = &meta.cfg.ns;
    let mut loads = Series::new("load");
    for l in meta.loads.iter().filter(|l| l.is_finite()) {
        loads.push(*l);
    }
    let mut findings: Vec<String> = Vec::new();
    for &kind in &ALL {
        for &n in ns {
            for c in cycles.get(&(kind, n)).into_iter().flatten() {
                for f in &c.findings {
                    let f = format!("{} at N={n}: {f}", kind.name());
                    if !findings.contains(&f) {
                        findings.push(f);
                    }
                }
            }
        }
    }
    for (kind, n, f) in probes {
        findings.push(format!("{} at N={n}: {f}", kind.name()));
    }
    let targets = targets(cycles, ns);

    let mut md = String::new();
    let mut p = |s: &str| {
        md.push_str(s);
        md.push('\n');
    };
    p("# Benchmarks: robokud against its peers");
    p("");
    p("Generated by `tests/benches/peers/run.sh` (`cargo bench -p roboku-tests --bench peers`);");
    p("the JSON twin is `<target>/bench-peers.json`. Every contender runs the same workloads on");
    p("the same machine in one interleaved pass (each iteration: every contender at every N, the");
    p("order rotated per iteration). Cells are `median (min–max)` over the iterations (kills:");
    p("over every kill of every iteration).");
    p("");
    p(&format!(
        "- machine: {} CPUs, kernel {}, cgroup v1; {} iterations, N = {}, idle window {} s, \
         {} kills per cycle; run took {:.0} s",
        meta.cpus,
        meta.kernel,
        meta.cfg.iterations,
        ns.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        meta.cfg.idle.as_secs(),
        meta.cfg.kills,
        meta.secs
    ));
    p(&format!(
        "- **load average (1 min) during the run: median {}, min {}, max {}** — the machine was \
         shared with other engineers' builds, so absolute times carry their noise; the ratios \
         between contenders measured side by side carry less",
        num(loads.median()),
        num(loads.min()),
        num(loads.max())
    ));
    p(&if meta.foreign_fdm.is_empty() {
        format!(
            "- favordynmods (docs/supervision.md): mounted by the bench at {} only while \
             robokud (`--no-favordynmods`) and `floor+cg+fdm` ran, unmounted for everyone else",
            crate::fdm::DIR
        )
    } else {
        format!(
            "- **favordynmods: a mount the bench did not make was there ({}): every contender's \
             cgroup joins skipped the grace period, so `floor+cg` did not measure the slow path**",
            meta.foreign_fdm.join(", ")
        )
    });
    if crate::fdm::latches(&meta.kernel) {
        p(&format!(
            "- **kernel {}: favordynmods latches** (Linux 6.18+: its first mount since boot moves \
             `cgroup.procs` writes to a per-threadgroup rwsem for good, unmounting does not undo \
             it), so `floor+cg` measured the slow path only if nothing had mounted favordynmods \
             since boot and only before this bench's first mount; otherwise it is the fast path \
             as well",
            meta.kernel
        ));
    }
    p(
        "- contenders: `floor` is a C supervisor (`tests/benches/peers/floor.c`: fork, exec, \
       reap, respawn at once, no shell); `floor+cg` the same giving each child fresh memory, pids \
       and cpuacct cgroups joined before exec, as robokud does; `floor+cg+fdm` that again while favordynmods \
       is mounted (joins without an RCU grace period); supervisord, foreman, honcho \
       (Procfile `web: sleep 100000`, `-m`/`-c web=N`); uwsgi laid out as piku does \
       (`master`, one `attach-daemon` per worker, no socket); robokud scaling one app 0 -> N -> 0 \
       on a running agent (default 5 s sampling, `--backoff-reset-secs 1`)",
    );
    p(
        "- dyno: `sleep 100000`; a dyno is a descendant named `sleep`, a helper any other \
       descendant (e.g. a `/bin/sh` parent kept alive). Idle CPU and wake-ups: schedstat run time \
       and voluntary + involuntary context switches, summed over the threads of the manager and \
       its helpers alive at both ends of the window. Kills: SIGKILL to one dyno, each after a \
       1.3 s pause (past robokud's backoff reset), until a new `sleep` under the same manager",
    );
    p("");
    p("## Targets (issue 15), in this run");
    p("");
    for line in targets_table(&targets, "not in this bench") {
        p(&line);
    }
    p("");
    p("## Figures");
    for m in &METRICS {
        p("");
        p(&format!("### {} ({})", m.title, m.unit));
        p("");
        let head: Vec<String> = ns.iter().map(|n| format!("N={n}")).collect();
        p(&format!("| contender | {} |", head.join(" | ")));
        p(&format!("|---|{}", "---|".repeat(ns.len())));
        for &kind in &ALL {
            let cells: Vec<String> = ns
                .iter()
                .map(|&n| cell(&series(cycles, m, kind, n)))
                .collect();
            p(&format!("| {} | {} |", kind.name(), cells.join(" | ")));
        }
        let robo: Vec<f64> = ns
            .iter()
            .map(|&n| series(cycles, m, Kind::Robokud, n).median())
            .collect();
        let vs_cg: Vec<String> = ns
            .iter()
            .zip(&robo)
            .map(|(&n, r)| {
                let f = series(cycles, m, Kind::FloorCg, n).median();
                if f > 0.0 {
                    format!("{}x", num(r / f))
                } else {
                    "—".into()
                }
            })
            .collect();
        p(&format!("| *robokud / floor+cg* | {} |", vs_cg.join(" | ")));
        let vs_best: Vec<String> = ns
            .iter()
            .zip(&robo)
            .map(|(&n, r)| match best_peer(cycles, m, n) {
                Some((k, v)) if v > 0.0 => format!("{}x ({} {})", num(r / v), k.name(), num(v)),
                Some((k, v)) => format!("({} {})", k.name(), num(v)),
                None => "—".into(),
            })
            .collect();
        p(&format!(
            "| *robokud / best peer* | {} |",
            vs_best.join(" | ")
        ));
    }
    p("");
    p("## Plots");
    p("");
    p("![launch -> N running](bench-launch.svg)");
    p("");
    p("![manager + helpers PSS](bench-pss.svg)");
    p("");
    p("## Findings (what a contender could not do)");
    p("");
    if findings.is_empty() {
        p("- none");
    }
    for f in &findings {
        p(&format!("- {f}"));
    }
    for f in failures {
        p(&format!("- FAILED: {f}"));
    }

    let svgs = ["launch_ms", "pss_mib"]
        .iter()
        .map(|key| {
            let m = metric(key);
            let panels: Vec<svg::Panel> = ns
                .iter()
                .map(|&n| svg::Panel {
                    label: format!("N={n}"),
                    bars: ALL
                        .iter()
                        .map(|&k| (k.name().to_string(), series(cycles, m, k, n).median()))
                        .collect(),
                })
                .collect();
            let file = match *key {
                "launch_ms" => "bench-launch.svg",
                _ => "bench-pss.svg",
            };
            (
                file.to_string(),
                svg::grouped_bars(m.title, m.unit, &panels),
            )
        })
        .collect();

    let mut results = serde_json::Map::new();
    for &kind in &ALL {
        let mut per_n = serde_json::Map::new();
        for &n in ns {
            let mut per_m = serde_json::Map::new();
            for m in &METRICS {
                per_m.insert(m.key.into(), series(cycles, m, kind, n).json());
            }
            per_n.insert(n.to_string(), Value::Object(per_m));
        }
        results.insert(kind.name().into(), Value::Object(per_n));
    }
    let json = json!({
        "meta": {
            "iterations": meta.cfg.iterations,
            "ns": ns,
            "idle_window_secs": meta.cfg.idle.as_secs(),
            "kills_per_cycle": meta.cfg.kills,
            "load1": { "median": round(loads.median()), "min": round(loads.min()), "max": round(loads.max()), "samples": loads.samples },
            "secs": round(meta.secs),
            "kernel": meta.kernel,
            "cpus": meta.cpus,
            "favordynmods": {
                "bench_mount": crate::fdm::DIR,
                "on_for": ALL.iter().filter(|k| k.wants_fdm()).map(|k| k.name()).collect::<Vec<_>>(),
                "foreign_mounts": meta.foreign_fdm,
                "latches": crate::fdm::latches(&meta.kernel),
            },
        },
        "results": results,
        "targets": targets.iter().map(|t| json!({
            "target": t.text, "figure": t.figure, "met": t.met,
        })).collect::<Vec<_>>(),
        "findings": findings,
        "failures": failures,
    });
    let mut summary = String::from("peers bench targets:\n");
    for t in &targets {
        summary.push_str(&format!(
            "  [{}] {}: {}\n",
            verdict(t, "not in this bench"),
            t.text,
            t.figure
        ));
    }
    Out {
        json,
        markdown: md,
        svgs,
        summary,
    }
}

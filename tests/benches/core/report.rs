//! Turning samples into the printed table and the JSON file (same numbers in both).

use crate::honcho;
use crate::series::{round, Series};
use crate::Scale;
use serde_json::{json, Value};

pub struct Memory {
    pub rss_idle: u64,
    pub rss_10: u64,
    pub rss_100: u64,
    pub rss_100_later: u64,
    pub rss_after: u64,
    pub peak: Option<u64>,
    pub cpu_idle_pct: f64,
    pub cpu_ticks: u64,
    pub clk: u64,
}

pub struct Rendered {
    pub text: String,
    pub json: Value,
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub fn render(
    iters: usize,
    scale: &Scale,
    crash: [&Series; 3],
    mem: &Memory,
    honcho: &Result<Vec<honcho::Run>, String>,
) -> Rendered {
    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    let head = format!("  {:<44} {:>9} {:>9} {:>9}", "", "median", "p90", "min");

    let up = scale.up.median();
    let vs_bare = up / scale.bare.median();
    let vs_cg = up / scale.cgroup3.median();
    let vs_mirror = up / scale.mirror.median();
    line(format!(
        "\n== roboku core bench: {iters} rounds each, times in ms =="
    ));
    line("\n[1] scale web 0 -> 100 (sh -c 'exec sleep 100000')".to_string());
    line(head.clone());
    line(scale.reply.row("roboku: POST scale answered"));
    line(scale.up.row("roboku: all 100 up with a pid (GET ps)"));
    line(scale.bare.row("peer: bare spawn loop (std Command)"));
    line(scale.fork.row("peer: setsid in pre_exec (fork path)"));
    line(scale.cgroup3.row("peer: + own cgroup in memory,pids,cpu"));
    line(
        scale
            .mirror
            .row("peer: robokud's cgroups, join in pre_exec"),
    );
    line(scale.down.row("roboku: scale 100 -> 0, all gone"));
    line(format!(
        "  ratio roboku / bare loop   = {vs_bare:.2}x   target <= 2x: {}",
        verdict(vs_bare <= 2.0)
    ));
    line(format!(
        "  ratio roboku / cgroup loop = {vs_cg:.2}x   (fair peer for per-dyno cgroups)"
    ));
    line(format!(
        "  ratio roboku / mirror loop = {vs_mirror:.2}x   (same kernel work as robokud)"
    ));
    line(format!(
        "  per dyno: roboku {:.2} ms, bare {:.2} ms, fork {:.2} ms, cgroup {:.2} ms, mirror {:.2} ms",
        up / 100.0,
        scale.bare.median() / 100.0,
        scale.fork.median() / 100.0,
        scale.cgroup3.median() / 100.0,
        scale.mirror.median() / 100.0
    ));

    let [crash, floor, floor_cg] = crash;
    let diff = crash.median() - floor.median();
    let diff_cg = crash.median() - floor_cg.median();
    line(
        "\n[2] crash replacement: kill -9 -> replacement's `date +%s%N` ran (each a first crash)"
            .to_string(),
    );
    line(head);
    line(crash.row("roboku: kill -9 of a dyno"));
    line(floor.row("floor: bench kills, reaps, respawns the sh"));
    line(floor_cg.row("floor + fresh cgroups joined before exec"));
    line(format!(
        "  roboku median {:.2} ms   target < 5 ms: {}   roboku - floor = {diff:.2} ms",
        crash.median(),
        verdict(crash.median() < 5.0)
    ));
    line(format!(
        "  roboku - (floor + cgroups) = {diff_cg:.2} ms (robokud's own share)"
    ));

    line("\n[3] robokud memory and CPU".to_string());
    line(format!(
        "  VmRSS idle, no apps              {:>7.2} MB   target < 10 MB: {}",
        mb(mem.rss_idle),
        verdict(mb(mem.rss_idle) < 10.0)
    ));
    line(format!(
        "  VmRSS with 10 dynos              {:>7.2} MB",
        mb(mem.rss_10)
    ));
    line(format!(
        "  VmRSS with 100 dynos             {:>7.2} MB   target < 20 MB: {}",
        mb(mem.rss_100),
        verdict(mb(mem.rss_100) < 20.0)
    ));
    line(format!(
        "  VmRSS with 100 dynos, 10 s later {:>7.2} MB",
        mb(mem.rss_100_later)
    ));
    line(format!(
        "  VmRSS back at 0 dynos            {:>7.2} MB   (peak VmHWM {:.2} MB)",
        mb(mem.rss_after),
        mem.peak.map(mb).unwrap_or(f64::NAN)
    ));
    line(format!(
        "  CPU idle with 100 dynos (10 s)   {:>7.2} % of one core ({} ticks at {} Hz; 1 s samples)",
        mem.cpu_idle_pct, mem.cpu_ticks, mem.clk
    ));
    let honcho_json = match honcho {
        Ok(runs) => {
            for r in runs {
                line(format!(
                    "  peer honcho, {:>3} dynos: main VmRSS {:.2} MB; tree ({} helpers + main) RSS {:.1} MB, PSS {:.1} MB; started in {:.0} ms",
                    r.n,
                    mb(r.main_rss_kb),
                    r.helpers,
                    mb(r.tree_rss_kb),
                    mb(r.tree_pss_kb),
                    r.start_ms
                ));
            }
            json!(runs
                .iter()
                .map(|r| json!({
                    "dynos": r.n,
                    "main_rss_kb": r.main_rss_kb,
                    "helper_processes": r.helpers,
                    "tree_rss_kb": r.tree_rss_kb,
                    "tree_pss_kb": r.tree_pss_kb,
                    "start_ms": round(r.start_ms),
                }))
                .collect::<Vec<_>>())
        }
        Err(why) => {
            line(format!("  peer honcho: skipped ({why})"));
            json!({ "skipped": why })
        }
    };

    let json = json!({
        "scale_0_to_100": {
            "roboku_reply_ms": scale.reply.json(),
            "roboku_all_up_ms": scale.up.json(),
            "roboku_scale_down_ms": scale.down.json(),
            "peer_bare_spawn_ms": scale.bare.json(),
            "peer_fork_setsid_ms": scale.fork.json(),
            "peer_cgroup3_spawn_ms": scale.cgroup3.json(),
            "peer_mirror_spawn_ms": scale.mirror.json(),
            "ratio_vs_bare": round(vs_bare),
            "ratio_vs_cgroup3": round(vs_cg),
            "ratio_vs_mirror": round(vs_mirror),
            "target_ratio_vs_bare": 2.0,
            "target_met": vs_bare <= 2.0,
        },
        "crash_replacement": {
            "roboku_ms": crash.json(),
            "floor_ms": floor.json(),
            "floor_with_cgroups_ms": floor_cg.json(),
            "roboku_minus_floor_with_cgroups_median_ms": round(diff_cg),
            "roboku_minus_floor_median_ms": round(diff),
            "target_median_ms": 5.0,
            "target_met": crash.median() < 5.0,
        },
        "robokud": {
            "rss_idle_kb": mem.rss_idle,
            "rss_10_dynos_kb": mem.rss_10,
            "rss_100_dynos_kb": mem.rss_100,
            "rss_100_dynos_10s_later_kb": mem.rss_100_later,
            "rss_back_at_0_kb": mem.rss_after,
            "vm_hwm_kb": mem.peak,
            "target_idle_kb": 10 * 1024,
            "target_100_kb": 20 * 1024,
            "idle_target_met": mb(mem.rss_idle) < 10.0,
            "with_100_target_met": mb(mem.rss_100) < 20.0,
            "cpu_idle_100_dynos_percent": round(mem.cpu_idle_pct),
        },
        "peer_honcho": honcho_json,
    });
    Rendered { text: t, json }
}

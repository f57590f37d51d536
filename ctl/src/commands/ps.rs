//! `ps`, `ps:scale`, `ps:resize`, `ps:restart`, `ps:stop`: the dynos and the formation.

use super::{and_list, app_path, AppArg, Ctx};
use crate::output::{self, outln};
use crate::parse;
use roboku_wire::{
    Done, DynoInfo, DynoState, FormationEntry, Limits, ResizeRequest, ScaleRequest, TargetRequest,
};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// TYPE=COUNT pairs, e.g. web=3 worker=1
    #[arg(required = true, value_parser = parse::scale_spec, value_name = "TYPE=COUNT")]
    pub specs: Vec<(String, u32)>,
    /// Wait for the app's apply gates first, giving up after this long (default: apply at once,
    /// as a local scale always did; fleet scales always wait)
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    pub gate_timeout: Option<u64>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("limits").required(true).multiple(true)
    .args(["memory", "memory_high", "cpu", "pids", "cpuset", "nice", "groups", "rt", "clear"])))]
pub struct ResizeArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Process type to resize, e.g. web
    pub ptype: String,
    /// Hard memory limit (64M, 1G, bytes)
    #[arg(long, value_parser = parse::size, value_name = "SIZE")]
    pub memory: Option<u64>,
    /// Soft memory limit: reclaim pressure above it
    #[arg(long, value_parser = parse::size, value_name = "SIZE")]
    pub memory_high: Option<u64>,
    /// CPU quota in cores (0.5 = half a core)
    #[arg(long, value_parser = parse::cpu, value_name = "CORES")]
    pub cpu: Option<f64>,
    /// Maximum tasks (processes + threads)
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// CPUs the dynos may run on, e.g. 0-1,3
    #[arg(long, value_name = "LIST")]
    pub cpuset: Option<String>,
    /// Nice value, -20..19
    #[arg(long, value_parser = parse::nice, allow_negative_numbers = true, value_name = "N")]
    pub nice: Option<i32>,
    /// Extra groups of the dynos' processes, for devices: dialout (serial), video (cameras)...
    #[arg(long, value_delimiter = ',', value_name = "GROUPS")]
    pub groups: Option<Vec<String>>,
    /// Real-time scheduling: fifo:PRIO or rr:PRIO (PRIO 1..99)
    #[arg(long, value_parser = parse::rt, value_name = "POLICY")]
    pub rt: Option<String>,
    /// Limits to reset: memory, memory-high, cpu, pids, cpuset, nice, groups, rt
    #[arg(long, value_delimiter = ',', value_parser = parse::clear_field, value_name = "LIMITS")]
    pub clear: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// A process type (web) or a dyno (web.2); all dynos when left out
    pub target: Option<String>,
    /// Give up if the app's apply gates are still closed after this long (default: wait)
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    pub gate_timeout: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// A process type (web) or a dyno (web.2)
    pub target: String,
}

pub async fn list(ctx: &Ctx, args: AppArg) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&app_path(&args.app, "/ps")).await?;
    let Some(mut dynos) = ctx.typed::<Vec<DynoInfo>>(v)? else {
        return Ok(());
    };
    if dynos.is_empty() {
        let app = &args.app;
        outln!("No dynos for {app}. Deploy, then scale with `roboku ps:scale -a {app} web=1`.")?;
        return Ok(());
    }
    dynos.sort_by(|a, b| (&a.ptype, a.index).cmp(&(&b.ptype, b.index)));
    let rows: Vec<_> = dynos
        .iter()
        .map(|d| dyno_row(d, output::now_ms()))
        .collect();
    Ok(output::print(&output::table(&rows))?)
}

pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<()> {
    let mut counts = BTreeMap::new();
    for (ptype, count) in args.specs {
        counts.insert(ptype, count);
    }
    let body = ScaleRequest { counts };
    let path = super::with_gate_timeout(&app_path(&args.app.app, "/scale"), args.gate_timeout);
    let v: Value = ctx.client.post(&path, &body).await?;
    let Some(formation) = ctx.typed::<Vec<FormationEntry>>(v)? else {
        return Ok(());
    };
    let now: Vec<String> = formation
        .iter()
        .map(|f| format!("{} at {}", f.ptype, f.count))
        .collect();
    outln!(
        "Scaling {} dynos... done, now running {}",
        args.app.app,
        and_list(&now)
    )?;
    Ok(())
}

pub async fn resize(ctx: &Ctx, args: ResizeArgs) -> anyhow::Result<()> {
    let body = ResizeRequest {
        ptype: args.ptype.clone(),
        limits: Limits {
            memory_max: args.memory,
            memory_high: args.memory_high,
            cpu: args.cpu,
            pids: args.pids,
            cpuset: args.cpuset,
            nice: args.nice,
            groups: args.groups,
            rt: args.rt,
        },
        clear: args.clear,
    };
    let path = app_path(&args.app.app, "/resize");
    let v: Value = ctx.client.post(&path, &body).await?;
    let Some(formation) = ctx.typed::<Vec<FormationEntry>>(v)? else {
        return Ok(());
    };
    let limits = formation
        .iter()
        .find(|f| f.ptype == args.ptype)
        .map_or("no limits".into(), |f| f.limits.to_string());
    outln!(
        "Resizing {} of {}... done: {limits}",
        args.ptype,
        args.app.app
    )?;
    Ok(())
}

pub async fn restart(ctx: &Ctx, args: TargetArgs) -> anyhow::Result<()> {
    let route = super::with_gate_timeout("/restart", args.gate_timeout);
    target(ctx, &args.app.app, &route, args.target).await
}

pub async fn stop(ctx: &Ctx, args: StopArgs) -> anyhow::Result<()> {
    target(ctx, &args.app.app, "/stop", Some(args.target)).await
}

async fn target(ctx: &Ctx, app: &str, route: &str, target: Option<String>) -> anyhow::Result<()> {
    let v: Value = ctx
        .client
        .post(&app_path(app, route), &TargetRequest { target })
        .await?;
    if let Some(done) = ctx.typed::<Done>(v)? {
        outln!("{}", done.message)?;
    }
    Ok(())
}

/// `web.1  up 12s  pid 4242  port 20001  mem 3.1M  cpu 0.1%  restarts 0`.
fn dyno_row(d: &DynoInfo, now: u64) -> Vec<String> {
    let state = match d.state {
        DynoState::Backoff => match d.next_retry_at {
            Some(at) => format!(
                "backoff (next try in {})",
                output::duration(at.saturating_sub(now))
            ),
            None => "backoff".into(),
        },
        DynoState::Crashed => match &d.last_exit {
            Some(exit) => format!("crashed ({})", exit.reason),
            None => "crashed".into(),
        },
        s => format!("{} {}", s.as_str(), output::age(now, d.since)),
    };
    let opt = |label: &str, v: Option<String>| format!("{label} {}", v.as_deref().unwrap_or("-"));
    let mut row = vec![
        d.name.clone(),
        state,
        opt("pid", d.pid.map(|p| p.to_string())),
        format!("port {}", d.port),
        opt("mem", d.memory_bytes.map(output::bytes)),
        opt("cpu", d.cpu_percent.map(|c| format!("{c:.1}%"))),
        format!("restarts {}", d.restarts),
    ];
    if d.oom_kills > 0 {
        row.push(format!("oom-kills {}", d.oom_kills));
    }
    // What the dyno said about itself (`roboku health:set`).
    if let Some(h) = &d.health {
        row.push(match h.message.is_empty() {
            true => format!("health {}", h.status.as_str()),
            false => format!("health {} ({})", h.status.as_str(), h.message),
        });
    }
    row
}

#[cfg(test)]
mod tests;
pub mod wait;

//! `gates`, `gates:set`, `gates:unset`, `gates:hold`, `gates:release`: what must hold before a
//! deploy, a config change or a fleet command is applied to an app; and `health:set`, a dyno's
//! report about itself. Inside a dyno (`$ROBOKU_DYNO_SOCKET` set) `health:set`, `gates:hold` and
//! `gates:release` go through the app's own dyno socket, which acts on that app only.

use super::{app_path, AppArg, Ctx, UsageError};
use crate::client::Client;
use crate::output::outln;
use crate::parse;
use roboku_wire::gates::{
    DynoHealth, GateKind, GatesReport, HealthStatus, HoldInfo, SetGate, SetHealth, TakeHold,
    DYNO_SOCKET_VAR,
};
use roboku_wire::Done;
use serde_json::Value;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("check").required(true).args(["command", "file", "health", "window"])))]
pub struct SetArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The gate's name (`mission-idle`)
    pub name: String,
    /// Passes when this shell command exits 0 (run as the app's user, in its slug dir)
    #[arg(long)]
    pub command: Option<String>,
    /// Passes when this path exists (checked as the app's user)
    #[arg(long, value_name = "PATH")]
    pub file: Option<String>,
    /// Passes when every running dyno of this process type reports `okay` (`health:set`)
    #[arg(long, value_name = "TYPE")]
    pub health: Option<String>,
    /// Passes inside this local-time window, e.g. 22:00-06:00
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub window: Option<String>,
    /// How long one run of the command or file check may take
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    pub timeout: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    pub app: AppArg,
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct HoldArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The hold's name; taking it again renews it
    pub name: String,
    /// How long it lasts unless released (30s, 10m, 2h)
    #[arg(long = "for", value_parser = parse::duration_ms, value_name = "DURATION")]
    pub duration: u64,
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who holds it (default: the door, or the dyno)
    #[arg(long)]
    pub holder: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    /// okay, waiting, blocked or error
    #[arg(value_parser = parse_status)]
    pub status: HealthStatus,
    /// What a person should know (`ready`, `mission 42 in progress`)
    #[arg(default_value = "")]
    pub message: String,
}

fn parse_status(s: &str) -> Result<HealthStatus, String> {
    HealthStatus::parse(s)
        .ok_or_else(|| format!("{s:?} is not a health status: use okay, waiting, blocked or error"))
}

/// The app's dyno socket when running inside a dyno.
fn dyno_client() -> Option<Client> {
    let path = std::env::var_os(DYNO_SOCKET_VAR)?;
    Some(Client::new(std::path::PathBuf::from(path)).with_door("dyno"))
}

pub async fn list(ctx: &Ctx, args: AppArg) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&app_path(&args.app, "/gates")).await?;
    if let Some(report) = ctx.typed::<GatesReport>(v)? {
        outln!("{}", render(&report, crate::output::now_ms()))?;
    }
    Ok(())
}

pub async fn set(ctx: &Ctx, args: SetArgs) -> anyhow::Result<()> {
    let check = match (args.command, args.file, args.health, args.window) {
        (Some(c), None, None, None) => GateKind::Command(c),
        (None, Some(f), None, None) => GateKind::File(f),
        (None, None, Some(t), None) => GateKind::Health(t),
        (None, None, None, Some(w)) => GateKind::Window(w),
        _ => anyhow::bail!(UsageError(
            "give one of --command, --file, --health or --window".into()
        )),
    };
    let body = SetGate {
        check,
        timeout_secs: args.timeout.map(|ms| ms.div_ceil(1000)),
    };
    let path = app_path(&args.app.app, &format!("/gates/{}", args.name));
    let v: Value = ctx.client.put(&path, &body).await?;
    if let Some(done) = ctx.typed::<Done>(v)? {
        outln!("{}", done.message)?;
    }
    Ok(())
}

pub async fn unset(ctx: &Ctx, args: NameArgs) -> anyhow::Result<()> {
    let path = app_path(&args.app.app, &format!("/gates/{}", args.name));
    let v: Value = ctx.client.delete(&path).await?;
    if let Some(done) = ctx.typed::<Done>(v)? {
        outln!("{}", done.message)?;
    }
    Ok(())
}

pub async fn hold(ctx: &Ctx, args: HoldArgs) -> anyhow::Result<()> {
    let body = TakeHold {
        secs: args.duration.div_ceil(1000),
        reason: args.reason,
        holder: args.holder.or_else(|| std::env::var("DYNO").ok()),
    };
    let (client, path) = match dyno_client() {
        Some(c) => (
            c,
            format!("{}/holds/{}", roboku_wire::API_PREFIX, args.name),
        ),
        None => (
            ctx.client.clone(),
            app_path(&args.app.app, &format!("/holds/{}", args.name)),
        ),
    };
    let v: Value = client.put(&path, &body).await?;
    if let Some(h) = ctx.typed::<HoldInfo>(v)? {
        let secs = h.until.saturating_sub(h.since).div_ceil(1000);
        let reason = match h.reason.is_empty() {
            true => String::new(),
            false => format!(" ({})", h.reason),
        };
        outln!(
            "Holding {} of {} for {}{reason}: changes wait until it is released or expires",
            h.name,
            args.app.app,
            crate::output::duration(secs * 1000)
        )?;
    }
    Ok(())
}

pub async fn release(ctx: &Ctx, args: NameArgs) -> anyhow::Result<()> {
    let (client, path) = match dyno_client() {
        Some(c) => (
            c,
            format!("{}/holds/{}", roboku_wire::API_PREFIX, args.name),
        ),
        None => (
            ctx.client.clone(),
            app_path(&args.app.app, &format!("/holds/{}", args.name)),
        ),
    };
    let v: Value = client.delete(&path).await?;
    if let Some(done) = ctx.typed::<Done>(v)? {
        outln!("{}", done.message)?;
    }
    Ok(())
}

pub async fn health(ctx: &Ctx, args: HealthArgs) -> anyhow::Result<()> {
    let (Some(client), Ok(dyno)) = (dyno_client(), std::env::var("DYNO")) else {
        anyhow::bail!(UsageError(format!(
            "health:set is run by a dyno about itself: ${DYNO_SOCKET_VAR} and $DYNO are set \
             in every dyno's environment, not here"
        )));
    };
    let body = SetHealth {
        dyno,
        status: args.status,
        message: args.message,
    };
    let path = format!("{}/health", roboku_wire::API_PREFIX);
    let v: Value = client.post(&path, &body).await?;
    if let Some(h) = ctx.typed::<DynoHealth>(v)? {
        outln!("{} {}", body.dyno, h.status.as_str())?;
    }
    Ok(())
}

/// The report as a person reads it.
pub fn render(r: &GatesReport, now: u64) -> String {
    let ago = |t: u64| format!("{} ago", crate::output::age(now, t));
    let mut out = match r.open {
        true => format!("=== {} gates: open (changes apply at once)\n", r.app),
        false => format!("=== {} gates: closed (changes wait)\n", r.app),
    };
    if r.gates.is_empty() && r.holds.is_empty() {
        out.push_str("No gates or holds.\n");
    }
    for g in &r.gates {
        let state = match g.open {
            Some(true) => "open",
            Some(false) => "closed",
            None => "not checked",
        };
        let since = g
            .since
            .map(|s| format!(" since {}", ago(s)))
            .unwrap_or_default();
        out.push_str(&format!(
            "gate {:<16} {:<7} {:<28} {state}{since}: {}\n",
            g.name,
            g.check.label(),
            g.check.spec(),
            g.detail
        ));
    }
    for h in &r.holds {
        let left = h.until.saturating_sub(now) / 1000;
        let reason = match h.reason.is_empty() {
            true => String::new(),
            false => format!(": {}", h.reason),
        };
        out.push_str(&format!(
            "hold {:<16} held by {} since {}, expires in {left}s{reason}\n",
            h.name,
            h.holder,
            ago(h.since)
        ));
    }
    for w in &r.waiting {
        let until = w
            .until
            .map(|u| format!(", gives up in {}s", u.saturating_sub(now) / 1000))
            .unwrap_or_default();
        out.push_str(&format!(
            "waiting: {} ({}) since {}{until}: {}\n",
            w.what,
            w.door,
            ago(w.since),
            roboku_wire::gates::waiting_for(&w.blocked_by)
        ));
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::gates::{GateInfo, WaitingInfo};

    #[test]
    fn a_closed_report_says_what_waits_for_what() {
        let r = GatesReport {
            app: "nav".into(),
            open: false,
            gates: vec![GateInfo {
                name: "mission-idle".into(),
                check: GateKind::File("/run/robot/idle".into()),
                timeout_secs: 10,
                open: Some(false),
                detail: "/run/robot/idle does not exist".into(),
                since: Some(40_000),
                checked_at: Some(100_000),
            }],
            holds: vec![HoldInfo {
                name: "mission-42".into(),
                holder: "cli".into(),
                reason: "docking".into(),
                since: 90_000,
                until: 700_000,
            }],
            waiting: vec![WaitingInfo {
                what: "deploy".into(),
                door: "cli".into(),
                since: 95_000,
                until: None,
                blocked_by: vec!["gate mission-idle".into(), "hold mission-42".into()],
            }],
        };
        let text = render(&r, 100_000);
        assert!(text.contains("closed (changes wait)"), "{text}");
        assert!(
            text.contains("mission-idle") && text.contains("closed since"),
            "{text}"
        );
        assert!(
            text.contains("held by cli") && text.contains("expires in 600s: docking"),
            "{text}"
        );
        assert!(
            text.contains("waiting: deploy (cli)")
                && text.contains("waiting for gate mission-idle, hold mission-42"),
            "{text}"
        );
    }
}

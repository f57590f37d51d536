//! What the page shows in one reply: status, host, every app with its dynos, formation and
//! recent releases, and recent events. Built from engine replies (asked over its channel, as
//! every door does) and the telemetry history's latest host sample.

use super::DashCtx;
use crate::engine::{Command, Door, EngineError, Reply};
use crate::telemetry::host::HostSample;
use crate::telemetry::metrics::AppMetrics;
use roboku_wire as wire;
use serde::Serialize;

/// Releases of each app the page lists.
const RELEASES: usize = 10;
/// Events the page lists.
const EVENTS: usize = 30;

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub t: u64,
    pub status: wire::Status,
    pub host: Option<HostSample>,
    pub sample_secs: u64,
    /// `None` when fleet control is off.
    pub fleet: Option<crate::mqtt::FleetSummary>,
    pub apps: Vec<AppView>,
    pub events: Vec<wire::EventInfo>,
}

#[derive(Debug, Serialize)]
pub struct AppView {
    pub info: wire::AppInfo,
    pub dynos: Vec<wire::DynoInfo>,
    pub formation: Vec<wire::FormationEntry>,
    pub releases: Vec<wire::ReleaseInfo>,
}

async fn ask(ctx: &DashCtx, cmd: Command) -> Result<Reply, EngineError> {
    ctx.api.engine.call(Door::Dashboard, cmd).await
}

fn unexpected(what: &str) -> EngineError {
    EngineError::Internal(format!("the engine answered {what} with something else"))
}

pub async fn status(ctx: &DashCtx) -> Result<wire::Status, EngineError> {
    match ask(ctx, Command::Status).await? {
        Reply::Status(s) => Ok(s),
        _ => Err(unexpected("status")),
    }
}

async fn apps(ctx: &DashCtx) -> Result<Vec<wire::AppInfo>, EngineError> {
    match ask(ctx, Command::ListApps).await? {
        Reply::Apps(a) => Ok(a),
        _ => Err(unexpected("apps")),
    }
}

async fn dynos(ctx: &DashCtx, app: &str) -> Result<Vec<wire::DynoInfo>, EngineError> {
    match ask(ctx, Command::Ps { app: app.into() }).await? {
        Reply::Dynos(d) => Ok(d),
        _ => Err(unexpected("ps")),
    }
}

async fn formation(ctx: &DashCtx, app: &str) -> Result<Vec<wire::FormationEntry>, EngineError> {
    match ask(ctx, Command::Formation { app: app.into() }).await? {
        Reply::Formation(f) => Ok(f),
        _ => Err(unexpected("formation")),
    }
}

pub async fn build(ctx: &DashCtx) -> Result<Snapshot, EngineError> {
    let status = status(ctx).await?;
    let mut views = Vec::new();
    for info in apps(ctx).await? {
        // An app destroyed between the list and these calls is just left out.
        let (Ok(d), Ok(f)) = (
            dynos(ctx, &info.name).await,
            formation(ctx, &info.name).await,
        ) else {
            continue;
        };
        let releases = match ask(
            ctx,
            Command::Releases {
                app: info.name.clone(),
            },
        )
        .await
        {
            Ok(Reply::Releases(mut r)) => {
                r.sort_by_key(|r| std::cmp::Reverse(r.version));
                r.truncate(RELEASES);
                r
            }
            _ => Vec::new(),
        };
        views.push(AppView {
            info,
            dynos: d,
            formation: f,
            releases,
        });
    }
    let events = match ask(
        ctx,
        Command::Events {
            app: None,
            n: EVENTS,
        },
    )
    .await?
    {
        Reply::Events(e) => e,
        _ => return Err(unexpected("events")),
    };
    let host = ctx.telemetry.lock().host_latest.clone();
    Ok(Snapshot {
        t: crate::util::now_ms(),
        status,
        host,
        sample_secs: ctx.api.settings.sample_secs,
        fleet: ctx.fleet.as_ref().map(|f| f.summary()),
        apps: views,
        events,
    })
}

/// The numbers `/metrics` shows: the same `ps` replies `roboku ps --json` gets.
pub async fn metrics_input(ctx: &DashCtx) -> Result<(wire::Status, Vec<AppMetrics>), EngineError> {
    let status = status(ctx).await?;
    let mut out = Vec::new();
    for info in apps(ctx).await? {
        let (Ok(d), Ok(f)) = (
            dynos(ctx, &info.name).await,
            formation(ctx, &info.name).await,
        ) else {
            continue;
        };
        out.push(AppMetrics {
            release: info.release,
            app: info.name,
            dynos: d,
            memory_limits: f
                .into_iter()
                .filter_map(|e| e.limits.memory_max.map(|m| (e.ptype, m)))
                .collect(),
        });
    }
    Ok((status, out))
}

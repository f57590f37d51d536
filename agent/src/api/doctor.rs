//! `GET /v1/doctor`: the facts `roboku doctor` cannot see from outside robokud: the fleet link,
//! the trusted-key files' modes, how systemd runs robokud, where the dashboard listens and the
//! add-on servers. Only facts: the CLI judges them (`ctl/src/commands/doctor/`).

use super::Ctx;
use crate::engine::{Command, Door, EngineError, Reply};
use roboku_wire::doctor::{AddonServer, Dashboard, DoctorFacts, FleetLink, KeyFile, Systemd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub async fn facts(ctx: &Ctx) -> Result<DoctorFacts, EngineError> {
    let m = &ctx.settings.mqtt;
    let fleet = FleetLink {
        configured: m.broker.is_some(),
        broker: ctx.fleet.as_ref().map(|f| f.summary().broker),
        connected: ctx.fleet.as_ref().is_some_and(|f| f.summary().connected),
        last_error: ctx.fleet.as_ref().and_then(|f| f.last_error()),
        allow_unsigned: m.allow_unsigned,
        keys: 0,
    };
    let dashboard = ctx.dashboard.as_ref().map(|d| Dashboard {
        addr: d.url.clone(),
        loopback: d.loopback,
    });
    gather(&ctx.engine, Door::Api, &ctx.settings, fleet, dashboard).await
}

/// The facts, with the fleet link and dashboard as the caller sees them (the API from its
/// context, a `fleet support` bundle from the link it answers on). `fleet.keys` is counted here.
pub async fn gather(
    engine: &crate::engine::EngineHandle,
    door: Door,
    settings: &crate::settings::Settings,
    mut fleet: FleetLink,
    dashboard: Option<Dashboard>,
) -> Result<DoctorFacts, EngineError> {
    let addon_servers = match engine.call(door, Command::AllAddons).await? {
        Reply::Addons(all) => all
            .into_iter()
            .filter(|a| a.kind != "sqlite")
            .map(|a| AddonServer {
                name: a.name,
                kind: a.kind,
                app: a.owner,
                state: a.state,
                detail: a.detail,
                restarts: a.restarts,
            })
            .collect(),
        _ => Vec::new(),
    };
    let m = &settings.mqtt;
    let files = m.trusted_key_files.clone();
    let key_files =
        tokio::task::spawn_blocking(move || files.iter().map(|p| key_file(p)).collect())
            .await
            .map_err(|e| EngineError::Internal(format!("doctor task: {e}")))?;
    // One key per file (see `mqtt::trusted_keys`); robokud would not have started otherwise.
    fleet.keys = m.trusted_keys.len() + m.trusted_key_files.len();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let systemd = Systemd {
        unit: env("INVOCATION_ID").is_some(),
        notify: env("NOTIFY_SOCKET").is_some(),
        watchdog_usec: env("WATCHDOG_USEC").and_then(|v| v.parse().ok()),
        pid1: std::fs::read_to_string("/proc/1/comm")
            .ok()
            .map(|s| s.trim().to_string()),
    };
    Ok(DoctorFacts {
        fleet,
        key_files,
        systemd,
        dashboard,
        addon_servers,
    })
}

/// A key file's mode and owner, and the parents others could swap it through.
fn key_file(path: &Path) -> KeyFile {
    let mut out = KeyFile {
        path: path.display().to_string(),
        ..KeyFile::default()
    };
    match std::fs::metadata(path) {
        Ok(m) => {
            out.mode = Some(m.mode() & 0o7777);
            out.uid = Some(m.uid());
        }
        Err(e) => out.error = Some(roboku_wire::in_words(&e.to_string())),
    }
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(m) = std::fs::metadata(d) {
            // The sticky bit (/tmp) keeps others from replacing a file they do not own.
            if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
                out.writable_parents.push(d.display().to_string());
            }
        }
        dir = d.parent();
    }
    out
}

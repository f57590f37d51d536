//! Answers `support` commands: gathers the robot's diagnostics (the facts `roboku doctor`
//! judges, status, disk, usage, every app's info, ps, releases, config var names, add-ons,
//! drains, recent log lines, recent events, the settings), keeps secrets out (`crate::support`),
//! caps and packs them as a `.tar.gz`, and publishes it in [`SupportChunk`]s on
//! `rk/v1/d/<device>/logs`, then a SUCCEEDED ack with the number of parts. The intake verified
//! and recorded the command (signature, target, expiry, replay) before it got here.
//!
//! Runs as its own task, sharing the `logs` readers' permits ([`super::logs_reply::MAX_READERS`]
//! at once; more are FAILED busy), and the `logs` channel's byte budget.

use super::Shared;
use crate::engine::{Command, Door, EngineError, Reply};
use crate::logs::LogFilter;
use crate::support::{self, scrub, Secret, Section};
use crate::usage::{Channel, Flow};
use base64::Engine as _;
use roboku_wire::doctor::FleetLink;
use roboku_wire::fleet::{topic, AckDetails, AckStatus, SupportChunk, SupportQuery};
use std::sync::Arc;

/// Releases per app in the bundle (the newest).
const RELEASES: usize = 5;
/// Events in the bundle (the newest).
const EVENTS: usize = 200;

/// What the bundle says about itself.
const README: &str = "roboku support bundle

Made by robokud on request of a signed `support` command (`roboku fleet support`).

In it: doctor.json (the facts `roboku doctor` judges: fleet link, trusted key files, systemd,
dashboard, add-on servers, clock), status.json, disk.json, usage.json, apps.json, events.json
(the newest events), settings.json (secrets removed), and per app apps/<app>/: info.json,
ps.json, formation.json, releases.json (the newest), config-names.json (names only), addons.json,
drains.json (URLs without user info or query, no token) and logs.jsonl (the newest lines).

Never in it: config var values (names only; any value still found anywhere, e.g. printed by an
app into its logs, is replaced by [redacted: config var NAME of APP]), add-on credentials,
drain passwords, query strings and tokens (redacted the same way wherever they are quoted), the broker's password, keys. TRUNCATED.txt, when present, lists
what was cut to stay within the size cap.
";

/// Answers one verified, recorded `support` command (spawned by the intake).
pub(super) async fn serve(shared: Arc<Shared>, id: String, reference: String, query: SupportQuery) {
    let base = super::apply::details("", "support", None);
    let base = AckDetails { app: None, ..base };
    let fail = |reason: String| {
        let details = AckDetails {
            reason: Some(reason),
            ..base.clone()
        };
        shared
            .out
            .ack(Some(&id), &reference, AckStatus::Failed, details);
    };
    let Ok(_permit) = shared.readers.clone().try_acquire_owned() else {
        return fail(format!(
            "busy: {} log or support reads are running on this robot; try again",
            super::logs_reply::MAX_READERS
        ));
    };
    let max_bytes = query
        .max_bytes
        .unwrap_or(support::DEFAULT_MAX_BYTES)
        .min(support::CEILING_MAX_BYTES);
    let max_bytes = match shared.usage.flow(Channel::Logs, 0) {
        Flow::Slow => (max_bytes / 4).max(1),
        _ => max_bytes,
    };
    let lines = query
        .lines
        .map_or(support::DEFAULT_LINES, |n| n as usize)
        .min(support::MAX_LINES);
    let (sections, secrets) = match gather(&shared, lines).await {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot gather the bundle: {e}")),
    };
    let sections: Vec<Section> = sections
        .into_iter()
        .map(|s| Section {
            body: support::redact(&s.body, &secrets),
            ..s
        })
        .collect();
    let (sections, truncated) = support::cap(sections, max_bytes);
    let now = crate::clock::observe(&shared.settings).wall_ms;
    let top = format!("support-{}-{}", shared.device, now / 1000);
    let bundle = match support::pack(&top, &sections, now / 1000) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot pack the bundle: {e}")),
    };
    let sha256 = {
        use sha2::Digest;
        roboku_wire::bundle::hex(&sha2::Sha256::digest(&bundle))
    };
    let parts = support::chunks(&bundle, support::CHUNK_BYTES);
    let count = parts.len() as u32;
    let to = topic::logs(&shared.device);
    let payloads: Vec<Vec<u8>> = parts
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let chunk = SupportChunk {
                id: id.clone(),
                device: shared.device.clone(),
                part: i as u32,
                parts: count,
                data: base64::engine::general_purpose::STANDARD.encode(data),
                size: bundle.len() as u64,
                sha256: sha256.clone(),
                truncated: truncated.clone(),
                max_bytes,
            };
            serde_json::to_vec(&chunk).unwrap_or_default()
        })
        .collect();
    if let Err(reason) =
        super::logs_reply::publish_parts(&shared, to, payloads, "bundle", "--max-bytes, --lines")
    {
        return fail(reason);
    }
    tracing::info!(
        id,
        bytes = bundle.len(),
        parts = count,
        cut = truncated.len(),
        "fleet support bundle sent"
    );
    let details = AckDetails {
        parts: Some(count),
        dropped: Some(truncated.len() as u64),
        ..base
    };
    shared
        .out
        .ack(Some(&id), &reference, AckStatus::Succeeded, details);
}

/// Every section, most important first, and every app's config vars (to be redacted).
async fn gather(shared: &Shared, lines: usize) -> Result<(Vec<Section>, Vec<Secret>), EngineError> {
    let engine = &shared.engine;
    let call = |cmd| engine.call(Door::Mqtt, cmd);
    let mut out = vec![Section::text("README.txt", README.to_string(), false)];
    let m = &shared.settings.mqtt;
    let fleet = FleetLink {
        configured: m.broker.is_some(),
        broker: m.broker.as_deref().map(scrub::url),
        // It answers over the link.
        connected: true,
        last_error: shared.link_error.lock().ok().and_then(|e| e.clone()),
        allow_unsigned: m.allow_unsigned,
        keys: 0,
    };
    let facts =
        crate::api::doctor::gather(engine, Door::Mqtt, &shared.settings, fleet, None).await?;
    let clock = crate::clock::observe(&shared.settings);
    out.push(Section::json(
        "doctor.json",
        &serde_json::json!({
            "agent": facts,
            "clock": {"trusted": clock.trusted, "synced": clock.synced, "wall_ms": clock.wall_ms},
            "data_dir": data_dir_mode(&shared.settings.data_dir),
        }),
    ));
    out.push(Section::json("status.json", &call(Command::Status).await?));
    if let Reply::Kept(kept) = call(Command::KeptSlugs).await? {
        let settings = shared.settings.clone();
        let disk =
            tokio::task::spawn_blocking(move || crate::disk::usage::report(&settings, &kept))
                .await
                .map_err(|e| EngineError::Internal(format!("disk report task: {e}")))?;
        out.push(Section::json("disk.json", &disk));
    }
    out.push(Section::json("usage.json", &shared.usage.report()));
    let apps = match call(Command::ListApps).await? {
        Reply::Apps(a) => a,
        _ => Vec::new(),
    };
    out.push(Section::json("apps.json", &apps));
    let mut secrets = Vec::new();
    let mut logs = Vec::new();
    for app in apps.iter().map(|a| a.name.clone()) {
        let dir = format!("apps/{app}");
        let each = |name: &str, r: Result<Reply, EngineError>| {
            let v = match r {
                Ok(reply) => serde_json::to_value(reply)
                    .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            };
            Section::json(&format!("{dir}/{name}"), &v)
        };
        if let Ok(Reply::Config(vars)) = call(Command::GetConfig { app: app.clone() }).await {
            out.push(Section::json(
                &format!("{dir}/config-names.json"),
                &vars.keys().collect::<Vec<_>>(),
            ));
            secrets.extend(vars.into_iter().map(|(name, value)| Secret {
                app: app.clone(),
                name: format!("config var {name}"),
                value,
            }));
        }
        out.push(each(
            "info.json",
            call(Command::AppInfo { app: app.clone() }).await,
        ));
        out.push(each(
            "ps.json",
            call(Command::Ps { app: app.clone() }).await,
        ));
        out.push(each(
            "formation.json",
            call(Command::Formation { app: app.clone() }).await,
        ));
        let releases = match call(Command::Releases { app: app.clone() }).await {
            Ok(Reply::Releases(mut r)) => {
                r.sort_by_key(|r| std::cmp::Reverse(r.version));
                r.truncate(RELEASES);
                Ok(Reply::Releases(r))
            }
            other => other,
        };
        out.push(each("releases.json", releases));
        out.push(each(
            "addons.json",
            call(Command::Addons { app: app.clone() }).await,
        ));
        let drains = match call(Command::Drains { app: app.clone() }).await {
            Ok(Reply::Drains(mut ds)) => {
                for d in &mut ds {
                    // Events and logs may quote the URL: its secrets are redacted everywhere.
                    secrets.extend(scrub::url_secrets(&d.url).into_iter().map(|value| Secret {
                        app: app.clone(),
                        name: format!("drain {} URL secret", d.id),
                        value,
                    }));
                    secrets.push(Secret {
                        app: app.clone(),
                        name: format!("drain {} token", d.id),
                        value: d.token.clone(),
                    });
                    d.url = scrub::url(&d.url);
                    d.token = "[removed]".into();
                }
                Ok(Reply::Drains(ds))
            }
            other => other,
        };
        out.push(each("drains.json", drains));
        if let Some(store) = &shared.logs {
            let recent = store.recent(&app, lines, LogFilter::default()).await;
            let text: String = recent
                .iter()
                .filter_map(|l| serde_json::to_string(l).ok())
                .map(|l| l + "\n")
                .collect();
            logs.push(Section::text(&format!("{dir}/logs.jsonl"), text, true));
        }
    }
    out.push(Section::json(
        "events.json",
        &call(Command::Events {
            app: None,
            n: EVENTS,
        })
        .await?,
    ));
    let settings = serde_json::to_value(&shared.settings)
        .map_err(|e| EngineError::Internal(format!("settings as JSON: {e}")))?;
    out.push(Section::json("settings.json", &scrub::settings(settings)));
    // Logs last: they are what is cut first.
    out.extend(logs);
    Ok((out, secrets))
}

/// The data dir's mode bits and owner, as `roboku doctor` reads them.
fn data_dir_mode(dir: &std::path::Path) -> serde_json::Value {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(dir) {
        Ok(m) => {
            serde_json::json!({"path": dir, "mode": format!("{:o}", m.mode() & 0o7777), "uid": m.uid()})
        }
        Err(e) => serde_json::json!({"path": dir, "error": format!("stat {}: {e}", dir.display())}),
    }
}

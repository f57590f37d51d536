//! Routing: method + path to a handler. Every handler turns the request into an engine
//! command; errors become `{"error": {code, message}}` with the matching HTTP status
//! (the plumbing for bodies, replies and queries is `http.rs`'s).

use super::http::{
    error_response, json_body, json_body_or_default, json_response, parse_query, query_num, Resp,
};
use super::Ctx;
use crate::deploy;
use crate::engine::{Command, Door, EngineError, Reply};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use roboku_wire as wire;
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Resp, std::convert::Infallible> {
    let door = req
        .headers()
        .get(wire::DOOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(Door::parse)
        .unwrap_or(Door::Api);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let result = route(&ctx, door, &method, &path, &query, req).await;
    Ok(match result {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    })
}

async fn route(
    ctx: &Ctx,
    door: Door,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    req: Request<Incoming>,
) -> Result<Resp, EngineError> {
    let Some(rest) = path.strip_prefix(wire::API_PREFIX) else {
        return Err(EngineError::NotFound(format!(
            "no route {path} (the API lives under {})",
            wire::API_PREFIX
        )));
    };
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let call = |cmd| ctx.engine.call(door, cmd);
    let reply = match (method, parts.as_slice()) {
        (&Method::GET, ["status"]) => call(Command::Status).await?,
        (&Method::GET, ["disk"]) => {
            let Reply::Kept(kept) = call(Command::KeptSlugs).await? else {
                return Err(EngineError::Internal(
                    "unexpected reply to KeptSlugs".into(),
                ));
            };
            let settings = ctx.settings.clone();
            let report =
                tokio::task::spawn_blocking(move || crate::disk::usage::report(&settings, &kept))
                    .await
                    .map_err(|e| EngineError::Internal(format!("disk report task: {e}")))?;
            return json_response(StatusCode::OK, &report);
        }
        (&Method::GET, ["doctor"]) => {
            return json_response(StatusCode::OK, &super::doctor::facts(ctx).await?)
        }
        (&Method::GET, ["usage"]) => return json_response(StatusCode::OK, &ctx.usage.report()),
        (&Method::GET, ["dashboard"]) => {
            let info = ctx.dashboard.as_ref().ok_or_else(|| {
                EngineError::NotFound(
                    "the dashboard is off (setting `dashboard`, flag --dashboard ADDR)".into(),
                )
            })?;
            return json_response(StatusCode::OK, info);
        }
        (&Method::GET, ["events"]) => {
            let n = query_num(query, "n", 100)?;
            call(Command::Events {
                app: query.get("app").cloned(),
                n,
            })
            .await?
        }
        (&Method::GET, ["apps"]) => call(Command::ListApps).await?,
        (&Method::POST, ["bundles"]) => return super::bundles::apply(ctx, query, req, false).await,
        (&Method::POST, ["bundles", "check"]) => {
            return super::bundles::apply(ctx, query, req, true).await
        }
        (&Method::POST, ["apps"]) => {
            let body: wire::CreateApp = json_body(req).await?;
            call(Command::CreateApp { name: body.name }).await?
        }
        (&Method::GET, ["apps", app]) => {
            call(Command::AppInfo {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::PATCH, ["apps", app]) => {
            let update = json_body(req).await?;
            call(Command::UpdateApp {
                app: app.to_string(),
                update,
            })
            .await?
        }
        (&Method::DELETE, ["apps", app]) => {
            let confirm = query.get("confirm").cloned().unwrap_or_default();
            call(Command::DestroyApp {
                app: app.to_string(),
                confirm,
            })
            .await?
        }
        (&Method::POST, ["apps", app, "rename"]) => {
            let body: wire::RenameApp = json_body(req).await?;
            call(Command::RenameApp {
                app: app.to_string(),
                to: body.name,
            })
            .await?
        }
        (&Method::POST, ["apps", app, "deploy"]) => {
            let body: wire::DeployRequest = json_body(req).await?;
            let wait = gate_wait(query)?;
            let result =
                deploy::deploy(&ctx.engine, &ctx.settings, door, app, body, None, wait).await;
            Reply::Release(with_log_tail(ctx, app, result).await?)
        }
        (&Method::POST, ["apps", app, "deploy", "plan"]) => {
            let body: wire::DeployRequest = json_body(req).await?;
            Reply::Plan(deploy::plan(&ctx.engine, &ctx.settings, door, app, body).await?)
        }
        (&Method::POST, ["apps", app, "deploy", "archive"]) => {
            let result = super::upload::receive(ctx, door, app, query, req).await;
            Reply::Release(with_log_tail(ctx, app, result).await?)
        }
        (&Method::GET, ["apps", app, "ps"]) => {
            call(Command::Ps {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::GET, ["apps", app, "formation"]) => {
            call(Command::Formation {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::POST, ["apps", app, "scale"]) => {
            let body: wire::ScaleRequest = json_body(req).await?;
            let cmd = Command::Scale {
                app: app.to_string(),
                counts: body.counts,
            };
            // A local scale applies at once unless the caller asks to respect the gates.
            match query.contains_key("gate_timeout") {
                true => {
                    ctx.engine
                        .call_waiting(door, cmd, gate_wait(query)?)
                        .await?
                }
                false => call(cmd).await?,
            }
        }
        (&Method::POST, ["apps", app, "resize"]) => {
            let body: wire::ResizeRequest = json_body(req).await?;
            call(Command::Resize {
                app: app.to_string(),
                req: body,
            })
            .await?
        }
        (&Method::POST, ["apps", app, "restart"]) => {
            let body: wire::TargetRequest = json_body_or_default(req).await?;
            let cmd = Command::Restart {
                app: app.to_string(),
                target: body.target,
            };
            ctx.engine
                .call_waiting(door, cmd, gate_wait(query)?)
                .await?
        }
        (&Method::POST, ["apps", app, "stop"]) => {
            let body: wire::TargetRequest = json_body_or_default(req).await?;
            call(Command::Stop {
                app: app.to_string(),
                target: body.target,
            })
            .await?
        }
        (&Method::GET, ["apps", app, "config"]) => {
            call(Command::GetConfig {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::PATCH, ["apps", app, "config"]) => {
            let change = json_body(req).await?;
            let cmd = Command::ChangeConfig {
                app: app.to_string(),
                change,
            };
            let result = ctx.engine.call_waiting(door, cmd, gate_wait(query)?).await;
            with_log_tail(ctx, app, result).await?
        }
        (&Method::GET, ["apps", app, "addons"]) => {
            call(Command::Addons {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::POST, ["apps", app, "addons"]) => {
            let req = json_body(req).await?;
            let cmd = Command::AddonCreate {
                app: app.to_string(),
                req,
            };
            let result = ctx.engine.call_waiting(door, cmd, gate_wait(query)?).await;
            with_log_tail(ctx, app, result).await?
        }
        (&Method::POST, ["apps", app, "addons", name, "backup"]) => {
            let cmd = Command::AddonBackup {
                app: app.to_string(),
                name: name.to_string(),
            };
            let Reply::BackupJob(job) = call(cmd).await? else {
                return Err(EngineError::Internal(
                    "unexpected reply to AddonBackup".into(),
                ));
            };
            let addon = job.addon.name.clone();
            let (path, bytes) = tokio::task::spawn_blocking(move || job.run())
                .await
                .map_err(|e| EngineError::Internal(format!("backup task: {e}")))?
                .map_err(EngineError::Internal)?;
            if query.contains_key("download") {
                return super::backup::download(&path, bytes).await;
            }
            let backup = wire::addons::Backup {
                addon,
                path: path.display().to_string(),
                bytes,
            };
            return json_response(StatusCode::OK, &backup);
        }
        (&Method::POST, ["apps", app, "addons", name, verb]) => {
            let (app, name) = (app.to_string(), name.to_string());
            let cmd = match *verb {
                "attach" => Command::AddonAttach {
                    app: app.clone(),
                    name,
                    req: json_body_or_default(req).await?,
                },
                "detach" => Command::AddonDetach {
                    app: app.clone(),
                    name,
                },
                "destroy" => {
                    let body: wire::addons::DestroyAddon = json_body(req).await?;
                    Command::AddonDestroy {
                        app: app.clone(),
                        name,
                        confirm: body.confirm,
                    }
                }
                other => {
                    return Err(EngineError::NotFound(format!(
                        "no add-on action {other:?} (attach, detach, destroy or backup)"
                    )))
                }
            };
            let result = ctx.engine.call_waiting(door, cmd, gate_wait(query)?).await;
            with_log_tail(ctx, &app, result).await?
        }
        (&Method::GET, ["apps", app, "releases"]) => {
            call(Command::Releases {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::POST, ["apps", app, "rollback"]) => {
            let body: wire::RollbackRequest = json_body_or_default(req).await?;
            let cmd = Command::Rollback {
                app: app.to_string(),
                version: body.version,
                with_data: body.with_data,
            };
            let result = ctx.engine.call_waiting(door, cmd, gate_wait(query)?).await;
            with_log_tail(ctx, app, result).await?
        }
        (&Method::GET, ["apps", app, "gates"]) => {
            call(Command::Gates {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::PUT, ["apps", app, "gates", name]) => {
            let gate = json_body(req).await?;
            call(Command::SetGate {
                app: app.to_string(),
                name: name.to_string(),
                gate,
            })
            .await?
        }
        (&Method::DELETE, ["apps", app, "gates", name]) => {
            call(Command::UnsetGate {
                app: app.to_string(),
                name: name.to_string(),
            })
            .await?
        }
        (&Method::PUT, ["apps", app, "holds", name]) => {
            let hold = json_body(req).await?;
            call(Command::TakeHold {
                app: app.to_string(),
                name: name.to_string(),
                req: hold,
            })
            .await?
        }
        (&Method::DELETE, ["apps", app, "holds", name]) => {
            call(Command::ReleaseHold {
                app: app.to_string(),
                name: name.to_string(),
            })
            .await?
        }
        (&Method::GET, ["apps", app, "drains"]) => {
            call(Command::Drains {
                app: app.to_string(),
            })
            .await?
        }
        (&Method::POST, ["apps", app, "drains"]) => {
            let body: wire::drains::AddDrain = json_body(req).await?;
            call(Command::AddDrain {
                app: app.to_string(),
                url: body.url,
            })
            .await?
        }
        (&Method::DELETE, ["apps", app, "drains"]) => {
            let which = query.get("drain").cloned().ok_or_else(|| {
                EngineError::BadRequest("which drain? ?drain=ID or ?drain=URL".into())
            })?;
            call(Command::RemoveDrain {
                app: app.to_string(),
                which,
            })
            .await?
        }
        (&Method::POST, ["apps", app, "run"]) => {
            let mut req = req;
            let upgrade = req
                .headers()
                .get(hyper::header::UPGRADE)
                .is_some_and(|v| v.as_bytes() == wire::attach::PROTOCOL.as_bytes());
            let on_upgrade = hyper::upgrade::on(&mut req);
            let body: wire::RunRequest = json_body(req).await?;
            if !upgrade && !body.detached {
                return Err(EngineError::BadRequest(format!(
                    "an attached run needs `Upgrade: {}` (or \"detached\": true)",
                    wire::attach::PROTOCOL
                )));
            }
            let reply = call(Command::Run {
                app: app.to_string(),
                command: body.command,
                detached: body.detached,
                tty: body.tty,
            })
            .await?;
            if let Reply::Attached(run) = reply {
                let engine = ctx.engine.clone();
                return super::attach::start(engine, door, app.to_string(), run, on_upgrade);
            }
            reply
        }
        (&Method::GET, ["apps", app, "logs"]) => {
            call(Command::CheckApp {
                app: app.to_string(),
            })
            .await?;
            return super::logs::stream(ctx, app, query).await;
        }
        _ => return Err(EngineError::NotFound(format!("no route {method} {path}"))),
    };
    json_response(StatusCode::OK, &reply)
}

/// `?gate_timeout=SECS`: how long a change may wait for the app's apply gates (default: as long
/// as the caller stays connected).
pub(super) fn gate_wait(
    query: &BTreeMap<String, String>,
) -> Result<crate::engine::holds::Wait, EngineError> {
    let deadline = match query.get("gate_timeout") {
        None => None,
        Some(s) => {
            let secs: u64 = s.parse().map_err(|_| {
                EngineError::BadRequest(format!("gate_timeout={s:?} is not a number of seconds"))
            })?;
            Some(std::time::Instant::now() + std::time::Duration::from_secs(secs))
        }
    };
    Ok(crate::engine::holds::Wait {
        deadline,
        progress: None,
    })
}

/// A failed rollout's message gets the last log lines of the app, so the deployer sees why.
async fn with_log_tail<T>(
    ctx: &Ctx,
    app: &str,
    result: Result<T, EngineError>,
) -> Result<T, EngineError> {
    match result {
        Err(EngineError::DeployFailed(msg)) => {
            let lines = ctx.logs.recent(app, 20, Default::default()).await;
            let tail: Vec<String> = lines
                .iter()
                .map(|l| {
                    format!(
                        "  {} [{}] {}",
                        l.dyno,
                        if l.source == wire::LogSource::App {
                            "app"
                        } else {
                            "roboku"
                        },
                        l.line
                    )
                })
                .collect();
            Err(EngineError::DeployFailed(format!(
                "{msg}\nlast log lines:\n{}",
                tail.join("\n")
            )))
        }
        other => other,
    }
}

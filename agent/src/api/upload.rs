//! `POST /v1/apps/{app}/deploy/archive`: the archive (`.tar.gz`, `.tar.zst`, `.tar`, or a slug
//! built elsewhere) is the request body. It is streamed to a temp file under a size cap, never
//! held in memory, after checking that the disk can take it; then deployed like any source.

use super::Ctx;
use crate::deploy;
use crate::engine::{Door, EngineError};
use crate::util::now_ms;
use hyper::body::Incoming;
use hyper::Request;
use roboku_wire as wire;
use std::collections::BTreeMap;

/// Largest archive accepted over the socket.
pub const MAX_UPLOAD: u64 = 2 << 30;

pub async fn receive(
    ctx: &Ctx,
    door: Door,
    app: &str,
    query: &BTreeMap<String, String>,
    req: Request<Incoming>,
) -> Result<wire::ReleaseInfo, EngineError> {
    let declared = super::spool::declared_len(&req, MAX_UPLOAD, "archive");
    let mut body = req.into_body();
    let checked = async {
        ctx.engine
            .call(
                door,
                crate::engine::Command::CheckApp {
                    app: app.to_string(),
                },
            )
            .await?;
        if let Some(len) = declared? {
            // The archive, its extraction and the slug may all be on disk at once.
            deploy::check_free_space(&ctx.settings, len.saturating_mul(3))?;
        }
        Ok(())
    }
    .await;
    super::spool::drained(&mut body, checked).await?;
    let tmp = ctx.settings.tmp_dir();
    let path = tmp.join(format!("upload-{app}-{}-{}", now_ms(), std::process::id()));
    let result = async {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| EngineError::Internal(format!("create {}: {e}", path.display())))?;
        let reserve = ctx.settings.disk_reserve;
        let written =
            super::spool::body_to_file(&mut body, &mut file, &path, MAX_UPLOAD, "archive", reserve)
                .await;
        super::spool::drained(&mut body, written).await?;
        let description = query.get("description").cloned().filter(|d| !d.is_empty());
        let name = query
            .get("name")
            .cloned()
            .unwrap_or_else(|| "upload".into());
        let description = description.or(Some(format!("Deploy {name}")));
        let buildpacks_of = match query.get("buildpacks_of") {
            Some(v) => Some(v.trim_start_matches('v').parse::<u32>().map_err(|_| {
                EngineError::BadRequest(format!(
                    "buildpacks_of {v:?} is not a release version (v3 or 3)"
                ))
            })?),
            None => None,
        };
        let req = wire::DeployRequest {
            source: path.display().to_string(),
            description,
            buildpacks_of,
        };
        let wait = super::routes::gate_wait(query)?;
        deploy::deploy(&ctx.engine, &ctx.settings, door, app, req, None, wait).await
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    result
}

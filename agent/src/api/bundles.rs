//! `POST /v1/bundles` (apply) and `POST /v1/bundles/check` (verify only): the bundle file is
//! the request body, streamed under a size cap into robokud's own `bundles/work/` (the client
//! never names a path robokud would read), then handed to the fleet intake. The answer is a
//! chunked stream of JSON lines, one [`Ack`](roboku_wire::fleet::Ack) per step (ACCEPTED,
//! IN_PROGRESS with the step, then SUCCEEDED, FAILED or REJECTED per app with the reason),
//! ending when the bundle is done with. A client that goes away does not stop the bundle.

use super::body::ApiBody;
use super::http::Resp;
use super::Ctx;
use crate::bundle::MAX_BUNDLE;
use crate::engine::EngineError;
use crate::util::now_ms;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

pub async fn apply(
    ctx: &Ctx,
    query: &BTreeMap<String, String>,
    req: Request<Incoming>,
    dry_run: bool,
) -> Result<Resp, EngineError> {
    let name = query
        .get("name")
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| "upload.rkb".into());
    static N: AtomicU64 = AtomicU64::new(0);
    let path = ctx.settings.bundle_work_dir().join(format!(
        "upload-{}-{}.rkb",
        now_ms(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = receive(ctx, req, &path).await {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e);
    }
    let mut acks = match ctx.bundles.submit(path.clone(), name, dry_run).await {
        Ok(rx) => rx,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        while let Some(ack) = acks.recv().await {
            let mut line = serde_json::to_vec(&ack).unwrap_or_default();
            line.push(b'\n');
            // A client that left: the bundle goes on, its acks are in the log.
            let _ = tx.send(Bytes::from(line)).await;
        }
        remove(&path).await;
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(ApiBody::Stream(rx))
        .map_err(|e| EngineError::Internal(format!("building reply: {e}")))
}

async fn remove(path: &PathBuf) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::warn!(file = %path.display(), error = %e, "cannot remove an uploaded bundle");
    }
}

/// Streams the body into `path`, refusing more than [`MAX_BUNDLE`] bytes or an empty body.
async fn receive(ctx: &Ctx, req: Request<Incoming>, path: &Path) -> Result<(), EngineError> {
    let declared = super::spool::declared_len(&req, MAX_BUNDLE, "bundle");
    let mut body = req.into_body();
    let checked = match declared {
        Ok(Some(len)) => crate::deploy::check_free_space(&ctx.settings, len),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    super::spool::drained(&mut body, checked).await?;
    let io = |op: &str, e: std::io::Error| {
        EngineError::Internal(format!("{op} {}: {e}", path.display()))
    };
    let written = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .await
            .map_err(|e| io("create", e))?;
        let reserve = ctx.settings.disk_reserve;
        super::spool::body_to_file(&mut body, &mut file, path, MAX_BUNDLE, "bundle", reserve).await
    }
    .await;
    super::spool::drained(&mut body, written).await?;
    Ok(())
}

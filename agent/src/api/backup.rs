//! `addons:backup -o FILE`: the backup just made on the robot, streamed to the CLI (which may
//! run as a `roboku` group member who cannot read root's 0600 file). The length is sent ahead,
//! so a stream cut short is an error on the CLI's side, never a short file taken for whole.

use super::body::ApiBody;
use super::http::Resp;
use crate::engine::EngineError;
use bytes::Bytes;
use hyper::{Response, StatusCode};
use std::path::Path;
use tokio::io::AsyncReadExt;

const CHUNK: usize = 64 << 10;

pub async fn download(path: &Path, bytes: u64) -> Result<Resp, EngineError> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| EngineError::Internal(format!("open {}: {e}", path.display())))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let shown = path.display().to_string();
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match f.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %shown, error = %e, "cannot read a backup being sent");
                    return;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("content-length", bytes)
        .header("x-roboku-backup", path.display().to_string())
        .body(ApiBody::Stream(rx))
        .map_err(|e| EngineError::Internal(format!("building reply: {e}")))
}

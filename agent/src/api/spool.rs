//! Request bodies written to a file as they arrive, capped: what an upload (an app archive, a
//! bundle) goes through before anything reads it. `what` names the upload in errors.

use crate::engine::EngineError;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// The request's declared `Content-Length`, refused at once when over `limit`.
pub(super) fn declared_len(
    req: &Request<Incoming>,
    limit: u64,
    what: &str,
) -> Result<Option<u64>, EngineError> {
    let declared: Option<u64> = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    match declared {
        Some(len) if len > limit => Err(EngineError::BadRequest(format!(
            "{what} of {len} bytes is over the {limit}-byte limit"
        ))),
        other => Ok(other),
    }
}

/// What a refused upload may still send before the connection is closed on it.
const DRAIN_MAX: u64 = 256 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and drops what is left of a refused upload's body (at most [`DRAIN_MAX`] bytes, for
/// at most [`DRAIN_TIME`]) so its sender finishes writing and reads the refusal. Closing with
/// the body unread made the sender's next write fail before it read the answer, and `roboku
/// deploy` said "broke off the upload" instead of "not enough disk". A sender that goes on
/// past the bounds is cut off, as before.
pub(super) async fn discard(body: &mut Incoming) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut dropped = 0u64;
    while dropped < DRAIN_MAX {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => dropped += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => return,
        }
    }
}

/// `result` as it is; when it is a refusal, after [`discard`]ing the rest of `body`.
pub(super) async fn drained<T>(
    body: &mut Incoming,
    result: Result<T, EngineError>,
) -> Result<T, EngineError> {
    if result.is_err() {
        discard(body).await;
    }
    result
}

/// Re-read the free space after this many bytes even while the last reading says they fit
/// (others write on the same filesystem).
const RECHECK_EVERY: u64 = 8 << 20;

/// Writes `body` into `file` (at `path`, named in errors) and flushes it; refuses a body over
/// `limit` bytes (whatever it declared), one that broke off, or an empty one. The bytes written.
///
/// A body without a `Content-Length` (chunked) was not checked against the disk before it
/// came: it is refused as soon as the next piece would take the filesystem of `path` across
/// `reserve` (`disk.rs`), with what it needed, what is free and what is reserved. The caller
/// removes the partial file on any error.
pub(super) async fn body_to_file(
    body: &mut Incoming,
    file: &mut tokio::fs::File,
    path: &Path,
    limit: u64,
    what: &str,
    reserve: crate::disk::Reserve,
) -> Result<u64, EngineError> {
    let write_err =
        |e: std::io::Error| EngineError::Internal(format!("write {}: {e}", path.display()));
    let dir = path.parent().unwrap_or(path);
    let mut total: u64 = 0;
    // What may be written above the reserve as last read, and what was written since.
    let mut room = crate::disk::room(dir, reserve)?;
    let mut since: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            EngineError::BadRequest(format!("upload broke off after {total} bytes: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            let n = data.len() as u64;
            total += n;
            if total > limit {
                return Err(EngineError::BadRequest(format!(
                    "{what} is over the {limit}-byte limit"
                )));
            }
            if since + n > room || since >= RECHECK_EVERY {
                // A fresh reading: what was written so far is in it.
                let upload = format!("the {what} upload (refused after {} bytes)", total - n);
                crate::disk::check(dir, reserve, n, &upload)?;
                room = crate::disk::room(dir, reserve)?;
                since = 0;
            }
            since += n;
            file.write_all(&data).await.map_err(write_err)?;
        }
    }
    file.flush().await.map_err(write_err)?;
    if total == 0 {
        return Err(EngineError::BadRequest(format!(
            "the uploaded {what} is empty"
        )));
    }
    Ok(total)
}

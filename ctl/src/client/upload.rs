//! Streaming a file as a request body (archive deploys): read in 64 KiB chunks and sent as they
//! are read, so a large archive never sits in memory.

use super::{api_error, collect, Client, ClientError, Lines};
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::{header, Method, Request};
use roboku_wire::DOOR_HEADER;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// A request body fed by a reader task.
struct ChunkBody {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    len: u64,
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

impl Client {
    /// POSTs the contents of `file` to `path` and decodes the JSON answer. `progress` hears the
    /// bytes read into the request so far.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &Path,
        progress: impl Fn(u64) + Send + 'static,
    ) -> Result<T, ClientError> {
        let (_sender, resp) = self.upload_raw(path, file, progress).await?;
        let status = resp.status();
        let body = collect(resp, path).await?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &body));
        }
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!(
                "robokud's answer to POST {path} is not understood ({e})"
            ))
        })
    }

    /// POSTs the contents of `file` to `path`; the answer is read line by line as it comes
    /// (a bundle's progress).
    pub async fn upload_lines(&self, path: &str, file: &Path) -> Result<Lines, ClientError> {
        let (sender, resp) = self.upload_raw(path, file, |_| {}).await?;
        Lines::of(sender, resp, path).await
    }

    async fn upload_raw(
        &self,
        path: &str,
        file: &Path,
        progress: impl Fn(u64) + Send + 'static,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<ChunkBody>,
            hyper::Response<hyper::body::Incoming>,
        ),
        ClientError,
    > {
        let local = |e: std::io::Error| ClientError::Protocol(format!("{}: {e}", file.display()));
        let mut f = tokio::fs::File::open(file).await.map_err(local)?;
        let len = f.metadata().await.map_err(local)?.len();
        let what = format!("the upload to {path}");
        let mut sender = self.connect::<ChunkBody>(&what).await?;
        // Once the whole archive is sent, a broken connection no longer means the upload failed:
        // the agent may have cut the release before it went away.
        let sent_all = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = sent_all.clone();
        let broken = |e: hyper::Error| {
            if sent_all.load(std::sync::atomic::Ordering::SeqCst) {
                ClientError::Protocol(format!(
                    "robokud at {} went away after receiving the whole archive ({e}): the release \
                     may have been cut; see `roboku releases` and `roboku ps`",
                    self.socket_path().display()
                ))
            } else {
                self.broken(&what, e)
            }
        };
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            loop {
                match f.read(&mut buf).await {
                    Ok(0) => {
                        done.store(true, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    Ok(n) => {
                        sent += n as u64;
                        progress(sent);
                        if tx
                            .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, "robokud")
            .header(DOOR_HEADER, self.door)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, len)
            .body(ChunkBody { rx, len })
            .map_err(|e| ClientError::Protocol(format!("bad request POST {path}: {e}")))?;
        let resp = sender.send_request(req).await.map_err(broken)?;
        Ok((sender, resp))
    }
}

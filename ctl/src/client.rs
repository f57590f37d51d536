//! The one HTTP/1.1-over-unix-socket client the CLI talks to robokud with.
//!
//! One connection per request (the CLI makes one or two calls per run, so pooling buys nothing).
//! Every request carries `x-roboku-door: cli` so the agent's audit events say where it came from.
//! Errors are sorted by what the user should do: [`ClientError::Unreachable`] (start the agent,
//! exit 3), [`ClientError::Api`] (the agent said no, exit 1) and [`ClientError::Protocol`] (the
//! two sides disagree about the wire, exit 1).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{header, Method, Request, Response};
use hyper_util::rt::TokioIo;
use roboku_wire::{ErrorBody, DOOR_HEADER};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use tokio::net::UnixStream;

/// Why a request to robokud failed.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting to the socket failed: the agent is not running, or not where we looked.
    Unreachable {
        socket: PathBuf,
        source: std::io::Error,
    },
    /// The agent answered with an error body. `status` and `code` are kept for callers that
    /// branch on them; the CLI itself only shows `message`.
    #[allow(dead_code)]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The exchange broke or the answer was not what this CLI understands.
    Protocol(String),
}

impl ClientError {
    /// The process exit code this error maps to: 3 when the agent is unreachable, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => 3,
            _ => 1,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { socket, source }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                write!(
                    f,
                    "cannot use robokud's socket {}: {source} (it is for root and the `roboku` \
                     group: run as root or `usermod -aG roboku $USER`, then log in again)",
                    socket.display()
                )
            }
            ClientError::Unreachable { socket, source } => write!(
                f,
                "cannot reach robokud at {}: {source} (is robokud running? start it with \
                 `robokud` or set ROBOKU_SOCKET)",
                socket.display()
            ),
            ClientError::Api { message, .. } => f.write_str(message),
            ClientError::Protocol(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ClientError {}

/// A client for the agent's local API on one unix socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    /// The door the agent records in its events (`cli`, or `git` from the push hook).
    door: &'static str,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
            door: "cli",
        }
    }

    /// The same client, recording requests as coming through `door`.
    pub fn with_door(mut self, door: &'static str) -> Self {
        self.door = door;
        self
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(encode(body)?)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, Some(encode(body)?)).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, Some(encode(body)?)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    /// A POST whose answer's body is written to `out` as it arrives (`addons:backup -o`);
    /// the bytes written.
    pub async fn post_to_file(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let what = format!("POST {path}");
        let (_sender, resp) = self.send(Method::POST, path, Some(b"{}".to_vec())).await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = collect(resp, &what).await?;
            return Err(api_error(status, &body));
        }
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.broken(&what, e))?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .await
                    .map_err(|e| ClientError::Protocol(format!("writing {what}'s answer: {e}")))?;
                n += data.len() as u64;
            }
        }
        Ok(n)
    }

    /// A GET whose body is read line by line as it arrives (`logs --tail`).
    pub async fn stream(&self, path: &str) -> Result<Lines, ClientError> {
        let (sender, resp) = self.send(Method::GET, path, None).await?;
        Lines::of(sender, resp, path).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let (_sender, resp) = self.send(method, path, body).await?;
        let status = resp.status();
        let body = collect(resp, &what).await?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &body));
        }
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!(
                "robokud's answer to {what} is not what this roboku understands ({e}); \
                 are roboku and robokud the same version?"
            ))
        })
    }

    /// Opens one HTTP/1.1 connection to the agent, for a request with body type `B`.
    /// The connection task ends by itself once the response is read and the sender dropped.
    pub(crate) async fn connect<B>(&self, what: &str) -> Result<SendRequest<B>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.broken(what, e))?;
        tokio::spawn(async move {
            // Upgrades allowed: `roboku run` turns its connection into the dyno's stream.
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// The socket this client talks to.
    pub(crate) fn socket_path(&self) -> &std::path::Path {
        &self.socket
    }

    /// The agent closed the connection in the middle of `what`.
    pub(crate) fn broken(&self, what: &str, e: hyper::Error) -> ClientError {
        ClientError::Protocol(format!(
            "robokud at {} broke off {what}: {e}",
            self.socket.display()
        ))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(SendRequest<Full<Bytes>>, Response<Incoming>), ClientError> {
        let what = format!("{method} {path}");
        let mut sender = self.connect::<Full<Bytes>>(&what).await?;
        let broken = |e: hyper::Error| self.broken(&what, e);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, "robokud")
            .header(DOOR_HEADER, self.door);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(format!("bad request {method} {path}: {e}")))?;
        let resp = sender.send_request(req).await.map_err(broken)?;
        Ok((sender, resp))
    }
}

/// The lines of a streamed response body, without their `\n` (or `\r\n`).
pub struct Lines {
    /// Kept so the connection stays open for as long as the stream is read.
    _sender: Box<dyn std::any::Any + Send>,
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    /// The body of a successful answer, line by line; an error answer as its [`ClientError`].
    /// `sender` is kept so the connection stays open while the lines are read.
    async fn of(
        sender: impl std::any::Any + Send,
        resp: Response<Incoming>,
        path: &str,
    ) -> Result<Lines, ClientError> {
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = collect(resp, path).await?;
            return Err(api_error(status, &body));
        }
        Ok(Lines {
            _sender: Box::new(sender),
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        })
    }

    /// The next line; `None` when the agent ended the stream. A last line without a newline is
    /// still returned.
    pub async fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(ClientError::Protocol(format!(
                        "the stream from robokud broke off: {e}"
                    )))
                }
            }
        }
    }
}

/// `path?k=v&...` with the `Some` values percent-encoded.
pub fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let mut out = path.to_string();
    let mut sep = '?';
    for (key, value) in pairs {
        let Some(value) = value else { continue };
        out.push(sep);
        out.push_str(key);
        out.push('=');
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        sep = '&';
    }
    out
}

fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body)
        .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))
}

async fn collect(resp: Response<Incoming>, what: &str) -> Result<Bytes, ClientError> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ClientError::Protocol(format!("reading robokud's answer to {what}: {e}")))
}

/// The agent's `{"error": {code, message}}`, or a message naming the status when the body is not
/// one (a proxy, or a crash halfway).
fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ClientError::Api {
            status,
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            ClientError::Api {
                status,
                code: String::new(),
                message: format!("robokud answered HTTP {status}: {text}"),
            }
        }
    }
}

mod attach;
mod upload;

#[cfg(test)]
mod tests;

//! Attached one-off dynos over the upgraded API connection: the dyno's output to the CLI, the
//! CLI's stdin and signals to the dyno, and its exit code at the end (framing in
//! [`roboku_wire::attach`]). The engine started the process and owns it; this only moves bytes,
//! and asks the engine to signal the dyno (the door never touches processes itself).

use super::body::ApiBody;
use super::http::Resp;
use crate::engine::one_off::Attached;
use crate::engine::{Command, Door, EngineError, EngineHandle};
use hyper::upgrade::OnUpgrade;
use hyper::{header, Response, StatusCode};
use hyper_util::rt::TokioIo;
use roboku_wire::attach::{self, frame, take_frame};
use std::os::fd::OwnedFd;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// How long output may still come after the dyno exited (a process that left its group).
const LINGER: Duration = Duration::from_secs(1);

/// The `101 Switching Protocols` answer; the pump runs once the connection is upgraded.
pub fn start(
    engine: EngineHandle,
    door: Door,
    app: String,
    run: Attached,
    upgrade: OnUpgrade,
) -> Result<Resp, EngineError> {
    let name = run.name.clone();
    tokio::spawn(pump(engine, door, app, run, upgrade));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, attach::PROTOCOL)
        .header(attach::DYNO_HEADER, name)
        .body(ApiBody::Full(None))
        .map_err(|e| EngineError::Internal(format!("building reply: {e}")))
}

struct Target {
    engine: EngineHandle,
    door: Door,
    app: String,
    name: String,
}

impl Target {
    async fn signal(&self, signal: i32) {
        let cmd = Command::SignalOneOff {
            app: self.app.clone(),
            dyno: self.name.clone(),
            signal,
        };
        if let Err(e) = self.engine.call(self.door, cmd).await {
            tracing::debug!(dyno = %self.name, error = %e, "signal for a one-off dyno");
        }
    }
}

async fn pump(engine: EngineHandle, door: Door, app: String, run: Attached, upgrade: OnUpgrade) {
    let Attached {
        name,
        stdin,
        output,
        mut exit,
        tty,
    } = run;
    let target = Target {
        engine,
        door,
        app,
        name,
    };
    // A pty master is read and written as two files (each with its own blocking-pool
    // operation, so a pending read never holds up a write); pipes as pipes.
    let resize = if tty { output.try_clone().ok() } else { None };
    let pipes: std::io::Result<(Writer, Reader)> = if tty {
        Ok((
            Box::new(tokio::fs::File::from_std(stdin)),
            Box::new(tokio::fs::File::from_std(output)),
        ))
    } else {
        pipe::Sender::from_owned_fd(OwnedFd::from(stdin)).and_then(|s| {
            pipe::Receiver::from_owned_fd(OwnedFd::from(output))
                .map(|r| (Box::new(s) as Writer, Box::new(r) as Reader))
        })
    };
    let (io, (stdin, mut output)) = match (upgrade.await, pipes) {
        (Ok(io), Ok(pipes)) => (TokioIo::new(io), pipes),
        (Err(e), _) => {
            tracing::warn!(dyno = %target.name, error = %e, "one-off attach failed; killing it");
            return target.signal(libc::SIGKILL).await;
        }
        (_, Err(e)) => {
            tracing::warn!(dyno = %target.name, error = %e, "one-off pipes; killing it");
            return target.signal(libc::SIGKILL).await;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut stdin = Some(stdin);
    let (mut inbuf, mut rbuf, mut obuf) = (Vec::new(), vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
    let mut client_open = true;
    let info = loop {
        tokio::select! {
            n = rd.read(&mut rbuf), if client_open => {
                let n = match n {
                    Ok(n) if n > 0 => n,
                    _ => {
                        // The terminal went away: as a shell's hangup.
                        client_open = false;
                        stdin = None;
                        target.signal(libc::SIGHUP).await;
                        continue;
                    }
                };
                inbuf.extend_from_slice(&rbuf[..n]);
                while let Ok(Some((kind, data))) = take_frame(&mut inbuf) {
                    match kind {
                        attach::STDIN => {
                            if let Some(s) = stdin.as_mut() {
                                if s.write_all(&data).await.is_err() || s.flush().await.is_err() {
                                    stdin = None;
                                }
                            }
                        }
                        attach::STDIN_EOF => stdin = None,
                        attach::RESIZE => {
                            if let (Some(fd), &[a, b, c, d]) = (&resize, &data[..]) {
                                let (rows, cols) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
                                if let Err(e) = crate::supervisor::pty::set_size(fd, rows, cols) {
                                    tracing::debug!(error = %e, "resizing a one-off's pty");
                                }
                            }
                        }
                        attach::SIGNAL => {
                            if let Some(&sig) = data.first() {
                                target.signal(i32::from(sig)).await;
                            }
                        }
                        _ => {}
                    }
                }
            }
            n = output.read(&mut obuf) => match n {
                Ok(n) if n > 0 => {
                    if wr.write_all(&frame(attach::OUTPUT, &obuf[..n])).await.is_err() {
                        client_open = false;
                    }
                }
                _ => {
                    // Output closed: the dyno is gone or going; wait for its exit.
                    match (&mut exit).await {
                        Ok(info) => break info,
                        Err(_) => return,
                    }
                }
            },
            info = &mut exit => {
                let Ok(info) = info else { return };
                // Drain what is left (bounded: an escaped process may hold the pipe open).
                let _ = tokio::time::timeout(LINGER, async {
                    while let Ok(n) = output.read(&mut obuf).await {
                        if n == 0 || wr.write_all(&frame(attach::OUTPUT, &obuf[..n])).await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                break info;
            }
        }
    };
    let code = match (info.code, info.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    };
    let _ = wr
        .write_all(&frame(attach::EXIT, &code.to_be_bytes()))
        .await;
    let _ = wr.shutdown().await;
}

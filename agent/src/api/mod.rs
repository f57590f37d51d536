//! The local API door: HTTP/1.1 + JSON on a unix socket (mode 0660). A thin translation from
//! routes to engine [`Command`](crate::engine::Command)s; it never touches the store or processes.
//! Each connection is its own task, so a slow client only slows itself; [`conns`] bounds how
//! many there are and how long one may sit idle.

mod attach;
pub(crate) mod body;
mod conns;
pub(crate) mod http;
pub(crate) mod logs;
pub(crate) mod routes;
mod upload;

use crate::engine::EngineHandle;
use crate::logs::LogHandle;
use crate::settings::Settings;
use crate::util::{IoContext, PathError};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixListener;
use tokio::sync::watch;

/// What every request handler can reach.
pub struct Ctx {
    pub engine: EngineHandle,
    pub logs: LogHandle,
    pub settings: Settings,
    /// Where the dashboard listens and its token, for `roboku dashboard:url` (`None`: off).
    pub dashboard: Option<roboku_wire::DashboardInfo>,
}

/// The group that may use the API socket, when it exists.
const SOCKET_GROUP: &str = "roboku";

/// Binds the socket (replacing a stale one), mode 0660, group `roboku` when that group exists.
pub fn bind(settings: &Settings) -> Result<UnixListener, PathError> {
    let path = settings.socket_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at("create socket dir", dir)?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).at("remove stale socket", &path)
        }
        _ => {}
    }
    let listener = UnixListener::bind(&path).at("bind socket", &path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .at("chmod socket", &path)?;
    // Members of the `roboku` group (created by the package) may use the CLI without root.
    if let Ok(Some(group)) = nix::unistd::Group::from_name(SOCKET_GROUP) {
        nix::unistd::chown(&path, None, Some(group.gid))
            .map_err(std::io::Error::from)
            .at("chown socket to group roboku", &path)?;
    }
    Ok(listener)
}

/// Serves connections until `shutdown` turns true; open streams (log follows) end with it.
pub async fn serve(listener: UnixListener, ctx: Arc<Ctx>, shutdown: watch::Receiver<bool>) {
    let handler = move |req| routes::handle(ctx.clone(), req);
    serve_conns(listener, "the API socket", handler, shutdown).await
}

/// A listener the connection loop accepts from (the unix socket, the dashboard's TCP port).
pub(crate) trait Listener: Send + 'static {
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept_io(&self) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_io(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_io(&self) -> std::io::Result<Self::Io> {
        let (s, _) = self.accept().await?;
        // Small JSON replies and log lines: no Nagle delay.
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

/// The connection loop of every HTTP door: at most [`conns::cap_for`] connections, each its own
/// task (a slow client only slows itself), a deadline for the first request, graceful shutdown.
pub(crate) async fn serve_conns<L, H, F>(
    listener: L,
    what: &'static str,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    L: Listener,
    H: Fn(hyper::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<http::Resp, std::convert::Infallible>> + Send + 'static,
{
    let nofile = crate::util::nofile_limit();
    let table = Arc::new(conns::Conns::new(conns::cap_for(nofile)));
    let mut accept_warn = conns::RateLimited::new(Duration::from_secs(10));
    let mut full_warn = conns::RateLimited::new(Duration::from_secs(10));
    loop {
        tokio::select! {
            accepted = listener.accept_io() => {
                let stream = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        if let Some(held) = accept_warn.tick(Instant::now()) {
                            tracing::warn!(error = %e, held_back = held, door = what, "accept failed");
                        }
                        // Out of fds (EMFILE): give connections time to close instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = table.admit() else {
                    if let Some(held) = full_warn.tick(Instant::now()) {
                        tracing::warn!(open = table.len(), held_back = held, door = what, "connection limit reached; refusing a connection");
                    }
                    continue;
                };
                let handler = handler.clone();
                let mut stop = shutdown.clone();
                let table = table.clone();
                tokio::spawn(async move {
                    let served = slot.clone();
                    let service = service_fn(move |req| {
                        served.served.store(true, Ordering::Relaxed);
                        handler(req)
                    });
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(conns::FIRST_REQUEST_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::pin!(conn);
                    let first = tokio::time::sleep(conns::FIRST_REQUEST_TIMEOUT);
                    tokio::pin!(first);
                    let mut waiting = true;
                    loop {
                        tokio::select! {
                            r = conn.as_mut() => {
                                if let Err(e) = r { tracing::debug!(error = %e, door = what, "connection ended") }
                                break;
                            }
                            _ = stop.changed() => conn.as_mut().graceful_shutdown(),
                            _ = slot.evict.notified() => break,
                            _ = &mut first, if waiting => {
                                waiting = false;
                                if !slot.served.load(Ordering::Relaxed) {
                                    break;
                                }
                            }
                        }
                    }
                    table.release(&slot);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
}

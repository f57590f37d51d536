//! The local API door: HTTP/1.1 + JSON on a unix socket (mode 0660). A thin translation from
//! routes to engine [`Command`](crate::engine::Command)s; it never touches the store or processes.
//! Each connection is its own task, so a slow client only slows itself; [`conns`] bounds how
//! many there are and how long one may sit idle.

mod attach;
mod backup;
pub(crate) mod body;
mod bundles;
pub(crate) mod conns;
pub(crate) mod doctor;
pub mod dyno_door;
pub(crate) mod http;
pub(crate) mod logs;
pub(crate) mod routes;
mod spool;
mod upload;

use crate::engine::EngineHandle;
use crate::logs::LogHandle;
use crate::settings::Settings;
use crate::util::{IoContext, PathError};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::watch;

/// What every request handler can reach.
pub struct Ctx {
    pub engine: EngineHandle,
    pub logs: LogHandle,
    pub settings: Settings,
    /// Where the dashboard listens and its token, for `roboku dashboard:url` (`None`: off).
    pub dashboard: Option<roboku_wire::DashboardInfo>,
    /// Where `POST /v1/bundles` hands offline bundles.
    pub bundles: crate::bundle::BundleDoor,
    /// The fleet link, when a broker is set (`GET /v1/doctor`).
    pub fleet: Option<crate::mqtt::FleetView>,
    /// Byte counters and budgets, for `GET /v1/usage`.
    pub usage: crate::usage::Meter,
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
    serve_conns(listener, "API socket", handler, shutdown).await
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

/// The connection loop of the API's HTTP doors (socket, dashboard): [`conns::Door`]'s cap,
/// first-request deadline and eviction, each connection its own task, graceful shutdown.
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
    let mut door = conns::Door::new(what, conns::cap_for(crate::util::nofile_limit()));
    loop {
        tokio::select! {
            accepted = listener.accept_io() => {
                let Some((stream, slot)) = door.admit(accepted).await else { continue };
                door.spawn(slot, stream, handler.clone(), shutdown.clone());
            }
            _ = shutdown.changed() => break,
        }
    }
}

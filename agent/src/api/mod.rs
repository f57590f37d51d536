//! The local API door: HTTP/1.1 + JSON on a unix socket (mode 0660). A thin translation from
//! routes to engine [`Command`](crate::engine::Command)s; it never touches the store or processes.
//! Each connection is its own task, so a slow client only slows itself; [`conns`] bounds how
//! many there are and how long one may sit idle.

mod attach;
mod body;
pub(crate) mod conns;
mod logs;
mod routes;
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
pub async fn serve(listener: UnixListener, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let mut door = conns::Door::new("API socket", conns::cap_for(crate::util::nofile_limit()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Some(((stream, _), slot)) = door.admit(accepted).await else { continue };
                let ctx = ctx.clone();
                door.spawn(slot, stream, move |req| routes::handle(ctx.clone(), req), shutdown.clone());
            }
            _ = shutdown.changed() => break,
        }
    }
}

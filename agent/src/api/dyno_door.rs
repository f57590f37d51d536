//! The dyno door: one unix socket per app (`<data>/sockets/<app>.sock`, `$ROBOKU_DYNO_SOCKET` in
//! its dynos) through which the app's dynos report their own health and take or release holds
//! on their own app. The app is the socket's, never the request's: a dyno can reach only its
//! app's socket (owned by the app's uid, mode 0600, in a 0711 directory), and every connection's
//! peer uid is checked again (`SO_PEERCRED`) against the app's uid (or root).
//!
//! Like every door it only turns requests into engine commands. It dies with its handle (the
//! engine drops it when the app goes, or its uid changes).

use super::http::{error_response, json_body, json_response, Resp};
use crate::engine::{Command, Door, EngineError, WeakEngine};
use crate::util::{IoContext, PathError};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use roboku_wire as wire;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

pub struct DynoDoor {
    pub path: PathBuf,
    /// The uid allowed in (besides root).
    pub uid: u32,
    _stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DynoDoor {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A listener that admits only connections from `uid` or root.
struct PeerChecked {
    inner: UnixListener,
    uid: u32,
    app: String,
}

impl super::Listener for PeerChecked {
    type Io = UnixStream;
    async fn accept_io(&self) -> std::io::Result<UnixStream> {
        loop {
            let (s, _) = self.inner.accept().await?;
            match s.peer_cred() {
                Ok(c) if c.uid() == self.uid || c.uid() == 0 => return Ok(s),
                Ok(c) => tracing::warn!(
                    app = self.app,
                    peer_uid = c.uid(),
                    "refused a connection to the dyno socket from another user"
                ),
                Err(e) => tracing::warn!(app = self.app, error = %e, "no peer credentials"),
            }
        }
    }
}

/// Binds `path` for `app`, owned by `uid:gid` (0600), and serves it.
pub fn bind(
    path: &Path,
    app: &str,
    ids: (u32, u32),
    engine: WeakEngine,
) -> Result<DynoDoor, PathError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).at("remove stale dyno socket", path)
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).at("bind dyno socket", path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .at("chmod dyno socket", path)?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1)).at("chown dyno socket", path)?;
    }
    let (stop, stopped) = watch::channel(false);
    let app_s = app.to_string();
    let listener = PeerChecked {
        inner: listener,
        uid: ids.0,
        app: app.to_string(),
    };
    let handler = move |req| handle(engine.clone(), app_s.clone(), req);
    let task = tokio::spawn(super::serve_conns(
        listener,
        "dyno socket",
        handler,
        stopped,
    ));
    Ok(DynoDoor {
        path: path.to_path_buf(),
        uid: ids.0,
        _stop: stop,
        task,
    })
}

async fn handle(
    engine: WeakEngine,
    app: String,
    req: Request<Incoming>,
) -> Result<Resp, std::convert::Infallible> {
    let result = route(&engine, &app, req).await;
    Ok(result.unwrap_or_else(|e| error_response(&e)))
}

async fn route(
    engine: &WeakEngine,
    app: &str,
    req: Request<Incoming>,
) -> Result<Resp, EngineError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix(wire::API_PREFIX).unwrap_or("");
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let app = app.to_string();
    let cmd = match (&method, parts.as_slice()) {
        (&Method::POST, ["health"]) => Command::SetHealth {
            app,
            report: json_body(req).await?,
        },
        (&Method::PUT, ["holds", name]) => Command::TakeHold {
            app,
            name: name.to_string(),
            req: json_body(req).await?,
        },
        (&Method::DELETE, ["holds", name]) => Command::ReleaseHold {
            app,
            name: name.to_string(),
        },
        _ => {
            return Err(EngineError::NotFound(format!(
                "no route {method} {path} on the dyno socket (it serves POST /v1/health and \
                 PUT/DELETE /v1/holds/NAME for its own app)"
            )))
        }
    };
    let reply = engine.call(Door::Dyno, cmd).await?;
    json_response(StatusCode::OK, &reply)
}

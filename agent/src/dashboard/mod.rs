//! The dashboard's HTTP door on TCP (default `127.0.0.1:7070`): the page (every asset embedded
//! in the binary: the robot is often offline), `/metrics`, `/healthz`, the snapshot and charts
//! the page polls, and the same `/v1` routes as the unix socket (one router: `api::routes`).
//!
//! Every request passes `guard` first (Host, Origin, token). It shares the socket's connection
//! loop and cap (`api::serve_conns`); a stuck browser holds one connection task, never the
//! engine (the engine is only ever asked through its channel, and the telemetry history is
//! copied out under a short lock).

pub mod assets;
pub mod guard;
mod routes;
pub mod snapshot;
pub mod token;

use crate::api;
use crate::settings::Settings;
use crate::telemetry::Telemetry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the dashboard's handlers share.
pub struct DashCtx {
    pub api: Arc<api::Ctx>,
    pub telemetry: Telemetry,
    pub policy: guard::Policy,
    /// The MQTT link, when fleet control is on.
    pub fleet: Option<crate::mqtt::FleetView>,
}

/// The bound door, before it serves.
pub struct Door {
    listener: TcpListener,
    pub addr: SocketAddr,
    pub info: roboku_wire::DashboardInfo,
    policy: guard::Policy,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("setting dashboard = {0:?}: not ADDR:PORT (e.g. 127.0.0.1:7070, 0.0.0.0:7070) or off")]
    BadAddress(String),
    #[error(transparent)]
    Token(#[from] crate::util::PathError),
    #[error("dashboard token file {0}: {1}")]
    BadToken(std::path::PathBuf, String),
}

/// Binds the dashboard as `settings.dashboard` says: `None` when it is `off`, or when the port
/// is taken (a loud warning: supervision matters more than the page). A malformed address or an
/// unusable token file is an error.
pub async fn bind(settings: &Settings) -> Result<Option<Door>, DashboardError> {
    let spec = settings.dashboard.trim();
    if spec.eq_ignore_ascii_case("off") || spec.is_empty() {
        return Ok(None);
    }
    let want: SocketAddr = spec
        .parse()
        .map_err(|_| DashboardError::BadAddress(spec.to_string()))?;
    let token = token::load_or_create(&settings.dashboard_token_path())?;
    let listener = match TcpListener::bind(want).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(addr = %want, error = %e, "dashboard not served: cannot bind its address");
            return Ok(None);
        }
    };
    let addr = listener.local_addr().unwrap_or(want);
    let loopback = addr.ip().is_loopback();
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    let info = roboku_wire::DashboardInfo {
        url: format!("http://{shown}/"),
        token: token.clone(),
        loopback,
    };
    let policy = guard::Policy {
        port: addr.port(),
        loopback_only: loopback,
        hosts: settings
            .dashboard_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        token,
    };
    tracing::info!(url = %info.url, loopback, "dashboard listening");
    Ok(Some(Door {
        listener,
        addr,
        info,
        policy,
    }))
}

/// Serves the dashboard until `shutdown` turns true.
pub async fn serve(
    door: Door,
    api: Arc<api::Ctx>,
    telemetry: Telemetry,
    fleet: Option<crate::mqtt::FleetView>,
    shutdown: watch::Receiver<bool>,
) {
    let ctx = Arc::new(DashCtx {
        api,
        telemetry,
        policy: door.policy,
        fleet,
    });
    let handler = move |req| routes::handle(ctx.clone(), req);
    api::serve_conns(door.listener, "the dashboard", handler, shutdown).await
}

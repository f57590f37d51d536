//! robokud: the roboku agent as a library, so tests start it in-process with [`run`].
//!
//! The agent is one engine (the only owner of mutable state) and several doors (the local API
//! today; MQTT and the dashboard later) that turn requests into [`engine::Command`]s.

pub mod api;
pub mod build;
pub mod cgroup;
pub mod engine;
pub mod example;
pub mod fault;
pub mod logs;
pub mod mqtt;
pub mod notify;
pub mod procfile;
pub mod reserve;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod util;

pub use settings::Settings;

use std::sync::Arc;
use tokio::sync::watch;
use util::IoContext;

/// Runs the agent until `shutdown` resolves: opens the store, detects cgroups, starts the log
/// task and the engine (which re-adopts running dynos and reconciles), serves the local API.
/// On shutdown it stops or leaves the dynos as `settings.on_exit` says, then returns.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(&Settings, &engine::EngineHandle),
) -> anyhow::Result<()> {
    let fleet = mqtt::prepare(&settings)?;
    prepare_dirs(&settings)?;
    if let Err(e) = reserve::ensure(&settings.data_dir) {
        tracing::warn!(error = %e, "no room for the disk reserve");
    }
    let store = match store::Store::open(&settings.db_path()) {
        Ok(s) => s,
        // A full disk: free the reserve and try once more.
        Err(e) if reserve::release(&settings.data_dir) => {
            tracing::warn!(error = %e, "opening the store failed; freed the disk reserve to retry");
            store::Store::open(&settings.db_path())?
        }
        Err(e) => return Err(e.into()),
    };
    // Never fatal: on a full disk the copies from the last start are still there (and dynos
    // must be supervised whether or not a build could run).
    if let Err(e) = build::builtin::install(&settings.buildpacks_dir()) {
        tracing::error!(error = %e, "cannot write the built-in buildpacks; builds may fail");
    }
    let killed = build::clean_after_crash(&settings.tmp_dir());
    if killed > 0 {
        tracing::warn!(
            killed,
            "killed processes left by a build of an earlier robokud"
        );
    }
    if settings.cgroups && nix::unistd::geteuid().is_root() {
        match cgroup::delegate::enter_supervisor_leaf(&settings.cgroup_mount) {
            Ok(Some(leaf)) => {
                tracing::info!(leaf = %leaf.display(), "moved into the supervisor leaf of the delegated unit cgroup")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not leave the delegated unit cgroup; cgroup v2 limits may fail")
            }
        }
    }
    let cgroups: Arc<dyn cgroup::CgroupDriver> = Arc::from(cgroup::detect(
        settings.cgroup_mount.clone(),
        &settings.cgroup_name,
        settings.cgroups,
    ));
    let status = cgroups.status();
    if status.enforced {
        tracing::info!(mode = %status.mode, root = %status.root, "cgroups enforce dyno limits");
    } else {
        tracing::warn!(
            reason = status.reason.as_deref().unwrap_or("unknown"),
            "dyno limits are NOT enforced"
        );
    }
    let logs = logs::start(settings.logs_dir(), settings.log_quota_bytes);
    let listener = api::bind(&settings)?;
    let slug_listener = mqtt::serve::bind(&settings).await?;
    let (engine, engine_task, ready) =
        engine::start(settings.clone(), store, cgroups, logs.clone());
    let _ = ready.await;
    tracing::info!(socket = %settings.socket_path().display(), "robokud ready");
    on_ready(&settings, &engine);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(api::Ctx {
        engine: engine.clone(),
        logs: logs.clone(),
        settings: settings.clone(),
    });
    let server = tokio::spawn(api::serve(listener, ctx, stop_rx.clone()));
    let notifier = notify::Notifier::ready(engine.clone()).await;
    // Fleet control over MQTT, when a broker is configured.
    let fleet = fleet.map(|f| {
        f.start(
            &settings,
            engine.clone(),
            Some(logs.clone()),
            stop_rx.clone(),
        )
    });
    let slug_server = slug_listener.map(|l| {
        let (s, stop) = (settings.clone(), stop_rx);
        tokio::spawn(async move { mqtt::serve::serve(l, &s, stop).await })
    });
    shutdown.await;
    tracing::info!("shutting down");
    notifier.stopping(match settings.on_exit {
        settings::OnExit::Leave => "stopping; dynos are left running for the next robokud",
        settings::OnExit::Stop => "stopping dynos",
    });
    let _ = engine
        .call(engine::Door::Agent, engine::Command::Shutdown)
        .await;
    notifier.finish().await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    for task in [fleet, slug_server].into_iter().flatten() {
        let _ = task.await;
    }
    drop(engine);
    let _ = engine_task.await;
    let _ = std::fs::remove_file(settings.socket_path());
    Ok(())
}

/// Creates the data dir layout. Directories dynos must traverse are 0755 (they run unprivileged).
fn prepare_dirs(settings: &Settings) -> Result<(), util::PathError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        settings.data_dir.clone(),
        settings.slugs_dir(),
        settings.apps_dir(),
        settings.logs_dir(),
        settings.tmp_dir(),
    ] {
        std::fs::create_dir_all(&dir).at("create dir", &dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).at("chmod", &dir)?;
    }
    Ok(())
}

//! robokud: the roboku agent as a library, so tests start it in-process with [`run`].
//!
//! The agent is one engine (the only owner of mutable state) and several doors (the local API on
//! the unix socket, fleet control over MQTT, and a gateway's slug server) that turn requests into
//! [`engine::Command`]s.

pub mod addons;
pub mod alarm;
pub mod api;
pub mod backoff;
pub mod build;
pub mod bundle;
pub mod cgroup;
#[doc(hidden)]
pub mod checks;
pub mod clock;
pub mod dashboard;
pub mod deploy;
pub mod disk;
pub mod drains;
pub mod engine;
pub mod example;
pub mod fault;
pub mod gateway;
pub mod heap;
pub mod logs;
pub mod mqtt;
pub mod notify;
/// Procfile and `.env` parsing live in the wire crate: the CLI reads `.env` files too.
pub use roboku_wire::procfile;
pub mod reserve;
pub mod router;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod support;
pub mod telemetry;
pub mod usage;
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
    // Everything robokud writes is its own unless made otherwise on purpose (slugs, caches):
    // the store, its WAL, logs, fleet state and archives stay out of the apps' reach.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let fleet = mqtt::prepare_fleet(&settings)?;
    prepare_dirs(&settings)?;
    // Never fatal: on a full disk an upgraded robokud must still supervise its dynos; bundles
    // then fail with the directory named, until there is room.
    if let Err(e) = bundle::inbox::prepare(&settings) {
        tracing::error!(error = %e, "cannot prepare the bundle directories; offline bundles may fail");
    }
    check_reachable(&settings)?;
    if let Err(e) = reserve::ensure(&settings.data_dir) {
        tracing::warn!(error = %e, "no room for the disk reserve");
    }
    let mut store = match store::Store::open(&settings.db_path()) {
        Ok(s) => s,
        // A full disk: free the reserve and try once more.
        Err(e) if reserve::release(&settings.data_dir) => {
            tracing::warn!(error = %e, "opening the store failed; freed the disk reserve to retry");
            store::Store::open(&settings.db_path())?
        }
        Err(e) => return Err(e.into()),
    };
    // Before the log task and the engine: a rename an agent crash interrupted is finished (or
    // dropped, if it never committed) before anything reads the directories it moves.
    engine::rename::journal::recover(&settings, &store);
    engine::data_restore::recover_all(&settings, &mut store);
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
    let holder = cgroup_holder(&settings);
    if holder.is_none() && settings.cgroups && nix::unistd::geteuid().is_root() {
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
    if settings.cgroups {
        // Before the first dyno joins a cgroup; never fatal (joins are then only slower).
        cgroup::favor::ensure(settings.favordynmods);
    }
    let cgroups: Arc<dyn cgroup::CgroupDriver> = Arc::from(cgroup::detect(
        settings.cgroup_mount.clone(),
        &settings.cgroup_name,
        settings.cgroups,
        holder.as_deref(),
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
    let slug_listener = gateway::bind(&settings).await?;
    let dash_door = dashboard::bind(&settings).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let every = std::time::Duration::from_secs(settings.sample_secs.max(1));
    let keep = std::time::Duration::from_secs(settings.history_secs.max(1));
    let (telemetry, telemetry_task) =
        telemetry::start(&settings.data_dir, keep, every, stop_rx.clone());
    let clock_task = tokio::spawn(clock::keep(settings.clone(), stop_rx.clone()));
    // Byte accounting: counted by the fleet link, artifact downloads and drains; saved by its
    // own task, which ends (after a last save) once every counting door has stopped.
    let meter = usage::Meter::new(&settings.budget, usage::clock::Clock::from_env());
    let (usage_stop_tx, usage_stop_rx) = watch::channel(false);
    let usage_task = usage::start(meter.clone(), settings.usage_path(), usage_stop_rx);
    let (engine, engine_task, ready) = engine::start(
        settings.clone(),
        store,
        cgroups,
        logs.clone(),
        telemetry.clone(),
        meter.clone(),
    );
    let _ = ready.await;
    let pressure_task = tokio::spawn(disk::pressure::watch(
        settings.clone(),
        engine.clone(),
        logs.clone(),
        stop_rx.clone(),
    ));
    tracing::info!(socket = %settings.socket_path().display(), "robokud ready");
    on_ready(&settings, &engine);
    // Fleet control: the intake always (offline bundles), the MQTT link when a broker is set.
    let fleet = fleet.start_watched(
        &settings,
        engine.clone(),
        Some(logs.clone()),
        Some(telemetry.clone()),
        meter.clone(),
        stop_rx.clone(),
    );
    let (fleet_view, bundles) = (fleet.view, fleet.bundles);
    let inbox = (settings.bundle_scan_ms > 0).then(|| {
        let (s, door, stop) = (settings.clone(), bundles.clone(), stop_rx.clone());
        tokio::spawn(bundle::inbox::run(s, door, stop))
    });
    let fleet = Some(fleet.task);
    let ctx = Arc::new(api::Ctx {
        engine: engine.clone(),
        logs: logs.clone(),
        settings: settings.clone(),
        dashboard: dash_door.as_ref().map(|d| d.info.clone()),
        bundles,
        fleet: fleet_view.clone(),
        usage: meter,
    });
    let server = tokio::spawn(api::serve(listener, ctx.clone(), stop_rx.clone()));
    let notifier = notify::Notifier::ready(engine.clone()).await;
    let dash_server = dash_door.map(|d| {
        let stop = stop_rx.clone();
        tokio::spawn(dashboard::serve(d, ctx, telemetry, fleet_view, stop))
    });
    let slug_server = slug_listener.map(|l| {
        let (s, stop) = (settings.clone(), stop_rx);
        tokio::spawn(async move { gateway::serve(l, &s, stop).await })
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
    for task in [fleet, slug_server, dash_server, inbox]
        .into_iter()
        .flatten()
    {
        let _ = task.await;
    }
    let _ = telemetry_task.await;
    let _ = clock_task.await;
    let _ = pressure_task.await;
    drop(engine);
    let _ = engine_task.await;
    let _ = usage_stop_tx.send(true);
    let _ = usage_task.await;
    let _ = std::fs::remove_file(settings.socket_path());
    Ok(())
}

/// Dynos and builds run as unprivileged app users that must reach their slug, build tree and
/// cache inside the data dir: refuse to start (naming the directory, the users and the fix)
/// when an ancestor such as a 0700 home dir stops them, rather than failing every build later.
fn check_reachable(settings: &Settings) -> anyhow::Result<()> {
    match blocked(settings) {
        Some(why) => anyhow::bail!("data dir {}: {why}", settings.data_dir.display()),
        None => Ok(()),
    }
}

/// Why the app users cannot reach the data dir, if they cannot (root only: otherwise dynos run
/// as robokud's own user, who made the data dir).
fn blocked(settings: &Settings) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    // A uid and gid that own nothing and are in no group: what an app's own user gets.
    let (uid, gid) = (u32::MAX - 1, u32::MAX - 1);
    [
        settings.slugs_dir(),
        settings.tmp_dir(),
        settings.cache_root(),
    ]
    .into_iter()
    .find_map(|dir| {
        supervisor::reach::first_blocked(&dir, uid, gid)
            .map(|b| b.explain("the users dynos and builds run as", &dir))
    })
}

/// Developer mode (`--dev`, no `--data-dir`) as root in a private directory, e.g. a checkout under
/// `/root` (0700): `./.roboku` would be out of the app users' reach, so the data goes to
/// `/var/tmp/roboku-dev-<hash of the directory>` instead, while the socket stays at
/// `./.roboku/robokud.sock`, where `roboku` looks. Returns the note to show, when it moved.
pub fn developer_fallback(settings: &mut Settings) -> Option<String> {
    blocked(settings)?;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(settings.data_dir.as_os_str().as_encoded_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let moved = std::path::PathBuf::from(format!("/var/tmp/roboku-dev-{tag}"));
    let socket = settings.socket_path();
    let from = std::mem::replace(&mut settings.data_dir, moved);
    settings.socket.get_or_insert(socket);
    Some(format!(
        "{} is out of reach of the app users (a private parent directory); developer data goes \
         to {} (socket still {})",
        from.display(),
        settings.data_dir.display(),
        settings.socket_path().display()
    ))
}

/// On cgroup v2 as root: the holder unit's delegated cgroup dynos live in (`cgroup_parent`),
/// if it is there; `None` (with a warning when it was expected) otherwise.
fn cgroup_holder(settings: &Settings) -> Option<std::path::PathBuf> {
    let v2 = settings.cgroup_mount.join("cgroup.controllers").exists();
    if !settings.cgroups || !v2 || !nix::unistd::geteuid().is_root() {
        return None;
    }
    match cgroup::holder::find(&settings.cgroup_mount, &settings.cgroup_parent) {
        Ok(dir) => {
            tracing::info!(holder = %dir.display(), "dynos live in the holder unit's cgroup");
            Some(dir)
        }
        Err(reason) if settings.cgroup_parent.is_empty() => {
            tracing::debug!(%reason, "no holder cgroup");
            None
        }
        Err(reason) => {
            tracing::warn!(%reason, "no holder cgroup: dynos go beside robokud's own cgroup (a restart of robokud.service fails on systemd < 254 while they run)");
            None
        }
    }
}

/// Creates the data dir layout. App users may pass through the data dir, `slugs/`, `tmp/` and
/// `cache/`, `data/`, `addons/` (0711) to what is theirs inside, but list none of them; the rest is root's (0700).
fn prepare_dirs(settings: &Settings) -> Result<(), util::PathError> {
    use std::os::unix::fs::PermissionsExt;
    for (dir, mode) in [
        (settings.data_dir.clone(), 0o711),
        (settings.slugs_dir(), 0o711),
        (settings.apps_dir(), 0o700),
        (settings.logs_dir(), 0o700),
        (settings.drains_dir(), 0o700),
        (settings.tmp_dir(), 0o711),
        (settings.cache_root(), 0o711),
        (settings.dyno_sockets_dir(), 0o711),
        (settings.data_root(), crate::addons::data::ROOT_MODE),
        (settings.addons_dir(), 0o711),
        (settings.data_snapshots_root(), 0o700),
    ] {
        std::fs::create_dir_all(&dir).at("create dir", &dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).at("chmod", &dir)?;
    }
    Ok(())
}

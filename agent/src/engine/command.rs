//! The engine's vocabulary: every request any door can make, every answer, every error.

use crate::build::Slug;
use roboku_wire as wire;
use roboku_wire::codes;
use serde::Serialize;
use std::collections::BTreeMap;

/// Which door a request came through; recorded with every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Cli,
    Api,
    Mqtt,
    Git,
    Agent,
    /// The dashboard's HTTP door (its rollback button).
    Dashboard,
    /// An app's own dyno socket (`roboku health:set` inside a dyno).
    Dyno,
    /// A signed offline bundle (applied from the CLI or picked up from the watched directory).
    Bundle,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Cli => "cli",
            Door::Api => "api",
            Door::Mqtt => "mqtt",
            Door::Git => "git",
            Door::Agent => "agent",
            Door::Dashboard => "dashboard",
            Door::Dyno => "dyno",
            Door::Bundle => "bundle",
        }
    }
    pub fn parse(s: &str) -> Door {
        match s {
            "cli" => Door::Cli,
            "mqtt" => Door::Mqtt,
            "git" => Door::Git,
            "dashboard" => Door::Dashboard,
            "dyno" => Door::Dyno,
            "bundle" => Door::Bundle,
            _ => Door::Api,
        }
    }
}

#[derive(Debug)]
pub enum Command {
    Status,
    /// What slug GC keeps (for `roboku disk`; the sizes are counted off the engine).
    KeptSlugs,
    /// Slug GC now (disk pressure runs it early).
    GcSlugs,
    ListApps,
    CreateApp {
        name: String,
    },
    AppInfo {
        app: String,
    },
    UpdateApp {
        app: String,
        update: wire::UpdateApp,
    },
    DestroyApp {
        app: String,
        confirm: String,
    },
    /// `apps:rename`: the app and everything it owns take the name `to` (see `rename/`).
    RenameApp {
        app: String,
        to: String,
    },
    /// A slug has been built (off the engine); make it the app's new release. Its `.env` was
    /// validated by the door and is read from the slug when dynos start.
    Release {
        app: String,
        slug: Slug,
        description: String,
        /// The fleet artifact the slug was built from (fleet deploys only).
        artifact: Option<wire::fleet::Artifact>,
        /// The buildpacks the slug was built with (`None`: a prebuilt slug).
        buildpacks: Option<Vec<wire::ReleaseBuildpack>>,
    },
    /// What releasing `slug` would do (nothing is applied).
    PlanRelease {
        app: String,
        slug: Slug,
    },
    Ps {
        app: String,
    },
    Formation {
        app: String,
    },
    Scale {
        app: String,
        counts: BTreeMap<String, u32>,
    },
    Resize {
        app: String,
        req: wire::ResizeRequest,
    },
    Restart {
        app: String,
        target: Option<String>,
    },
    Stop {
        app: String,
        target: Option<String>,
    },
    GetConfig {
        app: String,
    },
    ChangeConfig {
        app: String,
        change: wire::ConfigChange,
    },
    Releases {
        app: String,
    },
    Rollback {
        app: String,
        version: Option<u32>,
        /// Bring the release's data snapshot back too (`rollback --with-data`).
        with_data: bool,
    },
    /// A one-off dyno (`roboku run`): attached (its pipes come back in [`Reply::Attached`]) or
    /// detached (output to the logs).
    Run {
        app: String,
        command: Vec<String>,
        detached: bool,
        /// Attached with a pty of (rows, columns).
        tty: Option<(u16, u16)>,
    },
    /// A signal for an attached one-off dyno's process group (from its terminal).
    SignalOneOff {
        app: String,
        dyno: String,
        signal: i32,
    },
    Events {
        app: Option<String>,
        n: usize,
    },
    /// Checks that the app exists (doors call this before slow work such as a build).
    CheckApp {
        app: String,
    },
    /// Stop (or leave, per settings) every dyno and end the engine.
    Shutdown,
    /// Answered at once with `Done`: proves the engine loop is turning (systemd watchdog).
    Ping,
    /// `roboku gates`: every gate checked now, every hold, every waiting change.
    Gates {
        app: String,
    },
    SetGate {
        app: String,
        name: String,
        gate: wire::gates::SetGate,
    },
    UnsetGate {
        app: String,
        name: String,
    },
    TakeHold {
        app: String,
        name: String,
        req: wire::gates::TakeHold,
    },
    ReleaseHold {
        app: String,
        name: String,
    },
    /// A dyno's report about itself; `app` is the dyno socket's, never the request's.
    SetHealth {
        app: String,
        report: wire::gates::SetHealth,
    },
    /// `roboku addons`: the add-ons the app owns or is attached to.
    Addons {
        app: String,
    },
    /// Every add-on, as its owner sees it (`roboku doctor`).
    AllAddons,
    AddonCreate {
        app: String,
        req: wire::addons::CreateAddon,
    },
    AddonAttach {
        app: String,
        name: String,
        req: wire::addons::AttachAddon,
    },
    AddonDetach {
        app: String,
        name: String,
    },
    AddonDestroy {
        app: String,
        name: String,
        confirm: String,
    },
    /// What a backup of the add-on needs; the door runs it off the engine.
    AddonBackup {
        app: String,
        name: String,
    },
    Drains {
        app: String,
    },
    AddDrain {
        app: String,
        url: String,
    },
    /// `which`: the drain's id or URL.
    RemoveDrain {
        app: String,
        which: String,
    },
}

impl Command {
    /// The app (or the name of the app to be) this command would change; `None` for commands
    /// that only read. A rename in progress refuses these for both of its names.
    pub fn changes_app(&self) -> Option<&str> {
        match self {
            Command::CreateApp { name } => Some(name),
            Command::UpdateApp { app, .. }
            | Command::DestroyApp { app, .. }
            | Command::RenameApp { app, .. }
            | Command::Release { app, .. }
            | Command::Scale { app, .. }
            | Command::Resize { app, .. }
            | Command::Restart { app, .. }
            | Command::Stop { app, .. }
            | Command::ChangeConfig { app, .. }
            | Command::Rollback { app, .. }
            | Command::Run { app, .. }
            | Command::SignalOneOff { app, .. }
            | Command::SetGate { app, .. }
            | Command::UnsetGate { app, .. }
            | Command::TakeHold { app, .. }
            | Command::ReleaseHold { app, .. }
            | Command::SetHealth { app, .. }
            | Command::AddonCreate { app, .. }
            | Command::AddonAttach { app, .. }
            | Command::AddonDetach { app, .. }
            | Command::AddonDestroy { app, .. }
            | Command::AddDrain { app, .. }
            | Command::RemoveDrain { app, .. } => Some(app),
            Command::Status
            | Command::KeptSlugs
            | Command::GcSlugs
            | Command::ListApps
            | Command::AppInfo { .. }
            | Command::CheckApp { .. }
            | Command::Ps { .. }
            | Command::PlanRelease { .. }
            | Command::Formation { .. }
            | Command::GetConfig { .. }
            | Command::Releases { .. }
            | Command::Events { .. }
            | Command::Gates { .. }
            | Command::Addons { .. }
            | Command::AllAddons
            | Command::AddonBackup { .. }
            | Command::Drains { .. }
            | Command::Shutdown
            | Command::Ping => None,
        }
    }
}

/// Every answer; serialised as the inner value.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Status(wire::Status),
    Apps(Vec<wire::AppInfo>),
    App(wire::AppInfo),
    Release(wire::ReleaseInfo),
    Releases(Vec<wire::ReleaseInfo>),
    Dynos(Vec<wire::DynoInfo>),
    Formation(Vec<wire::FormationEntry>),
    Config(BTreeMap<String, String>),
    ConfigChanged(wire::ConfigChanged),
    /// An attached one-off dyno: never serialised, the API door pumps its pipes.
    #[serde(skip)]
    Attached(super::one_off::Attached),
    Events(Vec<wire::EventInfo>),
    Done(wire::Done),
    /// Internal: the answer comes when the app's rollout ends (never sent to a door).
    Pending {
        app: String,
    },
    Renamed(wire::Renamed),
    Plan(wire::DeployPlan),
    Gates(wire::gates::GatesReport),
    /// Internal: slug GC's keep set (the API door turns it into a disk report).
    #[serde(skip)]
    Kept(super::Kept),
    Hold(wire::gates::HoldInfo),
    Health(wire::gates::DynoHealth),
    Addons(Vec<wire::addons::AddonInfo>),
    Drains(Vec<wire::drains::DrainInfo>),
    Drain(wire::drains::DrainInfo),
    /// Internal: a backup to run off the engine (the API door runs it).
    #[serde(skip)]
    BackupJob(Box<crate::addons::backup::Job>),
    /// Internal: the answer comes when the rename of `from` ends (never sent to a door).
    #[serde(skip)]
    Renaming {
        from: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidApp(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    /// A release was refused at rollout (release phase, crash, health check, deadline).
    #[error("{0}")]
    DeployFailed(String),
    /// The app's gates stayed closed until the change's time limit; nothing was applied.
    #[error("{0}")]
    GateClosed(String),
}

impl EngineError {
    /// The wire error code, which also fixes the HTTP status.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::NotFound(_) => codes::NOT_FOUND,
            EngineError::BadRequest(_) => codes::BAD_REQUEST,
            EngineError::Conflict(_) => codes::CONFLICT,
            EngineError::InvalidApp(_) => codes::INVALID_APP,
            EngineError::Internal(_) => codes::INTERNAL,
            EngineError::Unavailable(_) => codes::UNAVAILABLE,
            EngineError::DeployFailed(_) => codes::DEPLOY_FAILED,
            EngineError::GateClosed(_) => codes::GATE_CLOSED,
        }
    }
}

impl From<crate::store::StoreError> for EngineError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as S;
        match e {
            S::NoApp(app) => EngineError::NotFound(format!("no app {app:?} (see `roboku apps`)")),
            S::AppExists(app) => EngineError::Conflict(format!("app {app:?} already exists")),
            e @ S::NoRelease { .. } => EngineError::NotFound(e.to_string()),
            e => EngineError::Internal(e.to_string()),
        }
    }
}

impl From<crate::build::BuildError> for EngineError {
    fn from(e: crate::build::BuildError) -> Self {
        use crate::build::BuildError as B;
        match e {
            e @ (B::NoProcfile { .. }
            | B::Procfile { .. }
            | B::UnsafeEntry { .. }
            | B::Buildpack { .. }
            | B::NoBuildpack { .. }
            | B::Arch { .. }) => EngineError::InvalidApp(e.to_string()),
            B::GitPack(e) => {
                use crate::build::buildpack::git_cache::GitPackError as G;
                match e {
                    G::Spec(m) => EngineError::BadRequest(m),
                    e @ (G::NoRef { .. } | G::NotABuildpack { .. }) => {
                        EngineError::InvalidApp(e.to_string())
                    }
                    e @ G::Unavailable { .. } => EngineError::Unavailable(e.to_string()),
                    e => EngineError::Internal(e.to_string()),
                }
            }
            e => EngineError::Internal(e.to_string()),
        }
    }
}

/// What every handler returns.
pub(super) type Result<T> = std::result::Result<T, EngineError>;

impl super::Engine {
    /// Routes a command to its handler (in `apps.rs`, `releases.rs`, `formation.rs`,
    /// `one_off.rs`).
    pub(super) fn dispatch(&mut self, door: Door, cmd: Command) -> Result<Reply> {
        self.refuse_while_renaming(&cmd)?;
        self.refuse_while_restoring(&cmd)?;
        match cmd {
            Command::Status => Ok(Reply::Status(self.status())),
            Command::GcSlugs => {
                self.gc_slugs();
                Ok(Reply::Done(wire::Done {
                    message: "slug gc started".into(),
                }))
            }
            Command::KeptSlugs => self
                .kept_slugs()
                .map(Reply::Kept)
                .ok_or_else(|| EngineError::Internal("the store cannot list releases".into())),
            Command::ListApps => self.list_apps().map(Reply::Apps),
            Command::CreateApp { name } => self.create_app(door, &name).map(Reply::App),
            Command::AppInfo { app } => self.app_info(&app).map(Reply::App),
            Command::CheckApp { app } => self.app_info(&app).map(Reply::App),
            Command::UpdateApp { app, update } => {
                self.update_app(door, &app, update).map(Reply::App)
            }
            Command::DestroyApp { app, confirm } => {
                self.destroy_app(door, &app, &confirm).map(Reply::Done)
            }
            Command::RenameApp { app, to } => self.rename_app(door, &app, &to),
            Command::Release {
                app,
                slug,
                description,
                artifact,
                buildpacks,
            } => self.release(door, &app, slug, description, artifact, buildpacks),
            Command::PlanRelease { app, slug } => self.plan_release(&app, &slug).map(Reply::Plan),
            Command::Ps { app } => self.ps(&app).map(Reply::Dynos),
            Command::Formation { app } => self.formation(&app).map(Reply::Formation),
            Command::Scale { app, counts } => self.scale(door, &app, counts).map(Reply::Formation),
            Command::Resize { app, req } => self.resize(door, &app, req).map(Reply::Formation),
            Command::Restart { app, target } => self.restart(door, &app, target).map(Reply::Done),
            Command::Stop { app, target } => self.stop(door, &app, target).map(Reply::Done),
            Command::GetConfig { app } => self.get_config(&app).map(Reply::Config),
            Command::ChangeConfig { app, change } => self.change_config(door, &app, change),
            Command::Releases { app } => self.releases(&app).map(Reply::Releases),
            Command::Rollback {
                app,
                version,
                with_data: true,
            } => self.rollback_with_data(door, &app, version),
            Command::Rollback { app, version, .. } => self.rollback(door, &app, version),
            Command::Run {
                app,
                command,
                detached,
                tty,
            } => self.one_off(door, &app, command, detached, tty),
            Command::SignalOneOff { app, dyno, signal } => {
                self.signal_one_off(&app, &dyno, signal).map(Reply::Done)
            }
            Command::Events { app, n } => self.events(app.as_deref(), n).map(Reply::Events),
            Command::Ping => Ok(Reply::Done(wire::Done {
                message: "pong".into(),
            })),
            Command::SetGate { app, name, gate } => {
                self.set_gate(door, &app, &name, gate).map(Reply::Done)
            }
            Command::UnsetGate { app, name } => self.unset_gate(door, &app, &name).map(Reply::Done),
            Command::TakeHold { app, name, req } => {
                self.take_hold(door, &app, &name, req).map(Reply::Hold)
            }
            Command::ReleaseHold { app, name } => {
                self.release_hold(door, &app, &name).map(Reply::Done)
            }
            Command::SetHealth { app, report } => self.set_health(&app, report).map(Reply::Health),
            Command::Addons { app } => self.addons(&app).map(Reply::Addons),
            Command::AllAddons => self.all_addons().map(Reply::Addons),
            Command::AddonCreate { app, req } => self.addon_create(door, &app, req),
            Command::AddonAttach { app, name, req } => self.addon_attach(door, &app, &name, req),
            Command::AddonDetach { app, name } => self.addon_detach(door, &app, &name),
            Command::AddonDestroy { app, name, confirm } => {
                self.addon_destroy(door, &app, &name, &confirm)
            }
            Command::AddonBackup { app, name } => self
                .addon_backup(&app, &name)
                .map(|j| Reply::BackupJob(Box::new(j))),
            Command::Drains { app } => self.list_drains(&app).map(Reply::Drains),
            Command::AddDrain { app, url } => self.add_drain(door, &app, &url).map(Reply::Drain),
            Command::RemoveDrain { app, which } => {
                self.remove_drain(door, &app, &which).map(Reply::Done)
            }
            Command::Shutdown | Command::Gates { .. } => Err(EngineError::BadRequest(
                "shutdown and gates are handled by the loop".into(),
            )),
        }
    }
}

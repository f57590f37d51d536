//! `roboku`: the command line for robokud, spoken over its unix socket.
//!
//! This file owns the command tree (Heroku's spelling: `ps:scale`, `config:set`), the choice of
//! socket and the mapping of errors to exit codes: 0 success, 1 the agent said no (or a local
//! failure), 2 usage, 3 the agent is unreachable. Each command lives in `commands/<group>.rs`.

mod client;
mod commands;
mod output;
mod parse;

use clap::{Parser, Subcommand};
use commands::{
    addons, apps, config, deploy, disk, drains, events, gates, git, logs, ps, releases, run,
    status, AppArg, Ctx,
};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "roboku",
    version,
    about = "Heroku for one robot: talks to the local robokud"
)]
struct Cli {
    /// Print the agent's JSON answer instead of a table
    #[arg(long, global = true)]
    json: bool,
    /// robokud's socket [default: $ROBOKU_DATA_DIR/robokud.sock, /var/lib/roboku/robokud.sock
    /// if it exists, else ./.roboku/robokud.sock]
    #[arg(long, global = true, env = "ROBOKU_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List apps
    Apps,
    /// Create an app
    #[command(name = "apps:create")]
    AppsCreate(apps::CreateArgs),
    /// Destroy an app and everything it holds
    #[command(name = "apps:destroy")]
    AppsDestroy(apps::DestroyArgs),
    /// Show an app
    #[command(name = "apps:info")]
    AppsInfo(AppArg),
    /// Rename an app: `apps:rename OLD NEW` or `apps:rename NEW -a OLD`
    #[command(name = "apps:rename")]
    AppsRename(apps::RenameArgs),
    /// Change an app's dyno user or stop grace period
    #[command(name = "apps:update")]
    AppsUpdate(apps::UpdateArgs),
    /// Build and release a directory or .tar.gz on this machine
    Deploy(deploy::DeployArgs),
    /// List an app's dynos
    Ps(AppArg),
    /// Set how many dynos of each process type run
    #[command(name = "ps:scale")]
    PsScale(ps::ScaleArgs),
    /// Set resource limits of a process type
    #[command(name = "ps:resize")]
    PsResize(ps::ResizeArgs),
    /// Restart dynos
    #[command(name = "ps:restart")]
    PsRestart(ps::TargetArgs),
    /// Stop dynos (the formation restarts them on the next release or scale)
    #[command(name = "ps:stop", visible_alias = "ps:kill")]
    PsStop(ps::StopArgs),
    /// Wait until every dyno runs the current release (after a deploy, a rollback)
    #[command(name = "ps:wait")]
    PsWait(ps::wait::WaitArgs),
    /// List an app's add-ons (owned or attached), with their state
    Addons(AppArg),
    /// Create an add-on (sqlite, mqtt, redis) and attach it to the app (makes a new release)
    #[command(name = "addons:create")]
    AddonsCreate(addons::CreateArgs),
    /// Attach an existing add-on to another app (makes a new release)
    #[command(name = "addons:attach")]
    AddonsAttach(addons::AttachArgs),
    /// Detach an add-on from an app that does not own it (makes a new release)
    #[command(name = "addons:detach")]
    AddonsDetach(addons::DetachArgs),
    /// Destroy an add-on and its data (makes a new release)
    #[command(name = "addons:destroy")]
    AddonsDestroy(addons::DestroyArgs),
    /// Back an add-on's data up to a file on the robot (root's, 0600)
    #[command(name = "addons:backup")]
    AddonsBackup(addons::BackupArgs),
    /// Show config vars
    Config(config::ShowArgs),
    /// Print one config var's value
    #[command(name = "config:get")]
    ConfigGet(config::GetArgs),
    /// Set config vars (makes a new release)
    #[command(name = "config:set")]
    ConfigSet(config::SetArgs),
    /// Remove config vars (makes a new release)
    #[command(name = "config:unset")]
    ConfigUnset(config::UnsetArgs),
    /// List releases, newest first
    Releases(releases::ListArgs),
    /// Show one release
    #[command(name = "releases:info")]
    ReleasesInfo(releases::InfoArgs),
    /// Roll back to an earlier release (makes a new release)
    Rollback(releases::RollbackArgs),
    /// Show or tail logs
    Logs(logs::LogsArgs),
    /// Run a one-off dyno attached to this terminal
    Run(run::RunArgs),
    /// Run a one-off dyno in the background (its output goes to the logs)
    #[command(name = "run:detached")]
    RunDetached(run::RunArgs),
    /// Show the agent's health
    Status,
    /// Check what a field engineer checks first: agent, cgroups, dyno user, data dir, disk, clock
    Doctor,
    /// What uses the data dir, the disk reserve, and what slug GC would free
    Disk(disk::DiskArgs),
    /// Bytes per channel (MQTT, downloads, drains) today and this month, budgets, what is paused
    Usage,
    /// Print the dashboard's URL, with the token that unlocks rollback, logs and config
    #[command(name = "dashboard:url")]
    DashboardUrl,
    /// Print the dashboard's URL (with its token) and open it in a browser where there is one
    Open,
    /// Show an app's apply gates, holds and the changes waiting for them
    Gates(AppArg),
    /// Add or replace a gate: deploys, config changes and fleet commands wait until it passes
    #[command(name = "gates:set")]
    GatesSet(gates::SetArgs),
    /// Remove a gate
    #[command(name = "gates:unset")]
    GatesUnset(gates::NameArgs),
    /// Take (or renew) a hold: changes wait until it is released or expires
    #[command(name = "gates:hold")]
    GatesHold(gates::HoldArgs),
    /// Release a hold
    #[command(name = "gates:release")]
    GatesRelease(gates::NameArgs),
    /// Report this dyno's health (run inside a dyno): okay, waiting, blocked or error
    #[command(name = "health:set")]
    HealthSet(gates::HealthArgs),
    /// List an app's log drains with what each has sent, dropped and still holds
    Drains(AppArg),
    /// Send an app's logs to a syslog receiver or an HTTPS endpoint too
    #[command(name = "drains:add")]
    DrainsAdd(drains::AddArgs),
    /// Stop sending an app's logs to a drain (by id or URL)
    #[command(name = "drains:remove")]
    DrainsRemove(drains::RemoveArgs),
    /// Show the audit trail, newest last
    Events(events::EventsArgs),
    /// Set the buildpacks an app is built with, in order
    #[command(name = "buildpacks:set")]
    BuildpacksSet(apps::BuildpacksSetArgs),
    /// Go back to detecting among the built-in buildpacks
    #[command(name = "buildpacks:clear")]
    BuildpacksClear(AppArg),
    /// Turn an app's per-release data snapshots on or off (or show the setting)
    #[command(name = "data:snapshots")]
    DataSnapshots(commands::data::SnapshotsArgs),
    /// Build a slug file once, to deploy to many robots with `deploy --slug`
    #[command(name = "slug:build")]
    SlugBuild(commands::slug::SlugBuildArgs),
    /// Set up push-to-deploy: a git repository on this robot for the app
    #[command(name = "git:init")]
    GitInit(AppArg),
    /// The repository's pre-receive hook (run by git, not by people)
    #[command(name = "git-hook", hide = true)]
    GitHook(git::HookArgs),
    /// ssh forced command for `git push ssh://root@robot/APP`
    #[command(name = "git-shell", hide = true)]
    GitShell,
    /// Drive a fleet of robots over MQTT (signed commands, acks, desired state)
    #[command(subcommand)]
    Fleet(commands::fleet::FleetCommand),
    /// Signed offline bundles: create one, apply it on a robot, inspect it
    #[command(subcommand)]
    Bundle(commands::bundle::BundleCommand),
}

fn main() {
    let cli = Cli::parse();
    let json = cli.json;
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt
            .block_on(dispatch(cli))
            .unwrap_or_else(|e| report(&e, json)),
        Err(e) => report(
            &anyhow::anyhow!("cannot start the async runtime: {e}"),
            json,
        ),
    };
    std::process::exit(code);
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    if let Command::SlugBuild(a) = cli.command {
        return commands::slug::build(cli.json, a);
    }
    let socket = cli.socket.unwrap_or_else(|| {
        let data_dir = std::env::var_os("ROBOKU_DATA_DIR").map(PathBuf::from);
        default_socket(data_dir, Path::new(SYSTEM_SOCKET).exists())
    });
    let door = if matches!(cli.command, Command::GitHook(_)) {
        "git"
    } else {
        "cli"
    };
    let ctx = Ctx {
        client: client::Client::new(socket.clone()).with_door(door),
        json: cli.json,
    };
    let ctx = &ctx;
    match cli.command {
        Command::Apps => apps::list(ctx).await?,
        Command::AppsCreate(a) => apps::create(ctx, a).await?,
        Command::AppsDestroy(a) => apps::destroy(ctx, a).await?,
        Command::AppsInfo(a) => apps::info(ctx, a).await?,
        Command::AppsUpdate(a) => apps::update(ctx, a).await?,
        Command::AppsRename(a) => apps::rename(ctx, a).await?,
        Command::Deploy(a) => deploy::run(ctx, a).await?,
        Command::Ps(a) => ps::list(ctx, a).await?,
        Command::PsScale(a) => ps::scale(ctx, a).await?,
        Command::PsResize(a) => ps::resize(ctx, a).await?,
        Command::PsRestart(a) => ps::restart(ctx, a).await?,
        Command::PsStop(a) => ps::stop(ctx, a).await?,
        Command::PsWait(a) => ps::wait::wait(ctx, a).await?,
        Command::Addons(a) => addons::list(ctx, a).await?,
        Command::AddonsCreate(a) => addons::create(ctx, a).await?,
        Command::AddonsAttach(a) => addons::attach(ctx, a).await?,
        Command::AddonsDetach(a) => addons::detach(ctx, a).await?,
        Command::AddonsDestroy(a) => addons::destroy(ctx, a).await?,
        Command::AddonsBackup(a) => addons::backup(ctx, a).await?,
        Command::Config(a) => config::show(ctx, a).await?,
        Command::ConfigGet(a) => config::get(ctx, a).await?,
        Command::ConfigSet(a) => config::set(ctx, a).await?,
        Command::ConfigUnset(a) => config::unset(ctx, a).await?,
        Command::Releases(a) => releases::list(ctx, a).await?,
        Command::ReleasesInfo(a) => releases::info(ctx, a).await?,
        Command::Rollback(a) => releases::rollback(ctx, a).await?,
        Command::Logs(a) => logs::run(ctx, a).await?,
        Command::Run(a) => return run::run(ctx, a).await,
        Command::RunDetached(a) => run::detached(ctx, a).await?,
        Command::Status => status::run(ctx).await?,
        Command::Doctor => return commands::doctor::run(ctx).await,
        Command::Disk(a) => disk::run(ctx, a).await?,
        Command::Usage => commands::usage::run(ctx).await?,
        Command::DashboardUrl => commands::dashboard::url(ctx).await?,
        Command::Open => commands::dashboard::open(ctx).await?,
        Command::Events(a) => events::run(ctx, a).await?,
        Command::Drains(a) => drains::list(ctx, a).await?,
        Command::DrainsAdd(a) => drains::add(ctx, a).await?,
        Command::DrainsRemove(a) => drains::remove(ctx, a).await?,
        Command::Gates(a) => gates::list(ctx, a).await?,
        Command::GatesSet(a) => gates::set(ctx, a).await?,
        Command::GatesUnset(a) => gates::unset(ctx, a).await?,
        Command::GatesHold(a) => gates::hold(ctx, a).await?,
        Command::GatesRelease(a) => gates::release(ctx, a).await?,
        Command::HealthSet(a) => gates::health(ctx, a).await?,
        Command::BuildpacksSet(a) => apps::set_buildpacks(ctx, &a.app.app, a.buildpacks).await?,
        Command::BuildpacksClear(a) => apps::set_buildpacks(ctx, &a.app, Vec::new()).await?,
        Command::DataSnapshots(a) => commands::data::snapshots(ctx, a).await?,
        Command::SlugBuild(_) => {}
        Command::GitInit(a) => git::init(ctx, a, &socket).await?,
        Command::GitHook(a) => return git::hook(ctx, a).await,
        Command::GitShell => return git::shell(ctx, &socket).await,
        Command::Fleet(f) => return commands::fleet::run(ctx.json, f).await,
        Command::Bundle(b) => return commands::bundle::run(ctx, b).await,
    }
    Ok(0)
}

/// Where a system-wide robokud listens.
const SYSTEM_SOCKET: &str = "/var/lib/roboku/robokud.sock";

/// `$ROBOKU_DATA_DIR/robokud.sock`, else the system socket if there is one, else the developer
/// mode's `./.roboku/robokud.sock` (where `robokud` run from a checkout puts it).
fn default_socket(data_dir: Option<PathBuf>, system_exists: bool) -> PathBuf {
    match data_dir {
        Some(dir) => dir.join("robokud.sock"),
        None if system_exists => PathBuf::from(SYSTEM_SOCKET),
        None => PathBuf::from(".roboku/robokud.sock"),
    }
}

/// Prints the error (one line, or with `--json` the API's error shape on stdout:
/// `{"error": {"code", "message"}}`) and picks the exit code.
fn report(e: &anyhow::Error, json: bool) -> i32 {
    // `roboku logs | head` closing the pipe is how the user said "enough", not a failure.
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return 0;
        }
    }
    let message = roboku_wire::in_words(&format!("{e:#}"));
    let (code, exit) = match e.downcast_ref::<client::ClientError>() {
        Some(client::ClientError::Api { code, .. }) => (code.clone(), 1),
        Some(c @ client::ClientError::Unreachable { .. }) => ("unreachable".into(), c.exit_code()),
        Some(c) => ("protocol".into(), c.exit_code()),
        None if e.downcast_ref::<commands::UsageError>().is_some() => ("usage".into(), 2),
        None => ("failed".into(), 1),
    };
    if json {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        println!("{body}");
    } else {
        eprintln!("roboku: {message}");
    }
    exit
}

#[cfg(test)]
mod tests;

//! `addons`, `addons:create`, `addons:attach`, `addons:detach`, `addons:destroy`,
//! `addons:backup`: backing services on the robot (see docs/addons.md). Each change sets or
//! removes a config var, which makes a new release, as on Heroku. A server that is still
//! starting (postgres's initdb takes seconds) is waited for after create and attach.

use super::{app_path, AppArg, Ctx};
use crate::output::{self, outln};
use roboku_wire::addons::{AddonInfo, AttachAddon, Backup, CreateAddon, DestroyAddon};
use roboku_wire::ConfigChanged;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// sqlite, mqtt, redis or postgres
    pub kind: String,
    #[command(flatten)]
    pub app: AppArg,
    /// Attachment name: the config var is NAME_URL (default DATABASE, MQTT, REDIS)
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// The add-on (e.g. nav-mqtt)
    pub name: String,
    #[command(flatten)]
    pub app: AppArg,
    /// Attachment name: the config var is NAME_URL
    #[arg(long = "as", value_name = "NAME")]
    pub as_name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    pub name: String,
    #[command(flatten)]
    pub app: AppArg,
}

#[derive(clap::Args, Debug)]
pub struct DestroyArgs {
    pub name: String,
    #[command(flatten)]
    pub app: AppArg,
    /// The owning app's name again, to confirm (the add-on's data goes)
    #[arg(long, value_name = "APP", default_value = "")]
    pub confirm: String,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The add-on (e.g. nav-postgres)
    pub name: String,
    #[command(flatten)]
    pub app: AppArg,
    /// Also copy the backup here (written 0600 by the user running roboku)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// How long create and attach wait for a starting server (initdb on a slow SD card).
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

pub async fn list(ctx: &Ctx, args: AppArg) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&app_path(&args.app, "/addons")).await?;
    let Some(list) = ctx.typed::<Vec<AddonInfo>>(v)? else {
        return Ok(());
    };
    if list.is_empty() {
        return Ok(outln!(
            "{} has no add-ons (roboku addons:create sqlite -a {})",
            args.app,
            args.app
        )?);
    }
    let mut rows = vec![["NAME", "KIND", "AS", "OWNER", "ATTACHED", "STATE"]
        .map(String::from)
        .to_vec()];
    for a in &list {
        let mut state = a.state.clone();
        if a.restarts > 0 {
            state.push_str(&format!(" ({} restarts)", a.restarts));
        }
        rows.push(vec![
            a.name.clone(),
            a.kind.clone(),
            a.var.clone(),
            a.owner.clone(),
            a.attached.join(","),
            state,
        ]);
    }
    Ok(output::print(&output::table(&rows))?)
}

pub async fn create(ctx: &Ctx, args: CreateArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let body = CreateAddon {
        kind: args.kind.clone(),
        as_name: args.as_name,
    };
    let v: Value = ctx.client.post(&app_path(app, "/addons"), &body).await?;
    changed(ctx, v, &format!("Creating {} on {app}", args.kind))?;
    wait_ready(ctx, app).await
}

pub async fn attach(ctx: &Ctx, args: AttachArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let body = AttachAddon {
        as_name: args.as_name,
    };
    let path = app_path(app, &format!("/addons/{}/attach", args.name));
    let v: Value = ctx.client.post(&path, &body).await?;
    changed(ctx, v, &format!("Attaching {} to {app}", args.name))?;
    wait_ready(ctx, app).await
}

pub async fn backup(ctx: &Ctx, args: BackupArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let path = app_path(app, &format!("/addons/{}/backup", args.name));
    if let Some(out) = &args.output {
        return backup_to(ctx, &format!("{path}?download=1"), &args.name, out).await;
    }
    let v: Value = ctx.client.post(&path, &serde_json::json!({})).await?;
    let Some(b) = ctx.typed::<Backup>(v)? else {
        return Ok(());
    };
    Ok(outln!(
        "Backed up {} to {} ({} bytes, root's, 0600)",
        b.addon,
        b.path,
        b.bytes
    )?)
}

/// The backup's bytes into `out` (through `.FILE.part`, renamed when whole).
async fn backup_to(ctx: &Ctx, path: &str, name: &str, out: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let file_name = out.file_name().unwrap_or_default().to_string_lossy();
    let part = out.with_file_name(format!(".{file_name}.part"));
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&part)
        .await
        .with_context(|| format!("cannot create {}", part.display()))?;
    let written = ctx.client.post_to_file(path, &mut f).await;
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            drop(f);
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
    };
    f.sync_all()
        .await
        .with_context(|| format!("cannot sync {}", part.display()))?;
    drop(f);
    std::fs::rename(&part, out).with_context(|| format!("cannot rename to {}", out.display()))?;
    Ok(outln!("Backed up {name} to {} ({n} bytes)", out.display())?)
}

/// Waits while one of `app`'s add-ons is `starting`, saying what it waits for.
async fn wait_ready(ctx: &Ctx, app: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + READY_WAIT;
    let mut said = None;
    loop {
        let list: Vec<AddonInfo> = ctx.client.get(&app_path(app, "/addons")).await?;
        let Some(a) = list.iter().find(|a| a.state == "starting") else {
            return Ok(());
        };
        let what = format!(
            "Waiting for {} ({})...",
            a.name,
            a.detail.as_deref().unwrap_or("starting")
        );
        if said.as_ref() != Some(&what) && !ctx.json {
            eprintln!("{what}");
            said = Some(what);
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{} is still starting after {}s: see `roboku addons -a {app}` and its server.log",
                a.name,
                READY_WAIT.as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

pub async fn detach(ctx: &Ctx, args: DetachArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let path = app_path(app, &format!("/addons/{}/detach", args.name));
    let before: Vec<AddonInfo> = ctx.client.get(&app_path(app, "/addons")).await?;
    let owner = before
        .into_iter()
        .find(|a| a.name == args.name)
        .map(|a| a.owner);
    let v: Value = ctx.client.post(&path, &serde_json::json!({})).await?;
    changed(ctx, v, &format!("Detaching {} from {app}", args.name))?;
    // The owner's list shows the add-on "starting" until the detached app's role is gone.
    match owner {
        Some(owner) => wait_ready(ctx, &owner).await,
        None => Ok(()),
    }
}

pub async fn destroy(ctx: &Ctx, args: DestroyArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let body = DestroyAddon {
        confirm: args.confirm,
    };
    let path = app_path(app, &format!("/addons/{}/destroy", args.name));
    let v: Value = ctx.client.post(&path, &body).await?;
    changed(ctx, v, &format!("Destroying {} on {app}", args.name))
}

/// `Creating sqlite on nav... done, v4 (DATABASE_URL)`.
fn changed(ctx: &Ctx, v: Value, doing: &str) -> anyhow::Result<()> {
    if v.get("message").is_some() {
        let Some(done) = ctx.typed::<roboku_wire::Done>(v)? else {
            return Ok(());
        };
        return Ok(outln!("{doing}... done: {}", done.message)?);
    }
    let Some(c) = ctx.typed::<ConfigChanged>(v)? else {
        return Ok(());
    };
    match c.release {
        Some(r) => outln!("{doing}... done, v{} ({})", r.version, r.description)?,
        None => outln!("{doing}... done (no release yet: the next deploy gets the config var)")?,
    }
    Ok(())
}

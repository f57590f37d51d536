//! `deploy PATH`: ask the agent to build and release a directory (or `.tar.gz`) on this machine,
//! showing the steps as they happen (see [`steps`]).

pub mod steps;

use super::{app_path, AppArg, Ctx};
use crate::output::outln;
use roboku_wire::{DeployRequest, ReleaseInfo};
use serde_json::Value;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Directory (with a Procfile), .tar.gz or .tar.zst to deploy
    #[arg(required_unless_present = "slug")]
    pub path: Option<PathBuf>,
    /// A slug file from `roboku slug:build`: deployed without building on this robot
    #[arg(long, conflicts_with = "path")]
    pub slug: Option<PathBuf>,
    /// Description recorded on the release (default: "Deploy <path>")
    #[arg(short, long)]
    pub message: Option<String>,
}

pub async fn run(ctx: &Ctx, mut args: DeployArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let from_slug = args.slug.is_some();
    let Some(path) = args.path.take().or(args.slug.take()) else {
        anyhow::bail!("give a directory or archive to deploy, or --slug FILE");
    };
    if !path.exists() {
        anyhow::bail!("{}: no such file or directory", path.display());
    }
    if from_slug && path.is_dir() {
        anyhow::bail!(super::UsageError(format!(
            "--slug takes a slug file made by `roboku slug:build`; {} is a directory \
             (deploy it without --slug to build it here)",
            path.display()
        )));
    }
    // The agent resolves paths against its own cwd, which is not ours.
    let source = if path.is_absolute() {
        path.clone()
    } else {
        std::env::current_dir()
            .map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?
            .join(&path)
    };
    // `./app` reads better as `/cwd/app`; `..` is kept, since resolving it could cross a symlink.
    let source: PathBuf = source
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect();
    let source = source.to_string_lossy().into_owned();
    let body = DeployRequest {
        source: source.clone(),
        description: args.message,
    };
    let label = format!("Deploying {source} to {app}...");
    let show = !ctx.json;
    let follower = match show {
        true => steps::follow(ctx, app).await,
        false => None,
    };
    let request = async {
        if path.is_file() {
            // Archives (.tar.gz, .tar.zst, slugs) are streamed over the socket.
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let query = [("name", name), ("description", body.description.clone())];
            let url = crate::client::with_query(&app_path(app, "/deploy/archive"), &query);
            let upload = steps::Upload::start(&path, show);
            let v = ctx
                .client
                .upload::<Value>(&url, &path, upload.reporter())
                .await;
            upload.finish();
            v
        } else {
            ctx.client
                .post::<_, Value>(&app_path(app, "/deploy"), &body)
                .await
        }
    };
    if show {
        eprintln!("-----> {label}");
    }
    let v = request.await;
    if let Some(f) = follower {
        f.abort();
    }
    let v = v?;
    let Some(release) = ctx.typed::<ReleaseInfo>(v)? else {
        return Ok(());
    };
    if release.status == "failed" {
        anyhow::bail!(
            "deploy of {source} to {app} failed (v{}); the previous release keeps running; \
             see `roboku logs -a {app} --source roboku`",
            release.version
        );
    }
    outln!("{label} done, v{}", release.version)?;
    Ok(())
}

//! `deploy PATH`: ask the agent to build and release a directory (or `.tar.gz`) on this machine.

use super::{app_path, AppArg, Ctx};
use crate::output::outln;
use roboku_wire::{DeployRequest, ReleaseInfo};
use serde_json::Value;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    let Some(path) = args.path.take().or(args.slug.take()) else {
        anyhow::bail!("give a directory or archive to deploy, or --slug FILE");
    };
    if !path.exists() {
        anyhow::bail!("{}: no such file or directory", path.display());
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
    let request = async {
        if path.is_file() {
            // Archives (.tar.gz, .tar.zst, slugs) are streamed over the socket.
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let query = [("name", name), ("description", body.description.clone())];
            let url = crate::client::with_query(&app_path(app, "/deploy/archive"), &query);
            ctx.client.upload::<Value>(&url, &path).await
        } else {
            ctx.client
                .post::<_, Value>(&app_path(app, "/deploy"), &body)
                .await
        }
    };
    let v = if !ctx.json && std::io::stderr().is_terminal() {
        with_progress(&label, request).await?
    } else {
        request.await?
    };
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

/// Shows `label` with a spinner and the seconds waited on stderr until `fut` completes, then
/// clears the line.
async fn with_progress<T>(label: &str, fut: impl Future<Output = T>) -> T {
    const SPIN: [char; 4] = ['|', '/', '-', '\\'];
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut n = 0usize;
    tokio::pin!(fut);
    let out = loop {
        tokio::select! {
            out = &mut fut => break out,
            _ = tick.tick() => {
                let secs = started.elapsed().as_secs();
                // Progress is decoration: a failed write to stderr must not fail the deploy.
                let _ = write!(std::io::stderr(), "\r{label} {} {secs}s", SPIN[n % SPIN.len()]);
                n += 1;
            }
        }
    };
    let _ = write!(std::io::stderr(), "\r\x1b[K");
    out
}

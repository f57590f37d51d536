//! `deploy PATH`: ask the agent to build and release a directory (or `.tar.gz`) on this machine,
//! showing the steps as they happen (see [`steps`]).

pub mod steps;

use super::{app_path, AppArg, Ctx};
use crate::output::outln;
use roboku_wire::{DeployPlan, DeployRequest, ReleaseInfo};
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
    /// Show what the deploy would change (code, process types, which dynos restart and how,
    /// disk, probation) and apply nothing
    #[arg(long, conflicts_with = "slug")]
    pub plan: bool,
    /// Give up if the app's apply gates are still closed after this long (default: wait)
    #[arg(long, value_parser = crate::parse::duration_ms, value_name = "DURATION")]
    pub gate_timeout: Option<u64>,
    /// Build with the buildpacks release vN was built with (git buildpacks at the commits vN
    /// pinned) instead of the app's current ones
    #[arg(long, value_name = "vN", value_parser = crate::parse::version, conflicts_with = "slug")]
    pub buildpacks_of: Option<u32>,
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
        buildpacks_of: args.buildpacks_of,
    };
    if args.plan {
        if path.is_file() {
            anyhow::bail!(super::UsageError(format!(
                "--plan takes a directory; {} is a file",
                path.display()
            )));
        }
        let v: Value = ctx
            .client
            .post(&app_path(app, "/deploy/plan"), &body)
            .await?;
        if let Some(plan) = ctx.typed::<DeployPlan>(v)? {
            outln!("{}", render_plan(&plan, &source))?;
        }
        return Ok(());
    }
    let label = format!("Deploying {source} to {app}...");
    let gate_timeout = args.gate_timeout.map(|ms| ms.div_ceil(1000).to_string());
    let show = !ctx.json;
    let follower = match show {
        true => steps::follow(ctx, app).await,
        false => None,
    };
    let request = async {
        if path.is_file() {
            // Archives (.tar.gz, .tar.zst, slugs) are streamed over the socket.
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let query = [
                ("name", name),
                ("description", body.description.clone()),
                ("gate_timeout", gate_timeout.clone()),
                ("buildpacks_of", body.buildpacks_of.map(|v| v.to_string())),
            ];
            let url = crate::client::with_query(&app_path(app, "/deploy/archive"), &query);
            let upload = steps::Upload::start(&path, show);
            let v = ctx
                .client
                .upload::<Value>(&url, &path, upload.reporter())
                .await;
            upload.finish();
            v
        } else {
            let url = crate::client::with_query(
                &app_path(app, "/deploy"),
                &[("gate_timeout", gate_timeout.clone())],
            );
            ctx.client.post::<_, Value>(&url, &body).await
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

/// The plan as a person reads it: one line per change, then one per dyno.
pub(crate) fn render_plan(p: &DeployPlan, source: &str) -> String {
    let from = p.current.map_or("nothing".to_string(), |v| format!("v{v}"));
    let mut out = format!(
        "=== Plan: deploy {source} to {} (v{} after {from}); nothing was applied\n",
        p.app, p.next_version
    );
    let short = &p.slug[..12.min(p.slug.len())];
    out.push_str(&match p.code_changed {
        true => format!("Code:       changed (slug {short})\n"),
        false => format!("Code:       unchanged (slug {short})\n"),
    });
    if let Some(f) = &p.files {
        out.push_str(&format!(
            "Files:      {} added, {} changed, {} removed\n",
            f.added, f.changed, f.removed
        ));
        for line in &f.sample {
            out.push_str(&format!("            {line}\n"));
        }
        let shown = f.sample.len() as u64;
        let all = f.added + f.changed + f.removed;
        if all > shown {
            out.push_str(&format!("            ... and {} more\n", all - shown));
        }
    }
    out.push_str("Config:     unchanged (a deploy keeps the config vars)\n");
    for (label, list) in [
        ("Added:", &p.types_added),
        ("Removed:", &p.types_removed),
        ("Changed:", &p.types_changed),
    ] {
        if !list.is_empty() {
            out.push_str(&format!("{label:<12}{}\n", list.join(", ")));
        }
    }
    if let Some(cmd) = &p.release_command {
        out.push_str(&format!(
            "Release:    runs `{cmd}` before any dyno switches\n"
        ));
    }
    out.push_str(&format!(
        "Disk:       {}\n",
        roboku_wire::human_bytes(p.disk_bytes)
    ));
    out.push_str(&match p.probation_secs {
        0 => "Probation:  none\n".to_string(),
        s => format!("Probation:  {s}s (crashes past the budget roll back by themselves)\n"),
    });
    if p.dynos.is_empty() {
        out.push_str("Dynos:      none change\n");
    }
    for d in &p.dynos {
        let how = d
            .strategy
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let after = match d.after.as_slice() {
            [] => String::new(),
            types => format!(", after {}", types.join(", ")),
        };
        out.push_str(&format!(
            "Dyno:       {} {}{how}{after}\n",
            d.name, d.action
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_as_a_list_of_changes() {
        let plan = DeployPlan {
            app: "nav".into(),
            current: Some(3),
            next_version: 4,
            slug: "ab12cd34ef56aa".into(),
            code_changed: true,
            types_added: vec!["worker".into()],
            types_removed: Vec::new(),
            types_changed: vec!["web".into()],
            release_command: None,
            dynos: vec![
                roboku_wire::PlannedDyno {
                    name: "web.1".into(),
                    action: "restart".into(),
                    strategy: Some("preboot".into()),
                    after: Vec::new(),
                },
                roboku_wire::PlannedDyno {
                    name: "worker.1".into(),
                    action: "start".into(),
                    strategy: None,
                    after: vec!["web".into()],
                },
            ],
            disk_bytes: 2048,
            probation_secs: 600,
            current_slug: None,
            files: Some(roboku_wire::FilesDiff {
                added: 1,
                removed: 0,
                changed: 2,
                sample: vec!["+ nav/new.py".into(), "~ Procfile".into()],
            }),
        };
        let text = render_plan(&plan, "/srv/nav");
        assert!(
            text.starts_with(
                "=== Plan: deploy /srv/nav to nav (v4 after v3); nothing was applied\n"
            ),
            "{text}"
        );
        for line in [
            "Code:       changed (slug ab12cd34ef56)\n",
            "Files:      1 added, 2 changed, 0 removed\n            + nav/new.py\n            ~ Procfile\n            ... and 1 more\n",
            "Added:      worker\n",
            "Changed:    web\n",
            "Dyno:       web.1 restart (preboot)\n",
            "Dyno:       worker.1 start, after web\n",
            "Probation:  600s",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }
}

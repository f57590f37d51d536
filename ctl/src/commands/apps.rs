//! `apps`, `apps:create`, `apps:destroy`, `apps:info`, `apps:update`.

use super::{app_path, AppArg, Ctx, UsageError};
use crate::client::with_query;
use crate::output::{self, outln};
use crate::parse;
use roboku_wire::{AppInfo, CreateApp, Done, UpdateApp, API_PREFIX};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Name of the new app: lowercase letters, digits and '-'
    #[arg(value_parser = parse::app_name)]
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct DestroyArgs {
    /// The app to destroy, with its releases, config and logs
    #[arg(value_parser = parse::app_name)]
    pub name: String,
    /// The app's name again, to confirm
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true).args(["user", "grace"])))]
pub struct UpdateArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// The user the app's dynos run as (`root` must be named explicitly; `dynamic`: the app's
    /// own uid, the default)
    #[arg(long)]
    pub user: Option<String>,
    /// Seconds between SIGTERM and killing a stopping dyno
    #[arg(long, value_name = "SECS")]
    pub grace: Option<u64>,
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&format!("{API_PREFIX}/apps")).await?;
    let Some(apps) = ctx.typed::<Vec<AppInfo>>(v)? else {
        return Ok(());
    };
    if apps.is_empty() {
        outln!("No apps yet. Create one with `roboku apps:create NAME`.")?;
        return Ok(());
    }
    let now = output::now_ms();
    let mut rows = vec![["NAME", "RELEASE", "DYNOS", "USER", "CREATED"]
        .map(String::from)
        .to_vec()];
    for a in &apps {
        rows.push(vec![
            a.name.clone(),
            a.release.map_or("-".into(), |r| format!("v{r}")),
            format!("{}/{}", a.dynos_running, a.dynos_desired),
            a.user.clone(),
            format!("{} ago", output::age(now, a.created_at)),
        ]);
    }
    Ok(output::print(&output::table(&rows))?)
}

pub async fn create(ctx: &Ctx, args: CreateArgs) -> anyhow::Result<()> {
    let body = CreateApp { name: args.name };
    let v: Value = ctx
        .client
        .post(&format!("{API_PREFIX}/apps"), &body)
        .await?;
    let Some(app) = ctx.typed::<AppInfo>(v)? else {
        return Ok(());
    };
    outln!("Creating {}... done", app.name)?;
    Ok(())
}

pub async fn destroy(ctx: &Ctx, args: DestroyArgs) -> anyhow::Result<()> {
    if args.confirm.as_deref() != Some(args.name.as_str()) {
        let given = match &args.confirm {
            Some(c) => format!(" (--confirm {c:?} does not match)"),
            None => String::new(),
        };
        let name = &args.name;
        return Err(UsageError(format!(
            "refusing to destroy {name}{given}: this deletes its releases, config and logs; \
             run `roboku apps:destroy {name} --confirm {name}`"
        ))
        .into());
    }
    let path = with_query(
        &app_path(&args.name, ""),
        &[("confirm", Some(args.name.clone()))],
    );
    let v: Value = ctx.client.delete(&path).await?;
    let Some(done) = ctx.typed::<Done>(v)? else {
        return Ok(());
    };
    outln!("Destroying {}... done ({})", args.name, done.message)?;
    Ok(())
}

pub async fn info(ctx: &Ctx, args: AppArg) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&app_path(&args.app, "")).await?;
    let Some(app) = ctx.typed::<AppInfo>(v)? else {
        return Ok(());
    };
    Ok(output::print(&render_info(&app, output::now_ms()))?)
}

#[derive(clap::Args, Debug)]
pub struct BuildpacksSetArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Built-in names (python, nodejs, procfile) or absolute paths to Heroku classic buildpacks, in order
    #[arg(required = true)]
    pub buildpacks: Vec<String>,
}

/// `buildpacks:set` (and `buildpacks:clear` with an empty list).
pub async fn set_buildpacks(ctx: &Ctx, app: &str, packs: Vec<String>) -> anyhow::Result<()> {
    let packs = packs
        .into_iter()
        .map(|p| {
            let path = std::path::Path::new(&p);
            // A relative path that exists here is meant as a path, made absolute for the agent.
            if !p.starts_with('/') && (p.contains('/') || p.starts_with('.')) && path.exists() {
                std::fs::canonicalize(path)
                    .map(|a| a.to_string_lossy().into_owned())
                    .unwrap_or(p)
            } else {
                p
            }
        })
        .collect();
    let body = UpdateApp {
        user: None,
        grace_secs: None,
        buildpacks: Some(packs),
    };
    let v: Value = ctx.client.patch(&app_path(app, ""), &body).await?;
    let Some(info) = ctx.typed::<AppInfo>(v)? else {
        return Ok(());
    };
    if info.buildpacks.is_empty() {
        outln!("Buildpacks of {app}: detected among the built-ins (nodejs, python, procfile)")?;
    } else {
        outln!(
            "Buildpacks of {app}: {} (used from the next deploy)",
            info.buildpacks.join(", ")
        )?;
    }
    Ok(())
}

pub async fn update(ctx: &Ctx, args: UpdateArgs) -> anyhow::Result<()> {
    let body = UpdateApp {
        user: args.user,
        grace_secs: args.grace,
        buildpacks: None,
    };
    let v: Value = ctx
        .client
        .patch(&app_path(&args.app.app, ""), &body)
        .await?;
    let Some(app) = ctx.typed::<AppInfo>(v)? else {
        return Ok(());
    };
    outln!("Updating {}... done", app.name)?;
    Ok(output::print(&render_info(&app, output::now_ms()))?)
}

fn render_info(app: &AppInfo, now: u64) -> String {
    let rows = vec![
        vec![
            "Release:".into(),
            app.release.map_or("none yet".into(), |r| format!("v{r}")),
        ],
        vec!["User:".into(), app.user.clone()],
        vec!["Grace:".into(), format!("{}s", app.grace_secs)],
        vec![
            "Buildpacks:".into(),
            if app.buildpacks.is_empty() {
                "detected (nodejs, python, procfile)".into()
            } else {
                app.buildpacks.join(", ")
            },
        ],
        vec![
            "Dynos:".into(),
            format!("{}/{} running", app.dynos_running, app.dynos_desired),
        ],
        vec![
            "Created:".into(),
            format!(
                "{} ({} ago)",
                output::iso8601(app.created_at),
                output::age(now, app.created_at)
            ),
        ],
    ];
    format!("=== {}\n{}", app.name, output::table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_block() {
        let app = AppInfo {
            name: "demo".into(),
            created_at: 0,
            release: Some(3),
            user: "dyno".into(),
            uid: None,
            gid: None,
            grace_secs: 30,
            buildpacks: Vec::new(),
            dynos_running: 1,
            dynos_desired: 2,
        };
        let text = render_info(&app, 4 * 86_400_000);
        assert!(text.starts_with("=== demo\nRelease:     v3\n"), "{text}");
        assert!(text.contains("Buildpacks:  detected"), "{text}");
        assert!(text.contains("Dynos:       1/2 running\n"), "{text}");
        assert!(
            text.contains("Created:     1970-01-01T00:00:00.000Z (4d ago)\n"),
            "{text}"
        );
    }
}

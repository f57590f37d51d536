//! `apps`, `apps:create`, `apps:destroy`, `apps:info`, `apps:update`, `apps:rename`.

use super::{app_path, AppArg, Ctx, UsageError};
use crate::client::with_query;
use crate::output::{self, outln};
use crate::parse;
use roboku_wire::{AppInfo, CreateApp, Done, RenameApp, Renamed, UpdateApp, API_PREFIX};
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

/// `apps:rename OLD NEW`, or Heroku's `apps:rename NEW --app OLD`.
#[derive(clap::Args, Debug)]
pub struct RenameArgs {
    /// `OLD NEW`, or only `NEW` with `-a OLD` (or `ROBOKU_APP`)
    #[arg(value_parser = parse::app_name, num_args = 1..=2, required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// The app to rename, when only the new name is given
    #[arg(short, long, value_parser = parse::app_name)]
    pub app: Option<String>,
}

impl RenameArgs {
    /// `(old, new)`; `env_app` is `ROBOKU_APP`, used only when neither `OLD` nor `-a` is given.
    fn names(&self, env_app: Option<String>) -> Result<(String, String), UsageError> {
        match (self.names.as_slice(), &self.app) {
            ([old, new], None) => Ok((old.clone(), new.clone())),
            ([_, _], Some(a)) => Err(UsageError(format!(
                "name the app once: `roboku apps:rename OLD NEW` or `roboku apps:rename NEW -a OLD` (got -a {a} and two names)"
            ))),
            ([new], Some(old)) => Ok((old.clone(), new.clone())),
            ([new], None) => match env_app {
                Some(old) => {
                    parse::app_name(&old).map_err(|e| UsageError(format!("ROBOKU_APP: {e}")))?;
                    Ok((old, new.clone()))
                }
                None => Err(UsageError(format!(
                    "which app becomes {new}? `roboku apps:rename OLD {new}` or `roboku apps:rename {new} -a OLD`"
                ))),
            },
            _ => Err(UsageError("apps:rename takes OLD NEW or NEW -a OLD".into())),
        }
    }
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

pub async fn rename(ctx: &Ctx, args: RenameArgs) -> anyhow::Result<()> {
    let (old, new) = args.names(std::env::var("ROBOKU_APP").ok())?;
    let body = RenameApp { name: new.clone() };
    let v: Value = ctx.client.post(&app_path(&old, "/rename"), &body).await?;
    let Some(done) = ctx.typed::<Renamed>(v)? else {
        return Ok(());
    };
    Ok(output::print(&render_renamed(
        &done,
        &super::git::host_name(),
    ))?)
}

fn render_renamed(r: &Renamed, host: &str) -> String {
    let new = &r.app.name;
    let mut out = format!("Renaming {} to {new}... done\n", r.from);
    match r.dynos_restarted {
        0 => {}
        1 => out.push_str("Restarted 1 dyno under the new name.\n"),
        n => out.push_str(&format!("Restarted {n} dynos under the new name.\n")),
    }
    if let Some(repo) = &r.git_repository {
        out.push_str(&format!(
            "Its git repository is now {repo}; the old remote is gone. On your workstation:\n  \
             git remote set-url robot ssh://root@{host}{repo}   \
             (or ssh://root@{host}/{new} with git-shell)\n"
        ));
    }
    for w in &r.warnings {
        out.push_str(&format!("Warning: {w}\n"));
    }
    out
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
    /// Built-in names (python, nodejs, go, rust, colcon, cmake, procfile), absolute paths to
    /// Heroku classic buildpacks, or git URLs (https://github.com/org/pack#branch-tag-or-commit;
    /// also ssh:// and file://), in order
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
        data_snapshots: None,
    };
    let v: Value = ctx.client.patch(&app_path(app, ""), &body).await?;
    let Some(info) = ctx.typed::<AppInfo>(v)? else {
        return Ok(());
    };
    if info.buildpacks.is_empty() {
        outln!("Buildpacks of {app}: detected among the built-ins (nodejs, python, go, rust, colcon, cmake, procfile)")?;
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
        data_snapshots: None,
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
    let mut rows = vec![
        vec![
            "Release:".into(),
            app.release.map_or("none yet".into(), |r| format!("v{r}")),
        ],
        vec!["User:".into(), app.user.clone()],
        vec!["Grace:".into(), format!("{}s", app.grace_secs)],
        vec![
            "Buildpacks:".into(),
            if app.buildpacks.is_empty() {
                "detected (nodejs, python, go, rust, colcon, cmake, procfile)".into()
            } else {
                app.buildpacks.join(", ")
            },
        ],
        vec![
            "Dynos:".into(),
            format!("{}/{} running", app.dynos_running, app.dynos_desired),
        ],
    ];
    match (app.router_port, &app.router_error) {
        (Some(port), _) => rows.push(vec!["Web:".into(), format!("port {port} (router)")]),
        (None, Some(e)) => rows.push(vec!["Web:".into(), format!("no router: {e}")]),
        (None, None) => {}
    }
    if let Some(w) = &app.waiting {
        rows.push(vec!["Gates:".into(), format!("a change is {w}")]);
    }
    if !app.data_snapshots {
        rows.push(vec![
            "Data:".into(),
            "snapshots off (`roboku data:snapshots on`)".into(),
        ]);
    }
    rows.push(vec![
        "Created:".into(),
        format!(
            "{} ({} ago)",
            output::iso8601(app.created_at),
            output::age(now, app.created_at)
        ),
    ]);
    format!("=== {}\n{}", app.name, output::table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rename_args(names: &[&str], app: Option<&str>) -> RenameArgs {
        RenameArgs {
            names: names.iter().map(|n| n.to_string()).collect(),
            app: app.map(str::to_string),
        }
    }

    #[test]
    fn rename_takes_old_new_or_new_with_the_app_flag() {
        let pair = |o: &str, n: &str| (o.to_string(), n.to_string());
        let env = || Some("env-app".to_string());
        assert_eq!(
            rename_args(&["a", "b"], None).names(env()).unwrap(),
            pair("a", "b")
        );
        assert_eq!(
            rename_args(&["b"], Some("a")).names(env()).unwrap(),
            pair("a", "b")
        );
        assert_eq!(
            rename_args(&["b"], None).names(env()).unwrap(),
            pair("env-app", "b")
        );
        let err = rename_args(&["b"], None).names(None).unwrap_err();
        assert!(err.0.contains("which app becomes b?"), "{err}");
        let err = rename_args(&["a", "b"], Some("c")).names(None).unwrap_err();
        assert!(err.0.contains("name the app once"), "{err}");
        let err = rename_args(&["b"], None)
            .names(Some("Bad".into()))
            .unwrap_err();
        assert!(err.0.starts_with("ROBOKU_APP: "), "{err}");
    }

    #[test]
    fn a_rename_says_what_moved_and_how_to_fix_the_remote() {
        let app = AppInfo {
            name: "nav-two".into(),
            created_at: 0,
            release: Some(3),
            user: "61184".into(),
            uid: Some(61184),
            gid: Some(61184),
            grace_secs: 30,
            buildpacks: Vec::new(),
            dynos_running: 1,
            dynos_desired: 1,
            router_port: None,
            router_error: None,
            data_snapshots: true,
            waiting: None,
        };
        let r = Renamed {
            from: "nav".into(),
            app,
            git_repository: Some("/var/lib/roboku/git/nav-two.git".into()),
            dynos_restarted: 2,
            warnings: vec!["the logs were not moved".into()],
        };
        let text = render_renamed(&r, "bot1");
        assert!(
            text.starts_with("Renaming nav to nav-two... done\nRestarted 2 dynos"),
            "{text}"
        );
        assert!(
            text.contains(
                "git remote set-url robot ssh://root@bot1/var/lib/roboku/git/nav-two.git"
            ),
            "{text}"
        );
        assert!(
            text.contains("Warning: the logs were not moved\n"),
            "{text}"
        );
    }

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
            router_port: Some(20001),
            router_error: None,
            data_snapshots: true,
            waiting: None,
        };
        let text = render_info(&app, 4 * 86_400_000);
        assert!(text.starts_with("=== demo\nRelease:     v3\n"), "{text}");
        assert!(text.contains("Buildpacks:  detected"), "{text}");
        assert!(text.contains("Dynos:       1/2 running\n"), "{text}");
        assert!(
            text.contains("Web:         port 20001 (router)\n"),
            "{text}"
        );
        assert!(
            text.contains("Created:     1970-01-01T00:00:00.000Z (4d ago)\n"),
            "{text}"
        );
    }
}

//! `releases`, `releases:info`, `rollback`.

use super::{app_path, AppArg, Ctx};
use crate::output::{self, outln};
use crate::parse;
use roboku_wire::{ReleaseInfo, RollbackRequest};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// How many of the newest releases to show [default: 15; with --json: all]
    #[arg(short, long, value_name = "N")]
    pub num: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Release version: v3 or 3
    #[arg(value_parser = parse::version)]
    pub version: u32,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Release to roll back to (v3 or 3); the one before the current release when left out
    #[arg(value_parser = parse::version)]
    pub version: Option<u32>,
    /// Give up if the app's apply gates are still closed after this long (default: wait)
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    pub gate_timeout: Option<u64>,
    /// Bring that release's data snapshot back too (the app stops while its data is swapped;
    /// the data it has now is kept as a snapshot, so this can be undone)
    #[arg(long)]
    pub with_data: bool,
}

pub async fn list(ctx: &Ctx, a: ListArgs) -> anyhow::Result<()> {
    let args = &a.app;
    let v: Value = ctx.client.get(&app_path(&args.app, "/releases")).await?;
    let mut all: Vec<ReleaseInfo> = serde_json::from_value(v)
        .map_err(|e| anyhow::anyhow!("robokud's release list is not understood ({e})"))?;
    all.sort_by_key(|r| std::cmp::Reverse(r.version));
    let num = a.num.or((!ctx.json).then_some(15)).unwrap_or(usize::MAX);
    all.truncate(num);
    let Some(mut releases) = ctx.typed::<Vec<ReleaseInfo>>(serde_json::to_value(all)?)? else {
        return Ok(());
    };
    if releases.is_empty() {
        outln!(
            "{} has no releases yet. Deploy with `roboku deploy -a {} PATH`.",
            args.app,
            args.app
        )?;
        return Ok(());
    }
    releases.sort_by_key(|r| std::cmp::Reverse(r.version));
    let now = output::now_ms();
    let rows: Vec<_> = releases.iter().map(|r| release_row(r, now)).collect();
    Ok(output::print(&output::table(&rows))?)
}

pub async fn info(ctx: &Ctx, args: InfoArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let releases: Vec<Value> = ctx.client.get(&app_path(app, "/releases")).await?;
    let picked = releases
        .into_iter()
        .find(|r| r.get("version").and_then(Value::as_u64) == Some(u64::from(args.version)));
    let Some(picked) = picked else {
        anyhow::bail!("{app} has no release v{}", args.version);
    };
    let Some(release) = ctx.typed::<ReleaseInfo>(picked)? else {
        return Ok(());
    };
    Ok(output::print(&render_info(
        app,
        &release,
        output::now_ms(),
    ))?)
}

pub async fn rollback(ctx: &Ctx, args: RollbackArgs) -> anyhow::Result<()> {
    let app = &args.app.app;
    let body = RollbackRequest {
        version: args.version,
        with_data: args.with_data,
    };
    let path = super::with_gate_timeout(&app_path(app, "/rollback"), args.gate_timeout);
    let v: Value = ctx.client.post(&path, &body).await?;
    let Some(release) = ctx.typed::<ReleaseInfo>(v)? else {
        return Ok(());
    };
    let mut to = args.version.map_or(String::new(), |v| format!(" to v{v}"));
    if args.with_data {
        to.push_str(" with its data");
    }
    outln!(
        "Rolling back {app}{to}... done, v{} ({})",
        release.version,
        release.description
    )?;
    Ok(())
}

/// `v3  Deploy /srv/app  cli  2m ago  current`.
fn release_row(r: &ReleaseInfo, now: u64) -> Vec<String> {
    let mut marks = Vec::new();
    if r.current {
        marks.push("current");
    }
    if r.status != "succeeded" {
        marks.push(r.status.as_str());
    }
    let probation = r.probation.as_ref().map(|p| format!("probation {p}"));
    marks.extend(probation.as_deref());
    vec![
        format!("v{}", r.version),
        r.description.clone(),
        r.door.clone(),
        format!("{} ago", output::age(now, r.created_at)),
        marks.join(", "),
    ]
}

fn render_info(app: &str, r: &ReleaseInfo, now: u64) -> String {
    let status = if r.current {
        format!("{} (current)", r.status)
    } else {
        r.status.clone()
    };
    let processes: Vec<String> = r
        .process_types
        .iter()
        .map(|(t, cmd)| format!("{t}: {cmd}"))
        .collect();
    let field = |k: &str, v: String| vec![k.to_string(), v];
    let rows = vec![
        field("Description:", r.description.clone()),
        field("Status:", status),
        field(
            "Created:",
            format!(
                "{} ({} ago)",
                output::iso8601(r.created_at),
                output::age(now, r.created_at)
            ),
        ),
        field("Door:", r.door.clone()),
        field("Slug:", r.slug.clone()),
        field("Processes:", processes.join("; ")),
        field("Config:", r.config_keys.join(", ")),
    ];
    let mut rows = rows;
    if let Some(packs) = &r.buildpacks {
        rows.push(field("Buildpacks:", render_buildpacks(packs)));
    }
    format!("=== {app} Release v{}\n{}", r.version, output::table(&rows))
}

/// `https://github.com/org/pack#main at 1a2b3c4d5e6f, python`; `detected` when none was named.
fn render_buildpacks(packs: &[roboku_wire::ReleaseBuildpack]) -> String {
    if packs.is_empty() {
        return "detected among the built-ins".into();
    }
    let shown: Vec<String> = packs
        .iter()
        .map(|p| match &p.commit {
            Some(c) => format!("{} at {}", p.source, &c[..12.min(c.len())]),
            None => p.source.clone(),
        })
        .collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(version: u32, current: bool, status: &str) -> ReleaseInfo {
        ReleaseInfo {
            version,
            created_at: 0,
            description: "Deploy /srv/app".into(),
            slug: "ab12".into(),
            process_types: [("web".to_string(), "./server".to_string())].into(),
            config_keys: vec!["A".into(), "B".into()],
            current,
            status: status.into(),
            door: "cli".into(),
            artifact: None,
            probation: None,
            buildpacks: None,
        }
    }

    #[test]
    fn rows_mark_current_and_failed() {
        let rows = vec![
            release_row(&release(4, false, "failed"), 120_000),
            release_row(&release(3, true, "succeeded"), 120_000),
            release_row(
                &ReleaseInfo {
                    status: "rolled-back".into(),
                    probation: Some("rolled back: worker crashed 3 times".into()),
                    ..release(2, false, "")
                },
                120_000,
            ),
        ];
        assert_eq!(
            output::table(&rows),
            "v4  Deploy /srv/app  cli  2m ago  failed\n\
             v3  Deploy /srv/app  cli  2m ago  current\n\
             v2  Deploy /srv/app  cli  2m ago  rolled-back, probation rolled back: worker crashed 3 times\n"
        );
    }

    #[test]
    fn info_block() {
        let text = render_info("demo", &release(3, true, "succeeded"), 0);
        assert!(text.starts_with("=== demo Release v3\n"), "{text}");
        assert!(
            text.contains("Status:       succeeded (current)\n"),
            "{text}"
        );
        assert!(text.contains("Processes:    web: ./server\n"), "{text}");
        assert!(text.contains("Config:       A, B\n"), "{text}");
        assert!(
            !text.contains("Buildpacks:"),
            "not known: not shown: {text}"
        );
        let pinned = ReleaseInfo {
            buildpacks: Some(vec![
                roboku_wire::ReleaseBuildpack {
                    source: "https://github.com/org/pack#main".into(),
                    commit: Some("0123456789abcdef".repeat(2) + "01234567"),
                },
                roboku_wire::ReleaseBuildpack {
                    source: "python".into(),
                    commit: None,
                },
            ]),
            ..release(3, true, "succeeded")
        };
        let text = render_info("demo", &pinned, 0);
        assert!(
            text.contains(
                "Buildpacks:   https://github.com/org/pack#main at 0123456789ab, python\n"
            ),
            "{text}"
        );
        let detected = ReleaseInfo {
            buildpacks: Some(vec![]),
            ..release(3, true, "succeeded")
        };
        let text = render_info("demo", &detected, 0);
        assert!(
            text.contains("Buildpacks:   detected among the built-ins\n"),
            "{text}"
        );
    }
}

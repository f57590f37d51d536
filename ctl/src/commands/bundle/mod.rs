//! `roboku bundle ...`: signed offline bundles (`docs/offline.md`). `create` runs on a
//! workstation (no robot needed: it signs with the fleet key, like `fleet deploy`); `apply`
//! sends a bundle to the local robokud and prints its progress; `inspect` shows what a bundle
//! holds and whether it verifies (against `--trusted-key`, or asking this robot's robokud).

mod apply;
mod create;
mod inspect;

use super::Ctx;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Make a signed bundle: slug, config and formation for an app, for a device or a group
    Create(create::CreateArgs),
    /// Apply a bundle on this robot (verified by robokud like a fleet command)
    Apply(apply::ApplyArgs),
    /// Show what a bundle holds and whether it verifies
    Inspect(inspect::InspectArgs),
}

pub async fn run(ctx: &Ctx, cmd: BundleCommand) -> anyhow::Result<i32> {
    match cmd {
        BundleCommand::Create(a) => create::run(ctx.json, a),
        BundleCommand::Apply(a) => apply::run(ctx, a).await,
        BundleCommand::Inspect(a) => inspect::run(ctx, a).await,
    }
}

/// One ack as a progress line: `nav: IN_PROGRESS build`, `nav: FAILED <reason>`.
fn progress_line(a: &roboku_wire::fleet::Ack) -> String {
    let d = &a.details;
    let what = d.app.as_deref().unwrap_or("bundle");
    let mut line = format!("{what}: {}", a.status.as_str());
    if let Some(step) = &d.step {
        line.push_str(&format!(" {step}"));
    }
    if let Some(r) = d.release {
        line.push_str(&format!(" (release v{r})"));
    }
    if let Some(reason) = &d.reason {
        line.push_str(&format!(": {reason}"));
    }
    for l in &d.log_tail {
        line.push_str(&format!("\n    {l}"));
    }
    line
}

/// The file's name, for robokud's logs and reason files.
fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle.rkb".into())
}

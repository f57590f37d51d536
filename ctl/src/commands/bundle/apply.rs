//! `bundle apply FILE`: uploads the bundle to robokud (`POST /v1/bundles`), which verifies it
//! like a fleet command and applies it through its fleet workers; every step is printed as it
//! comes, and the exit code says whether every app of the bundle got there (0) or not (1).

use super::super::Ctx;
use super::{file_name, progress_line};
use crate::client::with_query;
use crate::output::outln;
use roboku_wire::fleet::{Ack, AckStatus};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The bundle file (.rkb)
    pub file: PathBuf,
}

pub async fn run(ctx: &Ctx, a: ApplyArgs) -> anyhow::Result<i32> {
    let name = file_name(&a.file);
    let path = with_query(
        &format!("{}/bundles", roboku_wire::API_PREFIX),
        &[("name", Some(name.clone()))],
    );
    let acks = stream(ctx, &path, &a.file).await?;
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&acks)?)?;
    }
    let failed = acks.iter().find(|a| {
        matches!(
            a.status,
            AckStatus::Rejected | AckStatus::Failed | AckStatus::TimedOut
        )
    });
    let done: Vec<&Ack> = acks
        .iter()
        .filter(|a| a.status == AckStatus::Succeeded)
        .collect();
    match failed {
        Some(f) => {
            let reason = f.details.reason.as_deref().unwrap_or(f.status.as_str());
            let verb = if f.status == AckStatus::Rejected {
                "refused"
            } else {
                "not applied"
            };
            anyhow::bail!("bundle {name} {verb}: {reason}")
        }
        None if done.is_empty() => {
            anyhow::bail!("robokud ended bundle {name} without a result; see its log")
        }
        None => {
            if !ctx.json {
                let apps: Vec<String> = done
                    .iter()
                    .map(|a| {
                        let app = a.details.app.as_deref().unwrap_or("?");
                        match a.details.release {
                            Some(r) => format!("{app} v{r}"),
                            None => format!("{app} (already in that state)"),
                        }
                    })
                    .collect();
                outln!("bundle {name} applied: {}", apps.join(", "))?;
            }
            Ok(0)
        }
    }
}

/// Sends the file and collects the acks, printing each to stderr as it arrives.
pub(super) async fn stream(
    ctx: &Ctx,
    path: &str,
    file: &std::path::Path,
) -> anyhow::Result<Vec<Ack>> {
    if !file.is_file() {
        anyhow::bail!("{}: not a file", file.display());
    }
    let mut lines = ctx.client.upload_lines(path, file).await?;
    let mut acks = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let ack: Ack = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!("robokud's progress line is not understood ({e}): {line}")
        })?;
        if !ctx.json {
            eprintln!("-----> {}", progress_line(&ack));
        }
        acks.push(ack);
    }
    Ok(acks)
}

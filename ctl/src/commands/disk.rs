//! `disk [-a APP]`: what uses the data dir, the disk reserve, what slug GC would free.

use super::Ctx;
use crate::output;
use roboku_wire::{DiskReport, API_PREFIX};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct DiskArgs {
    /// Only this app's rows
    #[arg(short, long, value_parser = crate::parse::app_name)]
    pub app: Option<String>,
}

pub async fn run(ctx: &Ctx, a: DiskArgs) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&format!("{API_PREFIX}/disk")).await?;
    let Some(r) = ctx.typed::<DiskReport>(v)? else {
        return Ok(());
    };
    Ok(output::print(&render(&r, a.app.as_deref()))?)
}

fn render(r: &DiskReport, app: Option<&str>) -> String {
    let b = output::bytes;
    let mut rows = vec![vec!["APP".to_string(), "WHAT".into(), "SIZE".into()]];
    for row in &r.rows {
        if app.is_some() && row.app.as_deref() != app {
            continue;
        }
        let who = row.app.clone().unwrap_or_else(|| "-".into());
        rows.push(vec![who, row.what.clone(), b(row.bytes)]);
    }
    let usable = r.free.saturating_sub(r.reserved);
    format!(
        "{}: {} free of {}, {} reserved (disk_reserve {}): {} usable for deploys\n{}Slug GC would free {} ({} unreferenced slugs)\n",
        r.data_dir,
        b(r.free),
        b(r.total),
        b(r.reserved),
        r.reserve,
        b(usable),
        output::table(&rows),
        b(r.gc_bytes),
        r.gc_slugs
    )
}

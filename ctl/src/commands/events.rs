//! `events`: the audit trail (who did what through which door), newest last.

use super::Ctx;
use crate::client::with_query;
use crate::output;
use roboku_wire::{EventInfo, API_PREFIX};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Only events of this app
    #[arg(short, long, env = "ROBOKU_APP", value_parser = crate::parse::app_name)]
    pub app: Option<String>,
    /// Number of recent events to show
    #[arg(short, long, default_value_t = 50, value_name = "N")]
    pub num: u32,
}

pub async fn run(ctx: &Ctx, args: EventsArgs) -> anyhow::Result<()> {
    let path = with_query(
        &format!("{API_PREFIX}/events"),
        &[("app", args.app), ("n", Some(args.num.to_string()))],
    );
    let v: Value = ctx.client.get(&path).await?;
    let Some(mut events) = ctx.typed::<Vec<EventInfo>>(v)? else {
        return Ok(());
    };
    events.sort_by_key(|e| e.id);
    let rows: Vec<Vec<String>> = events.iter().map(row).collect();
    Ok(output::print(&output::table(&rows))?)
}

/// `2026-11-29T22:10:03.123Z  demo  cli  deploy  succeeded`.
fn row(e: &EventInfo) -> Vec<String> {
    vec![
        output::iso8601(e.ts),
        e.app.clone().unwrap_or_else(|| "-".into()),
        e.door.clone(),
        e.action.clone(),
        e.result.clone(),
    ]
}

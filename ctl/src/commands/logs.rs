//! `logs`: recent lines, or a live tail, in Heroku's format.

use super::{app_path, AppArg, Ctx};
use crate::client::with_query;
use crate::output::{self, outln};
use roboku_wire::LogLine;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub app: AppArg,
    /// Number of recent lines to show [default: 100; with --since: all since then]
    #[arg(short, long, value_name = "N")]
    pub num: Option<u32>,
    /// Only lines of the last DURATION (30s, 10m, 2h, 1d)
    #[arg(long, value_parser = crate::parse::duration_ms, value_name = "DURATION")]
    pub since: Option<u64>,
    /// Keep streaming new lines
    #[arg(short, long)]
    pub tail: bool,
    /// Only this dyno (web.1) or process type (web)
    #[arg(short, long)]
    pub dyno: Option<String>,
    /// Only lines from the app itself or from roboku
    #[arg(long, value_parser = ["app", "roboku"])]
    pub source: Option<String>,
}

pub async fn run(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let path = with_query(
        &app_path(&args.app.app, "/logs"),
        &[
            ("n", args.num.map(|n| n.to_string())),
            (
                "since",
                args.since
                    .map(|d| output::now_ms().saturating_sub(d).max(1).to_string()),
            ),
            ("tail", args.tail.then(|| "true".to_string())),
            ("dyno", args.dyno),
            ("source", args.source),
        ],
    );
    let mut lines = ctx.client.stream(&path).await?;
    while let Some(raw) = lines.next_line().await? {
        if raw.trim().is_empty() {
            continue; // keep-alive newlines during a quiet tail
        }
        if ctx.json {
            outln!("{raw}")?;
            continue;
        }
        match serde_json::from_str::<LogLine>(&raw) {
            Ok(line) => outln!("{}", output::log_line(&line))?,
            // One odd line must not end a tail that has been running for hours.
            Err(e) => eprintln!(
                "roboku: skipping a log line robokud sent that is not a log line ({e}): {raw}"
            ),
        }
    }
    Ok(())
}

//! `drains`, `drains:add`, `drains:remove`: where an app's logs are also sent (syslog, HTTPS),
//! and what each drain has delivered.

use super::{app_path, AppArg, Ctx};
use crate::client::with_query;
use crate::output::{self, outln};
use roboku_wire::drains::{AddDrain, DrainInfo};
use roboku_wire::Done;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// syslog+tls://host:port, syslog+tcp://host:port (or syslog://), syslog+udp://host:port,
    /// or https://[user:password@]host[:port]/path
    pub url: String,
    #[command(flatten)]
    pub app: AppArg,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The drain's id (from `roboku drains`) or its URL
    pub drain: String,
    #[command(flatten)]
    pub app: AppArg,
}

pub async fn list(ctx: &Ctx, args: AppArg) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&app_path(&args.app, "/drains")).await?;
    if let Some(drains) = ctx.typed::<Vec<DrainInfo>>(v)? {
        if drains.is_empty() {
            outln!(
                "{} has no log drains (add one with `roboku drains:add URL -a {}`)",
                args.app,
                args.app
            )?;
        } else {
            output::print(&render(&drains, output::now_ms()))?;
        }
    }
    Ok(())
}

/// One row per drain: its counters, and its last error when it is newer than its last success.
fn render(drains: &[DrainInfo], now: u64) -> String {
    let mut rows = vec![[
        "id",
        "url",
        "sent",
        "dropped",
        "pending",
        "last success",
        "last error",
    ]
    .map(String::from)
    .to_vec()];
    for d in drains {
        let c = &d.counters;
        let ago = |t: Option<u64>| t.map_or("-".into(), |t| format!("{} ago", output::age(now, t)));
        let error = match (&c.last_error, c.last_error_at) {
            (Some(e), Some(at)) if c.last_success_at.is_none_or(|s| s < at) => {
                format!("{} ago: {e}", output::age(now, at))
            }
            _ => "-".into(),
        };
        rows.push(vec![
            d.id.clone(),
            if d.running {
                d.url.clone()
            } else {
                format!("{} (not running)", d.url)
            },
            sent(c),
            c.dropped.to_string(),
            c.pending.to_string(),
            ago(c.last_success_at),
            error,
        ]);
    }
    output::table(&rows)
}

/// `12`, or `12 (+3 in flight)` while lines wait for their confirmation (a stream's 2 s), so a
/// drain that just started sending does not look as if it sent nothing.
fn sent(c: &roboku_wire::drains::DrainCounters) -> String {
    match c.in_flight {
        0 => c.sent.to_string(),
        n => format!("{} (+{n} in flight)", c.sent),
    }
}

pub async fn add(ctx: &Ctx, args: AddArgs) -> anyhow::Result<()> {
    let body = AddDrain { url: args.url };
    let v: Value = ctx
        .client
        .post(&app_path(&args.app.app, "/drains"), &body)
        .await?;
    if let Some(d) = ctx.typed::<DrainInfo>(v)? {
        outln!(
            "Added drain {} to {} ({}); token {}",
            d.id,
            args.app.app,
            d.url,
            d.token
        )?;
    }
    Ok(())
}

pub async fn remove(ctx: &Ctx, args: RemoveArgs) -> anyhow::Result<()> {
    let path = with_query(
        &app_path(&args.app.app, "/drains"),
        &[("drain", Some(args.drain))],
    );
    let v: Value = ctx.client.delete(&path).await?;
    if let Some(done) = ctx.typed::<Done>(v)? {
        outln!("{}", done.message)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::drains::DrainCounters;

    #[test]
    fn shows_an_error_only_while_it_is_the_latest_news() {
        let mut d = DrainInfo {
            id: "d-1".into(),
            url: "syslog://h:1".into(),
            token: "d.x".into(),
            created_at: 0,
            running: true,
            counters: DrainCounters {
                sent: 5,
                in_flight: 0,
                dropped: 1,
                pending: 2,
                last_error: Some("connection refused".into()),
                last_error_at: Some(50_000),
                last_success_at: Some(40_000),
            },
        };
        let text = render(std::slice::from_ref(&d), 60_000);
        assert!(text.contains("10s ago: connection refused"), "{text}");
        assert!(text.contains("20s ago"), "{text}");
        d.counters.last_success_at = Some(55_000);
        let text = render(&[d], 60_000);
        assert!(!text.contains("refused"), "{text}");
    }

    #[test]
    fn sent_shows_what_is_in_flight_while_there_is_some() {
        let mut c = DrainCounters {
            sent: 12,
            ..DrainCounters::default()
        };
        assert_eq!(sent(&c), "12");
        c.in_flight = 3;
        assert_eq!(sent(&c), "12 (+3 in flight)");
        c.sent = 0;
        assert_eq!(sent(&c), "0 (+3 in flight)", "a fresh drain");
    }

    #[test]
    fn an_older_agents_counters_have_nothing_in_flight() {
        // What a robokud from before `in_flight` answers.
        let old = r#"{"sent":4,"dropped":0,"pending":1,"last_error":null,"last_error_at":null,"last_success_at":10}"#;
        let c: DrainCounters = serde_json::from_str(old).unwrap();
        assert_eq!((c.sent, c.in_flight, c.pending), (4, 0, 1));
        assert_eq!(sent(&c), "4");
    }
}

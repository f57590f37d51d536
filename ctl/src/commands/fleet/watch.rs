//! `fleet watch`: print acks as robots send them (a device, a group, or everything), until
//! Ctrl-C or `--for` seconds.

use super::roster::Roster;
use super::session::Session;
use super::{track, BrokerArgs};
use crate::output::outln;
use roboku_wire::fleet::topic::{self, Topic};
use roboku_wire::fleet::Ack;
use std::time::Duration;
use tokio::time::Instant;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Only robots in this group
    #[arg(long, conflicts_with = "device")]
    pub group: Option<String>,
    /// Only this robot
    #[arg(long)]
    pub device: Option<String>,
    /// Stop after this many seconds [default: run until Ctrl-C]
    #[arg(long = "for", value_name = "SECS")]
    pub for_secs: Option<u64>,
}

pub async fn run(json: bool, a: WatchArgs) -> anyhow::Result<()> {
    let mut s = Session::connect(&a.broker.broker, &a.broker.tls()).await?;
    // Statuses tell which robots are in the group (they keep coming as robots connect).
    s.subscribe(&[
        format!("{}/d/+/status", topic::ROOT),
        format!("{}/d/+/ack", topic::ROOT),
    ])
    .await?;
    let mut roster = Roster::default();
    let deadline = Instant::now()
        + a.for_secs
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    while let Some(m) = s.next(deadline).await {
        match topic::parse(&m.topic) {
            Some(Topic::Status(_)) => roster.add(&m.topic, &m.payload),
            Some(Topic::Ack(device)) => {
                let wanted = match (&a.group, &a.device) {
                    (Some(g), _) => roster
                        .robots
                        .get(&device)
                        .is_some_and(|r| r.groups().iter().any(|x| x == g)),
                    (None, Some(d)) => *d == device,
                    (None, None) => true,
                };
                if !wanted {
                    continue;
                }
                if json {
                    outln!("{}", String::from_utf8_lossy(&m.payload))?;
                } else if let Ok(ack) = serde_json::from_slice::<Ack>(&m.payload) {
                    let id = ack.id.as_deref().unwrap_or("-");
                    let what = format!(
                        "{} {}",
                        ack.details.kind.as_deref().unwrap_or(""),
                        ack.details.app.as_deref().unwrap_or("")
                    );
                    outln!(
                        "{} [{} {}] {}",
                        track::line(&ack),
                        what.trim(),
                        &id[..id.len().min(8)],
                        ack.reference
                    )?;
                }
            }
            _ => {}
        }
    }
    s.close().await;
    Ok(())
}

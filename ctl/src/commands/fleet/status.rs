//! `fleet status`: one line per robot from what the broker retains (status and reported):
//! online or offline, each app's release and dynos up, the last final ack.

use super::roster::Robot;
use super::session::read_fleet;
use super::BrokerArgs;
use crate::output::{self, now_ms, outln};
use roboku_wire::fleet::topic::Address;
use roboku_wire::DynoState;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Only robots in this group
    #[arg(long, conflicts_with = "device")]
    pub group: Option<String>,
    /// Only this robot
    #[arg(long)]
    pub device: Option<String>,
    /// Only this app
    #[arg(short, long, value_parser = crate::parse::app_name)]
    pub app: Option<String>,
}

pub async fn run(json: bool, a: StatusArgs) -> anyhow::Result<()> {
    let roster = read_fleet(&a.broker).await?;
    let devices: Vec<String> = match (&a.group, &a.device) {
        (Some(g), _) => roster.members(&Address::Group(g.clone())),
        (None, Some(d)) => vec![d.clone()],
        (None, None) => roster.robots.keys().cloned().collect(),
    };
    if json {
        let v: Vec<serde_json::Value> = devices
            .iter()
            .map(|d| {
                let r = roster.robots.get(d).cloned().unwrap_or_default();
                serde_json::json!({"device": d, "status": r.status, "reported": r.reported})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    if devices.is_empty() {
        outln!("no robots found (none has connected to this broker yet)")?;
        return Ok(());
    }
    let now = now_ms();
    let mut rows = vec![["DEVICE", "STATE", "APPS", "LAST ACK"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for d in &devices {
        let r = roster.robots.get(d).cloned().unwrap_or_default();
        rows.push(row(d, &r, a.app.as_deref(), now));
    }
    output::print(&output::table(&rows))?;
    Ok(())
}

/// One robot's row.
pub fn row(device: &str, r: &Robot, only_app: Option<&str>, now: u64) -> Vec<String> {
    let state = match &r.status {
        Some(s) => format!("{} ({})", s.state_str(), output::age(now, s.ts)),
        None => "unknown".into(),
    };
    let apps = match &r.reported {
        None => "-".to_string(),
        Some(rep) => {
            let parts: Vec<String> = rep
                .apps
                .iter()
                .filter(|x| only_app.is_none_or(|o| o == x.name))
                .map(|x| {
                    let up = x.dynos.iter().filter(|d| d.state == DynoState::Up).count();
                    let release = x.release.map(|v| format!("v{v}")).unwrap_or("-".into());
                    format!("{} {release} {up}/{} up", x.name, x.dynos.len())
                })
                .collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join("; ")
            }
        }
    };
    let last = r
        .reported
        .as_ref()
        .and_then(|rep| rep.last_ack.as_ref())
        .map(|l| {
            format!(
                "{} {} {}",
                l.status.as_str(),
                l.kind.as_deref().unwrap_or(""),
                output::age(now, l.ts)
            )
        })
        .unwrap_or_else(|| "-".into());
    vec![device.to_string(), state, apps, last]
}

trait StateStr {
    fn state_str(&self) -> &'static str;
}

impl StateStr for roboku_wire::fleet::DeviceStatus {
    fn state_str(&self) -> &'static str {
        match self.state {
            roboku_wire::fleet::Presence::Online => "online",
            roboku_wire::fleet::Presence::Offline => "offline",
        }
    }
}

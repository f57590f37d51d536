//! `fleet desired`: publish (retained, signed) what an app should look like on a device or a
//! group, and the read-modify-write of that doc that `fleet deploy` and `fleet scale` share.
//! The doc holds every app of the address; only the named app's entry changes, with a new
//! version (so a robot that applied a later command ignores it as stale).

use super::session::Session;
use super::{seal_bytes, BrokerArgs, KeyArgs, TargetSel};
use crate::output::{now_ms, outln};
use roboku_wire::fleet::seal::{self, SecretKey};
use roboku_wire::fleet::topic::Address;
use roboku_wire::fleet::{AppDesired, Artifact, DesiredDoc, PROTOCOL_VERSION};
use std::collections::BTreeMap;
use std::time::Duration;

/// Desired docs stay valid for a year (robots may be offline for long).
const DESIRED_TTL_MS: u64 = 365 * 24 * 3600 * 1000;

#[derive(clap::Args, Debug)]
pub struct DesiredArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub target: TargetSel,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The app whose desired state changes
    #[arg(short, long, env = "ROBOKU_APP", value_parser = crate::parse::app_name)]
    pub app: String,
    /// Release artifact URL (with --sha256 and --size)
    #[arg(long, requires_all = ["sha256", "size"], value_name = "URL")]
    pub artifact_url: Option<String>,
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    #[arg(long, value_name = "N")]
    pub size: Option<u64>,
    /// Dyno counts, e.g. --scale web=2 (repeatable)
    #[arg(long = "scale", value_parser = crate::parse::scale_spec, value_name = "TYPE=N")]
    pub scale: Vec<(String, u32)>,
    /// The complete set of config vars, KEY=VALUE (repeatable; vars not named are unset)
    #[arg(long = "config", value_parser = crate::parse::config_pair, value_name = "KEY=VALUE")]
    pub config: Vec<(String, String)>,
    /// Remove the app from the desired state instead
    #[arg(long, conflicts_with_all = ["artifact_url", "scale", "config"])]
    pub remove: bool,
    /// Per-app version [default: now, in unix ms]
    #[arg(long)]
    pub version: Option<u64>,
}

pub async fn run(json: bool, a: DesiredArgs) -> anyhow::Result<()> {
    let key = a.key.load()?;
    let addr = a.target.address()?;
    let mut s = Session::connect(&a.broker.broker, &a.broker.tls()).await?;
    let version = a.version.unwrap_or_else(now_ms);
    let doc = if a.remove {
        let mut doc = current(&mut s, &addr).await?;
        doc.apps.remove(&a.app);
        publish(&mut s, &addr, doc, key.as_ref()).await?
    } else {
        update_desired(&mut s, &addr, &a.app, version, key.as_ref(), |e| {
            if let (Some(url), Some(sha), Some(size)) = (&a.artifact_url, &a.sha256, a.size) {
                e.set_release(Artifact {
                    url: url.clone(),
                    sha256: sha.to_ascii_lowercase(),
                    size,
                    delta: None,
                });
            }
            e.formation.extend(a.scale.iter().cloned());
            if !a.config.is_empty() {
                e.config = Some(a.config.iter().cloned().collect());
            }
        })
        .await?
    };
    // Show who it reaches.
    s.subscribe(&[format!("{}/d/+/status", roboku_wire::fleet::topic::ROOT)])
        .await?;
    let roster = s.roster(Duration::from_secs(2)).await;
    s.close().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        let members = roster.members(&addr);
        outln!(
            "desired state of {} published (retained; {} app(s); {} version {version}); reaches: {}",
            addr.as_path(),
            doc.apps.len(),
            a.app,
            if members.is_empty() { "no robot yet".to_string() } else { members.join(", ") }
        )?;
    }
    Ok(())
}

/// The address's current desired doc (its retained message), or an empty one.
async fn current(s: &mut Session, addr: &Address) -> anyhow::Result<DesiredDoc> {
    s.subscribe(&[addr.desired()]).await?;
    let msgs = s
        .settle(Duration::from_millis(300), Duration::from_secs(2))
        .await;
    let doc = msgs
        .iter()
        .rev()
        .find(|m| m.topic == addr.desired() && !m.payload.is_empty())
        .and_then(|m| seal::unseal(&m.payload).ok())
        .and_then(|u| serde_json::from_slice::<DesiredDoc>(&u.bytes).ok());
    Ok(doc.unwrap_or(DesiredDoc {
        v: PROTOCOL_VERSION,
        id: String::new(),
        ts: 0,
        expires: 0,
        to: addr.as_path(),
        apps: BTreeMap::new(),
    }))
}

/// Reads the doc, lets `f` change `app`'s entry (given the new version), publishes it.
pub async fn update_desired(
    s: &mut Session,
    addr: &Address,
    app: &str,
    version: u64,
    key: Option<&SecretKey>,
    f: impl FnOnce(&mut AppDesired),
) -> anyhow::Result<DesiredDoc> {
    let mut doc = current(s, addr).await?;
    let entry = doc.apps.entry(app.to_string()).or_default();
    entry.version = version;
    f(entry);
    publish(s, addr, doc, key).await
}

async fn publish(
    s: &mut Session,
    addr: &Address,
    mut doc: DesiredDoc,
    key: Option<&SecretKey>,
) -> anyhow::Result<DesiredDoc> {
    let now = now_ms();
    doc.v = PROTOCOL_VERSION;
    doc.id = super::new_id();
    doc.ts = now;
    doc.expires = now + DESIRED_TTL_MS;
    doc.to = addr.as_path();
    let bytes = serde_json::to_vec(&doc)?;
    let payload = seal_bytes(&bytes, key);
    if payload.len() > roboku_wire::fleet::MAX_PAYLOAD {
        anyhow::bail!(
            "the desired doc of {} would be {} bytes, over the {} robots accept",
            addr.as_path(),
            payload.len(),
            roboku_wire::fleet::MAX_PAYLOAD
        );
    }
    s.publish(&addr.desired(), true, payload).await?;
    Ok(doc)
}

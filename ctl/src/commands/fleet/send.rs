//! `fleet deploy|scale|config|rollback|restart|stop`: sign a command, publish it, follow the
//! acks. Without `--wave` one command goes to the address (a group command reaches every member
//! at once); with `--wave N|N%` each robot gets its own command, the canary wave first, and the
//! rest only when no more than `--fail-threshold` robots failed. Every command that went well
//! also updates the address's retained desired state (config, rollback, restart and stop also as
//! one-shots, replayed in order),
//! so robots that were offline get it when they come back.

use super::desired::update_desired;
use super::session::Session;
use super::track::{self, Tracker};
use super::waves::{self, WaveSize};
use super::{new_id, seal_bytes, BrokerArgs, KeyArgs, TargetSel};
use crate::output::{now_ms, outln};
use roboku_wire::fleet::seal::SecretKey;
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, Ack, Action, AppDesired, Artifact, Envelope, ScaleBody};
use roboku_wire::{ConfigChange, RollbackRequest, TargetRequest};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Common {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub target: TargetSel,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The app to act on
    #[arg(short, long, env = "ROBOKU_APP", value_parser = crate::parse::app_name)]
    pub app: String,
    /// Seconds the command stays valid (robots refuse it after that)
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    pub ttl: u64,
    /// Seconds to wait for the robots' final acks
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub wait: u64,
    /// Per-app version [default: now, in unix ms]; must grow with every command for the app
    #[arg(long)]
    pub version: Option<u64>,
    /// A canary wave: N robots or N% of all; repeat for more waves (`--wave 1% --wave 10%`).
    /// Each wave starts when the one before succeeded; the rest come last
    #[arg(long, value_parser = waves::parse_wave, value_name = "N|N%")]
    pub wave: Vec<WaveSize>,
    /// Stop the rollout when more than K robots failed
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub fail_threshold: usize,
    /// Do not update the retained desired state
    #[arg(long)]
    pub no_desired: bool,
}

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub common: Common,
    /// Where robots download the artifact (http:// or https://)
    #[arg(long, value_name = "URL")]
    pub artifact_url: String,
    /// sha256 of the artifact file (lowercase hex)
    #[arg(long, required_unless_present = "slug", value_name = "HEX")]
    pub sha256: Option<String>,
    /// Size of the artifact file in bytes
    #[arg(long, required_unless_present = "slug", value_name = "N")]
    pub size: Option<u64>,
    /// The artifact file itself: sha256 and size are computed from it
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sha256", "size"])]
    pub slug: Option<PathBuf>,
    /// Also ship a delta against a slug the robots keep: the best of the `--delta-from` files,
    /// written next to `--slug` as `<slug>.from-<base>.rkd`; robots without it take the full slug
    #[arg(long, requires_all = ["slug", "delta_from"])]
    pub delta: bool,
    /// A slug shipped before, a candidate base for `--delta` (repeatable)
    #[arg(long, value_name = "FILE", requires = "delta")]
    pub delta_from: Vec<PathBuf>,
    /// Where robots download the delta [default: the artifact URL + `.from-<base>.rkd`]
    #[arg(long, value_name = "URL", requires = "delta")]
    pub delta_url: Option<String>,
    /// Ask each robot what the deploy would do there (slug, process types, dynos, disk);
    /// nothing is applied and the desired state is left alone
    #[arg(long, conflicts_with_all = ["delta", "wave"])]
    pub plan: bool,
}

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub common: Common,
    /// Counts, e.g. web=2 worker=1
    #[arg(required = true, value_parser = crate::parse::scale_spec, value_name = "TYPE=N")]
    pub counts: Vec<(String, u32)>,
}

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub common: Common,
    /// Vars to set, e.g. GREETING=hi
    #[arg(value_parser = crate::parse::config_pair, value_name = "KEY=VALUE")]
    pub set: Vec<(String, String)>,
    /// Vars to unset (repeatable)
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: Common,
    /// Release to go back to (v3 or 3) [default: the one before the current]
    #[arg(value_parser = crate::parse::version)]
    pub release: Option<u32>,
    /// Bring the release's data snapshot back too (as `roboku rollback --with-data`)
    #[arg(long)]
    pub with_data: bool,
}

#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    #[command(flatten)]
    pub common: Common,
    /// A process type (web) or one dyno (web.1) [default: every dyno]
    pub target: Option<String>,
}

pub async fn deploy(json: bool, a: DeployArgs) -> anyhow::Result<i32> {
    let (sha256, size) = match &a.slug {
        Some(path) => file_digest(path)?,
        None => (
            a.sha256.clone().unwrap_or_default().to_ascii_lowercase(),
            a.size.unwrap_or(0),
        ),
    };
    if a.plan {
        let artifact = Artifact {
            url: a.artifact_url.clone(),
            sha256,
            size,
            delta: None,
        };
        return super::plan::run(json, &a.common, artifact).await;
    }
    let delta = match (&a.slug, a.delta) {
        (Some(slug), true) => {
            let addr = a.common.target.address()?;
            let req = super::delta::Request {
                broker: &a.common.broker,
                addr: &addr,
                slug,
                artifact_url: &a.artifact_url,
                bases: &a.delta_from,
                delta_url: a.delta_url.as_deref(),
            };
            super::delta::plan(json, req).await?
        }
        _ => None,
    };
    let artifact = Artifact {
        url: a.artifact_url.clone(),
        sha256,
        size,
        delta,
    };
    let update = {
        let artifact = artifact.clone();
        move |e: &mut AppDesired, _: u64| e.set_release(artifact.clone())
    };
    rollout(
        json,
        &a.common,
        Action::Deploy(artifact),
        Some(Box::new(update)),
    )
    .await
}

pub async fn scale(json: bool, a: ScaleArgs) -> anyhow::Result<i32> {
    let counts: BTreeMap<String, u32> = a.counts.iter().cloned().collect();
    let update = {
        let counts = counts.clone();
        move |e: &mut AppDesired, _: u64| e.formation.extend(counts.clone())
    };
    let action = Action::Scale(ScaleBody { counts });
    rollout(json, &a.common, action, Some(Box::new(update))).await
}

pub async fn config(json: bool, a: ConfigArgs) -> anyhow::Result<i32> {
    if a.set.is_empty() && a.unset.is_empty() {
        anyhow::bail!(crate::commands::UsageError(
            "nothing to change: give KEY=VALUE pairs or --unset KEY".into()
        ));
    }
    let change = ConfigChange {
        set: a.set.iter().cloned().collect(),
        unset: a.unset.clone(),
    };
    let update = {
        let change = change.clone();
        move |e: &mut AppDesired, version| {
            e.apply_config(&change);
            e.push_once(version, &Action::Config(change.clone()));
        }
    };
    rollout(
        json,
        &a.common,
        Action::Config(change),
        Some(Box::new(update)),
    )
    .await
}

pub async fn rollback(json: bool, a: RollbackArgs) -> anyhow::Result<i32> {
    let action = Action::Rollback(RollbackRequest {
        version: a.release,
        with_data: a.with_data,
    });
    rollout(json, &a.common, action.clone(), Some(one_shot(action))).await
}

pub async fn restart(json: bool, a: TargetArgs, stop: bool) -> anyhow::Result<i32> {
    let t = TargetRequest {
        target: a.target.clone(),
    };
    let action = if stop {
        Action::Stop(t)
    } else {
        Action::Restart(t)
    };
    rollout(json, &a.common, action.clone(), Some(one_shot(action))).await
}

/// How a command changes the app's entry in the retained desired state, given its version.
type DesiredUpdate = Box<dyn Fn(&mut AppDesired, u64) + Send>;

/// Rollback, restart and stop are kept in desired state as one-shots, so a robot that was
/// offline runs them when it comes back (config changes too, besides the patch, so that a later
/// relative rollback lands on the same release everywhere).
fn one_shot(action: Action) -> DesiredUpdate {
    Box::new(move |e: &mut AppDesired, version| e.push_once(version, &action))
}

pub(crate) fn file_digest(path: &PathBuf) -> anyhow::Result<(String, u64)> {
    use sha2::Digest;
    let mut f =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut f, &mut h)
        .map_err(|e| anyhow::anyhow!("read {}: {e}", path.display()))?;
    Ok((h.finalize().iter().map(|b| format!("{b:02x}")).collect(), n))
}

/// A signed command for `to`, and its id and payload ref.
fn envelope(
    c: &Common,
    to: &Address,
    action: &Action,
    version: u64,
    key: Option<&SecretKey>,
) -> (String, String, Vec<u8>) {
    let id = new_id();
    let mut env = Envelope::new(
        id.clone(),
        now_ms(),
        c.ttl * 1000,
        to.as_path(),
        &c.app,
        action,
    );
    env.version = Some(version);
    let bytes = serde_json::to_vec(&env).unwrap_or_default();
    let payload = seal_bytes(&bytes, key);
    (id, payload_ref(&payload), payload)
}

async fn rollout(
    json: bool,
    c: &Common,
    action: Action,
    desired: Option<DesiredUpdate>,
) -> anyhow::Result<i32> {
    let key = c.key.load()?;
    let addr = c.target.address()?;
    let mut s = Session::connect(&c.broker.broker, &c.broker.tls()).await?;
    s.subscribe(&[
        format!("{}/d/+/status", topic::ROOT),
        format!("{}/d/+/ack", topic::ROOT),
    ])
    .await?;
    let roster = s.roster(Duration::from_secs(3)).await;
    let members = roster.members(&addr);
    // A device with no retained status at all may still be there: wait for it too.
    let online: Vec<String> = members
        .iter()
        .filter(|d| roster.is_online(d) || !roster.robots.contains_key(*d))
        .cloned()
        .collect();
    let offline: Vec<String> = members
        .iter()
        .filter(|d| !online.contains(d))
        .cloned()
        .collect();
    if !json && !offline.is_empty() {
        outln!(
            "offline now (they get the desired state when they reconnect): {}",
            offline.join(", ")
        )?;
    }
    let version = c.version.unwrap_or_else(now_ms);
    let waves: Vec<Vec<String>> = waves::plan(&online, &c.wave);
    let mut tracker = Tracker::default();
    let mut failed_total = 0usize;
    let mut stopped = false;
    let mut stopped_after = 0usize;
    if online.is_empty() {
        // Nobody to wait for; the command is cheap and someone may be connecting right now.
        let (_, _, payload) = envelope(c, &addr, &action, version, key.as_ref());
        s.publish(&addr.cmd(), false, payload).await?;
        if !json {
            outln!(
                "no robot of {} is online; command published",
                addr.as_path()
            )?;
        }
    }
    for (i, wave) in waves.iter().enumerate().filter(|(_, w)| !w.is_empty()) {
        if !c.wave.is_empty() {
            if !json {
                outln!("wave {}: {}", i + 1, wave.join(", "))?;
            }
            for d in wave {
                let to = Address::Device(d.clone());
                let (id, r, payload) = envelope(c, &to, &action, version, key.as_ref());
                tracker.watch(&id, &r, std::slice::from_ref(d));
                s.publish(&to.cmd(), false, payload).await?;
            }
        } else {
            let (id, r, payload) = envelope(c, &addr, &action, version, key.as_ref());
            tracker.watch(&id, &r, wave);
            s.publish(&addr.cmd(), false, payload).await?;
        }
        follow(json, &mut s, &mut tracker, Duration::from_secs(c.wait)).await?;
        failed_total = tracker.failed().len() + tracker.missing().len();
        if failed_total > c.fail_threshold && i + 1 < waves.len() {
            stopped = true;
            stopped_after = i + 1;
            break;
        }
    }
    let (ok, failed, missing) = (tracker.succeeded(), tracker.failed(), tracker.missing());
    let good = failed_total <= c.fail_threshold && !stopped;
    let mut desired_note = None;
    if let (Some(update), true, false) = (desired, good, c.no_desired) {
        update_desired(&mut s, &addr, &c.app, version, key.as_ref(), |e| {
            update(e, version)
        })
        .await?;
        desired_note = Some(addr.desired());
    }
    s.close().await;
    if json {
        let v = serde_json::json!({
            "succeeded": ok, "failed": failed, "no_answer": missing, "offline": offline,
            "stopped": stopped, "desired": desired_note, "version": version,
        });
        outln!("{v}")?;
    } else {
        outln!(
            "{} succeeded, {} failed, {} no answer, {} offline{}",
            ok.len(),
            failed.len(),
            missing.len(),
            offline.len(),
            if stopped {
                format!(
                    "; STOPPED after wave {stopped_after} (more than {} failed)",
                    c.fail_threshold
                )
            } else {
                String::new()
            }
        )?;
        if let Some(t) = desired_note {
            outln!("desired state updated: {t} (version {version})")?;
        }
    }
    Ok(if failed.is_empty() && missing.is_empty() && !stopped {
        0
    } else {
        1
    })
}

/// Prints acks for our commands until every expected robot answered finally, or `wait` ends.
async fn follow(
    json: bool,
    s: &mut Session,
    tracker: &mut Tracker,
    wait: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    while !tracker.done() {
        let Some(m) = s.next(deadline).await else {
            break;
        };
        let Ok(ack) = serde_json::from_slice::<Ack>(&m.payload) else {
            continue;
        };
        if !tracker.add(&ack) {
            continue;
        }
        if json {
            outln!("{}", String::from_utf8_lossy(&m.payload))?;
        } else {
            outln!("{}", track::line(&ack))?;
        }
    }
    Ok(())
}

//! `roboku fleet ...`: drive robots over MQTT. Commands are signed with an ed25519 key
//! (`fleet keygen`), published to a device or a group, and followed through their acks; a
//! successful deploy or scale also updates the address's retained desired state so robots that
//! were offline converge when they come back. Protocol: `docs/fleet-protocol.md`.
//!
//! Files: `session.rs` (the MQTT connection), `roster.rs` (devices from retained status and
//! reported state, pure), `delta.rs` (`deploy --delta`), `waves.rs` (wave planning, pure),
//! `send.rs` (the six commands and their rollout), `logs.rs` (a signed read of a robot's logs), `support.rs` (its support bundle), `plan.rs` (`deploy --plan`, a signed read too),
//! `desired.rs`, `status.rs`, `watch.rs`, `keygen.rs`.

mod delta;
mod desired;
mod keygen;
mod logs;
mod plan;
mod read;
mod roster;
mod send;
mod session;
mod status;
mod support;
mod track;
mod watch;
mod waves;

pub(crate) use send::file_digest;

use clap::{Args, Subcommand};
use roboku_wire::fleet::client::TlsFiles;
use roboku_wire::fleet::seal::{self, SecretKey};
use roboku_wire::fleet::topic::Address;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Make a signing key pair: the private key (0600) and `<file>.pub` for the robots
    Keygen(keygen::KeygenArgs),
    /// Deploy an artifact (.tar.gz of the app) to a device or a group
    Deploy(send::DeployArgs),
    /// Set dyno counts, e.g. web=2 worker=1
    Scale(send::ScaleArgs),
    /// Set or unset config vars, e.g. GREETING=hi (makes a release)
    Config(send::ConfigArgs),
    /// Roll back to an earlier release (default: the one before the current)
    Rollback(send::RollbackArgs),
    /// Restart an app's dynos
    Restart(send::TargetArgs),
    /// Stop an app's dynos
    Stop(send::TargetArgs),
    /// One line per robot: online, apps, releases, dynos, last ack
    Status(status::StatusArgs),
    /// Print acks as they arrive
    Watch(watch::WatchArgs),
    /// Publish a retained, signed desired state for a device or group
    Desired(desired::DesiredArgs),
    /// Pull an app's log lines from a robot (filtered, size-capped), as a signed command
    Logs(logs::LogsArgs),
    /// Pull a robot's support bundle (.tar.gz: doctor, status, apps, logs; no secrets)
    Support(support::SupportArgs),
}

pub async fn run(json: bool, cmd: FleetCommand) -> anyhow::Result<i32> {
    match cmd {
        FleetCommand::Keygen(a) => keygen::run(a).map(|_| 0),
        FleetCommand::Deploy(a) => send::deploy(json, a).await,
        FleetCommand::Scale(a) => send::scale(json, a).await,
        FleetCommand::Config(a) => send::config(json, a).await,
        FleetCommand::Rollback(a) => send::rollback(json, a).await,
        FleetCommand::Restart(a) => send::restart(json, a, false).await,
        FleetCommand::Stop(a) => send::restart(json, a, true).await,
        FleetCommand::Status(a) => status::run(json, a).await.map(|_| 0),
        FleetCommand::Watch(a) => watch::run(json, a).await.map(|_| 0),
        FleetCommand::Desired(a) => desired::run(json, a).await.map(|_| 0),
        FleetCommand::Logs(a) => logs::run(json, a).await,
        FleetCommand::Support(a) => support::run(json, a).await,
    }
}

/// The broker and how to reach it.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Broker URL: mqtt://host[:1883] or mqtts://host[:8883]
    #[arg(long, env = "ROBOKU_BROKER", value_name = "URL")]
    pub broker: String,
    /// TLS: CA bundle (default: the system's)
    #[arg(long, value_name = "PATH")]
    pub ca: Option<PathBuf>,
    /// TLS client certificate and key (PEM)
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl BrokerArgs {
    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.client_cert.clone(),
            key: self.client_key.clone(),
        }
    }
}

/// Who a command is for.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct TargetSel {
    /// One robot, by device id
    #[arg(long)]
    pub device: Option<String>,
    /// Every robot in a group
    #[arg(long)]
    pub group: Option<String>,
}

impl TargetSel {
    pub fn address(&self) -> anyhow::Result<Address> {
        let (what, name, addr) = match (&self.device, &self.group) {
            (Some(d), _) => ("device", d, Address::Device(d.clone())),
            (None, Some(g)) => ("group", g, Address::Group(g.clone())),
            (None, None) => anyhow::bail!(super::UsageError("give --device or --group".into())),
        };
        roboku_wire::fleet::check_name(what, name)
            .map_err(|e| anyhow::anyhow!(super::UsageError(e)))?;
        Ok(addr)
    }
}

/// How commands are signed.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// The private key from `roboku fleet keygen`
    #[arg(
        long,
        env = "ROBOKU_FLEET_KEY",
        value_name = "PATH",
        required_unless_present = "unsigned"
    )]
    pub key: Option<PathBuf>,
    /// Send unsigned (only robots in dev mode, `--mqtt-allow-unsigned`, accept it)
    #[arg(long)]
    pub unsigned: bool,
}

impl KeyArgs {
    pub fn load(&self) -> anyhow::Result<Option<SecretKey>> {
        match (&self.key, self.unsigned) {
            (_, true) => Ok(None),
            (Some(p), false) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("read key {}: {e}", p.display()))?;
                let k = seal::parse_secret(&text)
                    .map_err(|e| anyhow::anyhow!("key {}: {e}", p.display()))?;
                Ok(Some(k))
            }
            (None, false) => anyhow::bail!(super::UsageError(
                "give --key (or ROBOKU_FLEET_KEY), or --unsigned for dev-mode robots".into()
            )),
        }
    }
}

/// Signs (or, without a key, wraps) the bytes.
pub fn seal_bytes(bytes: &[u8], key: Option<&SecretKey>) -> Vec<u8> {
    match key {
        Some(k) => seal::seal(bytes, k),
        None => seal::seal_unsigned(bytes),
    }
}

/// A fresh command id: 128 random bits in hex.
pub fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

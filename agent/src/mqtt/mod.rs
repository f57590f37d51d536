//! Fleet control over MQTT: the door through which the fleet reaches robokud (the local API on
//! the unix socket is the other).
//!
//! Tasks, and who owns what:
//! - `task.rs`, the connection: owns the rumqttc event loop; reconnects with its own backoff and
//!   jitter (rumqttc has none), re-subscribes after every ConnAck, keeps the retained `status`
//!   (online with a session counter, offline as the Last Will) and forwards `cmd`/`desired`
//!   payloads. It never waits on anything but the broker and the intake queue.
//! - `intake.rs`: owns the persisted [`state::FleetState`] and the desired docs; verifies every
//!   payload ([`verify`], pure), acks REJECTED or ACCEPTED, and queues work per app.
//! - `apply.rs`: one worker per app, so an app's commands and convergences run in order; turns
//!   them into engine [`Command`](crate::engine::Command)s and acks progress. `desired.rs` plans
//!   convergence, `artifact.rs` fetches release artifacts over HTTP.
//! - `logs_reply.rs`: answers `logs` commands (filtered, capped lines on the `logs` topic) in
//!   a task of their own, never in an app's worker.
//! - `plan_reply.rs`: answers `plan` commands (`fleet deploy --plan`) on the final ack, in a
//!   task of its own too.
//! - `report.rs`: retained `reported` state after every change and on connect; telemetry.
//! - offline bundles (`crate::bundle`) enter the intake too (`intake_bundle.rs`), verified by
//!   `verify_bundle.rs` with the same keys and replay guard, and are applied by the same workers
//!   (`apply_bundle.rs`). So the intake runs on every robot, with or without a broker; without
//!   one, the [`Outbox`] publishes nothing.
//!
//! The engine never waits on MQTT: only these tasks await the engine, never the other way
//! round, and a dead broker only stops acks and reports (the dynos go on).

mod apply;
pub mod artifact;
pub mod bases;
pub mod clock;
mod desired;
mod intake;
mod jobs;
pub mod logs_reply;
mod plan_reply;
mod report;
pub mod state;
mod support_reply;
mod task;
pub mod verify;
pub mod verify_bundle;

use crate::engine::EngineHandle;
use crate::logs::LogHandle;
use crate::settings::Settings;
use crate::util::now_ms;
use roboku_wire::fleet::{self, seal, topic, Ack, AckDetails, AckStatus, AckSummary};
use rumqttc::{AsyncClient, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch, Notify};

/// Capacity of rumqttc's request channel (acks and reports queue here while disconnected).
const REQUEST_CAPACITY: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt: {0}")]
    Config(String),
    #[error("mqtt: trusted key {path}: {err}")]
    Key { path: String, err: String },
}

/// Everything the workers and the reporter share.
pub(crate) struct Shared {
    pub engine: EngineHandle,
    pub settings: Settings,
    pub logs: Option<LogHandle>,
    pub out: Outbox,
    pub device: String,
    pub groups: Vec<String>,
    /// The host sampler's history: telemetry messages take load and memory from its latest
    /// sample instead of reading /proc again (one sampler for ps, the dashboard and the fleet).
    pub telemetry: Option<crate::telemetry::Telemetry>,
    /// Permits for `logs` reads running at once ([`logs_reply::MAX_READERS`]).
    pub readers: Arc<tokio::sync::Semaphore>,
    /// Permits for `plan`s running at once ([`plan_reply::MAX_PLANS`]).
    pub planners: Arc<tokio::sync::Semaphore>,
    /// The link's last connection error, cleared on connect (`roboku doctor`).
    pub link_error: Mutex<Option<String>>,
    /// Byte accounting and budgets (`crate::usage`).
    pub usage: crate::usage::Meter,
}

/// Publishing side: acks (numbered), retained state, telemetry. Never blocks: when rumqttc's
/// queue is full (broker gone for long) a message is dropped with a log line; `reported` and
/// `status` are re-published on the next connect anyway. Without a broker (`client` is `None`:
/// a robot that only takes offline bundles) nothing is published, acks are still logged.
pub(crate) struct Outbox {
    client: Option<AsyncClient>,
    device: String,
    seq: AtomicU64,
    /// The latest final ack, for `reported`.
    last: Mutex<Option<AckSummary>>,
    /// Wakes the reporter (after a final ack, i.e. after anything changed).
    pub changed: Arc<Notify>,
    /// Counts what is published, on the channel of its topic.
    usage: crate::usage::Meter,
}

impl Outbox {
    pub fn publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> bool {
        let Some(client) = &self.client else {
            return false;
        };
        let (qos1, len) = (qos != QoS::AtMostOnce, payload.len());
        match client.try_publish(topic.clone(), qos, retain, payload) {
            Ok(()) => {
                self.usage.published(&topic, qos1, len);
                true
            }
            Err(e) => {
                tracing::warn!(topic, error = %e, "mqtt publish dropped (queue full or closed)");
                false
            }
        }
    }

    /// Sends an ack; final ones are remembered for `reported` and wake the reporter. Returns
    /// it, for doors that also show it elsewhere (a bundle's progress on the local API).
    pub fn ack(
        &self,
        id: Option<&str>,
        reference: &str,
        status: AckStatus,
        details: AckDetails,
    ) -> Ack {
        let ack = Ack {
            id: id.map(str::to_string),
            reference: reference.to_string(),
            device: self.device.clone(),
            ts: now_ms(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            status,
            details,
        };
        match status {
            AckStatus::Rejected | AckStatus::Failed | AckStatus::TimedOut => tracing::warn!(
                id = id.unwrap_or("-"),
                r#ref = reference,
                status = status.as_str(),
                app = ack.details.app.as_deref().unwrap_or("-"),
                reason = ack.details.reason.as_deref().unwrap_or("-"),
                "fleet command"
            ),
            _ => tracing::info!(
                id = id.unwrap_or("-"),
                status = status.as_str(),
                app = ack.details.app.as_deref().unwrap_or("-"),
                step = ack.details.step.as_deref().unwrap_or("-"),
                "fleet command"
            ),
        }
        if status.is_final() {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(AckSummary {
                    id: ack.id.clone(),
                    status,
                    ts: ack.ts,
                    app: ack.details.app.clone(),
                    kind: ack.details.kind.clone(),
                    reason: ack.details.reason.clone(),
                });
            }
            self.changed.notify_one();
        }
        let payload = serde_json::to_vec(&ack).unwrap_or_default();
        self.publish(topic::ack(&self.device), QoS::AtLeastOnce, false, payload);
        ack
    }

    pub fn last_ack(&self) -> Option<AckSummary> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

/// Reads the trusted public keys: files (one line of base64 each) and inline entries.
pub fn trusted_keys(s: &crate::settings::MqttSettings) -> Result<Vec<seal::PublicKey>, MqttError> {
    let mut keys = Vec::new();
    for path in &s.trusted_key_files {
        let text = std::fs::read_to_string(path).map_err(|e| MqttError::Key {
            path: path.display().to_string(),
            err: e.to_string(),
        })?;
        keys.push(seal::parse_public(&text).map_err(|err| MqttError::Key {
            path: path.display().to_string(),
            err,
        })?);
    }
    for (i, text) in s.trusted_keys.iter().enumerate() {
        keys.push(seal::parse_public(text).map_err(|err| MqttError::Key {
            path: format!("trusted_keys[{i}]"),
            err,
        })?);
    }
    Ok(keys)
}

/// This host's name, the default device id.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "robot".into())
}

/// Largest packet read from the broker. rumqttc cannot skip a packet over its limit: it drops
/// the connection, and a retained one comes back at every reconnect. Anything up to this size is
/// read and refused by the intake (payloads over [`fleet::MAX_PAYLOAD`] are REJECTED, with their
/// id when it can be read); the broker's `message_size_limit` must stop anything larger (see
/// docs/fleet-protocol.md), and past it reconnects back off instead of looping.
pub const MAX_INCOMING: usize = 16 << 20;

/// Fleet control, checked and ready to start: see [`prepare`] and [`prepare_fleet`].
pub struct Prepared {
    device: String,
    trust: verify::Trust,
    /// The broker connection; `None` on a robot without one (offline bundles only).
    link: Option<LinkOpts>,
}

struct LinkOpts {
    url: String,
    opts: rumqttc::MqttOptions,
    net: rumqttc::NetworkOptions,
}

/// [`prepare_fleet`] when a broker is configured, `None` otherwise.
pub fn prepare(settings: &Settings) -> Result<Option<Prepared>, MqttError> {
    let p = prepare_fleet(settings)?;
    Ok(p.link.is_some().then_some(p))
}

/// Checks the `[mqtt]` settings (device id, groups, keys, and with a broker its URL and TLS
/// files) before anything starts: a bad setting is an error at start, never a silent "no
/// fleet". Device id, groups and keys matter without a broker too: offline bundles are checked
/// against them.
pub fn prepare_fleet(settings: &Settings) -> Result<Prepared, MqttError> {
    let m = &settings.mqtt;
    let device = m.device_id.clone().unwrap_or_else(hostname);
    fleet::check_name("device", &device).map_err(MqttError::Config)?;
    for g in &m.groups {
        fleet::check_name("group", g).map_err(MqttError::Config)?;
    }
    let keys = trusted_keys(m)?;
    let trust = verify::Trust::new(keys, m.allow_unsigned, m.clock_skew_secs * 1000);
    let Some(url) = m.broker.clone() else {
        return Ok(Prepared {
            device,
            trust,
            link: None,
        });
    };
    let tls = fleet::client::TlsFiles {
        ca: m.ca_file.clone(),
        cert: m.cert_file.clone(),
        key: m.key_file.clone(),
    };
    let keep_alive = std::time::Duration::from_secs(m.keep_alive_secs.max(5));
    let (mut opts, net) =
        fleet::client::options(&url, &device, keep_alive, &tls).map_err(MqttError::Config)?;
    // Read (and refuse) oversized messages instead of dropping the connection over them.
    opts.set_max_packet_size(MAX_INCOMING, fleet::client::MAX_PACKET);
    Ok(Prepared {
        device,
        trust,
        link: Some(LinkOpts { url, opts, net }),
    })
}

/// What [`Prepared::start_watched`] started.
pub struct Started {
    /// Ends after `shutdown` turned true.
    pub task: tokio::task::JoinHandle<()>,
    /// The broker link for the dashboard; `None` without a broker.
    pub view: Option<FleetView>,
    /// Where offline bundles go in (the local API, the watched directory).
    pub bundles: crate::bundle::BundleDoor,
}

impl Prepared {
    /// Starts the connection, intake and reporter tasks. The returned task ends after
    /// `shutdown` turns true (it publishes `offline` and disconnects first).
    pub fn start(
        self,
        settings: &Settings,
        engine: EngineHandle,
        logs: Option<LogHandle>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let usage = crate::usage::Meter::unbudgeted();
        self.start_watched(settings, engine, logs, None, usage, shutdown)
            .task
    }

    /// Starts the intake (always: it owns the fleet state that offline bundles are checked
    /// against too) and, with a broker, the connection and reporter tasks; hands back a view
    /// of the link for the dashboard's host panel and the door for bundles.
    pub fn start_watched(
        self,
        settings: &Settings,
        engine: EngineHandle,
        logs: Option<LogHandle>,
        telemetry: Option<crate::telemetry::Telemetry>,
        usage: crate::usage::Meter,
        shutdown: watch::Receiver<bool>,
    ) -> Started {
        let m = &settings.mqtt;
        let online = self.link.is_some();
        if self.trust.key_ids().is_empty() && !m.allow_unsigned && online {
            tracing::warn!("mqtt: no trusted keys configured: every command will be REJECTED (add --trusted-key)");
        }
        if m.allow_unsigned {
            tracing::warn!("fleet: DEV MODE: unsigned fleet commands and bundles are ACCEPTED (allow_unsigned); never use this on a robot in the field");
        }
        let link = self.link.map(|l| {
            let (client, mut eventloop) = AsyncClient::new(l.opts, REQUEST_CAPACITY);
            eventloop.set_network_options(l.net);
            (l.url, client, eventloop)
        });
        let device = self.device;
        let shared = Arc::new(Shared {
            engine,
            settings: settings.clone(),
            logs,
            out: Outbox {
                client: link.as_ref().map(|(_, c, _)| c.clone()),
                device: device.clone(),
                seq: AtomicU64::new(0),
                last: Mutex::new(None),
                changed: Arc::new(Notify::new()),
                usage: usage.clone(),
            },
            device: device.clone(),
            groups: m.groups.clone(),
            telemetry,
            readers: Arc::new(tokio::sync::Semaphore::new(logs_reply::MAX_READERS)),
            planners: Arc::new(tokio::sync::Semaphore::new(plan_reply::MAX_PLANS)),
            link_error: Mutex::new(None),
            usage,
        });
        let state = state::FleetState::load(&settings.fleet_state_path());
        let (inbound_tx, inbound_rx) = mpsc::channel(1024);
        let (bundle_tx, bundle_rx) = mpsc::channel(16);
        let (conn_tx, conn_rx) = watch::channel(None);
        let (view_tx, view_rx) = watch::channel(Arc::new(intake::View::of(&state)));
        let trust = self.trust;
        let Some((url, client, eventloop)) = link else {
            tracing::info!(device, groups = ?m.groups, keys = ?trust.key_ids(), "no broker: fleet control by offline bundles only");
            drop((inbound_tx, conn_tx, view_rx));
            let task = tokio::spawn(intake::run(
                shared, trust, state, inbound_rx, bundle_rx, view_tx, shutdown,
            ));
            return Started {
                task,
                view: None,
                bundles: crate::bundle::BundleDoor::new(bundle_tx),
            };
        };
        tracing::info!(broker = %url, device, groups = ?m.groups, keys = ?trust.key_ids(), "fleet control on");
        let link = task::Link::new(
            client,
            eventloop,
            &shared,
            settings.data_dir.join("fleet-session"),
        );
        let view = FleetView {
            // user:password@ never reaches a page.
            broker: match url.split_once("://") {
                Some((scheme, rest)) => {
                    format!(
                        "{scheme}://{}",
                        rest.rsplit_once('@').map_or(rest, |(_, h)| h)
                    )
                }
                None => url.clone(),
            },
            connected: conn_rx.clone(),
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            let intake = tokio::spawn(intake::run(
                shared.clone(),
                trust,
                state,
                inbound_rx,
                bundle_rx,
                view_tx,
                shutdown.clone(),
            ));
            let reporter = tokio::spawn(report::run(
                shared.clone(),
                view_rx,
                conn_rx,
                shutdown.clone(),
            ));
            task::run(link, inbound_tx, conn_tx, shutdown).await;
            let _ = reporter.await;
            let _ = intake.await;
        });
        Started {
            task,
            view: Some(view),
            bundles: crate::bundle::BundleDoor::new(bundle_tx),
        }
    }
}

/// What the dashboard shows of the fleet link: read-only, copied on demand.
#[derive(Clone)]
pub struct FleetView {
    broker: String,
    connected: watch::Receiver<Option<u64>>,
    shared: Arc<Shared>,
}

/// The fleet link at one instant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetSummary {
    pub broker: String,
    pub device: String,
    pub connected: bool,
    /// The MQTT session number while connected.
    pub session: Option<u64>,
    /// The latest fleet command that finished.
    pub last_command: Option<AckSummary>,
}

impl FleetView {
    /// The link's last connection error, until it connects again.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .link_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    pub fn summary(&self) -> FleetSummary {
        let session = *self.connected.borrow();
        FleetSummary {
            broker: self.broker.clone(),
            device: self.shared.device.clone(),
            connected: session.is_some(),
            session,
            last_command: self.shared.out.last_ack(),
        }
    }
}

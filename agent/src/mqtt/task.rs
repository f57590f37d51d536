//! The connection: polls rumqttc's event loop and nothing else.
//!
//! rumqttc reconnects when polled again after an error, but at once and forever, and it does not
//! re-subscribe on a clean session. So this loop: waits out a backoff with jitter between failed
//! attempts (the crash-restart policy of dynos: exponential, equal jitter, capped, reset only by
//! a connection that lasted), subscribes
//! again after every ConnAck, and publishes the retained `online` status. Each connection gets a
//! new session number (persisted, so it grows across agent restarts too), carried by `online`
//! and by the Last Will (`offline`): a Will from an older session that lands after a newer
//! `online` is seen on our own status topic and answered by re-publishing `online`.

use super::state::{load_session, write_atomic};
use super::Shared;
use crate::backoff::BackoffPolicy;
use crate::usage::Channel;
use crate::util::now_ms;
use rand::Rng;
use roboku_wire::fleet::topic::{self, Address, Topic};
use roboku_wire::fleet::{DeviceStatus, Presence};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Packet, QoS};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Reconnect backoff: 250 ms doubling to 30 s, the first retry too (a broker that just dropped
/// us deserves a pause). A fleet of robots that lost a broker together comes back spread over the
/// jitter instead of all in the same second. A connection that lasted 10 s resets the count; one
/// dropped at once (a broker resending a poison message at every connect) keeps it growing.
const RECONNECT: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(250),
    max: Duration::from_secs(30),
    reset_after: Duration::from_secs(10),
    first_at_once: false,
};

/// A `cmd` or `desired` payload for the intake.
pub(super) struct Inbound {
    pub topic: Topic,
    pub payload: bytes::Bytes,
}

pub(super) struct Link {
    client: AsyncClient,
    eventloop: EventLoop,
    device: String,
    groups: Vec<String>,
    allow_unsigned: bool,
    session_path: PathBuf,
    session: u64,
    shared: Arc<Shared>,
    usage: crate::usage::Meter,
}

impl Link {
    pub fn new(
        client: AsyncClient,
        eventloop: EventLoop,
        shared: &Arc<Shared>,
        session_path: PathBuf,
    ) -> Link {
        Link {
            client,
            eventloop,
            device: shared.device.clone(),
            groups: shared.groups.clone(),
            allow_unsigned: shared.settings.mqtt.allow_unsigned,
            session_path,
            session: 0,
            shared: shared.clone(),
            usage: shared.usage.clone(),
        }
    }

    /// What `roboku doctor` shows of the link: the last error, `None` once connected.
    fn set_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.shared.link_error.lock() {
            *e = error;
        }
    }

    fn status(&self, state: Presence) -> Vec<u8> {
        serde_json::to_vec(&DeviceStatus {
            device: self.device.clone(),
            state,
            session: self.session,
            ts: now_ms(),
            groups: self.groups.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            allow_unsigned: self.allow_unsigned,
        })
        .unwrap_or_default()
    }

    /// Takes the next session number (persisted first) and arms the Last Will with it.
    fn next_session(&mut self) {
        self.session = load_session(&self.session_path).max(self.session) + 1;
        if let Err(e) = write_atomic(&self.session_path, format!("{}\n", self.session).as_bytes()) {
            tracing::warn!(error = %e, "saving the mqtt session counter failed");
        }
        let will = LastWill::new(
            topic::status(&self.device),
            self.status(Presence::Offline),
            QoS::AtLeastOnce,
            true,
        );
        self.eventloop.mqtt_options.set_last_will(will);
    }

    fn subscriptions(&self) -> Vec<String> {
        let mut addrs = vec![Address::Device(self.device.clone())];
        addrs.extend(self.groups.iter().cloned().map(Address::Group));
        let mut topics: Vec<String> = addrs.iter().flat_map(|a| [a.cmd(), a.desired()]).collect();
        topics.push(topic::status(&self.device));
        topics
    }

    fn on_connected(&self) {
        let topics = self.subscriptions();
        // The CONNECT that got us here (with its Will), and the SUBSCRIBE below.
        let will = self.eventloop.mqtt_options.last_will();
        let (wt, wp) = will.map_or((0, 0), |w| (w.topic.len(), w.message.len()));
        self.usage.add(
            Channel::Mqtt,
            crate::usage::connect_size(self.device.len(), wt, wp),
        );
        let size = crate::usage::subscribe_size(topics.iter().map(String::as_str));
        let subs = topics
            .into_iter()
            .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
        match self.client.try_subscribe_many(subs) {
            Ok(()) => self.usage.add(Channel::Mqtt, size),
            Err(e) => tracing::error!(error = %e, "mqtt subscribe could not be queued"),
        }
        self.publish_online();
    }

    fn publish_online(&self) {
        let payload = self.status(Presence::Online);
        let payload_len = payload.len();
        let r =
            self.client
                .try_publish(topic::status(&self.device), QoS::AtLeastOnce, true, payload);
        match r {
            Ok(()) => self
                .usage
                .published(&topic::status(&self.device), true, payload_len),
            Err(e) => tracing::error!(error = %e, "mqtt online status could not be queued"),
        }
    }

    /// A status on our own topic: a Will of an older session overwrote our `online`.
    fn on_own_status(&self, payload: &[u8]) {
        let Ok(s) = serde_json::from_slice::<DeviceStatus>(payload) else {
            return;
        };
        if s.state == Presence::Offline && s.session < self.session {
            tracing::info!(
                late = s.session,
                current = self.session,
                "a late Last Will overwrote our status; publishing online again"
            );
            self.publish_online();
        }
    }
}

pub(super) async fn run(
    mut link: Link,
    inbound: mpsc::Sender<Inbound>,
    connected: watch::Sender<Option<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let own_status = topic::status(&link.device);
    let mut failures: u32 = 0;
    let mut had_connack = false;
    let mut connected_at = None;
    link.next_session();
    loop {
        let event = tokio::select! {
            ev = link.eventloop.poll() => ev,
            _ = shutdown.changed() => break,
        };
        count(&link.usage, &event, &own_status);
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                had_connack = true;
                connected_at = Some(tokio::time::Instant::now());
                tracing::info!(session = link.session, code = ?ack.code, "mqtt connected");
                link.on_connected();
                link.set_error(None);
                let _ = connected.send(Some(link.session));
            }
            // A retained status predates our `online` (published after subscribing), which
            // replaces it anyway; only a live one can be a late Will landing after it.
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == own_status => {
                if !p.retain {
                    link.on_own_status(&p.payload)
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => match topic::parse(&p.topic) {
                Some(t @ (Topic::Cmd(_) | Topic::Desired(_))) => {
                    let msg = Inbound {
                        topic: t,
                        payload: p.payload,
                    };
                    // Back-pressure on the broker, never unbounded memory.
                    if inbound.send(msg).await.is_err() {
                        break;
                    }
                }
                _ => tracing::debug!(topic = p.topic, "ignoring message on an unexpected topic"),
            },
            Ok(_) => {}
            Err(e) => {
                let _ = connected.send(None);
                link.set_error(Some(e.to_string()));
                if had_connack {
                    // The next connection is a new session: a new number, a new Will.
                    had_connack = false;
                    link.next_session();
                }
                let lasted = connected_at.take().map_or(Duration::ZERO, |t| t.elapsed());
                failures = RECONNECT.next_count(failures, lasted);
                let delay = RECONNECT.delay(failures, rand::rngs::OsRng.gen::<f64>());
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, failures, "mqtt connection lost or refused");
                } else {
                    tracing::debug!(error = %e, retry_in_ms = delay.as_millis() as u64, "mqtt reconnect failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
    goodbye(&mut link).await;
    let _ = connected.send(None);
}

/// Counts what crossed the wire: incoming packets by their exact size (a `cmd` or `desired`
/// publish on `commands`, everything else on `mqtt`), outgoing acknowledgements and pings by
/// theirs (publishes are counted where they are queued, [`super::Outbox::publish`]).
fn count(usage: &crate::usage::Meter, event: &Result<Event, rumqttc::ConnectionError>, own: &str) {
    let (ch, n) = match event {
        Ok(Event::Incoming(Packet::Publish(p))) => {
            let ch = if p.topic == own {
                Channel::Reported
            } else {
                Channel::Commands
            };
            (ch, p.size())
        }
        Ok(Event::Incoming(p)) => (Channel::Mqtt, p.size()),
        // PUBACK, PUBREC, PUBREL, PUBCOMP: 4 bytes; PINGREQ, DISCONNECT: 2.
        Ok(Event::Outgoing(
            rumqttc::Outgoing::PubAck(_)
            | rumqttc::Outgoing::PubRec(_)
            | rumqttc::Outgoing::PubRel(_)
            | rumqttc::Outgoing::PubComp(_),
        )) => (Channel::Mqtt, 4),
        Ok(Event::Outgoing(rumqttc::Outgoing::PingReq | rumqttc::Outgoing::Disconnect)) => {
            (Channel::Mqtt, 2)
        }
        _ => return,
    };
    usage.add(ch, n as u64);
}

/// A clean goodbye: `offline` retained (a clean disconnect does not fire the Will), then
/// DISCONNECT, polling the loop a little so both leave; never longer than 2 s.
async fn goodbye(link: &mut Link) {
    if link.eventloop.network.is_none() {
        return;
    }
    let offline = link.status(Presence::Offline);
    let (status_topic, len) = (topic::status(&link.device), offline.len());
    if let Ok(()) = link
        .client
        .try_publish(status_topic.clone(), QoS::AtLeastOnce, true, offline)
    {
        link.usage.published(&status_topic, true, len);
    }
    let _ = link.client.try_disconnect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let ev = tokio::time::timeout_at(deadline, link.eventloop.poll()).await;
        if let Ok(e) = &ev {
            count(&link.usage, e, &status_topic);
        }
        match ev {
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
    tracing::info!("mqtt disconnected (offline published)");
}

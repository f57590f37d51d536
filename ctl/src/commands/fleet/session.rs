//! The CLI's MQTT connection: one short-lived clean session with a random client id, TCP_NODELAY
//! (shared options in `roboku_wire::fleet::client`), a task polling rumqttc's event loop, and
//! helpers that wait for the broker's SubAck/PubAck so a command is really out before we wait
//! for answers. Incoming messages queue until the command reads them.

use super::roster::Roster;
use super::BrokerArgs;
use anyhow::{bail, Context};
use rand::RngCore;
use roboku_wire::fleet::client::{self, rumqttc, TlsFiles};
use roboku_wire::fleet::topic;
use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeFilter};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A message from the broker.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: bytes::Bytes,
}

enum Control {
    SubAck,
    PubAck,
    Lost(String),
}

pub struct Session {
    client: AsyncClient,
    msgs: mpsc::UnboundedReceiver<Msg>,
    control: mpsc::UnboundedReceiver<Control>,
    task: tokio::task::JoinHandle<()>,
}

/// Every robot's retained status and reported state, read on a session of its own.
pub async fn read_fleet(broker: &BrokerArgs) -> anyhow::Result<Roster> {
    let mut s = Session::connect(&broker.broker, &broker.tls()).await?;
    s.subscribe(&[
        format!("{}/d/+/status", topic::ROOT),
        format!("{}/d/+/reported", topic::ROOT),
    ])
    .await?;
    let roster = s.roster(Duration::from_secs(3)).await;
    s.close().await;
    Ok(roster)
}

/// How long connecting and each broker round trip may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

impl Session {
    pub async fn connect(url: &str, tls: &TlsFiles) -> anyhow::Result<Session> {
        let id = format!("roboku-fleet-{:016x}", rand::rngs::OsRng.next_u64());
        let (opts, net) =
            client::options(url, &id, Duration::from_secs(30), tls).map_err(anyhow::Error::msg)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        eventloop.set_network_options(net);
        let (msg_tx, msgs) = mpsc::unbounded_channel();
        let (ctl_tx, mut control) = mpsc::unbounded_channel();
        let (up_tx, up_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut up = Some(up_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = up.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = msg_tx.send(Msg {
                            topic: p.topic,
                            payload: p.payload,
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ctl_tx.send(Control::SubAck);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = ctl_tx.send(Control::PubAck);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        match up.take() {
                            Some(tx) => {
                                let _ = tx.send(Err(e.to_string()));
                            }
                            None => {
                                let _ = ctl_tx.send(Control::Lost(e.to_string()));
                            }
                        }
                        break;
                    }
                }
            }
        });
        match tokio::time::timeout(BROKER_TIMEOUT, up_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => bail!("cannot connect to the broker {url}: {e}"),
            _ => bail!("cannot connect to the broker {url}: no answer in {BROKER_TIMEOUT:?}"),
        }
        // Drain nothing: control is empty until we ask for something.
        let _ = control.try_recv();
        Ok(Session {
            client,
            msgs,
            control,
            task,
        })
    }

    async fn wait(&mut self, want: fn(&Control) -> bool, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + BROKER_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.control.recv()).await {
                Ok(Some(c)) if want(&c) => return Ok(()),
                Ok(Some(Control::Lost(e))) => {
                    bail!("lost the broker while waiting for {what}: {e}")
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("lost the broker while waiting for {what}"),
                Err(_) => bail!("the broker did not confirm {what} in {BROKER_TIMEOUT:?}"),
            }
        }
    }

    /// Subscribes (QoS 1) and waits for the broker to confirm.
    pub async fn subscribe(&mut self, topics: &[String]) -> anyhow::Result<()> {
        let filters = topics
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
        self.client
            .subscribe_many(filters)
            .await
            .context("subscribe")?;
        self.wait(|c| matches!(c, Control::SubAck), "the subscription")
            .await
    }

    /// Publishes with QoS 1 and waits for the broker's PubAck.
    pub async fn publish(
        &mut self,
        topic: &str,
        retain: bool,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .context("publish")?;
        self.wait(|c| matches!(c, Control::PubAck), "the publish")
            .await
    }

    /// The next message before `deadline`, or `None`.
    pub async fn next(&mut self, deadline: Instant) -> Option<Msg> {
        tokio::time::timeout_at(deadline, self.msgs.recv())
            .await
            .ok()
            .flatten()
    }

    /// Messages until none came for `quiet` (retained messages arrive right after subscribing;
    /// MQTT 3.1.1 has no "end of retained" marker), at most until `max`.
    pub async fn settle(&mut self, quiet: Duration, max: Duration) -> Vec<Msg> {
        let end = Instant::now() + max;
        let mut out = Vec::new();
        loop {
            let deadline = (Instant::now() + quiet).min(end);
            match self.next(deadline).await {
                Some(m) => out.push(m),
                None => return out,
            }
        }
    }

    /// The retained statuses (and whatever else this session is subscribed to) folded into a
    /// roster, once the broker has been quiet for 300 ms, at most `max`.
    pub async fn roster(&mut self, max: Duration) -> Roster {
        let mut roster = Roster::default();
        for m in self.settle(Duration::from_millis(300), max).await {
            roster.add(&m.topic, &m.payload);
        }
        roster
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

//! An MQTT drain's connection: one QoS 1 message per log line on the URL's topic, the line as
//! JSON (`ts`, `app`, `dyno`, `source`, `line`, as `GET .../logs` streams them). A batch counts
//! as delivered once the broker has sent a PUBACK for every message of it, so a broker that
//! goes away mid-batch gets the whole batch again (at-least-once). The connection has its own
//! event loop, driven only while a batch is sent; an idle connection the broker dropped is
//! found by the next batch, which reconnects.

use super::url::Target;
use roboku_wire::fleet::client::{self, rumqttc, TlsFiles};
use roboku_wire::LogLine;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, Packet, QoS};
use std::path::PathBuf;
use std::time::Duration;

/// Requests queued towards the event loop; publishing waits when it is full.
const QUEUE: usize = 256;
/// Longer than a drain's idle tick, so a drain with lines every few seconds keeps its session.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

/// What an MQTT drain connects with besides its URL.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// The MQTT client id (one per drain: two drains must not take each other's session).
    pub client_id: String,
    /// `drain_ca_file`, for `mqtts://`.
    pub ca: Option<PathBuf>,
}

pub struct MqttConn {
    client: AsyncClient,
    events: EventLoop,
    topic: String,
}

/// Connects and waits for the broker's CONNACK; a refusal (bad credentials, not authorised)
/// names the broker's reason.
pub async fn connect(target: &Target, setup: &Setup) -> Result<MqttConn, String> {
    let Target::Mqtt {
        tls,
        host,
        port,
        topic,
        user,
        password,
    } = target
    else {
        return Err("not an MQTT drain".into());
    };
    let scheme = if *tls { "mqtts" } else { "mqtt" };
    let url = if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    };
    let files = TlsFiles {
        ca: setup.ca.clone().filter(|_| *tls),
        ..TlsFiles::default()
    };
    let (mut opts, net) = client::options(&url, &setup.client_id, KEEP_ALIVE, &files)?;
    if let Some(user) = user {
        opts.set_credentials(user.clone(), password.clone().unwrap_or_default());
    }
    let (client, mut events) = AsyncClient::new(opts, QUEUE);
    events.set_network_options(net);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code != ConnectReturnCode::Success {
                    return Err(format!("the broker refused the connection: {:?}", ack.code));
                }
                break;
            }
            Ok(_) => {}
            Err(e) => return Err(format!("MQTT {host}:{port}: {e}")),
        }
    }
    Ok(MqttConn {
        client,
        events,
        topic: topic.clone(),
    })
}

impl MqttConn {
    /// Publishes every line and returns once each is acknowledged.
    /// Publishes `lines` and waits for their PUBACKs; the bytes on the wire (publishes as
    /// rumqttc writes them and the 4-byte PUBACKs), for the byte counters.
    pub async fn send(&mut self, lines: &[LogLine]) -> Result<u64, String> {
        let client = &self.client;
        let topic = &self.topic;
        let publish = async {
            let mut bytes = 0;
            for l in lines {
                let body = serde_json::to_vec(l).map_err(|e| format!("encoding a line: {e}"))?;
                bytes += crate::usage::publish_size(topic.len(), true, body.len()) + 4;
                client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, body)
                    .await
                    .map_err(|e| format!("MQTT publish: {e}"))?;
            }
            Ok::<u64, String>(bytes)
        };
        let events = &mut self.events;
        let acked = async {
            let mut acks = 0;
            while acks < lines.len() {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                    Ok(Event::Incoming(Packet::Disconnect)) => {
                        return Err("the broker disconnected".to_string())
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("MQTT: {e}")),
                }
            }
            Ok(())
        };
        tokio::try_join!(publish, acked).map(|(bytes, ())| bytes)
    }
}

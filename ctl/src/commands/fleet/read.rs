//! A signed read of one robot (`fleet logs`, `fleet support`): the command sent to the device,
//! its answer gathered from the parts on the device's logs topic and the command's final ack.

use super::session::Session;
use super::{new_id, seal_bytes, BrokerArgs};
use crate::output::now_ms;
use roboku_wire::fleet::seal::SecretKey;
use roboku_wire::fleet::topic::{self, Address, Topic};
use roboku_wire::fleet::{payload_ref, Ack, Action, Envelope};
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::time::Instant;

/// An answer made of parts, complete once its final ack and every part it announced are in.
pub(super) trait Answer: Default {
    type Part: DeserializeOwned;
    /// The command id a part answers.
    fn id_of(part: &Self::Part) -> &str;
    fn part(&mut self, part: Self::Part);
    fn ack(&mut self, ack: Ack);
    fn done(&self) -> bool;
}

/// What is asked, of whom, signed with what.
pub(super) struct Read<'a> {
    pub broker: &'a BrokerArgs,
    pub key: Option<&'a SecretKey>,
    pub device: &'a str,
    pub app: &'a str,
    pub action: Action,
    pub ttl_secs: u64,
    pub wait_secs: u64,
}

/// Sends `read` and gathers its answer until it is complete or `wait_secs` passed (whatever
/// came by then: the caller says what is missing).
pub(super) async fn ask<A: Answer>(read: Read<'_>) -> anyhow::Result<A> {
    let to = Address::Device(read.device.to_string());
    let id = new_id();
    let env = Envelope::new(
        id.clone(),
        now_ms(),
        read.ttl_secs * 1000,
        to.as_path(),
        read.app,
        &read.action,
    );
    let payload = seal_bytes(&serde_json::to_vec(&env)?, read.key);
    let reference = payload_ref(&payload);
    let mut s = Session::connect(&read.broker.broker, &read.broker.tls()).await?;
    s.subscribe(&[topic::ack(read.device), topic::logs(read.device)])
        .await?;
    s.publish(&to.cmd(), false, payload).await?;
    let mut answer = A::default();
    let deadline = Instant::now() + Duration::from_secs(read.wait_secs);
    while !answer.done() {
        let Some(m) = s.next(deadline).await else {
            break;
        };
        match topic::parse(&m.topic) {
            Some(Topic::Logs(_)) => match serde_json::from_slice::<A::Part>(&m.payload) {
                Ok(p) if A::id_of(&p) == id => answer.part(p),
                _ => {}
            },
            Some(Topic::Ack(_)) => match serde_json::from_slice::<Ack>(&m.payload) {
                Ok(ack)
                    if (ack.id.as_deref() == Some(&id) || ack.reference == reference)
                        && ack.status.is_final() =>
                {
                    answer.ack(ack)
                }
                _ => {}
            },
            _ => {}
        }
    }
    s.close().await;
    Ok(answer)
}

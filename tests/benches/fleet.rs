//! Fleet benchmark (`cargo bench -p roboku-tests --bench fleet`), against a real Mosquitto on
//! loopback (`apt-get install mosquitto`).
//!
//! 1. Latency: a signed command published -> its ACCEPTED ack received, 200 times, one agent.
//! 2. Fan-out: 200 agents on one broker, one group scale command -> SUCCEEDED from all of them.
//!
//! The agents are robokud's real MQTT module (`robokud::mqtt`: connection task, verification,
//! intake with its fsync'd replay state, per-app workers, acks, reports) running in this
//! process, each with its own data dir, device id and MQTT connection; only the engine behind
//! them is a stub (`EngineHandle::stub`) that answers at once, so the numbers are the fleet
//! path's own: broker hops, ed25519 verification, JSON, the state fsync and the acks.

#[path = "../tests/fleet/kit.rs"]
mod kit;

use kit::{Broker, Probe};
use roboku_wire::fleet::seal::{self, SecretKey};
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, Ack, AckStatus, Action, Envelope, ScaleBody};
use robokud::engine::{Command, EngineHandle, Reply};
use robokud::settings::Settings;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const COMMANDS: usize = 200;
const AGENTS: usize = 200;
const ROUNDS: usize = 5;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn stub_engine() -> EngineHandle {
    EngineHandle::stub(|_, cmd| match cmd {
        Command::Scale { .. } => Ok(Reply::Formation(Vec::new())),
        Command::ListApps => Ok(Reply::Apps(Vec::new())),
        other => Err(robokud::engine::EngineError::Unavailable(format!(
            "stub engine: {other:?}"
        ))),
    })
}

/// Starts one in-process agent; returns its shutdown sender and task.
fn agent(
    root: &std::path::Path,
    broker: &Broker,
    device: &str,
    group: &str,
    key: &SecretKey,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let mut s = Settings {
        data_dir: root.join(device),
        ..Settings::default()
    };
    std::fs::create_dir_all(s.tmp_dir()).expect("data dir");
    s.mqtt.broker = Some(broker.url());
    s.mqtt.device_id = Some(device.into());
    s.mqtt.groups = vec![group.into()];
    s.mqtt.trusted_keys = vec![seal::encode_public(&key.verifying_key())];
    s.mqtt.telemetry_secs = 0;
    let prepared = robokud::mqtt::prepare(&s)
        .expect("settings")
        .expect("broker set");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = prepared.start(&s, stub_engine(), None, rx);
    (tx, task)
}

fn scale(id: String, to: &Address, version: u64, web: u32) -> Envelope {
    let action = Action::Scale(ScaleBody {
        counts: [("web".to_string(), web)].into(),
    });
    let mut env = Envelope::new(id, now_ms(), 600_000, to.as_path(), "bench", &action);
    env.version = Some(version);
    env
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &[Duration], p: usize) -> Duration {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn wait_online(probe: &mut Probe, n: usize) {
    let mut online = BTreeSet::new();
    probe.wait_msg(60, &format!("{n} agents online"), |t, p| {
        if let Some(topic::Topic::Status(d)) = topic::parse(t) {
            if String::from_utf8_lossy(p).contains("\"online\"") {
                online.insert(d);
            }
        }
        (online.len() >= n).then_some(())
    });
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let key = seal::secret_from_seed([42; 32]);
    let root = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();

    // 1. Latency.
    let (stop1, task1) = agent(root.path(), &broker, "lat-1", "solo", &key);
    let mut probe = Probe::connect(
        &broker,
        &[topic::ack("lat-1"), format!("{}/d/+/status", topic::ROOT)],
    );
    wait_online(&mut probe, 1);
    let to = Address::Device("lat-1".into());
    let mut lat = Vec::with_capacity(COMMANDS);
    let base = now_ms();
    for i in 0..COMMANDS {
        let env = scale(format!("lat-{i}"), &to, base + i as u64, 1);
        let payload = seal::seal(&serde_json::to_vec(&env).expect("json"), &key);
        let r = payload_ref(&payload);
        probe.seen.clear();
        let t0 = Instant::now();
        probe.publish(&to.cmd(), false, payload);
        probe.wait_msg(10, "ACCEPTED", |t, p| {
            let a: Ack = serde_json::from_slice(p)
                .ok()
                .filter(|_| t.ends_with("/ack"))?;
            (a.reference == r && a.status == AckStatus::Accepted).then_some(())
        });
        lat.push(t0.elapsed());
    }
    let med = median(&mut lat);
    println!(
        "command -> ACCEPTED, {COMMANDS} commands: median {:.2} ms, p90 {:.2} ms, max {:.2} ms (target < 10 ms)",
        med.as_secs_f64() * 1e3,
        pct(&lat, 90).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    let _ = stop1.send(true);
    let _ = rt.block_on(task1);

    // 2. Fan-out to 200 agents.
    let t_start = Instant::now();
    let agents: Vec<_> = (0..AGENTS)
        .map(|i| agent(root.path(), &broker, &format!("bot-{i:03}"), "bench", &key))
        .collect();
    let mut probe = Probe::connect(
        &broker,
        &[
            format!("{}/d/+/ack", topic::ROOT),
            format!("{}/d/+/status", topic::ROOT),
        ],
    );
    wait_online(&mut probe, AGENTS);
    println!(
        "{AGENTS} in-process agents connected in {:.2} s",
        t_start.elapsed().as_secs_f64()
    );
    let group = Address::Group("bench".into());
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let env = scale(format!("fan-{round}"), &group, now_ms() + round as u64, 2);
        let payload = seal::seal(&serde_json::to_vec(&env).expect("json"), &key);
        let r = payload_ref(&payload);
        probe.seen.clear();
        let mut done = BTreeSet::new();
        let t0 = Instant::now();
        probe.publish(&group.cmd(), false, payload);
        probe.wait_msg(30, &format!("SUCCEEDED from {AGENTS} agents"), |t, p| {
            let a: Ack = serde_json::from_slice(p)
                .ok()
                .filter(|_| t.ends_with("/ack"))?;
            if a.reference == r && a.status == AckStatus::Succeeded {
                done.insert(a.device);
            }
            (done.len() == AGENTS).then_some(())
        });
        rounds.push(t0.elapsed());
    }
    let fan = median(&mut rounds);
    println!(
        "group scale -> SUCCEEDED on all {AGENTS} agents, {ROUNDS} rounds: median {:.0} ms, worst {:.0} ms (target < 2000 ms)",
        fan.as_secs_f64() * 1e3,
        rounds[rounds.len() - 1].as_secs_f64() * 1e3
    );
    for (stop, task) in agents {
        let _ = stop.send(true);
        let _ = rt.block_on(task);
    }
}

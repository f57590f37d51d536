//! Byte accounting against what really crossed the wire, and a telemetry budget over a
//! simulated day (the usage clock accelerated by the debug-only `ROBOKU_TEST_USAGE_CLOCK` knob).

use super::kit::{keygen, wait_for, Agent, Broker, Probe};
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::AckStatus;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// A TCP proxy in front of the broker that counts the bytes each way (TCP payload: what the
/// broker's own `$SYS/broker/bytes/*` counters count).
struct CountingProxy {
    port: u16,
    /// Client to broker, broker to client.
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    /// Connections whose both directions have not ended yet.
    open: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(broker_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (up, down, open) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (u, d, o) = (up.clone(), down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", broker_port)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                o.fetch_add(2, Ordering::SeqCst);
                pipe(&client, &server, u.clone(), o.clone());
                pipe(&server, &client, d.clone(), o.clone());
            }
        });
        CountingProxy {
            port,
            up,
            down,
            open,
        }
    }

    fn total(&self) -> u64 {
        self.up.load(Ordering::SeqCst) + self.down.load(Ordering::SeqCst)
    }
}

fn pipe(from: &TcpStream, to: &TcpStream, count: Arc<AtomicU64>, open: Arc<AtomicU64>) {
    let (mut from, mut to) = (
        from.try_clone().expect("clone"),
        to.try_clone().expect("clone"),
    );
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    count.fetch_add(n as u64, Ordering::SeqCst);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
        open.fetch_sub(1, Ordering::SeqCst);
    });
}

/// `roboku --json usage` of `a`: (day, channel -> (today, month, flow)).
fn usage(a: &Agent) -> Option<(String, u64, serde_json::Value)> {
    let v = a.roboku_json(&["usage"])?;
    Some((v["day"].as_str()?.to_string(), v["now"].as_u64()?, v))
}

fn channel(v: &serde_json::Value, name: &str) -> (u64, u64, String) {
    let c = v["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no channel {name} in {v}"));
    (
        c["today"].as_u64().unwrap_or(0),
        c["month"].as_u64().unwrap_or(0),
        c["flow"].as_str().unwrap_or("").to_string(),
    )
}

/// The MQTT channels (everything but artifact downloads and drains) in a saved usage.json.
fn saved_mqtt_bytes(a: &Agent) -> u64 {
    let path = a.dir.path().join("data").join("usage.json");
    let text = std::fs::read_to_string(&path).expect("usage.json after a clean stop");
    let v: serde_json::Value = serde_json::from_str(&text).expect("usage.json is JSON");
    v["today"]
        .as_object()
        .expect("today")
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "artifacts" | "drains"))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

#[test]
fn usage_byte_counts_match_what_crossed_the_wire_and_survive_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, public) = keygen(dir.path(), "fleet.key");
    let broker = Broker::start();
    let proxy = CountingProxy::start(broker.port);
    let url = format!("mqtt://127.0.0.1:{}", proxy.port);
    let mut a = Agent::start_env(
        &broker,
        "u1",
        &[],
        &public,
        &["--mqtt", &url],
        &[("ROBOKU_TEST_TELEMETRY_MS", "20")],
    );
    // Commands in and acks out: refused payloads still get an ack.
    let mut probe = Probe::connect(&broker, &[topic::ack("u1")]);
    wait_for(20, "u1 connected", || {
        a.log().contains("mqtt connected").then_some(())
    });
    for i in 0..20 {
        let payload = format!(
            "{{\"not\": \"a command\", \"n\": {i}, \"pad\": \"{}\"}}",
            "x".repeat(2000)
        );
        probe.publish(
            &Address::Device("u1".into()).cmd(),
            false,
            payload.into_bytes(),
        );
    }
    let mut acks = 0;
    while acks < 20 {
        let (t, _) = probe
            .recv(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{acks} of 20 acks came"));
        if t == topic::ack("u1") {
            acks += 1;
        }
    }
    wait_for(60, "100 kB of telemetry counted", || {
        let (_, _, v) = usage(&a)?;
        (channel(&v, "telemetry").0 > 100_000).then_some(())
    });
    let (_, _, v) = usage(&a).expect("usage");
    for ch in ["commands", "acks", "reported", "mqtt"] {
        assert!(channel(&v, ch).0 > 0, "{ch} counted nothing: {v}");
    }
    a.stop();
    wait_for(20, "the proxied connection to close", || {
        (proxy.open.load(Ordering::SeqCst) == 0).then_some(())
    });
    let counted = saved_mqtt_bytes(&a);
    let wire = proxy.total();
    let off = (counted as f64 - wire as f64).abs() / wire as f64;
    eprintln!(
        "usage: robokud counted {counted} MQTT bytes, the proxy saw {wire} ({:.2} % apart); load {}",
        off * 100.0,
        load_avg().trim()
    );
    assert!(
        off <= 0.05,
        "robokud counted {counted} bytes, {wire} crossed the wire"
    );
    // Persisted: a restart goes on from the saved counts...
    a.restart();
    let before = wait_for(20, "usage after a restart", || usage(&a));
    let sum = |v: &serde_json::Value| -> u64 {
        v["channels"]
            .as_array()
            .map(|cs| cs.iter().map(|c| c["today"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    assert!(sum(&before.2) >= counted, "{}", before.2);
    // ...and a kill -9 leaves a file that loads (written whole or not at all), never less than
    // what was saved before.
    wait_for(30, "the counters saved again", || {
        let text = std::fs::read_to_string(a.dir.path().join("data/usage.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let saved: u64 = v["today"]
            .as_object()?
            .values()
            .map(|n| n.as_u64().unwrap_or(0))
            .sum();
        (saved > sum(&before.2)).then_some(())
    });
    a.kill9();
    let _ = std::fs::remove_file(a.socket());
    a.restart();
    let after = wait_for(20, "usage after a kill -9", || usage(&a));
    assert!(sum(&after.2) > sum(&before.2), "{}", after.2);
    assert!(!a.dir.path().join("data/usage.json.bad").exists());
    drop(probe);
}

/// 2026-12-03T00:00:00Z and the next midnight.
const DEC3: u64 = 1_796_256_000_000;
const DEC4: u64 = DEC3 + 86_400_000;
/// A simulated day lasts 60 s.
const SCALE: u64 = 1440;

#[test]
fn usage_a_telemetry_budget_of_1mb_a_day_holds_over_a_simulated_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, public) = keygen(dir.path(), "fleet.key");
    let broker = Broker::start();
    // What the broker delivers on the telemetry topic, with the time it arrived.
    let (tx, rx) = mpsc::channel::<(Instant, u64)>();
    let mut telemetry = Probe::connect(&broker, &[topic::telemetry("b1")]);
    std::thread::spawn(move || {
        while let Some((t, p)) = telemetry.recv(Duration::from_secs(600)) {
            let size = robokud::usage::publish_size(t.len(), false, p.len());
            if tx.send((Instant::now(), size)).is_err() {
                return;
            }
            telemetry.seen.clear();
        }
    });
    let clock = format!("{DEC3}*{SCALE}");
    let a = Agent::start_env(
        &broker,
        "b1",
        &[],
        &public,
        &["--budget", "telemetry=1MB/day"],
        &[
            ("ROBOKU_TEST_USAGE_CLOCK", clock.as_str()),
            ("ROBOKU_TEST_TELEMETRY_MS", "2"),
        ],
    );
    let budget = 1u64 << 20;
    // The budget is spent before the day ends: telemetry pauses.
    let (paused_at, sim_now, used) =
        wait_for(70, "telemetry paused by its budget on 2026-12-03", || {
            let (day, now, v) = usage(&a)?;
            assert_eq!(
                day, "2026-12-03",
                "the day ended before the budget was spent (machine too slow?): {v}"
            );
            let (today, _, flow) = channel(&v, "telemetry");
            (flow == "paused").then_some((Instant::now(), now, today))
        });
    assert!(
        used <= budget,
        "robokud counted {used} telemetry bytes today, budget {budget}"
    );
    // The reported state says so (compact: totals, bytes per channel, what is held back).
    let mut probe = Probe::connect(&broker, &[topic::ack("b1"), topic::reported("b1")]);
    let rep_topic = topic::reported("b1");
    let summary = probe.wait_msg(30, "reported with telemetry paused", |t, p| {
        if t != rep_topic {
            return None;
        }
        let r: roboku_wire::fleet::Reported = serde_json::from_slice(p).ok()?;
        let u = r.usage?;
        (u.paused == ["telemetry"]).then_some(u)
    });
    assert_eq!(summary.day, "2026-12-03");
    assert!(
        summary.by.get("telemetry").copied().unwrap_or(0) > budget / 2,
        "{summary:?}"
    );
    assert!(summary.today >= summary.by["telemetry"], "{summary:?}");
    // Commands and acks still flow while telemetry is paused.
    let bad = b"{\"garbage\": true}".to_vec();
    let r = roboku_wire::fleet::payload_ref(&bad);
    probe.publish(&Address::Device("b1".into()).cmd(), false, bad);
    assert_eq!(probe.final_ack("b1", &r).status, AckStatus::Rejected);
    // The next day the budget is fresh: telemetry flows again.
    wait_for(90, "2026-12-04 with telemetry open again", || {
        let (day, _, v) = usage(&a)?;
        (day == "2026-12-04" && channel(&v, "telemetry").2 == "open").then_some(())
    });
    // Where midnight fell in real time, from the clock sample taken while paused.
    let midnight = paused_at + Duration::from_millis((DEC4 - sim_now) / SCALE);
    let cutoff = midnight - Duration::from_secs(1);
    let mut day_bytes = 0;
    let mut while_paused = 0;
    let mut next_day = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while next_day == 0 || Instant::now() < midnight + Duration::from_secs(2) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((at, size)) = rx.recv_timeout(left) else {
            break;
        };
        if at < cutoff {
            day_bytes += size;
            // Sent before the pause was seen, some may still be on their way.
            if at > paused_at + Duration::from_millis(500) {
                while_paused += 1;
            }
        } else if at > midnight + Duration::from_secs(1) {
            next_day += 1;
        }
    }
    eprintln!(
        "usage: {day_bytes} telemetry bytes reached the broker on the simulated 2026-12-03 \
         (budget {budget}); robokud counted {used} when it paused; load {}",
        load_avg().trim()
    );
    assert!(
        day_bytes <= budget,
        "{day_bytes} bytes of telemetry in a day, budget {budget}"
    );
    assert!(
        day_bytes >= budget * 3 / 4,
        "the budget was not used: {day_bytes}"
    );
    assert_eq!(while_paused, 0, "telemetry reached the broker while paused");
    assert!(next_day > 0, "no telemetry on the next day");
}

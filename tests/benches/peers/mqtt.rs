//! MQTT command -> ACCEPTED: one robokud process on a loopback Mosquitto the bench starts (the
//! fleet tests' kit: broker, key pair from `roboku fleet keygen`, a robokud trusting it), and
//! three timings per round, each from the bench's own MQTT probe:
//! - floor: the bare broker round trip, a QoS 1 publish to a topic the probe subscribed to;
//! - signed: a scale envelope sealed in-process with the fleet key, published on the robot's
//!   command topic, until the robot's ACCEPTED ack (broker hops, ed25519, the fsync'd replay
//!   state);
//! - CLI: `roboku fleet scale --device` (process start, key, connect, seal, publish) until the
//!   same ack, as an operator sees it.
//!
//! Each command scales an app (one release, `sleep`) to zero: accepted, then a no-op.

use crate::kit::{self, Broker, Probe};
use roboku_wire::fleet::seal;
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, Ack, AckStatus, Action, Envelope, ScaleBody};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEVICE: &str = "bench-bot";
/// The app the signed envelopes scale; the CLI scales [`CLI_APP`] (per-app versions apart).
const PROBE_APP: &str = "probe";
const CLI_APP: &str = "cli";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One round's three figures, ms.
pub struct Round {
    pub floor_ms: f64,
    pub signed_ms: f64,
    pub cli_ms: f64,
}

pub struct Mqtt {
    // Field order is drop order: the robot stops before its broker.
    robot: kit::Agent,
    probe: Probe,
    _broker: Broker,
    key: PathBuf,
    secret: seal::SecretKey,
    broker_url: String,
    sent: u64,
    _dir: tempfile::TempDir,
}

impl Mqtt {
    pub fn start() -> Result<Mqtt, String> {
        let broker = Broker::start();
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let (key, public) = kit::keygen(dir.path(), "bench.key");
        let text =
            std::fs::read_to_string(&key).map_err(|e| format!("read {}: {e}", key.display()))?;
        let secret = seal::parse_secret(text.trim())
            .map_err(|e| format!("parse the key {}: {e}", key.display()))?;
        let robot = kit::Agent::start(&broker, DEVICE, &["bench"], &public);
        // A scale needs a release: each app gets one of `sleep`, scaled to zero by every
        // command (the first stops its dyno, the others change nothing).
        let src = dir.path().join("app");
        std::fs::create_dir(&src).map_err(|e| format!("mkdir {}: {e}", src.display()))?;
        let procfile = src.join("Procfile");
        std::fs::write(&procfile, kit::PROCFILE_SLEEP)
            .map_err(|e| format!("write {}: {e}", procfile.display()))?;
        let src = src.display().to_string();
        for app in [PROBE_APP, CLI_APP] {
            for args in [vec!["apps:create", app], vec!["deploy", "-a", app, &src]] {
                robot
                    .roboku_json(&args)
                    .ok_or_else(|| format!("roboku {} on the MQTT robot failed", args.join(" ")))?;
            }
        }
        let mut probe = Probe::connect(
            &broker,
            &[
                topic::ack(DEVICE),
                topic::status(DEVICE),
                ping_topic().to_string(),
            ],
        );
        probe.wait_msg(60, "the robot online", |t, p| {
            (t == topic::status(DEVICE) && String::from_utf8_lossy(p).contains("\"online\""))
                .then_some(())
        });
        Ok(Mqtt {
            broker_url: broker.url(),
            robot,
            probe,
            _broker: broker,
            key,
            secret,
            sent: 0,
            _dir: dir,
        })
    }

    /// One round: the floor, a signed envelope, a CLI command, in that order.
    pub fn round(&mut self) -> Result<Round, String> {
        self.sent += 1;
        let ping = format!("ping-{}-{}", std::process::id(), self.sent).into_bytes();
        self.probe.seen.clear();
        let t = Instant::now();
        self.probe.publish(ping_topic(), false, ping.clone());
        self.probe.wait_msg(10, "the ping back", |t, p| {
            (t == ping_topic() && p == ping.as_slice()).then_some(())
        });
        let floor_ms = ms(t.elapsed());

        let to = Address::Device(DEVICE.into());
        let action = Action::Scale(ScaleBody {
            counts: [("web".to_string(), 0)].into(),
        });
        let mut env = Envelope::new(
            format!("bench-{}", self.sent),
            now_ms(),
            600_000,
            to.as_path(),
            PROBE_APP,
            &action,
        );
        // Strictly growing: the clock never goes back within a run and `sent` grows.
        env.version = Some(now_ms() + self.sent);
        let json = serde_json::to_vec(&env).map_err(|e| format!("envelope json: {e}"))?;
        let payload = seal::seal(&json, &self.secret);
        let r = payload_ref(&payload);
        self.probe.seen.clear();
        let t = Instant::now();
        self.probe.publish(&to.cmd(), false, payload);
        self.probe
            .wait_msg(10, "ACCEPTED of the signed envelope", |t, p| {
                let a: Ack = serde_json::from_slice(p)
                    .ok()
                    .filter(|_| t.ends_with("/ack"))?;
                (a.reference == r && a.status == AckStatus::Accepted).then_some(())
            });
        let signed_ms = ms(t.elapsed());
        // Its final ack too, so the robot is idle when the CLI's command comes.
        self.probe.final_ack(DEVICE, &r);

        self.probe.seen.clear();
        let t = Instant::now();
        let cli = Command::new(kit::bin("roboku"))
            .args(["fleet", "scale", "--device", DEVICE, "-a", CLI_APP])
            .args(["--no-desired", "--wait", "30", "--key"])
            .arg(&self.key)
            .arg("web=0")
            .env("ROBOKU_BROKER", &self.broker_url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run roboku fleet scale: {e}"))?;
        self.probe
            .wait_msg(30, "ACCEPTED of the CLI's command", |t, p| {
                let a: Ack = serde_json::from_slice(p)
                    .ok()
                    .filter(|_| t.ends_with("/ack"))?;
                (a.status == AckStatus::Accepted && a.details.app.as_deref() == Some(CLI_APP))
                    .then_some(())
            });
        let cli_ms = ms(t.elapsed());
        let out = cli
            .wait_with_output()
            .map_err(|e| format!("wait for roboku fleet scale: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "roboku fleet scale --device {DEVICE} -a {CLI_APP} web=0 exited with {}: {}\
                 robot log: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.robot.log()
            ));
        }
        Ok(Round {
            floor_ms,
            signed_ms,
            cli_ms,
        })
    }
}

fn ping_topic() -> &'static str {
    "bench/ping"
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

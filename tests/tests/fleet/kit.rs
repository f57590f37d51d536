//! The fleet tests' kit: a real Mosquitto on a free loopback port, real robokud processes (each
//! with its own data dir, socket, cgroup name and port range), the real `roboku` CLI, a tiny
//! artifact HTTP server, and an MQTT probe that publishes hand-made payloads and collects acks.

#![allow(dead_code)]

use roboku_wire::fleet::client::{self, rumqttc, TlsFiles};
use roboku_wire::fleet::{topic, Ack};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, or panics with `what` after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `target/debug` (or wherever this test binary's profile dir is).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for b in ["robokud", "roboku"] {
        assert!(
            dir.join(b).exists(),
            "{} not found: build the binaries first (`cargo build --workspace --bins`; ./tests/run does)",
            dir.join(b).display()
        );
    }
    dir
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A Mosquitto the test owns.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// More mosquitto.conf lines (e.g. a TLS listener).
    extra_conf: String,
    /// `message_size_limit` (bytes; `None`: mosquitto's default, MQTT's 256 MB).
    size_limit: Option<usize>,
}

fn mosquitto() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v mosquitto"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "mosquitto is not installed: the fleet tests need a real MQTT broker. \
         Install it with `apt-get install mosquitto` (CI does; stop the system instance it \
         starts, the tests run their own on loopback)"
    );
}

impl Broker {
    pub fn start() -> Broker {
        Broker::start_with("")
    }

    /// A broker with `message_size_limit` `limit` (`None`: none, as mosquitto ships).
    pub fn start_with_limit(limit: Option<usize>) -> Broker {
        Broker::start_conf(limit, "")
    }

    /// A broker with more mosquitto.conf lines after the plain loopback listener.
    pub fn start_with(extra_conf: &str) -> Broker {
        Broker::start_conf(Some(1 << 20), extra_conf)
    }

    fn start_conf(limit: Option<usize>, extra_conf: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = Broker {
            port: free_port(),
            dir,
            child: None,
            extra_conf: extra_conf.to_string(),
            size_limit: limit,
        };
        b.restart();
        b
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// The broker's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Replaces the extra mosquitto.conf lines; they apply from the next [`Broker::restart`].
    pub fn set_extra_conf(&mut self, extra_conf: &str) {
        self.extra_conf = extra_conf.to_string();
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, with nothing retained (persistence off).
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nlog_dest stderr\n{}{}",
                self.port,
                self.size_limit
                    .map(|l| format!("message_size_limit {l}\n"))
                    .unwrap_or_default(),
                self.extra_conf
            ),
        )
        .expect("write mosquitto.conf");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("mosquitto log");
        let child = Command::new(mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let port = self.port;
        wait_for(10, "mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

static NEXT_AGENT: AtomicU32 = AtomicU32::new(0);

/// A robokud process.
pub struct Agent {
    pub device: String,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    /// More environment for robokud (test knobs such as `ROBOKU_TEST_CLOCK`).
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Agent {
    /// Starts robokud as `device` in `groups`, trusting `key_pub`, on `broker`.
    pub fn start(broker: &Broker, device: &str, groups: &[&str], key_pub: &Path) -> Agent {
        Agent::start_with(broker, device, groups, key_pub, &[])
    }

    /// Like [`Agent::start`], with extra robokud flags.
    pub fn start_with(
        broker: &Broker,
        device: &str,
        groups: &[&str],
        key_pub: &Path,
        extra: &[&str],
    ) -> Agent {
        Agent::start_env(broker, device, groups, key_pub, extra, &[])
    }

    /// Like [`Agent::start_with`], with more environment variables for robokud.
    pub fn start_env(
        broker: &Broker,
        device: &str,
        groups: &[&str],
        key_pub: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let n = NEXT_AGENT.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::tempdir().expect("tempdir");
        // Ports below the ephemeral range, apart for each agent of this test binary.
        let base = 23000 + (std::process::id() % 40) * 50 + n * 20;
        let mut args = vec![
            "--data-dir".to_string(),
            dir.path().join("data").display().to_string(),
            "--on-exit".into(),
            "stop".into(),
            "--grace-secs".into(),
            "2".into(),
            "--cgroup-name".into(),
            format!("rk-fleet-{}-{n}", std::process::id()),
            "--port-range".into(),
            format!("{base}-{}", base + 19),
            "--mqtt".into(),
            broker.url(),
            "--device-id".into(),
            device.into(),
            "--trusted-key".into(),
            key_pub.display().to_string(),
            "--telemetry-secs".into(),
            "5".into(),
        ];
        for g in groups {
            args.push("--group".into());
            args.push(g.to_string());
        }
        if extra.contains(&"--mqtt") {
            // The caller names the broker URL (e.g. its TLS listener).
            let i = args.iter().position(|a| a == "--mqtt").unwrap_or(0);
            args.drain(i..i + 2);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut a = Agent {
            device: device.into(),
            dir,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        a.restart();
        a
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("data").join("robokud.sock")
    }

    /// Sets `flag` to `value` for the next [`Agent::restart`] (added when it was not given).
    pub fn set_flag(&mut self, flag: &str, value: &str) {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_string(),
            _ => self.args.extend([flag.to_string(), value.to_string()]),
        }
    }

    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("robokud.log"))
            .expect("agent log");
        let child = Command::new(bin("robokud"))
            .args(&self.args)
            .env("ROBOKU_LOG", "info,robokud::mqtt=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start robokud");
        self.child = Some(child);
        let sock = self.socket();
        wait_for(20, "robokud's socket", || sock.exists().then_some(()));
    }

    /// robokud's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL and wait: robokud gets no chance to save anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (dynos are stopped: `--on-exit stop`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("robokud.log")).unwrap_or_default()
    }

    /// `roboku --json <args>` against this agent.
    pub fn roboku_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = Command::new(bin("roboku"))
            .arg("--json")
            .args(args)
            .env("ROBOKU_SOCKET", self.socket())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `(dyno name, state, pid)` of the app's dynos.
    pub fn ps(&self, app: &str) -> Vec<(String, String, Option<u64>)> {
        let Some(serde_json::Value::Array(ds)) = self.roboku_json(&["ps", "-a", app]) else {
            return Vec::new();
        };
        ds.iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap_or("").to_string(),
                    d["state"].as_str().unwrap_or("").to_string(),
                    d["pid"].as_u64(),
                )
            })
            .collect()
    }

    /// The app's releases (newest first, as the API gives them): `(version, slug)`.
    pub fn releases(&self, app: &str) -> Vec<(u64, String, bool)> {
        let Some(serde_json::Value::Array(rs)) = self.roboku_json(&["releases", "-a", app]) else {
            return Vec::new();
        };
        rs.iter()
            .map(|r| {
                (
                    r["version"].as_u64().unwrap_or(0),
                    r["slug"].as_str().unwrap_or("").to_string(),
                    r["current"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    /// Waits until `count` dynos of the app are up; returns their pids.
    pub fn wait_up(&self, app: &str, count: usize, secs: u64) -> Vec<u64> {
        wait_for(
            secs,
            &format!("{count} dyno(s) of {app} up on {}", self.device),
            || {
                let ps = self.ps(app);
                let up: Vec<u64> = ps
                    .iter()
                    .filter(|(_, s, _)| s == "up")
                    .filter_map(|(_, _, p)| *p)
                    .collect();
                (up.len() == count && ps.len() == count).then_some(up)
            },
        )
    }
}

/// Removes a (now empty) cgroup subtree from every hierarchy, deepest first.
fn remove_cgroups(name: &str) {
    fn rm(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(name);
        if dir.is_dir() {
            rm(&dir);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        if let Some(i) = self.args.iter().position(|a| a == "--cgroup-name") {
            remove_cgroups(&self.args[i + 1]);
        }
        if std::thread::panicking() {
            eprintln!("---- robokud {} log ----\n{}", self.device, self.log());
        }
    }
}

/// Runs `roboku fleet <args>` and returns (exit code, stdout + stderr).
pub fn fleet(broker: &Broker, args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(bin("roboku"))
        .arg("fleet")
        .args(args)
        .env("ROBOKU_BROKER", broker.url())
        .output()
        .expect("run roboku fleet");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A fleet key pair made by `roboku fleet keygen`; returns (private, public) paths.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(name);
    let out = Command::new(bin("roboku"))
        .args(["fleet", "keygen", "-o"])
        .arg(&key)
        .output()
        .expect("roboku fleet keygen");
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = PathBuf::from(format!("{}.pub", key.display()));
    (key, public)
}

/// The Procfile of [`artifact`].
pub const PROCFILE_SLEEP: &str = "web: exec sleep 100000\n";

/// An app artifact: a `.tar.gz` with a Procfile whose web dyno sleeps; `tag` makes it unique.
pub fn artifact(dir: &Path, name: &str, tag: &str) -> PathBuf {
    artifact_with(dir, name, tag, PROCFILE_SLEEP, &[])
}

/// An app artifact with this Procfile and more files (`(relative path, bytes)`).
pub fn artifact_with(
    dir: &Path,
    name: &str,
    tag: &str,
    procfile: &str,
    files: &[(&str, &[u8])],
) -> PathBuf {
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("Procfile"), procfile).expect("Procfile");
    std::fs::write(src.join("VERSION"), tag).expect("VERSION");
    for (rel, bytes) in files {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
    }
    let out = dir.join(name);
    let st = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    out
}

/// Serves the files of `dir` over HTTP/1.1 (GET /name), a thread per connection (a fleet wave
/// downloads at once); returns the base URL.
pub fn serve_dir(dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { continue };
            let dir = dir.clone();
            std::thread::spawn(move || serve_one(s, &dir));
        }
    });
    format!("http://{addr}")
}

/// Answers one GET of [`serve_dir`].
fn serve_one(mut s: TcpStream, dir: &Path) {
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    let mut first = String::new();
    let _ = reader.read_line(&mut first);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let name = first
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/');
    match std::fs::read(dir.join(name)) {
        Ok(body) => {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
        Err(_) => {
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

/// GET `http://127.0.0.1:<port><path>`; the body of a 200 answer.
pub fn http_get(port: u16, path: &str) -> Vec<u8> {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read");
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&all[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    all[split + 4..].to_vec()
}

/// An MQTT client of the test's own: publishes raw payloads, collects acks and other messages.
pub struct Probe {
    client: rumqttc::Client,
    rx: mpsc::Receiver<(String, Vec<u8>)>,
    pub seen: Vec<(String, Vec<u8>)>,
}

impl Probe {
    pub fn connect(broker: &Broker, subscriptions: &[String]) -> Probe {
        Probe::connect_with_max(broker, subscriptions, client::MAX_PACKET)
    }

    /// A probe that may publish and receive packets up to `max_packet` bytes.
    pub fn connect_with_max(broker: &Broker, subscriptions: &[String], max_packet: usize) -> Probe {
        let id = format!(
            "probe-{}-{}",
            std::process::id(),
            NEXT_AGENT.fetch_add(1, Ordering::SeqCst)
        );
        let (opts, net) = client::options(
            &broker.url(),
            &id,
            Duration::from_secs(30),
            &TlsFiles::default(),
        )
        .expect("probe options");
        let mut opts = opts;
        opts.set_max_packet_size(max_packet, max_packet);
        let (client, mut conn) = rumqttc::Client::new(opts, 64);
        conn.eventloop.set_network_options(net);
        let (tx, rx) = mpsc::channel();
        let (sub_tx, sub_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx.send((p.topic, p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        for t in subscriptions {
            client
                .subscribe(t.clone(), rumqttc::QoS::AtLeastOnce)
                .expect("subscribe");
            sub_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("suback");
        }
        Probe {
            client,
            rx,
            seen: Vec::new(),
        }
    }

    pub fn publish(&self, topic: &str, retain: bool, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
            .expect("publish");
    }

    /// Waits for a message on `topic_name` matching `f`; keeps everything seen.
    /// The next message within `timeout` (kept in `seen` too), or `None`.
    pub fn recv(&mut self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        let m = self.rx.recv_timeout(timeout).ok()?;
        self.seen.push(m.clone());
        Some(m)
    }

    pub fn wait_msg<T>(
        &mut self,
        secs: u64,
        what: &str,
        mut f: impl FnMut(&str, &[u8]) -> Option<T>,
    ) -> T {
        for (t, p) in &self.seen {
            if let Some(v) = f(t, p) {
                return v;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((t, p)) => {
                    let hit = f(&t, &p);
                    self.seen.push((t, p));
                    if let Some(v) = hit {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "timed out after {secs} s waiting for {what}; seen: {:?}",
                    self.seen
                        .iter()
                        .map(|(t, p)| format!("{t} {}", String::from_utf8_lossy(p)))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for a final ack from `device` for payload `reference` (the ack's `ref`).
    pub fn final_ack(&mut self, device: &str, reference: &str) -> Ack {
        let t = topic::ack(device);
        self.wait_msg(
            30,
            &format!("final ack for {reference}"),
            |topic_name, p| {
                if topic_name != t {
                    return None;
                }
                let a: Ack = serde_json::from_slice(p).ok()?;
                (a.reference == reference && a.status.is_final()).then_some(a)
            },
        )
    }
}

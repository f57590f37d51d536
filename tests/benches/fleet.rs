//! Fleet benchmark (`cargo bench -p roboku-tests --bench fleet`), against a real Mosquitto on
//! loopback (`apt-get install mosquitto`).
//!
//! 1. Latency: a signed command published -> its ACCEPTED ack received, 200 times, one agent.
//! 2. Fan-out: 200 agents on one broker, one group scale command -> SUCCEEDED from all of them.
//! 3. A fleet at scale: 1,000 in-process agents plus 10 real robokud processes on one broker,
//!    and the real CLI (`roboku fleet deploy --wave 1% --wave 10% --fail-threshold K`) rolling a
//!    signed artifact out to all of them in three waves; time to the last SUCCEEDED and the CPU
//!    of the broker, the in-process agents, the real agents and the CLI over the rollout.
//!    Env: `ROBOKU_BENCH_FLEET_AGENTS` (1000), `ROBOKU_BENCH_FLEET_REAL` (10); needs the release
//!    binaries (`cargo build --release -p robokud -p roboku`) and root (the real agents run
//!    their dynos in cgroups as each app's own user).
//!
//! The agents are robokud's real MQTT module (`robokud::mqtt`: connection task, verification,
//! intake with its fsync'd replay state, per-app workers, acks, reports) running in this
//! process, each with its own data dir, device id and MQTT connection; only the engine behind
//! them is a stub (`EngineHandle::stub`) that answers at once, so the numbers are the fleet
//! path's own: broker hops, ed25519 verification, JSON, the state fsync and the acks. In part
//! 3 the stub also answers what a deploy asks (the app exists, its config is empty, a release is
//! cut) and starts no dyno; the artifact download, its sha256 check and the unpacking of the
//! prebuilt slug (`roboku slug:build`, made once by a real agent) run for real in every agent.
//! The 10 real robokud processes do everything, dynos and their health checks included.

#[path = "../tests/fleet/kit.rs"]
mod kit;

use kit::{Broker, Probe};
use roboku_wire::fleet::seal::{self, SecretKey};
use roboku_wire::fleet::topic::{self, Address};
use roboku_wire::fleet::{payload_ref, Ack, AckStatus, Action, Envelope, ScaleBody};
use roboku_wire::{AppInfo, ReleaseInfo};
use robokud::engine::{Command, EngineHandle, Reply};
use robokud::settings::Settings;
use std::collections::BTreeSet;
use std::path::Path;
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
        Command::CheckApp { app } => Ok(Reply::App(stub_app(&app))),
        Command::CreateApp { name } => Ok(Reply::App(stub_app(&name))),
        Command::GetConfig { .. } => Ok(Reply::Config(Default::default())),
        Command::Releases { .. } => Ok(Reply::Releases(Vec::new())),
        Command::Release {
            slug,
            description,
            artifact,
            ..
        } => Ok(Reply::Release(ReleaseInfo {
            version: 1,
            created_at: now_ms(),
            description,
            slug: slug.sha256,
            process_types: slug.process_types.into_iter().collect(),
            config_keys: Vec::new(),
            current: true,
            status: "succeeded".into(),
            door: "mqtt".into(),
            artifact,
            probation: None,
            buildpacks: None,
        })),
        other => Err(robokud::engine::EngineError::Unavailable(format!(
            "stub engine: {other:?}"
        ))),
    })
}

fn stub_app(name: &str) -> AppInfo {
    AppInfo {
        name: name.into(),
        created_at: 0,
        release: None,
        user: "root".into(),
        uid: None,
        gid: None,
        grace_secs: 2,
        buildpacks: Vec::new(),
        dynos_running: 0,
        dynos_desired: 0,
        router_port: None,
        router_error: None,
        waiting: None,
        data_snapshots: true,
    }
}

/// Whom an in-process agent trusts: the bench's own key, or a key file of `roboku fleet keygen`.
enum Trust<'a> {
    Key(&'a SecretKey),
    File(&'a Path),
}

/// Starts one in-process agent; returns its shutdown sender and task.
fn agent(
    root: &Path,
    broker: &Broker,
    device: &str,
    group: &str,
    trust: Trust<'_>,
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
    match trust {
        Trust::Key(key) => s.mqtt.trusted_keys = vec![seal::encode_public(&key.verifying_key())],
        Trust::File(path) => s.mqtt.trusted_key_files = vec![path.to_path_buf()],
    }
    s.mqtt.telemetry_secs = 0;
    robokud::build::builtin::install(&s.buildpacks_dir()).expect("built-in buildpacks");
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
    probe.wait_msg(180, &format!("{n} agents online"), |t, p| {
        if let Some(topic::Topic::Status(d)) = topic::parse(t) {
            if String::from_utf8_lossy(p).contains("\"online\"") {
                online.insert(d);
            }
        }
        (online.len() >= n).then_some(())
    });
}

/// Lifts this process's open-file limit to its hard limit: the broker (a child) and a thousand
/// MQTT connections need more than the usual 1,024 descriptors.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// CPU time (user + system) of a running process so far, from `/proc/<pid>/stat`.
fn cpu_of(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command (which may hold spaces) in parentheses; utime, stime are 14, 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(f.iter().sum::<u64>() as f64 / hz)
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    raise_nofile();
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
    let (stop1, task1) = agent(root.path(), &broker, "lat-1", "solo", Trust::Key(&key));
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
        .map(|i| {
            agent(
                root.path(),
                &broker,
                &format!("bot-{i:03}"),
                "bench",
                Trust::Key(&key),
            )
        })
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

    drop(probe);
    drop(broker);

    // 3. A fleet at scale, rolled out by the real CLI in waves.
    fleet_at_scale(&rt, root.path());
}

/// Part 3: `sims` in-process agents and `reals` robokud processes in group `wave` on a fresh
/// broker; one `roboku fleet deploy --wave 1% --wave 10%` of a signed artifact to all of them.
fn fleet_at_scale(rt: &tokio::runtime::Runtime, root: &Path) {
    let sims = env_count("ROBOKU_BENCH_FLEET_AGENTS", 1000);
    let reals = env_count("ROBOKU_BENCH_FLEET_REAL", 10);
    let total = sims + reals;
    let fail_threshold = (total / 100).max(1);
    let broker = Broker::start();
    let work = root.join("scale");
    std::fs::create_dir_all(&work).expect("mkdir");
    let (key, public) = kit::keygen(&work, "fleet.key");
    let served = work.join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    let source = kit::artifact(&work, "nav-v1.tar.gz", "v1");
    let url = kit::serve_dir(&served);

    let t_start = Instant::now();
    let agents: Vec<_> = (0..sims)
        .map(|i| {
            agent(
                root,
                &broker,
                &format!("sim-{i:04}"),
                "wave",
                Trust::File(&public),
            )
        })
        .collect();
    let real: Vec<kit::Agent> = (0..reals)
        .map(|i| kit::Agent::start(&broker, &format!("real-{i:02}"), &["wave"], &public))
        .collect();
    // The fleet ships a slug built once (`roboku slug:build`, as CI would), so a robot only
    // downloads, checks and unpacks it: no buildpack runs on 1,000 robots sharing 2 cores here.
    let slug = served.join("nav-v1.slug");
    let built = std::process::Command::new(kit::bin("roboku"))
        .arg("slug:build")
        .arg(&source)
        .arg("-o")
        .arg(&slug)
        .env(
            "ROBOKU_SOCKET",
            real.first().expect("a real agent").socket(),
        )
        .output()
        .expect("roboku slug:build");
    assert!(
        built.status.success(),
        "slug:build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut probe = Probe::connect(
        &broker,
        &[
            format!("{}/d/+/ack", topic::ROOT),
            format!("{}/d/+/status", topic::ROOT),
        ],
    );
    wait_online(&mut probe, total);
    println!(
        "{sims} in-process agents + {reals} robokud processes online in {:.2} s",
        t_start.elapsed().as_secs_f64()
    );
    probe.seen.clear();

    let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_of(*p)).sum::<Duration>();
    let broker_pid = broker.pid().expect("broker runs");
    let real_pids: Vec<u32> = real.iter().filter_map(kit::Agent::pid).collect();
    let self_pid = std::process::id();
    let before = (cpu(&[broker_pid]), cpu(&[self_pid]), cpu(&real_pids));

    let out_path = work.join("fleet-deploy.out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let t0 = Instant::now();
    // Reaped by `wait4` below (which also gives its CPU), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let mut cli = std::process::Command::new(kit::bin("roboku"))
        .args(["fleet", "deploy", "--group", "wave", "-a", "nav", "--key"])
        .arg(&key)
        .arg("--artifact-url")
        .arg(format!("{url}/nav-v1.slug"))
        .arg("--slug")
        .arg(&slug)
        .args(["--wave", "1%", "--wave", "10%", "--fail-threshold"])
        .arg(fail_threshold.to_string())
        .args(["--wait", "300"])
        .env("ROBOKU_BROKER", broker.url())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("roboku fleet deploy");
    // The acks as they arrive: time to each robot's SUCCEEDED, whichever wave it was in, until
    // every robot answered or the CLI ended (a stopped rollout leaves robots unasked).
    let mut done: Vec<(String, Duration)> = Vec::new();
    let mut failed = BTreeSet::new();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut cli_end = None;
    let mut after = None;
    let deadline = Instant::now() + Duration::from_secs(330);
    while Instant::now() < deadline && (cli_end.is_none() || after.is_none()) {
        if let Some((t, p)) = probe.recv(Duration::from_millis(50)) {
            let Some(a) = serde_json::from_slice::<Ack>(&p)
                .ok()
                .filter(|_| t.ends_with("/ack"))
            else {
                continue;
            };
            match a.status {
                AckStatus::Succeeded if !done.iter().any(|(d, _)| *d == a.device) => {
                    done.push((a.device, t0.elapsed()));
                }
                AckStatus::Failed | AckStatus::Rejected => {
                    failed.insert(a.device);
                }
                _ => {}
            }
        }
        if after.is_none() && (done.len() + failed.len() >= total || cli_end.is_some()) {
            after = Some((cpu(&[broker_pid]), cpu(&[self_pid]), cpu(&real_pids)));
        }
        if cli_end.is_none() {
            // SAFETY: wait4 on our own child with valid pointers; WNOHANG does not block.
            let rc =
                unsafe { libc::wait4(cli.id() as i32, &mut status, libc::WNOHANG, &mut usage) };
            if rc > 0 {
                cli_end = Some(t0.elapsed());
            }
        }
    }
    let last = done.last().map_or(Duration::ZERO, |d| d.1);
    let after = after.unwrap_or((cpu(&[broker_pid]), cpu(&[self_pid]), cpu(&real_pids)));
    let Some(cli_elapsed) = cli_end else {
        let _ = cli.kill();
        panic!(
            "roboku fleet deploy did not end in 330 s:\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
    };
    let cli_cpu = Duration::from_secs_f64(
        usage.ru_utime.tv_sec as f64
            + usage.ru_utime.tv_usec as f64 / 1e6
            + usage.ru_stime.tv_sec as f64
            + usage.ru_stime.tv_usec as f64 / 1e6,
    );
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let summary = text
        .lines()
        .filter(|l| l.starts_with("wave ") || l.contains("succeeded"))
        .map(|l| {
            if l.len() > 120 {
                format!("{}...", &l[..120])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n  ");
    println!(
        "roboku fleet deploy (exit {}):\n  {summary}",
        if ok { "0" } else { "non-zero" }
    );
    let waves: Vec<usize> = {
        let sizes = [(total).div_ceil(100), (total * 10).div_ceil(100)];
        let third = total.saturating_sub(sizes[0] + sizes[1]);
        vec![sizes[0], sizes[1], third]
    };
    let mut at = 0;
    for (i, n) in waves.iter().enumerate() {
        at += n;
        if let Some((_, t)) = done.get(at.min(done.len()).saturating_sub(1)) {
            println!(
                "  wave {} ({n} robots): SUCCEEDED through {:.2} s",
                i + 1,
                t.as_secs_f64()
            );
        }
    }
    let pct_of = |d: Duration| 100.0 * d.as_secs_f64() / last.as_secs_f64().max(1e-9);
    println!(
        "signed group deploy in 3 waves to {total} robots: {} SUCCEEDED, {} failed; last SUCCEEDED after {:.2} s, CLI done after {:.2} s (target < 10 s)",
        done.len(),
        failed.len(),
        last.as_secs_f64(),
        cli_elapsed.as_secs_f64()
    );
    let (b, s, r) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    println!(
        "CPU over the rollout: broker {:.2} s ({:.0} % of one core), {sims} in-process agents {:.2} s ({:.0} %), {reals} robokud {:.2} s ({:.0} %, {:.0} ms each), CLI {:.2} s",
        b.as_secs_f64(),
        pct_of(b),
        s.as_secs_f64(),
        pct_of(s),
        r.as_secs_f64(),
        pct_of(r),
        r.as_secs_f64() * 1e3 / reals.max(1) as f64,
        cli_cpu.as_secs_f64()
    );
    assert!(
        ok && done.len() == total,
        "the rollout did not reach every robot ({} of {total} SUCCEEDED):\n{text}",
        done.len()
    );
    for a in &real {
        a.wait_up("nav", 1, 60);
    }
    println!("all {reals} robokud processes run nav v1 (1 web dyno each)");
    drop(real);
    for (stop, task) in agents {
        let _ = stop.send(true);
        let _ = rt.block_on(task);
    }
}

//! `robokud`: flags, tracing, runtime; everything else is `robokud::run`.

use anyhow::Context;
use clap::Parser;
use robokud::settings::{OnExit, Settings};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "robokud",
    version,
    about = "roboku agent: Heroku for one robot"
)]
struct Flags {
    /// Developer mode: data in ./.roboku, no root needed, dynos stopped on exit, and the
    /// embedded example app `hello` deployed so there is something to look at.
    #[arg(long)]
    dev: bool,
    /// Config file (default /etc/roboku/robokud.toml when it exists).
    #[arg(long, env = "ROBOKU_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: store, slugs, logs, socket.
    #[arg(long, env = "ROBOKU_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Local API socket (default <data-dir>/robokud.sock).
    #[arg(long, env = "ROBOKU_SOCKET")]
    socket: Option<PathBuf>,
    /// What happens to dynos when robokud exits: leave (re-adopted on start) or stop.
    #[arg(long, env = "ROBOKU_ON_EXIT", value_parser = ["leave", "stop"])]
    on_exit: Option<String>,
    /// Do not use cgroups (limits are stored and flagged, not enforced).
    #[arg(long, env = "ROBOKU_NO_CGROUPS")]
    no_cgroups: bool,
    /// Do not mount a cgroup hierarchy with favordynmods (cgroup joins then wait an RCU grace
    /// period after an idle spell; a favordynmods mount made by someone else is still used).
    #[arg(long, env = "ROBOKU_NO_FAVORDYNMODS")]
    no_favordynmods: bool,
    /// Name of roboku's cgroup subtree.
    #[arg(long, env = "ROBOKU_CGROUP_NAME")]
    cgroup_name: Option<String>,
    /// cgroup v2: the delegated cgroup dynos live in (empty: beside robokud's own).
    #[arg(long, env = "ROBOKU_CGROUP_PARENT")]
    cgroup_parent: Option<String>,
    /// Dyno port range, e.g. 20000-29999.
    #[arg(long, env = "ROBOKU_PORT_RANGE")]
    port_range: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when stopping a dyno.
    #[arg(long, env = "ROBOKU_GRACE_SECS")]
    grace_secs: Option<u64>,
    /// Crash backoff: first delay (ms), cap (ms).
    #[arg(long, env = "ROBOKU_BACKOFF_INITIAL_MS")]
    backoff_initial_ms: Option<u64>,
    #[arg(long, env = "ROBOKU_BACKOFF_MAX_MS")]
    backoff_max_ms: Option<u64>,
    /// Seconds a dyno must run to reset its crash backoff.
    #[arg(long, env = "ROBOKU_BACKOFF_RESET_SECS")]
    backoff_reset_secs: Option<u64>,
    /// User dynos run as by default.
    #[arg(long, env = "ROBOKU_DYNO_USER")]
    dyno_user: Option<String>,
    /// Free space deploys and downloads leave on the data filesystem: bytes (64M), a percent
    /// (10%) or auto (5 %, between 1 MiB and 64 MiB).
    #[arg(long, env = "ROBOKU_DISK_RESERVE", value_name = "BYTES|N%|auto")]
    disk_reserve: Option<robokud::disk::Reserve>,
    /// Slugs of this many recent releases per app are kept for rollback.
    #[arg(long, env = "ROBOKU_KEEP_RELEASES")]
    keep_releases: Option<usize>,
    /// While a change waits for an app's apply gates, how often they are checked (ms).
    #[arg(long, env = "ROBOKU_GATE_POLL_MS")]
    gate_poll_ms: Option<u64>,
    /// Keep a spare of each dyno, waiting in its cgroup, so a crash is replaced by one pipe
    /// write (about 110 KiB of memory per dyno).
    #[arg(long, env = "ROBOKU_SPARE_DYNOS")]
    spare_dynos: bool,
    /// Seconds between resource samples shown by `roboku ps`.
    #[arg(long, env = "ROBOKU_SAMPLE_SECS")]
    sample_secs: Option<u64>,
    /// Dashboard address (ADDR:PORT, default 127.0.0.1:7070), or `off`.
    #[arg(long, env = "ROBOKU_DASHBOARD", value_name = "ADDR|off")]
    dashboard: Option<String>,
    /// The directory watched for offline bundles (*.rkb) [default: <data-dir>/bundles/inbox].
    #[arg(long, env = "ROBOKU_BUNDLE_INBOX", value_name = "DIR")]
    bundle_inbox: Option<PathBuf>,
    /// CA bundle (PEM) that syslog+tls:// and https:// log drains verify receivers against
    /// [default: the system bundle]
    #[arg(long, env = "ROBOKU_DRAIN_CA_FILE", value_name = "PATH")]
    drain_ca_file: Option<PathBuf>,
    /// Milliseconds between scans of the bundle inbox (0: not watched).
    #[arg(long, env = "ROBOKU_BUNDLE_SCAN_MS", value_name = "MS")]
    bundle_scan_ms: Option<u64>,
    /// Test knob: pretend the clock is `synced` or `unsynced`, optionally starting at UNIX_MS
    /// (`unsynced:0` reads 1970). `ROBOKU_TEST_CLOCK` is read only by debug builds.
    #[arg(long, value_name = "synced|unsynced[:UNIX_MS]")]
    test_clock: Option<String>,
    #[command(flatten)]
    fleet: FleetFlags,
    /// A byte budget: CHANNEL=BYTES/PERIOD, e.g. telemetry=1MB/day, logs=50MB/month
    /// (channels: telemetry, reported, logs, drains; repeatable).
    #[arg(
        long = "budget",
        env = "ROBOKU_BUDGET",
        value_delimiter = ',',
        value_name = "CHANNEL=BUDGET"
    )]
    budgets: Vec<String>,
}

/// Fleet control over MQTT (all optional; the `[mqtt]` config section holds the same and more).
#[derive(clap::Args, Debug)]
struct FleetFlags {
    /// MQTT broker for fleet control: mqtt://host[:1883] or mqtts://host[:8883].
    #[arg(long = "mqtt", env = "ROBOKU_MQTT", value_name = "URL")]
    broker: Option<String>,
    /// This robot's device id (MQTT client id) [default: the hostname].
    #[arg(long, env = "ROBOKU_DEVICE_ID")]
    device_id: Option<String>,
    /// A fleet group this robot belongs to (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// A public key file trusted to sign fleet commands (repeatable).
    #[arg(long = "trusted-key", value_name = "PATH")]
    trusted_keys: Vec<PathBuf>,
    /// DEV MODE: accept unsigned fleet commands.
    #[arg(long)]
    mqtt_allow_unsigned: bool,
    /// Seconds between telemetry messages (0: off).
    #[arg(long, env = "ROBOKU_TELEMETRY_SECS")]
    telemetry_secs: Option<u64>,
    /// Serve this robokud's slugs over HTTP for the robots of a site, e.g. 0.0.0.0:7071
    /// (GET /slugs/<sha256>.tar.gz, read-only).
    #[arg(long, env = "ROBOKU_SERVE_SLUGS", value_name = "ADDR")]
    serve_slugs: Option<String>,
}

impl FleetFlags {
    fn apply(&self, m: &mut robokud::settings::MqttSettings) {
        if self.broker.is_some() {
            m.broker = self.broker.clone();
        }
        if self.device_id.is_some() {
            m.device_id = self.device_id.clone();
        }
        m.groups.extend(self.groups.iter().cloned());
        m.trusted_key_files
            .extend(self.trusted_keys.iter().cloned());
        m.allow_unsigned |= self.mqtt_allow_unsigned;
        m.telemetry_secs = self.telemetry_secs.unwrap_or(m.telemetry_secs);
        if self.serve_slugs.is_some() {
            m.serve_slugs = self.serve_slugs.clone();
        }
    }
}

fn settings(flags: &Flags) -> anyhow::Result<Settings> {
    let default_file = PathBuf::from("/etc/roboku/robokud.toml");
    let file = flags
        .config
        .clone()
        .or_else(|| (!flags.dev && default_file.exists()).then_some(default_file));
    let mut s = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read config {}", path.display()))?;
            Settings::from_toml(path, &text).map_err(anyhow::Error::msg)?
        }
        None if flags.dev => Settings::developer(),
        None => Settings::default(),
    };
    if flags.dev && file.is_some() {
        s.data_dir = PathBuf::from(".roboku");
        s.on_exit = OnExit::Stop;
    }
    if let Some(d) = &flags.data_dir {
        s.data_dir = d.clone();
    }
    if flags.socket.is_some() {
        s.socket = flags.socket.clone();
    }
    if let Some(o) = &flags.on_exit {
        s.on_exit = if o == "stop" {
            OnExit::Stop
        } else {
            OnExit::Leave
        };
    }
    if flags.no_cgroups {
        s.cgroups = false;
    }
    if flags.no_favordynmods {
        s.favordynmods = false;
    }
    if flags.spare_dynos {
        s.spare_dynos = true;
    }
    if let Some(n) = &flags.cgroup_name {
        s.cgroup_name = n.clone();
    }
    if let Some(p) = &flags.cgroup_parent {
        s.cgroup_parent = p.clone();
    }
    if let Some(r) = &flags.port_range {
        let (a, b) = r
            .split_once('-')
            .context("--port-range must look like 20000-29999")?;
        s.port_min = a
            .trim()
            .parse()
            .with_context(|| format!("--port-range: bad port {a:?}"))?;
        s.port_max = b
            .trim()
            .parse()
            .with_context(|| format!("--port-range: bad port {b:?}"))?;
        anyhow::ensure!(
            s.port_min > 0 && s.port_min <= s.port_max,
            "--port-range {r}: empty range"
        );
    }
    s.grace_secs = flags.grace_secs.unwrap_or(s.grace_secs);
    s.backoff_initial_ms = flags.backoff_initial_ms.unwrap_or(s.backoff_initial_ms);
    s.backoff_max_ms = flags.backoff_max_ms.unwrap_or(s.backoff_max_ms);
    s.backoff_reset_secs = flags.backoff_reset_secs.unwrap_or(s.backoff_reset_secs);
    s.sample_secs = flags.sample_secs.unwrap_or(s.sample_secs);
    if let Some(d) = &flags.dashboard {
        s.dashboard = d.clone();
    }
    s.keep_releases = flags.keep_releases.unwrap_or(s.keep_releases);
    s.disk_reserve = flags.disk_reserve.unwrap_or(s.disk_reserve);
    s.gate_poll_ms = flags.gate_poll_ms.unwrap_or(s.gate_poll_ms);
    if let Some(u) = &flags.dyno_user {
        s.dyno_user = u.clone();
    }
    if let Some(p) = &flags.bundle_inbox {
        s.bundle_inbox = p.clone();
    }
    s.bundle_scan_ms = flags.bundle_scan_ms.unwrap_or(s.bundle_scan_ms);
    if flags.drain_ca_file.is_some() {
        s.drain_ca_file = flags.drain_ca_file.clone();
    }
    flags.fleet.apply(&mut s.mqtt);
    let test_clock = flags.test_clock.clone().or_else(|| {
        cfg!(debug_assertions)
            .then(|| std::env::var("ROBOKU_TEST_CLOCK").ok())
            .flatten()
    });
    if let Some(spec) = test_clock {
        let t = robokud::clock::TestClock::parse(&spec).map_err(anyhow::Error::msg)?;
        tracing::warn!(
            spec,
            "TEST KNOB: the clock is pretended (--test-clock); never on a robot"
        );
        s.test_clock = Some(t);
    }
    for b in &flags.budgets {
        s.budget.set(b).map_err(anyhow::Error::msg)?;
    }
    if s.data_dir.is_relative() {
        s.data_dir = std::env::current_dir()
            .context("current dir")?
            .join(&s.data_dir);
    }
    if flags.dev && flags.data_dir.is_none() {
        if let Some(note) = robokud::developer_fallback(&mut s) {
            eprintln!("robokud: {note}");
        }
    }
    Ok(s)
}

/// `robokud slug:build DIR -o FILE`: build a slug file once (workstation, CI) for many robots.
#[derive(Parser, Debug)]
#[command(name = "robokud slug:build")]
struct SlugBuild {
    /// The app's source directory (or .tar.gz)
    source: PathBuf,
    /// Where to write the slug file
    #[arg(short, long)]
    output: PathBuf,
    /// Buildpacks in order (built-in names, paths or git URLs with #ref); default: detect among
    /// the built-ins
    #[arg(short, long)]
    buildpack: Vec<String>,
    /// The robots' CPU (x86_64, aarch64, arm, ...) [default: this machine's]
    #[arg(long, default_value = std::env::consts::ARCH)]
    arch: String,
    /// Print what was built as JSON
    #[arg(long)]
    json: bool,
}

fn slug_build(args: SlugBuild) -> anyhow::Result<()> {
    let builtin = std::env::temp_dir().join(format!("roboku-buildpacks-{}", std::process::id()));
    robokud::build::builtin::install(&builtin)?;
    // Git buildpacks are fetched into a cache of this run only.
    let git = robokud::build::buildpack::git_cache::GitCache {
        root: std::env::temp_dir().join(format!("roboku-buildpacks-git-{}", std::process::id())),
        timeout: std::time::Duration::from_secs(120),
        build_tag: None,
    };
    let mut echo = |line: &str| eprintln!("{line}");
    let result = (|| {
        let mut packs = Vec::new();
        for p in &args.buildpack {
            let short = robokud::build::buildpack::short_name::resolve(p);
            packs.push(if let Some(mapped) = short {
                builtin.join(mapped.map_err(|e| anyhow::anyhow!(e))?)
            } else if robokud::build::buildpack::git_spec::is_git_spec(p) {
                let spec = robokud::build::buildpack::git_spec::GitSpec::parse(p)
                    .map_err(|e| anyhow::anyhow!(e))?;
                git.resolve(&spec, None, &mut echo)?.dir
            } else if p.contains('/') {
                PathBuf::from(p)
            } else {
                builtin.join(p)
            });
        }
        Ok::<_, anyhow::Error>(robokud::build::slugfile::build_slug_file(
            &args.source,
            &args.output,
            &packs,
            &builtin,
            &args.arch,
            &mut echo,
        )?)
    })();
    let _ = std::fs::remove_dir_all(&builtin);
    let _ = robokud::build::remove_tree(&git.root);
    let info = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!(
        "Built {} ({}, sha256 {}): {}",
        args.output.display(),
        info.arch,
        &info.sha256[..12],
        info.process_types
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `robokud cgroup:hold` (hidden): the process of `roboku-dynos.service`. Moves into the `holder`
/// leaf of its delegated unit cgroup, tells systemd it is ready, and sleeps until SIGTERM.
fn cgroup_hold() -> anyhow::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("block SIGTERM")?;
    let status = match robokud::cgroup::holder::hold(std::path::Path::new("/sys/fs/cgroup"))? {
        Some(unit) => format!("holding {} for roboku's dynos", unit.display()),
        None => "no cgroup v2 here: nothing to hold".to_string(),
    };
    robokud::notify::notify(&[("READY", "1"), ("STATUS", &status)]).context("notify systemd")?;
    let signal = set.wait().context("wait for SIGTERM")?;
    eprintln!("robokud cgroup:hold: {signal}, exiting");
    Ok(())
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("cgroup:hold") {
        if let Err(e) = cgroup_hold() {
            eprintln!("robokud cgroup:hold: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("snapshot:copy") {
        // Hidden: a data snapshot's copy, run as the app's uid (see addons/snapshot_copy.rs).
        let job = std::env::args().nth(2).unwrap_or_default();
        match robokud::addons::snapshot_copy::child_main(&job) {
            Ok(outcome) => println!("{outcome}"),
            Err(e) => {
                eprintln!("robokud snapshot:copy: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("slug:build") {
        let args = SlugBuild::parse_from(std::env::args().skip(1));
        if let Err(e) = slug_build(args) {
            eprintln!(
                "robokud slug:build: {}",
                roboku_wire::in_words(&format!("{e:#}"))
            );
            std::process::exit(1);
        }
        return;
    }
    robokud::heap::limit_arenas();
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROBOKU_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = real_main(flags) {
        eprintln!("robokud: {}", roboku_wire::in_words(&format!("{e:#}")));
        std::process::exit(1);
    }
}

fn real_main(flags: Flags) -> anyhow::Result<()> {
    let settings = settings(&flags)?;
    let dev = flags.dev;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                }
                _ => std::future::pending().await,
            }
        };
        robokud::run(settings, shutdown, |s, engine| {
            if dev {
                let (s, engine) = (s.clone(), engine.clone());
                tokio::spawn(async move { robokud::example::deploy_hello(&s, &engine).await });
            }
        })
        .await
    })
}

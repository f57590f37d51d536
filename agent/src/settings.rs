//! The agent's configuration: one serde struct with defaults. Lookup order is
//! flag > environment (`ROBOKU_*`) > config file (`/etc/roboku/robokud.toml`) > default.
//! Every path the agent uses is a method here, never a constant elsewhere.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What happens to running dynos when the agent itself exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    /// Leave dynos running; the next agent re-adopts them (production default).
    Leave,
    /// Stop every dyno (SIGTERM, grace, kill) before exiting (developer mode default).
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the store, slugs, logs and the socket live.
    pub data_dir: PathBuf,
    /// The local API socket; defaults to `<data_dir>/robokud.sock`.
    pub socket: Option<PathBuf>,
    /// Dyno ports are taken from this inclusive range (keep it below the ephemeral range).
    pub port_min: u16,
    pub port_max: u16,
    /// Seconds between SIGTERM and SIGKILL when stopping a dyno (per app overridable).
    pub grace_secs: u64,
    /// Preboot: a replaced dyno gets SIGTERM once the router has no connection open to it, or
    /// this long after new connections moved to the new release, whichever comes first.
    pub preboot_drain_ms: u64,
    /// Crash restart backoff: first delay, cap, and how long a run must last to reset it.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_reset_secs: u64,
    /// Who dynos and builds run as unless an app names a user: `dynamic` (each app its own
    /// uid/gid from `app_uids`, like systemd's DynamicUser), or one user name all apps share
    /// (then apps are not isolated from each other).
    pub dyno_user: String,
    /// The range app uids (and gids, the same number) are allocated from, `MIN-MAX`.
    pub app_uids: String,
    /// Name of roboku's subtree in each cgroup hierarchy.
    pub cgroup_name: String,
    /// Mount point of the cgroup filesystem(s).
    pub cgroup_mount: PathBuf,
    /// cgroup v2: the delegated cgroup (of `roboku-dynos.service`) roboku's subtree lives in, so
    /// dynos are never inside robokud's own unit. Empty, missing or not delegated: the subtree
    /// goes beside robokud's own cgroup instead.
    pub cgroup_parent: String,
    /// Turn cgroups off entirely (limits are then stored and flagged, not enforced).
    pub cgroups: bool,
    /// Make sure the cgroup mount option `favordynmods` is on (Linux 6.1+; an empty named v1
    /// hierarchy is mounted with it at `/run/roboku-favordynmods`), so a dyno's cgroup join
    /// never waits an RCU grace period. See `cgroup::favor`.
    pub favordynmods: bool,
    /// Log storage quota per app, bytes (app.log + one rotated file).
    pub log_quota_bytes: u64,
    /// Seconds between resource samples for `ps` (memory, CPU).
    pub sample_secs: u64,
    /// Keep a spare of each running dyno (its next instance, waiting in its cgroup), so a crash
    /// is replaced without a fork, an exec or a cgroup join on the way.
    pub spare_dynos: bool,
    /// Seconds of telemetry history kept in memory for the dashboard's charts.
    pub history_secs: u64,
    /// Where the dashboard (page, `/v1`, `/metrics`, `/healthz`) listens, `ADDR:PORT`, or
    /// `off`. Beyond loopback every request is still Host/Origin-checked and mutating ones,
    /// logs and config need the token.
    pub dashboard: String,
    /// Host names the dashboard answers to besides loopback names and IP literals
    /// (`robot-7.local`): any other `Host` is refused (DNS rebinding).
    pub dashboard_hosts: Vec<String>,
    pub on_exit: OnExit,
    /// Seconds a new release has to run its release phase and get every dyno healthy.
    pub deploy_timeout_secs: u64,
    /// Seconds a build (all buildpacks) may take.
    pub build_timeout_secs: u64,
    /// Seconds each git command fetching a git buildpack may take (then it is killed, and the
    /// build uses the cached copy of the pack if there is one).
    pub git_fetch_timeout_secs: u64,
    /// Slugs of this many most recent releases per app are kept for rollback; older ones are
    /// deleted once a new release is committed.
    pub keep_releases: usize,
    /// While a change waits for an app's apply gates, how often they are checked again (ms).
    pub gate_poll_ms: u64,
    /// The watched directory for offline bundles; empty: `<data_dir>/bundles/inbox`.
    pub bundle_inbox: PathBuf,
    /// Milliseconds between scans of the watched directory (0: not watched).
    pub bundle_scan_ms: u64,
    /// CA bundle that `syslog+tls://` and `https://` log drains verify their receiver against
    /// (default: the system bundle).
    pub drain_ca_file: Option<PathBuf>,
    /// Free space deploys, builds, uploads and downloads leave on the data filesystem: bytes
    /// (`64M`), a percent (`10%`) or `auto` (5 %, between 1 MiB and 64 MiB). See `disk.rs`.
    pub disk_reserve: crate::disk::Reserve,
    /// Fleet control over MQTT (off unless `mqtt.broker` is set).
    pub mqtt: MqttSettings,
    /// Test knob: a pretended clock (`--test-clock`; see `clock::TestClock`). Never from the
    /// config file.
    #[serde(skip)]
    pub test_clock: Option<crate::clock::TestClock>,
    /// An app's data dir is snapshotted before each new release replaces the current one
    /// (`rollback vN --with-data`) when it holds at most this many bytes; 0 turns snapshots off.
    pub data_snapshot_max_bytes: u64,
    /// Byte budgets per channel (`[budget]`, see `usage/`).
    pub budget: BudgetSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("/var/lib/roboku"),
            socket: None,
            port_min: 20000,
            port_max: 29999,
            grace_secs: 30,
            preboot_drain_ms: 10_000,
            backoff_initial_ms: 100,
            backoff_max_ms: 60_000,
            backoff_reset_secs: 60,
            dyno_user: DYNAMIC_USER.into(),
            app_uids: "61184-65519".into(),
            cgroup_name: "roboku".into(),
            cgroup_mount: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "/system.slice/roboku-dynos.service".into(),
            cgroups: true,
            favordynmods: true,
            log_quota_bytes: 16 * 1024 * 1024,
            sample_secs: 5,
            spare_dynos: false,
            history_secs: 3600,
            dashboard: "127.0.0.1:7070".into(),
            dashboard_hosts: Vec::new(),
            on_exit: OnExit::Leave,
            deploy_timeout_secs: 120,
            build_timeout_secs: 900,
            git_fetch_timeout_secs: 120,
            keep_releases: 5,
            gate_poll_ms: 2000,
            bundle_inbox: PathBuf::new(),
            bundle_scan_ms: 2000,
            drain_ca_file: None,
            disk_reserve: crate::disk::Reserve::Auto,
            mqtt: MqttSettings::default(),
            test_clock: None,
            data_snapshot_max_bytes: 64 << 20,
            budget: BudgetSettings::default(),
        }
    }
}

/// `dyno_user` value meaning "each app its own uid".
pub const DYNAMIC_USER: &str = "dynamic";

impl Settings {
    /// `app_uids` parsed: an inclusive range of unprivileged ids.
    pub fn app_uid_range(&self) -> Result<(u32, u32), String> {
        let bad = || {
            format!(
                "app_uids {:?} must look like 61184-65519 (ids from 1000 to 4294967294)",
                self.app_uids
            )
        };
        let (a, b) = self.app_uids.split_once('-').ok_or_else(bad)?;
        let (lo, hi): (u32, u32) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if lo < 1000 || lo > hi || hi == u32::MAX {
            return Err(bad());
        }
        Ok((lo, hi))
    }

    /// Developer mode: data in `./.roboku`, dynos stopped when the agent exits.
    pub fn developer() -> Self {
        Settings {
            data_dir: PathBuf::from(".roboku"),
            on_exit: OnExit::Stop,
            grace_secs: 5,
            ..Settings::default()
        }
    }

    /// Reads a TOML file; unknown keys are an error naming the key and the line.
    pub fn from_toml(path: &Path, text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("robokud.sock"))
    }
    /// The dashboard's token (0600, made at first start).
    pub fn dashboard_token_path(&self) -> PathBuf {
        self.data_dir.join("dashboard.token")
    }
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("roboku.db")
    }
    pub fn slugs_dir(&self) -> PathBuf {
        self.data_dir.join("slugs")
    }
    pub fn apps_dir(&self) -> PathBuf {
        self.data_dir.join("apps")
    }
    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.apps_dir().join(app)
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    /// Where the built-in buildpacks are written at start.
    pub fn buildpacks_dir(&self) -> PathBuf {
        self.data_dir.join("buildpacks")
    }
    /// Git buildpacks (`buildpacks:set https://...#ref`): a cache per URL, root's only.
    pub fn git_buildpacks_dir(&self) -> PathBuf {
        self.data_dir.join("buildpacks-git")
    }
    /// Per-app build cache (`CACHE_DIR` of the buildpacks), kept between builds.
    pub fn cache_dir(&self, app: &str) -> PathBuf {
        self.cache_root().join(app)
    }
    /// Parent of the apps' persistent data dirs (`ROBOKU_DATA`): searchable, not listable.
    pub fn data_root(&self) -> PathBuf {
        self.data_dir.join("data")
    }
    /// One app's persistent data dir: kept across releases, its uid's alone (see `data/`).
    pub fn app_data_dir(&self, app: &str) -> PathBuf {
        self.data_root().join(app)
    }
    /// Snapshots of an app's data dir, one per release it was taken at (root's only).
    pub fn data_snapshots_dir(&self, app: &str) -> PathBuf {
        self.data_snapshots_root().join(app)
    }
    /// Parent of the apps' snapshot dirs (root's, 0700).
    pub fn data_snapshots_root(&self) -> PathBuf {
        self.data_dir.join("snapshots")
    }
    /// Add-on servers' own dirs (config, password file, their data), each its add-on uid's.
    pub fn addons_dir(&self) -> PathBuf {
        self.data_dir.join("addons")
    }
    /// `roboku addons:backup`'s files, by app (root's, 0700).
    pub fn backups_dir(&self) -> PathBuf {
        self.data_dir.join("backups")
    }
    /// Parent of the per-app caches: searchable by the build users, listable by root only.
    pub fn cache_root(&self) -> PathBuf {
        self.data_dir.join("cache")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
    /// Fleet artifacts of kept slugs, the bases of slug deltas (`mqtt/bases.rs`).
    pub fn bases_dir(&self) -> PathBuf {
        self.data_dir.join("bases")
    }
    /// Archives of slugs a site gateway serves (`--serve-slugs`); not under `cache/`, whose
    /// entries are apps' build caches.
    pub fn slug_archives_dir(&self) -> PathBuf {
        self.data_dir.join("slug-archives")
    }
    /// Push-to-deploy repositories (`roboku git:init` makes `<app>.git` here).
    pub fn git_dir(&self) -> PathBuf {
        self.data_dir.join("git")
    }
    pub fn git_repo(&self, app: &str) -> PathBuf {
        self.git_dir().join(format!("{app}.git"))
    }
    /// The rename in progress (`from`, `to`), kept until every directory has moved.
    pub fn rename_journal_path(&self) -> PathBuf {
        self.data_dir.join("rename.json")
    }
    /// The last trusted time (`clock`): the wall clock seen while synchronised, and its boot.
    pub fn clock_path(&self) -> PathBuf {
        self.data_dir.join("clock.json")
    }
    /// Fleet state that must survive restarts (replay guard, session counter, artifacts).
    pub fn fleet_state_path(&self) -> PathBuf {
        self.data_dir.join("fleet.json")
    }
    /// The apps' dyno sockets (0711: an app reaches its own socket, lists none).
    pub fn dyno_sockets_dir(&self) -> PathBuf {
        self.data_dir.join("sockets")
    }
    /// One app's dyno socket (`$ROBOKU_DYNO_SOCKET` in its dynos), its uid's alone.
    pub fn dyno_socket(&self, app: &str) -> PathBuf {
        self.dyno_sockets_dir().join(format!("{app}.sock"))
    }
    /// Log drains' cursors and counters, `<id>.json` each.
    pub fn drains_dir(&self) -> PathBuf {
        self.data_dir.join("drains")
    }
    /// Byte counters per channel, today and this month (`usage/`).
    pub fn usage_path(&self) -> PathBuf {
        self.data_dir.join("usage.json")
    }
    /// Offline bundles: `work/` (copies being applied), `done/`, `rejected/`.
    pub fn bundles_dir(&self) -> PathBuf {
        self.data_dir.join("bundles")
    }
    pub fn bundle_work_dir(&self) -> PathBuf {
        self.bundles_dir().join("work")
    }
    /// The watched directory.
    pub fn bundle_inbox_dir(&self) -> PathBuf {
        if self.bundle_inbox.as_os_str().is_empty() {
            self.bundles_dir().join("inbox")
        } else {
            self.bundle_inbox.clone()
        }
    }
}

/// `[mqtt]`: fleet control. See `docs/fleet-protocol.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`; fleet control is off without it.
    pub broker: Option<String>,
    /// This device's id (the MQTT client id); defaults to the hostname.
    pub device_id: Option<String>,
    /// Groups whose commands and desired state this device takes.
    pub groups: Vec<String>,
    /// TLS: CA bundle (default: the system bundle), client certificate and key (PEM).
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// CA bundle for `https://` artifact URLs (default: the system bundle).
    pub artifact_ca_file: Option<PathBuf>,
    /// Public keys (one line of base64 each) allowed to sign commands: files, or inline.
    pub trusted_key_files: Vec<PathBuf>,
    pub trusted_keys: Vec<String>,
    /// Dev mode: accept unsigned commands (logged loudly, and reported in status).
    pub allow_unsigned: bool,
    /// Seconds between telemetry messages (0 turns telemetry off).
    pub telemetry_secs: u64,
    /// MQTT keep-alive, seconds (also how soon the broker notices a dead device).
    pub keep_alive_secs: u64,
    /// Allowed difference between the fleet's clock and this device's, seconds.
    pub clock_skew_secs: u64,
    /// Seconds a command may take (download + build + rollout) before TIMED_OUT is sent.
    pub command_timeout_secs: u64,
    /// Serve this robokud's slugs read-only over HTTP on this address (site gateways):
    /// `GET /slugs/<sha256>.tar.gz`, with Range. Off by default.
    pub serve_slugs: Option<String>,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            broker: None,
            device_id: None,
            groups: Vec::new(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            artifact_ca_file: None,
            trusted_key_files: Vec::new(),
            trusted_keys: Vec::new(),
            allow_unsigned: false,
            telemetry_secs: 60,
            keep_alive_secs: 30,
            clock_skew_secs: 300,
            command_timeout_secs: 900,
            serve_slugs: None,
        }
    }
}

/// `[budget]`: bytes per UTC day or month a non-critical channel may use (`1MB/day`,
/// `50MB/month`); past one, that traffic slows and then pauses while commands and acks flow.
/// See `docs/offline.md` ("Byte budgets").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// `telemetry` messages.
    pub telemetry: Option<crate::usage::Budget>,
    /// `reported` state updates beyond the heartbeat (on connect, and hourly).
    pub reported: Option<crate::usage::Budget>,
    /// Replies to fleet `logs` commands.
    pub logs: Option<crate::usage::Budget>,
    /// Log drains (all drains together).
    pub drains: Option<crate::usage::Budget>,
    /// Seconds between two saves of the byte counters (what a kill -9 may lose).
    pub flush_secs: u64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            telemetry: None,
            reported: None,
            logs: None,
            drains: None,
            flush_secs: 5,
        }
    }
}

impl BudgetSettings {
    pub fn by_channel(&self) -> Vec<(crate::usage::Channel, crate::usage::Budget)> {
        use crate::usage::Channel;
        [
            (Channel::Telemetry, self.telemetry),
            (Channel::Reported, self.reported),
            (Channel::Logs, self.logs),
            (Channel::Drains, self.drains),
        ]
        .into_iter()
        .filter_map(|(c, b)| b.map(|b| (c, b)))
        .collect()
    }

    /// `CHANNEL=BUDGET` (the `--budget` flag): sets one budget.
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (ch, b) = spec.split_once('=').ok_or_else(|| {
            format!("--budget {spec:?}: write CHANNEL=BYTES/PERIOD, e.g. telemetry=1MB/day")
        })?;
        let b: crate::usage::Budget = b.parse()?;
        let slot = match ch.trim() {
            "telemetry" => &mut self.telemetry,
            "reported" => &mut self.reported,
            "logs" => &mut self.logs,
            "drains" => &mut self.drains,
            other => {
                return Err(format!(
                    "--budget {spec:?}: no budget for {other:?}; budgets are for telemetry, \
                     reported, logs and drains (commands, acks and artifacts always flow)"
                ))
            }
        };
        *slot = Some(b);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packaged default config (`etc/robokud.toml`, installed as /etc/roboku/robokud.toml).
    const PACKAGED: &str = include_str!("../../etc/robokud.toml");

    /// The packaged file with every `# key = value` example uncommented.
    fn uncommented() -> String {
        PACKAGED
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn packaged_config_parses_to_the_defaults() {
        let path = Path::new("/etc/roboku/robokud.toml");
        let s = Settings::from_toml(path, PACKAGED).unwrap();
        let d = Settings::default();
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
    }

    #[test]
    fn packaged_config_documents_every_setting_with_its_default() {
        let path = Path::new("/etc/roboku/robokud.toml");
        let text = uncommented();
        let mut s = Settings::from_toml(path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let d = Settings::default();
        // `socket` has no default value, only a default path: the file shows that path.
        assert_eq!(s.socket.as_deref(), Some(d.socket_path().as_path()));
        s.socket = None;
        // Nor has `drain_ca_file` (the system bundle): the file shows an example path.
        assert_eq!(
            s.drain_ca_file.as_deref(),
            Some(Path::new("/etc/roboku/drains-ca.pem"))
        );
        s.drain_ca_file = None;
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
        // Every field appears as an example line (a new setting must be documented here).
        let serde_json::Value::Object(fields) = serde_json::to_value(&d).unwrap() else {
            panic!("settings serialise to an object")
        };
        for key in fields.keys() {
            let example = format!("\n# {key} = ");
            assert!(
                format!("\n{PACKAGED}").contains(&example),
                "etc/robokud.toml does not document {key:?}"
            );
        }
    }

    #[test]
    fn unknown_key_names_the_key_and_the_line() {
        let path = Path::new("/etc/roboku/robokud.toml");
        let err = Settings::from_toml(path, "grace_secs = 5\n\ngrase_secs = 5\n").unwrap_err();
        assert!(err.contains("/etc/roboku/robokud.toml"), "{err}");
        assert!(err.contains("grase_secs"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let path = Path::new("robokud.toml");
        let err = Settings::from_toml(path, "on_exit = \"later\"\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("later"), "{err}");
    }
}

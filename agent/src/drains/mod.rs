//! Log drains: an app's log lines also sent to a syslog receiver (RFC 5424 over TCP, TLS or
//! UDP), an HTTPS endpoint (Heroku's logplex format) or an MQTT topic (a QoS 1 message per
//! line, [`mqtt`]). See `docs/drains.md`.
//!
//! The buffer is the app's log store itself (`logs/<app>/app.log*`, bounded by the log quota):
//! each drain is its own task ([`task`]) reading the store from its cursor ([`reader`]) and
//! persisting that cursor and its counters in `<data>/drains/<id>.json`. So a drain that is
//! down holds lines on disk within the quota, delivery goes on after a robokud restart
//! (at-least-once), and lines the quota rotated away first are counted as dropped.
//!
//! Neither the log task nor the engine ever waits on a drain: the log task only broadcasts new
//! lines (a wake-up, never a queue), the engine owns the rows ([`crate::store::DrainRow`]) and
//! [`Drains`] (tasks it starts and stops without waiting) and reads their counters from a watch.

mod delivery;
mod frame;
mod mqtt;
mod reader;
mod send;
mod task;
pub mod url;

use crate::logs::LogHandle;
use crate::settings::Settings;
use crate::store::DrainRow;
use roboku_wire::drains::DrainCounters;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::watch;

/// Most drains one app may have.
pub const MAX_PER_APP: usize = 8;

/// What a drain's task is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Told {
    Run,
    /// Save the cursor and end (robokud stops, or the app is renamed).
    Stop,
    /// The drain was removed: delete its state and end.
    Forget,
}

struct Running {
    app: String,
    status: watch::Receiver<DrainCounters>,
    stop: watch::Sender<Told>,
}

/// The running drains, owned by the engine. Every method returns at once.
pub struct Drains {
    logs_dir: PathBuf,
    state_dir: PathBuf,
    ca_file: Option<PathBuf>,
    host: String,
    logs: LogHandle,
    running: BTreeMap<String, Running>,
    usage: crate::usage::Meter,
}

impl Drains {
    pub fn new(settings: &Settings, logs: LogHandle, usage: crate::usage::Meter) -> Self {
        Drains {
            logs_dir: settings.logs_dir(),
            state_dir: settings.drains_dir(),
            ca_file: settings.drain_ca_file.clone(),
            host: settings
                .mqtt
                .device_id
                .clone()
                .unwrap_or_else(crate::mqtt::hostname),
            logs,
            running: BTreeMap::new(),
            usage,
        }
    }

    /// Starts delivering `row` (again, if it was running). Must be called inside a tokio runtime.
    pub fn start(&mut self, row: &DrainRow) {
        self.stop(&row.id, Told::Stop);
        let target = match url::parse(&row.url) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(drain = row.id, app = row.app, error = %e, "stored drain URL no longer parses; not started");
                return;
            }
        };
        let tls = match &target {
            url::Target::Https { .. } => Some(&[b"http/1.1".as_slice()][..]),
            url::Target::Syslog {
                transport: url::Transport::Tls,
                ..
            } => Some(&[][..]),
            _ => None,
        };
        let tls = match tls {
            None => Ok(None),
            Some(alpn) => crate::mqtt::artifact::client_tls(self.ca_file.as_deref(), alpn)
                .map(Some)
                .map_err(|e| format!("TLS for drains (setting drain_ca_file): {e}")),
        };
        // Root's alone (as `prepare_dirs` makes it): a dyno must not read or plant cursors.
        let made = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.state_dir)
        };
        if let Err(e) = made {
            tracing::warn!(dir = %self.state_dir.display(), error = %e, "cannot create the drains state dir");
        }
        let (status_tx, status) = watch::channel(DrainCounters::default());
        let (stop, stop_rx) = watch::channel(Told::Run);
        let drain = task::Drain {
            id: row.id.clone(),
            app: row.app.clone(),
            token: row.token.clone(),
            target,
            host: self.host.clone(),
            app_dir: self.logs_dir.join(&row.app),
            state_path: self.state_path(&row.id),
            tls,
            usage: self.usage.clone(),
            mqtt: mqtt::Setup {
                client_id: format!("robokud-drain-{}-{}", self.host, row.id),
                ca: self.ca_file.clone(),
            },
        };
        tokio::spawn(drain.run(status_tx, self.logs.subscribe(), stop_rx));
        self.running.insert(
            row.id.clone(),
            Running {
                app: row.app.clone(),
                status,
                stop,
            },
        );
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.state_dir.join(format!("{id}.json"))
    }

    fn stop(&mut self, id: &str, how: Told) {
        if let Some(r) = self.running.remove(id) {
            let _ = r.stop.send(how);
        }
    }

    /// A removed drain: its task ends and deletes its state.
    pub fn forget(&mut self, id: &str) {
        if self.running.contains_key(id) {
            self.stop(id, Told::Forget);
        } else {
            let _ = std::fs::remove_file(self.state_path(id));
        }
    }

    /// Every drain of `app` (destroyed: `forget`; renamed: started again under the new name).
    pub fn stop_app(&mut self, app: &str, forget: bool) {
        let ids: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.app == app)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            match forget {
                true => self.forget(&id),
                false => self.stop(&id, Told::Stop),
            }
        }
    }

    /// Every drain saves its cursor and ends (robokud stops).
    pub fn stop_all(&mut self) {
        for (_, r) in std::mem::take(&mut self.running) {
            let _ = r.stop.send(Told::Stop);
        }
    }

    /// The counters of a running drain (`None`: not running).
    pub fn counters(&self, id: &str) -> Option<DrainCounters> {
        self.running.get(id).map(|r| r.status.borrow().clone())
    }
}

/// A new drain's id (`d-` and 8 hex digits) and token (`d.` and a UUID-shaped random).
pub fn new_id_and_token() -> (String, String) {
    let mut b = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    let hex = |s: &[u8]| s.iter().map(|x| format!("{x:02x}")).collect::<String>();
    (
        format!("d-{}", hex(&b[..4])),
        format!(
            "d.{}-{}-{}-{}-{}",
            hex(&b[4..8]),
            hex(&b[8..10]),
            hex(&b[10..12]),
            hex(&b[12..14]),
            hex(&b[14..20])
        ),
    )
}

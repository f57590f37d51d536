//! systemd's service notification protocol (`sd_notify(3)`), spoken directly: one datagram of
//! `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name
//! written `@name`). No libsystemd: the protocol is a few lines of text, and a musl build of the
//! agent must not need a C library it cannot link.
//!
//! This module owns what robokud tells systemd: `READY=1` once the store is open, the formation
//! reconciled and the API served; `STATUS=` lines a person sees in `systemctl status`;
//! `STOPPING=1`; and the watchdog. `WATCHDOG=1` is sent only after the engine answered a
//! [`Command::Ping`] in time, so a stuck engine loop (not merely a live process) makes systemd
//! restart robokud (`WatchdogSec=` in the unit). Without `$NOTIFY_SOCKET` every call is a no-op.

use crate::engine::{Command, Door, EngineError, EngineHandle, Reply};
use std::future::Future;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often `STATUS=` is refreshed when the watchdog does not tick faster.
const STATUS_PERIOD: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={socket:?} is not a usable socket address: {source}")]
    Address {
        socket: String,
        source: std::io::Error,
    },
    #[error("send to NOTIFY_SOCKET={socket:?}: {source}")]
    Send {
        socket: String,
        source: std::io::Error,
    },
}

/// Sends `fields` to `$NOTIFY_SOCKET`. `Ok(false)` when the variable is unset (not under systemd).
pub fn notify(fields: &[(&str, &str)]) -> Result<bool, NotifyError> {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(socket) if !socket.is_empty() => notify_to(&socket, fields).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `fields` as one datagram to `socket` (a path, or `@name` for an abstract socket).
pub fn notify_to(socket: &str, fields: &[(&str, &str)]) -> Result<(), NotifyError> {
    let address_error = |source| NotifyError::Address {
        socket: socket.to_string(),
        source,
    };
    let addr = socket_addr(socket).map_err(address_error)?;
    let sock = UnixDatagram::unbound().map_err(address_error)?;
    // systemd drains its socket promptly; should it not, drop the message rather than block a
    // runtime worker.
    sock.set_nonblocking(true).map_err(address_error)?;
    sock.send_to_addr(message(fields).as_bytes(), &addr)
        .map_err(|source| NotifyError::Send {
            socket: socket.to_string(),
            source,
        })?;
    Ok(())
}

fn socket_addr(socket: &str) -> std::io::Result<SocketAddr> {
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(socket),
    }
}

/// `KEY=VALUE\n` per field. A newline inside a value would start a new field, so it becomes a space.
fn message(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        out.push_str(key);
        out.push('=');
        out.push_str(&value.replace('\n', " "));
        out.push('\n');
    }
    out
}

/// The watchdog interval systemd asks for: `$WATCHDOG_USEC`, if `$WATCHDOG_PID` is absent or ours.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == me => {}
        // Meant for another process (a parent that passed its environment on).
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

/// The line `systemctl status` shows, e.g. `running 3 apps, 7/7 dynos up`.
pub fn status_line(status: &roboku_wire::Status) -> String {
    let apps = match status.apps {
        1 => "1 app".to_string(),
        n => format!("{n} apps"),
    };
    format!(
        "running {apps}, {}/{} dynos up",
        status.dynos_running, status.dynos_desired
    )
}

/// Sends and logs; a failing notification must never stop the agent.
fn send(socket: &str, fields: &[(&str, &str)]) {
    if let Err(e) = notify_to(socket, fields) {
        tracing::warn!(error = %e, "systemd notification failed");
    }
}

/// What the keepalive asks the engine; a trait so tests can stand in for a stuck engine.
trait Probe: Send + Sync + 'static {
    /// `Ok` when the engine loop answered; `Err` carries the engine's refusal.
    fn ping(&self) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// The current `STATUS=` line, `None` if the engine did not say.
    fn status(&self) -> impl Future<Output = Option<String>> + Send;
}

impl Probe for EngineHandle {
    async fn ping(&self) -> Result<(), EngineError> {
        self.call(Door::Agent, Command::Ping).await.map(|_| ())
    }
    async fn status(&self) -> Option<String> {
        match self.call(Door::Agent, Command::Status).await {
            Ok(Reply::Status(s)) => Some(status_line(&s)),
            _ => None,
        }
    }
}

/// The agent's side of the protocol for one run: created when robokud is ready, told when it
/// stops, finished before the engine is awaited (its task holds an engine handle).
pub struct Notifier {
    socket: Option<String>,
    stopping: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Notifier {
    /// Sends `READY=1` with a first `STATUS=`, and starts the watchdog/status task.
    /// Inert when robokud is not started by systemd (`$NOTIFY_SOCKET` unset).
    pub async fn ready(engine: EngineHandle) -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        Notifier::start(socket, engine, watchdog_interval()).await
    }

    async fn start(
        socket: Option<String>,
        engine: impl Probe,
        watchdog: Option<Duration>,
    ) -> Notifier {
        let stopping = Arc::new(AtomicBool::new(false));
        let Some(sock) = socket.clone() else {
            return Notifier {
                socket,
                stopping,
                task: None,
            };
        };
        let status = tokio::time::timeout(STATUS_PERIOD, engine.status())
            .await
            .ok()
            .flatten();
        match &status {
            Some(line) => send(&sock, &[("READY", "1"), ("STATUS", line)]),
            None => send(&sock, &[("READY", "1")]),
        }
        if let Some(w) = watchdog {
            tracing::info!(interval_ms = w.as_millis() as u64, "systemd watchdog on");
        }
        let task = tokio::spawn(keepalive(sock, engine, watchdog, status, stopping.clone()));
        Notifier {
            socket,
            stopping,
            task: Some(task),
        }
    }

    /// Sends `STOPPING=1`; the watchdog goes on while the engine stops dynos.
    pub fn stopping(&self, status: &str) {
        if let Some(socket) = &self.socket {
            self.stopping.store(true, Ordering::SeqCst);
            send(socket, &[("STOPPING", "1"), ("STATUS", status)]);
        }
    }

    /// Ends the task (and so drops its engine handle, which lets the engine end).
    pub async fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Pets the watchdog every half interval, each time only after the engine answered a ping within
/// a quarter interval (so the gap between two `WATCHDOG=1` stays under the interval), and keeps
/// `STATUS=` current.
async fn keepalive(
    socket: String,
    engine: impl Probe,
    watchdog: Option<Duration>,
    mut last_status: Option<String>,
    stopping: Arc<AtomicBool>,
) {
    let period = watchdog.map_or(STATUS_PERIOD, |w| (w / 2).min(STATUS_PERIOD));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut since_status = Duration::ZERO;
    loop {
        tick.tick().await;
        if let Some(w) = watchdog {
            let deadline = w / 4;
            let alive = match tokio::time::timeout(deadline, engine.ping()).await {
                Ok(Ok(())) => true,
                // While stopping, the engine refuses commands but still answers: it is alive.
                Ok(Err(EngineError::Unavailable(_))) => stopping.load(Ordering::SeqCst),
                Ok(Err(_)) | Err(_) => false,
            };
            if alive {
                send(&socket, &[("WATCHDOG", "1")]);
            } else {
                tracing::error!(
                    deadline_ms = deadline.as_millis() as u64,
                    "the engine did not answer a ping in time; not petting the systemd watchdog"
                );
            }
        }
        since_status += period;
        if since_status >= STATUS_PERIOD && !stopping.load(Ordering::SeqCst) {
            since_status = Duration::ZERO;
            let status = tokio::time::timeout(period, engine.status())
                .await
                .ok()
                .flatten();
            if let Some(line) = status.as_ref().filter(|s| Some(*s) != last_status.as_ref()) {
                send(&socket, &[("STATUS", line)]);
                last_status = status;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_one_line_per_field_and_values_cannot_inject_fields() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "a\nWATCHDOG=1")]),
            "READY=1\nSTATUS=a WATCHDOG=1\n"
        );
    }

    #[test]
    fn watchdog_interval_honours_pid() {
        assert_eq!(
            watchdog_from(Some("200000"), None, 7),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            watchdog_from(Some("200000"), Some("7"), 7),
            Some(Duration::from_millis(200))
        );
        assert_eq!(watchdog_from(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("200000"), Some("x"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_from(None, Some("7"), 7), None);
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), &[("READY", "1"), ("STATUS", "ok")]).unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok\n");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("roboku-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        notify_to(&format!("@{name}"), &[("WATCHDOG", "1")]).unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\n");
    }

    #[test]
    fn a_missing_socket_is_an_error_naming_it() {
        let err = notify_to("/nonexistent/roboku/notify", &[("READY", "1")]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/roboku/notify"),
            "{err}"
        );
    }

    #[test]
    fn status_line_reads_well() {
        let mut s = roboku_wire::Status {
            version: "0".into(),
            pid: 1,
            data_dir: String::new(),
            socket: String::new(),
            started_at: 0,
            cgroup: roboku_wire::CgroupStatus {
                mode: "none".into(),
                root: String::new(),
                enforced: false,
                reason: None,
                joins: None,
            },
            dyno_user: "roboku-dyno".into(),
            dyno_user_note: None,
            apps: 3,
            dynos_running: 6,
            dynos_desired: 7,
            agent_rss: 0,
            clock: None,
        };
        assert_eq!(status_line(&s), "running 3 apps, 6/7 dynos up");
        s.apps = 1;
        assert_eq!(status_line(&s), "running 1 app, 6/7 dynos up");
    }

    /// Answers `answers` pings, then hangs like a stuck engine loop.
    struct Fake {
        answers: std::sync::atomic::AtomicUsize,
        refuse: bool,
    }

    impl Probe for Fake {
        async fn ping(&self) -> Result<(), EngineError> {
            let left = self.answers.load(Ordering::SeqCst);
            if left == 0 {
                std::future::pending::<()>().await;
            }
            self.answers.store(left - 1, Ordering::SeqCst);
            if self.refuse {
                Err(EngineError::Unavailable("robokud is shutting down".into()))
            } else {
                Ok(())
            }
        }
        async fn status(&self) -> Option<String> {
            Some("running 0 apps, 0/0 dynos up".to_string())
        }
    }

    fn fake(answers: usize, refuse: bool) -> Fake {
        Fake {
            answers: std::sync::atomic::AtomicUsize::new(answers),
            refuse,
        }
    }

    /// Datagrams received until `quiet` passes without one (or `limit` passes in all).
    async fn collect(
        rx: &tokio::net::UnixDatagram,
        quiet: Duration,
        limit: Duration,
    ) -> Vec<String> {
        let end = tokio::time::Instant::now() + limit;
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(Ok(n)) = tokio::time::timeout(quiet, rx.recv(&mut buf)).await {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if tokio::time::Instant::now() > end {
                break;
            }
        }
        got
    }

    #[tokio::test]
    async fn a_stuck_engine_stops_the_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = tokio::net::UnixDatagram::bind(&path).unwrap();
        let socket = path.to_str().unwrap().to_string();
        let notifier = Notifier::start(
            Some(socket),
            fake(3, false),
            Some(Duration::from_millis(80)),
        )
        .await;
        // Pings come every 40 ms; after the third answer the engine hangs, so 400 ms of silence
        // (ten ping periods) must follow exactly three WATCHDOG=1.
        let got = collect(&rx, Duration::from_millis(400), Duration::from_secs(10)).await;
        notifier.finish().await;
        assert_eq!(got[0], "READY=1\nSTATUS=running 0 apps, 0/0 dynos up\n");
        let pets = got.iter().filter(|m| *m == "WATCHDOG=1\n").count();
        assert_eq!(pets, 3, "{got:?}");
    }

    #[tokio::test]
    async fn refusals_count_as_alive_only_while_stopping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = tokio::net::UnixDatagram::bind(&path).unwrap();
        let socket = path.to_str().unwrap().to_string();
        let notifier = Notifier::start(
            Some(socket),
            fake(1000, true),
            Some(Duration::from_millis(80)),
        )
        .await;
        let before = collect(&rx, Duration::from_millis(300), Duration::from_secs(5)).await;
        assert_eq!(before.len(), 1, "only READY=1 before stopping: {before:?}");
        notifier.stopping("stopping dynos");
        let after = collect(&rx, Duration::from_millis(300), Duration::from_millis(500)).await;
        notifier.finish().await;
        assert_eq!(after[0], "STOPPING=1\nSTATUS=stopping dynos\n");
        assert!(
            after.iter().filter(|m| *m == "WATCHDOG=1\n").count() >= 2,
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn without_a_socket_nothing_starts() {
        let notifier = Notifier::start(None, fake(0, false), Some(Duration::from_millis(80))).await;
        assert!(notifier.task.is_none());
        notifier.stopping("x");
        notifier.finish().await;
    }
}

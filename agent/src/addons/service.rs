//! One add-on server, supervised like a dyno by a task of its own: started as the add-on's uid
//! in its own process group (and session), tagged like a dyno (so a robokud killed with it
//! running kills the stray at its next start), restarted with backoff when it dies, stopped
//! (SIGTERM to the group, then SIGKILL) when asked or when its handle is dropped.
//! With cgroups in use it runs in a cgroup of its own (`_addons/<name>`, beside the apps'; app
//! names start with a letter, so none can take it) with [`limits`], joined between fork and
//! exec like a dyno's; whatever it forked is killed with the cgroup when it ends (a Redis
//! background save outliving a crashed server, say).
//! The engine only sends "stop" and reads the latest [`Status`]; it never waits on the process.

use super::state::{Machine, Phase, Status};
use crate::backoff::BackoffPolicy;
use crate::cgroup::CgroupDriver;
use crate::supervisor::spawn::{self, RunAs, SpawnSpec};
use crate::supervisor::watch;
use roboku_wire::Limits;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch as tokio_watch};

/// How long a stopping server has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A server's log is cut back to nothing at a start when it grew past this.
const LOG_CAP: u64 = 1 << 20;

pub struct Spec {
    pub name: String,
    pub command: String,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub run_as: Option<RunAs>,
    /// Its stdout and stderr (kept small: see [`LOG_CAP`]).
    pub log: PathBuf,
    pub policy: BackoffPolicy,
    pub cgroup: Option<Cgroup>,
    /// Blocking work before each start (postgres's initdb); a failure counts as a failed start.
    pub prepare: Option<Hook>,
    /// Blocking work once it runs (postgres's roles), on a thread of its own: never in the way
    /// of the supervision.
    pub after_start: Option<Hook>,
    /// The signal of a clean stop (SIGKILL follows after [`STOP_GRACE`]).
    pub stop_signal: i32,
}

/// A provider's blocking step, run off the engine.
pub type Hook = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Runs `hook` on a blocking thread; its failure is logged (the next start runs it again).
pub fn run_hook(name: &str, what: &'static str, hook: Hook) -> tokio::task::JoinHandle<bool> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || match hook() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(addon = %name, error = %e, "add-on server's {what} step failed");
            false
        }
    })
}

/// The server's own cgroup.
#[derive(Clone)]
pub struct Cgroup {
    pub driver: Arc<dyn CgroupDriver>,
    pub rel: String,
    pub limits: Limits,
}

/// The cgroup of add-on `name`.
pub fn cgroup_rel(name: &str) -> String {
    format!("_addons/{name}")
}

/// What an add-on server may use: enough for a robot's local broker or database, not enough to
/// take the memory or the pid space the dynos need.
pub fn limits() -> Limits {
    Limits {
        memory_max: Some(512 << 20),
        pids: Some(512),
        ..Limits::default()
    }
}

/// The engine's handle on a running service. Dropping it stops the server.
pub struct Service {
    stop: Option<oneshot::Sender<()>>,
    status: tokio_watch::Receiver<Status>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    pub fn start(spec: Spec) -> Service {
        let (stop_tx, stop_rx) = oneshot::channel();
        let machine = Machine::new(spec.policy);
        let (status_tx, status_rx) = tokio_watch::channel(machine.status.clone());
        let task = tokio::spawn(run(spec, machine, status_tx, stop_rx));
        Service {
            stop: Some(stop_tx),
            status: status_rx,
            task: Some(task),
        }
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Asks the server to stop; the returned handle ends once it is down.
    pub fn stop(mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.stop.take().map(|s| s.send(()));
        self.task.take()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn run(
    spec: Spec,
    mut m: Machine,
    status: tokio_watch::Sender<Status>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let started = Instant::now();
        let prepared = match &spec.prepare {
            None => Ok(()),
            // Waited for even when told to stop meanwhile: a destroy removes the files only
            // once this task ends, never under a running initdb.
            Some(hook) => {
                let hook = hook.clone();
                tokio::task::spawn_blocking(move || hook())
                    .await
                    .unwrap_or_else(|e| Err(format!("prepare task: {e}")))
            }
        };
        if !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            m.stop();
            let _ = status.send(m.status.clone());
            return;
        }
        match prepared.and_then(|()| start_once(&spec)) {
            Ok(proc) => {
                m.spawned(proc.pid);
                let _ = status.send(m.status.clone());
                tracing::info!(addon = %spec.name, pid = proc.pid, "add-on server started");
                if let Some(hook) = &spec.after_start {
                    drop(run_hook(&spec.name, "after start", hook.clone()));
                }
                let pid = proc.pid;
                let exit = async {
                    let e = watch::wait_exit(proc.pid, proc.pidfd).await;
                    empty_cgroup(&spec).await;
                    e
                };
                tokio::pin!(exit);
                tokio::select! {
                    e = &mut exit => {
                        let why = e.describe();
                        tracing::warn!(addon = %spec.name, exit = %why, "add-on server ended");
                        let jitter = f64::from(super::secure_bytes::<1>()[0]) / 256.0;
                        match m.ended(why, started.elapsed(), jitter) {
                            Some(delay) => {
                                let _ = status.send(m.status.clone());
                                if !backoff(delay, &mut m, &status, &mut stop).await {
                                    return;
                                }
                                let _ = status.send(m.status.clone());
                            }
                            None => return,
                        }
                    }
                    _ = &mut stop => {
                        m.stop();
                        let _ = status.send(m.status.clone());
                        spawn::signal_group(pid, spec.stop_signal);
                        let e = match tokio::time::timeout(STOP_GRACE, &mut exit).await {
                            Ok(e) => e,
                            Err(_) => {
                                spawn::signal_group(pid, libc::SIGKILL);
                                exit.await
                            }
                        };
                        m.ended(e.describe(), started.elapsed(), 0.0);
                        let _ = status.send(m.status.clone());
                        tracing::info!(addon = %spec.name, "add-on server stopped");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(addon = %spec.name, error = %e, "cannot start the add-on server");
                let delay = m
                    .ended(format!("could not start: {e}"), Duration::ZERO, 0.5)
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(500));
                let _ = status.send(m.status.clone());
                if !backoff(delay, &mut m, &status, &mut stop).await {
                    return;
                }
            }
        }
        if matches!(m.status.phase, Phase::Stopped) {
            return;
        }
    }
}

/// Waits out a restart delay: true with the machine set to restart, false (stop reported)
/// when told to stop first.
async fn backoff(
    delay: Duration,
    m: &mut Machine,
    status: &tokio_watch::Sender<Status>,
    stop: &mut oneshot::Receiver<()>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {
            m.restart();
            true
        }
        _ = stop => {
            m.stop();
            let _ = status.send(m.status.clone());
            false
        }
    }
}

/// Kills what is left in the server's cgroup (off the runtime: it waits up to
/// [`crate::cgroup::KILL_TIMEOUT`]).
async fn empty_cgroup(spec: &Spec) {
    let Some(cg) = spec.cgroup.clone() else {
        return;
    };
    let name = spec.name.clone();
    let done = tokio::task::spawn_blocking(move || cg.driver.kill_all(&cg.rel)).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(addon = %name, error = %e, "cannot empty the add-on server's cgroup");
    }
}

fn start_once(spec: &Spec) -> Result<spawn::Spawned, String> {
    use crate::util::IoContext;
    let join = match &spec.cgroup {
        None => Vec::new(),
        Some(cg) => {
            let err = |e: crate::cgroup::CgroupError| format!("cgroup {}: {e}", cg.rel);
            cg.driver.create(&cg.rel, &cg.limits).map_err(err)?;
            cg.driver.join_files(&cg.rel).map_err(err)?
        }
    };
    if std::fs::metadata(&spec.log).is_ok_and(|m| m.len() > LOG_CAP) {
        let _ = std::fs::remove_file(&spec.log);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .at("open", &spec.log)
        .map_err(|e| e.to_string())?;
    if let Some(r) = &spec.run_as {
        std::os::unix::fs::fchown(&log, Some(r.uid), Some(r.gid))
            .at("chown", &spec.log)
            .map_err(|e| e.to_string())?;
    }
    spawn::spawn(SpawnSpec {
        command: spec.command.clone(),
        cwd: spec.cwd.clone(),
        env: spec.env.clone(),
        run_as: spec.run_as.clone(),
        spool: log,
        stdin: None,
        controlling_tty: false,
        join,
        nice: None,
        groups: Vec::new(),
        rt: None,
    })
    .map_err(|e| format!("spawn {:?}: {e}", spec.command))
}

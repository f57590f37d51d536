//! The engine: the one owner of mutable state (the store handle, the dyno table, the app cache).
//!
//! Doors (the local API and MQTT) send [`Command`]s through an
//! [`EngineHandle`] and await a reply; exit watchers and timers feed it internal events. Nothing
//! else touches the store or the processes, so a deploy from MQTT and one from the CLI are the same
//! code. The loop never blocks on a slow client, on log storage, or on killing a cgroup (those
//! run in their own tasks), so supervision always goes on.

mod addons;
mod adopt;
mod apps;
mod command;
mod confine;
pub mod data_restore;
mod drains;
mod dyno;
pub(crate) mod formation;
mod gate;
mod gc;
pub use gc::Kept;
pub mod health;
pub mod holds;
mod isolation;
pub mod one_off;
pub mod order;
mod ordering;
mod plan;
pub mod policy;
mod preboot;
mod probation;
pub mod reconcile;
mod releases;
pub mod rename;
mod reported;
mod rollout;
mod spare;
mod stop_order;
mod supervise;
mod sweep;

pub use command::{Command, Door, EngineError, Reply};

use crate::backoff::BackoffPolicy;
use crate::cgroup::CgroupDriver;
use crate::logs::LogHandle;
use crate::settings::{OnExit, Settings};
use crate::store::{ReleaseRow, Store};
use crate::supervisor::spawn::RunAs;
use crate::supervisor::watch::Exit;
use dyno::{Dyno, DynoKey};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A request from a door, with the channel its answer goes back on.
struct Request {
    door: Door,
    cmd: Command,
    reply: oneshot::Sender<Result<Reply, EngineError>>,
    /// How the caller waits if the command waits for the app's gates.
    wait: holds::Wait,
}

/// Events from the engine's own helpers (exit watchers).
enum Internal {
    Exited {
        key: DynoKey,
        instance: u64,
        exit: Exit,
    },
    Health {
        key: DynoKey,
        instance: u64,
        result: Result<(), String>,
    },
    Spawned {
        key: DynoKey,
        instance: u64,
        cgroup: Option<String>,
        command: String,
        result: Result<crate::supervisor::spawn::Spawned, String>,
    },
    /// A round of an app's gate checks (commands, file tests) came back.
    GatesChecked {
        app: String,
        round: u64,
        results: BTreeMap<String, Result<String, String>>,
    },
    /// A dyno's instance has run long enough to be given a spare (see `spare`).
    SpareDue { key: DynoKey, instance: u64 },
    /// The spare maker made (or could not make) a spare.
    SpareMade {
        key: DynoKey,
        instance: u64,
        cgroup: Option<String>,
        fingerprint: u64,
        made: Result<crate::supervisor::spare::Spare, String>,
    },
    /// The log task moved a renamed app's logs (or could not).
    Renamed {
        from: String,
        to: String,
        logs: Result<(), String>,
    },
}

/// Doors hold this; cloning is cheap. Dropping every handle ends the engine.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Request>,
    /// The log task, for doors that stream work output (builds) into the app's logs
    /// (`None` for a stub handle).
    pub logs: Option<LogHandle>,
    /// The cgroup driver, for builds (each runs in its own cgroup; `None` for a stub handle).
    pub cgroups: Option<Arc<dyn CgroupDriver>>,
}

impl EngineHandle {
    /// Sends `cmd` and waits for the engine's answer.
    pub async fn call(&self, door: Door, cmd: Command) -> Result<Reply, EngineError> {
        self.call_waiting(door, cmd, holds::Wait::default()).await
    }

    /// Like `call`, saying how the caller waits if the app's gates hold the command back: until
    /// `wait.deadline` (then `GateClosed`), hearing `waiting for gate ...` on `wait.progress`.
    pub async fn call_waiting(
        &self,
        door: Door,
        cmd: Command,
        wait: holds::Wait,
    ) -> Result<Reply, EngineError> {
        send(&self.tx, door, cmd, wait).await
    }
}

async fn send(
    tx: &mpsc::Sender<Request>,
    door: Door,
    cmd: Command,
    wait: holds::Wait,
) -> Result<Reply, EngineError> {
    let (reply, rx) = oneshot::channel();
    tx.send(Request {
        door,
        cmd,
        reply,
        wait,
    })
    .await
    .map_err(|_| EngineError::Unavailable("robokud is shutting down".into()))?;
    rx.await
        .map_err(|_| EngineError::Unavailable("robokud is shutting down".into()))?
}

/// The engine as its own doors (the per-app dyno sockets) reach it: a weak sender, so the
/// engine still ends when every [`EngineHandle`] is gone.
#[derive(Clone)]
pub struct WeakEngine(mpsc::WeakSender<Request>);

impl WeakEngine {
    pub async fn call(&self, door: Door, cmd: Command) -> Result<Reply, EngineError> {
        let tx = self
            .0
            .upgrade()
            .ok_or_else(|| EngineError::Unavailable("robokud is shutting down".into()))?;
        send(&tx, door, cmd, holds::Wait::default()).await
    }
}

impl EngineHandle {
    /// A handle answered by `answer` instead of an engine, for exercising a door (MQTT, API)
    /// without processes: benchmarks and tests. Must be called inside a tokio runtime.
    pub fn stub(
        answer: impl Fn(Door, Command) -> Result<Reply, EngineError> + Send + 'static,
    ) -> EngineHandle {
        let (tx, mut rx) = mpsc::channel::<Request>(256);
        tokio::spawn(async move {
            while let Some(r) = rx.recv().await {
                let _ = r.wait;
                let _ = r.reply.send(answer(r.door, r.cmd));
            }
        });
        EngineHandle {
            tx,
            logs: None,
            cgroups: None,
        }
    }
}

/// What the engine knows about one app between commands (refreshed from the store on change).
#[derive(Debug, Clone)]
struct AppCache {
    release: Option<ReleaseRow>,
    slug_dir: Option<PathBuf>,
    /// The slug's `.env`, as defaults under the config vars.
    dotenv: BTreeMap<String, String>,
    formation: Vec<crate::store::FormationRow>,
    /// The slug's `app.json` health checks, by process type.
    checks: BTreeMap<String, Vec<health::Check>>,
    /// The slug's `app.json` switch and probation policy.
    policy: policy::Policy,
    run_as: Result<Option<RunAs>, String>,
    /// What roboku adds to every dyno's env over the config vars: `ROBOKU_DATA` and the add-on
    /// attachments' vars as they are now.
    own_env: BTreeMap<String, String>,
    user_name: String,
    grace: Duration,
}

pub struct Engine {
    settings: Settings,
    store: Store,
    cgroups: Arc<dyn CgroupDriver>,
    logs: LogHandle,
    dynos: BTreeMap<DynoKey, Dyno>,
    apps: BTreeMap<String, AppCache>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    policy: BackoffPolicy,
    dirty: BTreeSet<DynoKey>,
    /// Rows whose change may wait a little (a spawned dyno's pid: its instance, the tag it is
    /// found by, is saved already), saved with the next other change or at `save_due`.
    lazy: BTreeSet<DynoKey>,
    /// When the freed heap goes back to the kernel (after a burst of saved dyno changes).
    heap: crate::heap::Trimmer,
    /// Removes gone instances' cgroups, one at a time off the engine (see `sweep`).
    sweeper: sweep::Sweeper,
    save_due: Option<Instant>,
    gone: Vec<DynoKey>,
    rng: SmallRng,
    started_at: u64,
    next_instance: u64,
    next_sample: Instant,
    /// Each app cgroup's CPU time at the last sampling round (see `supervise::quiet`).
    app_cpu: BTreeMap<String, u64>,
    /// Where each sampling round goes for the dashboard's history and `/metrics`.
    telemetry: crate::telemetry::Telemetry,
    /// Set while stopping every dyno before exit; answered when the last one is down.
    shutdown: Option<(Instant, oneshot::Sender<Result<Reply, EngineError>>)>,
    /// Releases being rolled out, by app.
    rollouts: BTreeMap<String, rollout::Rollout>,
    /// Who waits for an attached one-off dyno's exit.
    one_off_exits: BTreeMap<DynoKey, oneshot::Sender<roboku_wire::ExitInfo>>,
    /// Forks waiting for their dyno rows (with the instance tag) to be saved: `flush` saves,
    /// then launches them, so no new dyno runs before the store knows it. (A crash
    /// replacement does not wait: see `supervise::Launch::Now`.)
    spawns: Vec<Box<dyn FnOnce() + Send>>,
    /// Outcomes of rollouts that ended before their caller was attached (see `attach_reply`).
    unclaimed: BTreeMap<String, Result<Reply, EngineError>>,
    /// Renames in progress, by old name.
    renames: BTreeMap<String, rename::Renaming>,
    /// Dynos replaced by a preboot, by `(app, name, instance)`: serving until the new release
    /// is committed, then drained and stopped (or put back if it fails).
    retiring: BTreeMap<preboot::RetireeKey, preboot::Retiree>,
    /// Each app's web router, and why one could not be bound (until the app changes).
    routers: BTreeMap<String, crate::router::Router>,
    router_errors: BTreeMap<String, String>,
    /// Committed releases still on probation, by app.
    probations: BTreeMap<String, probation::Probation>,
    /// Where a dyno's reports go while a `reported` check waits for them (`reported.rs`).
    health_feeds: BTreeMap<
        DynoKey,
        (
            u64,
            tokio::sync::watch::Sender<Option<roboku_wire::gates::DynoHealth>>,
        ),
    >,
    /// Stops waiting for dynos of dependent types to be gone (`stop_order.rs`).
    stop_queue: BTreeMap<DynoKey, stop_order::QueuedStop>,
    /// Changes waiting for gates, and what the gates last showed, by app.
    gate_books: BTreeMap<String, holds::GateBook>,
    next_gate_round: u64,
    /// When the next hold expires.
    next_hold_expiry: Option<Instant>,
    /// Each app's dyno socket, and why one could not be bound (until the app changes).
    dyno_doors: BTreeMap<String, crate::api::dyno_door::DynoDoor>,
    dyno_door_errors: BTreeMap<String, String>,
    /// This engine's own request channel, for its dyno sockets.
    weak: WeakEngine,
    /// The add-ons' servers, by add-on name.
    addon_services: BTreeMap<String, crate::addons::service::Service>,
    /// The log drains' tasks.
    drains: crate::drains::Drains,
    /// `rollback --with-data` in progress, by app.
    data_restores: BTreeMap<String, data_restore::Restoring>,
    /// Each running dyno's next instance, started ahead and waiting (see `spare`).
    spares: spare::Spares,
}

/// Starts the engine task: opens nothing itself (the caller passes the store, cgroups and logs),
/// re-adopts dynos that are still running, reconciles every app, then serves commands.
/// The returned oneshot fires once the formation is reconciled (systemd READY=1 waits on it).
pub fn start(
    settings: Settings,
    store: Store,
    cgroups: Arc<dyn CgroupDriver>,
    logs: LogHandle,
    telemetry: crate::telemetry::Telemetry,
    usage: crate::usage::Meter,
) -> (
    EngineHandle,
    tokio::task::JoinHandle<()>,
    oneshot::Receiver<()>,
) {
    let (tx, rx) = mpsc::channel(256);
    let logs_for_handle = logs.clone();
    let cgroups_for_handle = cgroups.clone();
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let policy = BackoffPolicy {
        initial: Duration::from_millis(settings.backoff_initial_ms),
        max: Duration::from_millis(settings.backoff_max_ms),
        reset_after: Duration::from_secs(settings.backoff_reset_secs),
        first_at_once: true,
    };
    let sample = Duration::from_secs(settings.sample_secs.max(1));
    let weak = WeakEngine(tx.downgrade());
    let drains = crate::drains::Drains::new(&settings, logs.clone(), usage);
    let engine = Engine {
        settings,
        store,
        sweeper: sweep::Sweeper::new(cgroups.clone()),
        cgroups,
        logs,
        dynos: BTreeMap::new(),
        apps: BTreeMap::new(),
        internal_tx,
        policy,
        dirty: BTreeSet::new(),
        lazy: BTreeSet::new(),
        heap: crate::heap::Trimmer::default(),
        save_due: None,
        gone: Vec::new(),
        rng: SmallRng::from_entropy(),
        started_at: crate::util::now_ms(),
        next_instance: crate::util::now_ms(),
        next_sample: Instant::now() + sample,
        app_cpu: BTreeMap::new(),
        telemetry,
        shutdown: None,
        rollouts: BTreeMap::new(),
        one_off_exits: BTreeMap::new(),
        spawns: Vec::new(),
        unclaimed: BTreeMap::new(),
        renames: BTreeMap::new(),
        retiring: BTreeMap::new(),
        routers: BTreeMap::new(),
        router_errors: BTreeMap::new(),
        probations: BTreeMap::new(),
        health_feeds: BTreeMap::new(),
        stop_queue: BTreeMap::new(),
        gate_books: BTreeMap::new(),
        next_gate_round: 0,
        next_hold_expiry: None,
        dyno_doors: BTreeMap::new(),
        dyno_door_errors: BTreeMap::new(),
        weak,
        addon_services: BTreeMap::new(),
        drains,
        data_restores: BTreeMap::new(),
        spares: spare::Spares::default(),
    };
    let task = tokio::spawn(engine.run(rx, internal_rx, ready_tx));
    (
        EngineHandle {
            tx,
            logs: Some(logs_for_handle),
            cgroups: Some(cgroups_for_handle),
        },
        task,
        ready_rx,
    )
}

impl Engine {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        ready: oneshot::Sender<()>,
    ) {
        self.adopt_and_reconcile();
        self.restore_healths();
        self.start_addon_services();
        self.start_ordered();
        self.flush();
        self.start_drains();
        let _ = ready.send(());
        let alarm = crate::alarm::Alarm::new();
        loop {
            let wake = self.next_wake();
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => self.handle(req),
                    None => break,
                },
                Some(ev) = internal.recv() => self.internal(ev),
                _ = alarm.sleep_until(wake) => {}
            }
            // Drain whatever else is ready so a burst (100 exits) costs one store transaction.
            while let Ok(ev) = internal.try_recv() {
                self.internal(ev);
            }
            self.on_timers(Instant::now());
            self.advance_renames(Instant::now());
            self.advance_data_restores(Instant::now());
            self.start_ordered();
            self.stop_ordered(Instant::now());
            self.flush();
            if self.shutdown_done() {
                break;
            }
        }
        self.drains.stop_all();
        self.discard_all_spares();
        self.save_due = Some(Instant::now());
        self.flush();
        for stopped in self.stop_addon_services() {
            let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
        }
    }

    fn handle(&mut self, req: Request) {
        if self.shutdown.is_some() {
            let _ = req.reply.send(Err(EngineError::Unavailable(
                "robokud is shutting down".into(),
            )));
            return;
        }
        if let Command::Shutdown = req.cmd {
            self.begin_shutdown(req.reply);
            return;
        }
        if let Command::Gates { app } = &req.cmd {
            let app = app.clone();
            self.list_gates(&app, req.reply);
            return;
        }
        if let Some((door, cmd, reply)) = self.park_if_gated(req.door, req.cmd, req.reply, req.wait)
        {
            self.answer(door, cmd, reply);
        }
    }

    /// Runs a command now and answers it (at once, or when its rollout or rename ends).
    fn answer(
        &mut self,
        door: Door,
        cmd: Command,
        reply: oneshot::Sender<Result<Reply, EngineError>>,
    ) {
        match self.dispatch(door, cmd) {
            Ok(Reply::Pending { app }) => self.attach_reply(&app, reply),
            Ok(Reply::Renaming { from }) => self.attach_rename(&from, reply),
            result => {
                let _ = reply.send(result);
            }
        }
    }

    fn internal(&mut self, ev: Internal) {
        match ev {
            Internal::Exited {
                key,
                instance,
                exit,
            } if key.1 == "release.1" => self.on_release_phase_exit(&key.0, instance, exit),
            Internal::Exited {
                key,
                instance,
                exit,
            } => self.on_exit(key, instance, exit),
            Internal::Health {
                key,
                instance,
                result,
            } => self.on_health(key, instance, result),
            Internal::Spawned {
                key,
                instance,
                cgroup,
                command,
                result,
            } => self.on_spawned(key, instance, cgroup, command, result),
            Internal::SpareDue { key, instance } => self.on_spare_due(key, instance),
            Internal::SpareMade {
                key,
                instance,
                cgroup,
                fingerprint,
                made,
            } => self.on_spare_made(key, instance, cgroup, fingerprint, made),
            Internal::Renamed { from, to, logs } => self.on_renamed(&from, &to, logs),
            Internal::GatesChecked {
                app,
                round,
                results,
            } => self.on_gates_checked(&app, round, results),
        }
    }

    fn begin_shutdown(&mut self, reply: oneshot::Sender<Result<Reply, EngineError>>) {
        let mut deadline = Instant::now() + Duration::from_secs(self.settings.grace_secs + 5);
        if self.settings.on_exit == OnExit::Stop {
            let keys: Vec<DynoKey> = self.dynos.keys().cloned().collect();
            // Dependents first (the start order reversed); a stop that waits does so for at
            // most its grace, so the whole chain is down within twice it.
            self.stop_in_order(&keys, dyno::Want::Stop);
            if !self.stop_queue.is_empty() {
                deadline += Duration::from_secs(self.settings.grace_secs);
            }
            self.stop_retirees();
            tracing::info!("stopping every dyno before exit");
        } else {
            tracing::info!(
                dynos = self.dynos.len(),
                "leaving dynos running for the next robokud"
            );
        }
        self.shutdown = Some((deadline, reply));
    }

    fn shutdown_done(&mut self) -> bool {
        let Some((deadline, _)) = &self.shutdown else {
            return false;
        };
        let all_down = self.settings.on_exit == OnExit::Leave
            || self
                .dynos
                .values()
                .all(|d| d.proc.is_none() && d.pending.is_none());
        if all_down || Instant::now() >= *deadline {
            if let Some((_, reply)) = self.shutdown.take() {
                let _ = reply.send(Ok(Reply::Done(roboku_wire::Done {
                    message: "stopped".into(),
                })));
            }
            return true;
        }
        false
    }

    /// Persists every changed dyno row in one transaction, then launches the forks that waited
    /// for it. A failing store is logged, never fatal: supervision goes on with the state in
    /// memory (and tries again on the next change; a dyno forked unrecorded is found again at
    /// start by its tag).
    fn flush(&mut self) {
        if !self.dirty.is_empty() || !self.gone.is_empty() {
            // A dyno that changed may no longer want its spare (stopped, scaled away).
            self.prune_spares();
        }
        self.save_dynos_batched();
        self.sync_routers();
        self.sync_dyno_doors();
        for spawn in self.spawns.drain(..) {
            tokio::task::spawn_blocking(spawn);
        }
    }

    /// [`Engine::save_dynos`] now when a change needs it, else once `save_due` is reached: a
    /// scale to 500 that hears 500 spawn results in 500 loop turns commits (and fsyncs) a few
    /// times, not 500 times.
    fn save_dynos_batched(&mut self) {
        let urgent = !self.dirty.is_empty() || !self.gone.is_empty();
        match save_when(urgent, !self.lazy.is_empty(), self.save_due, Instant::now()) {
            Save::Now => self.save_dynos(),
            Save::At(t) => self.save_due = Some(t),
            Save::Nothing => {}
        }
    }

    /// Persists every changed dyno row (the lazy ones too) in one transaction.
    fn save_dynos(&mut self) {
        if self.dirty.is_empty() && self.gone.is_empty() && self.lazy.is_empty() {
            return;
        }
        let rows: Vec<_> = self
            .dirty
            .union(&self.lazy)
            .filter_map(|k| self.dynos.get(k))
            .map(Dyno::row)
            .collect();
        match self.store.save_dynos(&rows, &self.gone) {
            Ok(()) => {
                let dynos = &self.dynos;
                let settled = || dynos.values().all(|d| d.pending.is_none());
                if self.heap.saved(rows.len() + self.gone.len(), settled) {
                    crate::heap::trim();
                }
                self.dirty.clear();
                self.lazy.clear();
                self.gone.clear();
                self.save_due = None;
            }
            Err(e) => tracing::error!(error = %e, "saving dyno state failed; will retry"),
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.next_sample;
        if let Some(t) = self.save_due {
            wake = wake.min(t);
        }
        for d in self.dynos.values() {
            for t in [d.retry_at, d.stop_deadline].into_iter().flatten() {
                wake = wake.min(t);
            }
        }
        for r in self.rollouts.values() {
            wake = wake.min(r.deadline());
        }
        for deadline in self.probation_deadlines() {
            wake = wake.min(deadline);
        }
        for deadline in self.retiree_deadlines() {
            wake = wake.min(deadline);
        }
        for deadline in self.rename_deadlines() {
            wake = wake.min(deadline);
        }
        for deadline in self.restore_deadlines() {
            wake = wake.min(deadline);
        }
        for deadline in self.gate_deadlines() {
            wake = wake.min(deadline);
        }
        for deadline in self.stop_queue_deadlines() {
            wake = wake.min(deadline);
        }
        if let Some((deadline, _)) = &self.shutdown {
            wake = wake.min(*deadline);
        }
        wake
    }
}

/// How long a lazy row change may wait for its save.
const LAZY_SAVE: Duration = Duration::from_millis(100);

#[derive(Debug, PartialEq, Eq)]
enum Save {
    Now,
    /// Not yet: at this deadline.
    At(Instant),
    Nothing,
}

/// When to save the dyno rows: at once for an urgent change (a new instance before its fork,
/// an exit, a removal), within [`LAZY_SAVE`] of the first lazy one otherwise. Pure.
fn save_when(urgent: bool, lazy: bool, due: Option<Instant>, now: Instant) -> Save {
    match (urgent, lazy, due) {
        (true, _, _) => Save::Now,
        (false, false, _) => Save::Nothing,
        (false, true, None) => Save::At(now + LAZY_SAVE),
        (false, true, Some(t)) if now >= t => Save::Now,
        (false, true, Some(_)) => Save::Nothing,
    }
}

#[cfg(test)]
mod save_tests {
    use super::*;

    #[test]
    fn urgent_changes_save_at_once_lazy_ones_within_the_window() {
        let now = Instant::now();
        assert_eq!(save_when(true, false, None, now), Save::Now);
        assert_eq!(save_when(true, true, Some(now + LAZY_SAVE), now), Save::Now);
        assert_eq!(save_when(false, false, None, now), Save::Nothing);
        assert_eq!(save_when(false, true, None, now), Save::At(now + LAZY_SAVE));
        let due = now + LAZY_SAVE;
        assert_eq!(save_when(false, true, Some(due), now), Save::Nothing);
        assert_eq!(save_when(false, true, Some(due), due), Save::Now);
    }
}

//! Data snapshots per release and `rollback vN --with-data` (the files are `addons/snapshot.rs`'s).
//!
//! - Before a release replaces the current one (deploy, config change, rollback), the app's data
//!   dir is snapshotted as the current release's, on the engine: it is capped by
//!   `data_snapshot_max_bytes` (default 64 MiB; over it the release goes on without one and the
//!   app's log says so; 0 turns snapshots off) and must fit above the disk reserve (else the
//!   release is refused, saying so). Snapshots are pruned with the releases kept for rollback.
//! - `rollback vN --with-data`: the app's dynos are stopped (as a rename does) while vN's
//!   snapshot is copied aside off the engine; once none runs, the copy is swapped in (one
//!   rename, behind a journal), the data it replaced becomes the current release's snapshot (so
//!   the restore can be undone), and the rollback release is cut as a plain rollback would.
//!   The journal stays until that release passed its rollout: if it fails, its dynos are stopped
//!   and the data that was current is swapped back in before the release before it starts again
//!   (its code never runs on vN's data). Killed anywhere, the next start leaves whole data: vN's
//!   if the rollback release succeeded, else the old (a rollback release left `deploying` is
//!   marked failed, so the release before comes back with its own data).

use super::command::{Command, Door, EngineError, Reply};
use super::dyno::Want;
use super::Engine;
use crate::addons::snapshot;
use crate::settings::Settings;
use crate::store::Store;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Result<T> = std::result::Result<T, EngineError>;

/// How long past the app's grace its dynos may take to stop (counted once vN's copy is staged:
/// the copy takes what it takes) before the restore is given up.
const STOP_MARGIN: Duration = Duration::from_secs(30);
/// How often the loop looks at a copy still being staged.
const STAGE_POLL: Duration = Duration::from_millis(50);

/// A `rollback --with-data` in progress.
pub struct Restoring {
    target: u32,
    current: u32,
    door: Door,
    grace: Duration,
    /// Set once the copy is staged: the dynos still running by then are given up on.
    deadline: Option<Instant>,
    staged: Option<oneshot::Receiver<std::result::Result<snapshot::Copied, String>>>,
    /// Fires when the staging task has ended, its copy removed if the restore was given up.
    ended: Option<oneshot::Receiver<()>>,
    /// Given up while its copy was still being made: the entry stays (refusing only another
    /// `--with-data` rollback, whose copy would use the same staging names) until `ended`.
    given_up: bool,
    staged_result: Option<snapshot::Copied>,
    /// The data is swapped: the release being cut must not snapshot it again. From then on the
    /// rollback release's rollout decides (the restore is never given up by its deadline).
    swapped: bool,
    /// The rollback release (once cut).
    release: Option<u32>,
    /// The rollback release failed: its dynos are being stopped so the data of `current` can be
    /// swapped back in.
    undoing: bool,
    reply: Option<oneshot::Sender<Result<Reply>>>,
}

impl Engine {
    /// Snapshots `app`'s data dir as release `previous`'s, before a new release replaces it.
    /// Refused only when it would cross the disk reserve; anything else is logged and the
    /// release goes on without a snapshot.
    pub(super) fn snapshot_data(&mut self, app: &str, previous: Option<u32>) -> Result<()> {
        let Some(prev) = previous else {
            return Ok(());
        };
        let max = self.settings.data_snapshot_max_bytes;
        if max == 0 || self.data_restores.get(app).is_some_and(|r| r.swapped) {
            return Ok(());
        }
        let data = self.settings.app_data_dir(app);
        let empty = std::fs::read_dir(&data).map_or(true, |mut d| d.next().is_none());
        if empty {
            return Ok(());
        }
        if !self.store.data_snapshots(app)? {
            self.store.mark_snapshot_off(app, prev)?;
            let msg = format!(
                "Data not snapshotted for v{prev}: data snapshots are off for {app} (`roboku data:snapshots on -a {app}`); `rollback v{prev} --with-data` will not be possible"
            );
            self.logs.system(app, "roboku", msg);
            return Ok(());
        }
        let h = roboku_wire::human_bytes;
        let (dir, reserve) = (self.settings.data_dir.clone(), self.settings.disk_reserve);
        let room = crate::disk::room(&dir, reserve)?;
        let run_as = self.run_as_ids(app)?;
        let snaps = self.settings.data_snapshots_dir(app);
        let started = Instant::now();
        match snapshot::take(&data, &snaps, prev, run_as, max, room) {
            Ok(snapshot::Outcome::Copied(c)) => {
                let msg = format!(
                    "Data snapshot of v{prev} taken: {} in {} ms",
                    c.describe(),
                    started.elapsed().as_millis()
                );
                self.logs.system(app, "roboku", msg);
            }
            Ok(snapshot::Outcome::TooBig { bytes }) => {
                let msg = format!(
                    "Data not snapshotted for v{prev}: {} is over data_snapshot_max_bytes ({}); `rollback v{prev} --with-data` will not be possible",
                    h(bytes),
                    h(max)
                );
                self.logs.system(app, "roboku", msg);
            }
            Ok(snapshot::Outcome::NoRoom { bytes }) => {
                let what = format!("the data snapshot of {app} v{prev}");
                crate::disk::check(&dir, reserve, bytes, &what)?;
                let msg = format!(
                    "Data not snapshotted for v{prev}: {} did not fit above the disk reserve",
                    h(bytes)
                );
                self.logs.system(app, "roboku", msg);
            }
            Err(e) => {
                tracing::warn!(app, error = %e, "data snapshot failed");
                self.logs.system(
                    app,
                    "roboku",
                    format!("Data not snapshotted for v{prev}: {e}"),
                );
            }
        }
        Ok(())
    }

    /// The uid and gid the app's data is copied as (its dynos'), when robokud is root.
    pub(super) fn run_as_ids(&self, app: &str) -> Result<Option<(u32, u32)>> {
        Ok(match &self.cache(app)?.run_as {
            Ok(Some(r)) if nix::unistd::geteuid().is_root() => Some((r.uid, r.gid)),
            _ => None,
        })
    }

    /// Keeps the snapshots of the releases kept for rollback (the newest `keep_releases` and the
    /// newest good one); the rest are removed off the engine.
    pub(super) fn prune_data_snapshots(&self) {
        let keep_n = self.settings.keep_releases.max(1);
        let Ok(apps) = self.store.apps() else { return };
        let mut work = Vec::new();
        for app in apps {
            let Ok(releases) = self.store.releases(&app.name) else {
                continue;
            };
            let mut keep: std::collections::BTreeSet<u32> =
                releases.iter().take(keep_n).map(|r| r.version).collect();
            keep.extend(
                releases
                    .iter()
                    .find(|r| r.status == "succeeded")
                    .map(|r| r.version),
            );
            work.push((self.settings.data_snapshots_dir(&app.name), keep));
        }
        tokio::task::spawn_blocking(move || {
            for (snaps, keep) in work {
                snapshot::prune(&snaps, &keep);
            }
        });
    }

    /// `apps:destroy`: the app's snapshots go with its data (moved aside at once, removed off
    /// the engine).
    pub(super) fn destroy_data_snapshots(&self, app: &str) {
        let snaps = self.settings.data_snapshots_dir(app);
        let doomed = self.settings.tmp_dir().join(format!(
            "destroyed-snapshots-{app}-{}",
            crate::util::now_ms()
        ));
        if std::fs::rename(&snaps, &doomed).is_ok() {
            tokio::task::spawn_blocking(move || crate::build::remove_tree(&doomed));
        }
    }

    /// `rollback vN --with-data`: checks, then stops the app's dynos and stages vN's data. The
    /// caller waits ([`Reply::Pending`]) for the rollback release's rollout.
    pub(super) fn rollback_with_data(
        &mut self,
        door: Door,
        app: &str,
        version: Option<u32>,
    ) -> Result<Reply> {
        let cache = self.cache(app)?;
        let grace = cache.grace;
        let current = cache.release.clone().ok_or_else(|| {
            EngineError::Conflict(format!("app {app:?} has no releases to roll back"))
        })?;
        self.ensure_no_rollout(app)?;
        if self.data_restores.contains_key(app) {
            return Err(EngineError::Conflict(format!(
                "{app}'s data is being restored, or the copy of a restore given up is still being removed; try again shortly"
            )));
        }
        let target = self.rollback_version(app, current.version, version)?;
        let row = self.store.release(app, target)?.ok_or_else(|| {
            EngineError::NotFound(format!(
                "{app} has no release v{target} (see `roboku releases -a {app}`)"
            ))
        })?;
        if !self.settings.slugs_dir().join(&row.slug).is_dir() {
            return Err(EngineError::Conflict(format!(
                "the slug of v{target} is gone (garbage-collected); cannot roll back to it"
            )));
        }
        let snaps = self.settings.data_snapshots_dir(app);
        let src = snaps.join(snapshot::name(target));
        if !src.is_dir() && self.store.snapshot_was_off(app, target)? {
            return Err(EngineError::Conflict(format!(
                "v{target} of {app} has no data snapshot: data snapshots were off for {app} when v{target} was replaced (`roboku data:snapshots` turns them on). `roboku rollback v{target} -a {app}` rolls back the code and config and keeps the data as it is"
            )));
        }
        if !src.is_dir() {
            let have = snapshot::versions(&snaps)
                .iter()
                .map(|v| format!("v{v}"))
                .collect::<Vec<_>>();
            let have = if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            };
            return Err(EngineError::Conflict(format!(
                "v{target} of {app} has no data snapshot (snapshots are taken when a release replaces a running one, kept for the releases kept for rollback; {app} has: {have}). `roboku rollback v{target} -a {app}` rolls back the code and config and keeps the data as it is"
            )));
        }
        let one_offs: Vec<String> = self
            .dynos
            .values()
            .filter(|d| d.app == app && d.one_off)
            .map(|d| d.name.clone())
            .collect();
        if !one_offs.is_empty() {
            return Err(EngineError::Conflict(format!(
                "{app} has one-off dynos running ({}) that use its data; roll back with data when they have exited",
                one_offs.join(", ")
            )));
        }
        crate::disk::check(
            &self.settings.data_dir,
            self.settings.disk_reserve,
            snapshot::size(&src),
            &format!("restoring {app}'s data of v{target}"),
        )?;
        let keys = self.stop_app_dynos(app);
        let (tx, rx) = oneshot::channel();
        let run_as = self.run_as_ids(app)?;
        let (ended_tx, ended_rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let staged = snapshot::stage(&snaps, target, run_as).map_err(|e| e.to_string());
            if tx.send(staged).is_err() {
                // Given up meanwhile: the copy goes here, after it really stopped.
                if let Err(e) = snapshot::unstage(&snaps) {
                    tracing::warn!(error = %e, "cannot remove a given-up restore copy");
                }
            }
            let _ = ended_tx.send(());
        });
        self.logs.system(
            app,
            "roboku",
            format!(
                "Rolling back to v{target} with its data: stopping {} dynos, then putting v{target}'s data back",
                keys.len()
            ),
        );
        self.data_restores.insert(
            app.to_string(),
            Restoring {
                target,
                current: current.version,
                door,
                grace,
                deadline: None,
                staged: Some(rx),
                ended: Some(ended_rx),
                given_up: false,
                staged_result: None,
                swapped: false,
                release: None,
                undoing: false,
                reply: None,
            },
        );
        Ok(Reply::Pending {
            app: app.to_string(),
        })
    }

    /// Takes the caller of a restore not yet swapped (`attach_reply` asks first); gives it back
    /// when there is none.
    pub(super) fn attach_restore(
        &mut self,
        app: &str,
        reply: oneshot::Sender<Result<Reply>>,
    ) -> Option<oneshot::Sender<Result<Reply>>> {
        match self.data_restores.get_mut(app) {
            Some(r) if !r.swapped && !r.given_up => {
                r.reply = Some(reply);
                None
            }
            _ => Some(reply),
        }
    }

    /// Refuses a release of an app whose data is being restored (other than the restore's own).
    pub(super) fn ensure_no_restore(&self, app: &str) -> Result<()> {
        match self.data_restores.get(app) {
            Some(r) if (!r.swapped || r.undoing) && !r.given_up => {
                Err(EngineError::Conflict(format!(
                    "{app}'s data is being restored to v{}'s; try again when the rollback is done",
                    r.target
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses a command that would change an app whose data is being restored.
    pub(super) fn refuse_while_restoring(&self, cmd: &Command) -> Result<()> {
        match cmd.changes_app() {
            Some(app)
                if self
                    .data_restores
                    .get(app)
                    .is_some_and(|r| (!r.swapped || r.undoing) && !r.given_up) =>
            {
                Err(EngineError::Conflict(format!(
                    "{app}'s data is being restored; try again when the rollback is done"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The loop's wake-ups for restores (a copy being staged is looked at often).
    pub(super) fn restore_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.data_restores
            .values()
            .filter(|r| !r.swapped)
            .filter_map(|r| {
                if r.given_up || r.staged.is_some() {
                    Some(Instant::now() + STAGE_POLL)
                } else {
                    r.deadline
                }
            })
    }

    /// Every turn of the loop: swaps in each restore whose copy is staged and whose dynos are
    /// all down; gives one up whose copy failed or whose dynos outlive the deadline.
    pub(super) fn advance_data_restores(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let apps: Vec<String> = self.data_restores.keys().cloned().collect();
        for app in apps {
            let Some(r) = self.data_restores.get_mut(&app) else {
                continue;
            };
            if r.undoing {
                if self.running(&app).is_empty() {
                    self.finish_undo(&app);
                }
                continue;
            }
            if r.given_up {
                let ended = !matches!(
                    r.ended.as_mut().map(|rx| rx.try_recv()),
                    Some(Err(oneshot::error::TryRecvError::Empty))
                );
                if ended {
                    self.data_restores.remove(&app);
                }
                continue;
            }
            if r.swapped {
                continue; // the rollback release's rollout decides
            }
            if let Some(rx) = &mut r.staged {
                match rx.try_recv() {
                    Ok(Ok(c)) => {
                        r.staged = None;
                        r.staged_result = Some(c);
                        r.deadline = Some(now + r.grace + STOP_MARGIN);
                    }
                    Ok(Err(e)) => {
                        self.abort_restore(&app, format!("copying the snapshot failed: {e}"));
                        continue;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {}
                    Err(oneshot::error::TryRecvError::Closed) => {
                        self.abort_restore(&app, "copying the snapshot stopped".into());
                        continue;
                    }
                }
            }
            let deadline = r.deadline;
            let staged = r.staged_result.is_some();
            let running = self.running(&app);
            if running.is_empty() && staged {
                self.commit_restore(&app);
            } else if deadline.is_some_and(|d| now >= d) {
                let why = format!("{} did not stop in time", running.join(", "));
                self.abort_restore(&app, why);
            }
        }
    }

    /// Nothing of the app runs and vN's copy is staged: swap, then cut the rollback release.
    fn commit_restore(&mut self, app: &str) {
        let Some((target, current, door, reply)) = self
            .data_restores
            .get_mut(app)
            .map(|r| (r.target, r.current, r.door, r.reply.take()))
        else {
            return;
        };
        self.save_dynos();
        let (data, snaps) = (
            self.settings.app_data_dir(app),
            self.settings.data_snapshots_dir(app),
        );
        if let Err(e) = snapshot::swap(&data, &snaps, target, current) {
            // Before the exchange nothing changed; after it, recovery puts the old data back.
            let undone = snapshot::recover(&data, &snaps, &|_| false);
            return self.abort_restore(app, format!("{e} (then: {undone:?})"));
        }
        if let Some(r) = self.data_restores.get_mut(app) {
            r.swapped = true;
        }
        crate::fault::point("restore.before_release");
        let result = self.rollback_to(door, app, Some(target), Some("with its data"));
        match result {
            Ok(_) => {
                // The journal stays until the release's rollout ends ([`Engine::restore_rollout_ended`],
                // which may have run already: a rollout with nothing to check ends at once).
                let version = self
                    .apps
                    .get(app)
                    .and_then(|c| c.release.as_ref())
                    .map(|r| r.version);
                if let Some(r) = self.data_restores.get_mut(app) {
                    r.release = version;
                }
                if let Some(reply) = reply {
                    self.attach_reply(app, reply);
                }
            }
            Err(e) => {
                let undone = snapshot::recover(&data, &snaps, &|_| false);
                let msg = format!("the rollback release could not be made ({e}); {undone:?}");
                if let Some(r) = self.data_restores.get_mut(app) {
                    r.swapped = false;
                    r.reply = reply;
                }
                self.abort_restore(app, msg);
            }
        }
    }

    /// The rollout of `version` of `app` ended (`ok`: healthy and committed). If it was a
    /// with-data rollback's: on success the restore is done (the journal goes); on failure its
    /// dynos are stopped and the data that was current is swapped back in before `previous` is
    /// made current and started again. Returns what the failure path did (then the caller
    /// restarts nothing), or `None` when this was no restore's rollout.
    pub(super) fn restore_rollout_ended(
        &mut self,
        app: &str,
        version: u32,
        ok: bool,
        previous: Option<u32>,
    ) -> Option<String> {
        let r = self.data_restores.get_mut(app)?;
        if !r.swapped || r.undoing || r.release.is_some_and(|v| v != version) {
            return None;
        }
        let (target, current) = (r.target, r.current);
        let snaps = self.settings.data_snapshots_dir(app);
        if ok {
            self.data_restores.remove(app);
            if let Err(e) = snapshot::finish(&snaps) {
                tracing::error!(app, error = %e, "cannot remove the restore journal");
            }
            self.logs.system(
                app,
                "roboku",
                format!(
                    "v{target}'s data is back; the data of v{current} is kept as its snapshot (`roboku rollback v{current} --with-data` undoes this)"
                ),
            );
            return None;
        }
        r.undoing = true;
        let back = match self.set_back(app, previous) {
            Ok(prev) => format!("v{prev} comes back with its own data"),
            Err(e) => e,
        };
        let keys = self.stop_app_dynos(app);
        let msg = format!(
            "{back} once the {} dynos of v{version} (on v{target}'s data) are stopped",
            keys.len()
        );
        self.advance_data_restores(Instant::now());
        Some(msg)
    }

    /// The failed rollback release's dynos are all down: the data of the release before is
    /// swapped back in (what they wrote to vN's copy goes; vN's snapshot stays), then it starts.
    fn finish_undo(&mut self, app: &str) {
        let Some(r) = self.data_restores.remove(app) else {
            return;
        };
        self.save_dynos();
        let (data, snaps) = (
            self.settings.app_data_dir(app),
            self.settings.data_snapshots_dir(app),
        );
        crate::fault::point("restore.undoing");
        match snapshot::recover(&data, &snaps, &|_| false) {
            Ok(_) => {
                let msg = format!(
                    "The rollback to v{} failed: the data of v{} is back (v{}'s snapshot is kept)",
                    r.target, r.current, r.target
                );
                self.logs.system(app, "roboku", msg);
                self.reconcile(app);
            }
            Err(e) => {
                // The journal stays: the next start settles it. Nothing runs on vN's data meanwhile.
                let msg = format!(
                    "The rollback to v{} failed and swapping the data of v{} back failed too ({e}); {app} stays stopped until robokud restarts",
                    r.target, r.current
                );
                tracing::error!(app, "{msg}");
                self.logs.system(app, "roboku", msg.clone());
                self.event(r.door, Some(app), "rollback with data", &msg);
            }
        }
    }

    /// The app's dynos that run or are still meant to (everything but the `ps:stop`ped).
    fn running(&self, app: &str) -> Vec<String> {
        self.dynos
            .values()
            .filter(|d| d.app == app && !d.stays_down())
            .map(|d| d.name.clone())
            .collect()
    }

    /// Gives a restore up before its release: the dynos start again on the current release.
    fn abort_restore(&mut self, app: &str, why: String) {
        let Some(mut r) = self.data_restores.remove(app) else {
            return;
        };
        // The copy goes once the staging task has ended (it removes it itself when it finds
        // the restore given up); until then the entry stays, so a retry cannot stage over it.
        let staging = match r.staged.take() {
            Some(mut rx) => {
                // Closed first: either the copy's result came in before (then it is ours to
                // remove), or the staging task's send fails and it removes the copy itself.
                rx.close();
                rx.try_recv().is_err()
            }
            None => false,
        };
        if !staging {
            let snaps = self.settings.data_snapshots_dir(app);
            let (ended_tx, ended_rx) = oneshot::channel();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = snapshot::unstage(&snaps) {
                    tracing::warn!(error = %e, "cannot remove a given-up restore copy");
                }
                let _ = ended_tx.send(());
            });
            r.ended = Some(ended_rx);
        }
        for d in self.dynos.values_mut().filter(|d| d.app == app) {
            if d.want == Want::Remove {
                d.want = Want::Run;
                d.restart_after_stop = d.proc.is_some();
            }
        }
        self.reconcile(app);
        let msg = format!(
            "Rolling back to v{} with its data was given up: {why}; the data is as it was",
            r.target
        );
        self.logs.system(app, "roboku", msg.clone());
        self.event(r.door, Some(app), "rollback with data", &msg);
        if let Some(reply) = r.reply.take() {
            let _ = reply.send(Err(EngineError::Conflict(msg)));
        }
        r.given_up = true;
        r.swapped = false;
        r.undoing = false;
        self.data_restores.insert(app.to_string(), r);
    }
}

/// At start, before the engine: settles every restore an agent killed mid-way left (see
/// [`snapshot::recover`]); the restore counts as made if the app's current release is newer
/// than the one the journal names and succeeded (passed its rollout). A newer one that did not
/// (the rollback release, killed while rolling out or undoing) is marked failed, so the
/// release before comes back with the data swapped back.
pub fn recover_all(settings: &Settings, store: &mut Store) {
    let root = settings.data_snapshots_root();
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let app = e.file_name().to_string_lossy().to_string();
        let current = store
            .app(&app)
            .ok()
            .flatten()
            .and_then(|a| a.current_release);
        let status = |v: u32| {
            store
                .release(&app, v)
                .ok()
                .flatten()
                .map(|r| r.status)
                .unwrap_or_default()
        };
        let cut = std::cell::Cell::new(None);
        let made = |j: &snapshot::Journal| match current {
            Some(c) if c > j.current => {
                cut.set(Some(c));
                status(c) == "succeeded"
            }
            _ => false,
        };
        let result = snapshot::recover(&settings.app_data_dir(&app), &e.path(), &made);
        if let (Ok(Some(_)), Some(c)) = (&result, cut.get()) {
            if status(c) != "succeeded" {
                if let Err(e) = store.set_release_status(&app, c, "failed") {
                    tracing::error!(app, error = %e, "cannot mark the interrupted rollback release failed");
                }
            }
        }
        match result {
            Ok(Some(what)) => tracing::warn!(app, "{what}"),
            Ok(None) => {}
            Err(e) => tracing::error!(app, error = %e, "cannot settle an interrupted data restore"),
        }
    }
}

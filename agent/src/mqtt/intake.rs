//! The intake: the one owner of the fleet state and of the desired docs.
//!
//! Every `cmd` payload is verified (pure, [`super::verify`]); a refusal is acked REJECTED with
//! the reason and changes nothing. An accepted command is acked ACCEPTED, recorded in the replay
//! guard and the state saved to disk *before* its work is queued, so a command is never applied
//! twice, not even across a crash. Desired docs are verified the same way, kept per
//! address, merged (highest version per app wins) and handed to the app's worker when due.
//! Workers report back (artifact built, version failed) through `Update`s.
//!
//! Offline bundles come in here too (from `crate::bundle`'s doors), so there is one replay
//! guard for every door: the manifest is verified like a command, the slugs are read and checked
//! off this task (a large bundle must not hold up commands), then the manifest is verified
//! again against the state as it is now, recorded and saved, and each app queued to its worker.
//! A refusal at any point is acked REJECTED to the door (and on MQTT when connected) and
//! changes nothing, not even the versions seen.

use super::apply;
use super::desired;
use super::jobs::{Converge, Job, Update};
use super::logs_reply;
use super::plan_reply;
use super::state::FleetState;
use super::support_reply;
use super::task::Inbound;
use super::verify::{self, Refused, Trust};
use super::Shared;
use crate::bundle::BundleRequest;
use roboku_wire::fleet::topic::{Address, Topic};
use roboku_wire::fleet::{payload_ref, AckDetails, AckStatus, Action, DesiredDoc};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the reporter may read of the state.
#[derive(Debug, Default)]
pub(super) struct View {
    pub versions: BTreeMap<String, u64>,
    /// slug sha256 -> artifact sha256.
    pub artifacts: BTreeMap<String, String>,
}

impl View {
    pub fn of(state: &FleetState) -> View {
        View {
            versions: state.guard.versions(),
            artifacts: state
                .artifacts
                .iter()
                .map(|(a, s)| (s.clone(), a.clone()))
                .collect(),
        }
    }
}

#[path = "intake_bundle.rs"]
mod bundle;

struct Intake {
    shared: Arc<Shared>,
    trust: Trust,
    state: FleetState,
    workers: BTreeMap<String, (mpsc::UnboundedSender<Job>, tokio::task::JoinHandle<()>)>,
    docs: BTreeMap<Address, DesiredDoc>,
    /// Desired versions queued and not finished yet, by app (not queued twice).
    converging: BTreeMap<String, u64>,
    updates_tx: mpsc::UnboundedSender<Update>,
    view: watch::Sender<Arc<View>>,
    /// Numbers the staging directories of bundles.
    staged: u64,
}

/// Runs until `shutdown` (or until both the connection's and the bundle doors' channels close).
pub(super) async fn run(
    shared: Arc<Shared>,
    trust: Trust,
    state: FleetState,
    mut inbound: mpsc::Receiver<Inbound>,
    mut bundles: mpsc::Receiver<BundleRequest>,
    view: watch::Sender<Arc<View>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let mut me = Intake {
        shared,
        trust,
        state,
        workers: BTreeMap::new(),
        docs: BTreeMap::new(),
        converging: BTreeMap::new(),
        updates_tx,
        view,
        staged: 0,
    };
    let (mut inbound_open, mut bundles_open) = (true, true);
    while inbound_open || bundles_open {
        tokio::select! {
            msg = inbound.recv(), if inbound_open => match msg {
                Some(m) => me.inbound(m).await,
                None => inbound_open = false,
            },
            req = bundles.recv(), if bundles_open => match req {
                Some(r) => me.bundle(r).await,
                None => bundles_open = false,
            },
            Some(u) = updates.recv() => me.update(u).await,
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => break,
        }
    }
    for (_, (tx, handle)) in std::mem::take(&mut me.workers) {
        drop(tx);
        handle.abort();
    }
}

impl Intake {
    async fn inbound(&mut self, msg: Inbound) {
        let reference = payload_ref(&msg.payload);
        match msg.topic {
            Topic::Cmd(addr) => self.command(&addr, &msg.payload, &reference).await,
            // The retained doc was cleared: nothing runs differently, there is just no desired
            // state from that address any more.
            Topic::Desired(addr) if msg.payload.is_empty() && self.docs.remove(&addr).is_some() => {
                tracing::info!(address = addr.as_path(), "desired state cleared");
            }
            Topic::Desired(_) if msg.payload.is_empty() => {}
            Topic::Desired(addr) => self.desired(addr, &msg.payload, &reference).await,
            _ => {}
        }
    }

    fn reject(&self, refused: Refused, reference: &str, kind: &str) {
        let details = AckDetails {
            kind: Some(kind.to_string()),
            reason: Some(refused.why.to_string()),
            ..AckDetails::default()
        };
        tracing::warn!(code = refused.why.code(), reason = %refused.why, r#ref = reference, "fleet payload REJECTED");
        self.shared.out.ack(
            refused.id.as_deref(),
            reference,
            AckStatus::Rejected,
            details,
        );
    }

    async fn command(&mut self, addr: &Address, payload: &[u8], reference: &str) {
        let clock = crate::clock::observe(&self.shared.settings);
        let now = clock.now_ms;
        let v = match verify::verify_command(payload, addr, clock, &self.trust, &self.state.guard) {
            Ok(v) => v,
            Err(refused) => return self.reject(refused, reference, "command"),
        };
        if v.kid.is_none() {
            tracing::warn!(id = v.env.id, "accepting an UNSIGNED command (dev mode)");
        }
        // ACCEPTED (verified) goes out at once; the work starts only once the command is on
        // disk. A crash in between loses the command (no final ack: the sender sees no answer),
        // it never runs it twice.
        let details = apply::details(&v.env.app, v.env.kind.as_str(), v.env.version);
        self.shared.out.ack(
            Some(&v.env.id),
            reference,
            AckStatus::Accepted,
            details.clone(),
        );
        let mut next = self.state.clone();
        next.guard.record(&v.env, now, self.trust.skew_ms);
        if let Err(e) = self.save(&next).await {
            // Unrecorded, it could be replayed later: do not run it (and do not remember it,
            // so the sender can try again once the disk is back).
            let details = AckDetails {
                reason: Some(format!("not run: cannot record the command ({e})")),
                ..details
            };
            self.shared
                .out
                .ack(Some(&v.env.id), reference, AckStatus::Failed, details);
            return;
        }
        self.state = next;
        self.publish_view();
        let app = v.env.app.clone();
        if let Action::Logs(query) = v.action {
            // A read changes nothing: it does not wait behind the app's work, nor the intake
            // behind the read.
            let id = v.env.id.clone();
            tokio::spawn(logs_reply::serve(
                self.shared.clone(),
                id,
                reference.to_string(),
                app,
                query,
            ));
            return;
        }
        if let Action::Support(query) = v.action {
            // A support bundle is a read of the whole robot: its own task too.
            let id = v.env.id.clone();
            tokio::spawn(support_reply::serve(
                self.shared.clone(),
                id,
                reference.to_string(),
                query,
            ));
            return;
        }
        if let Action::Plan(artifact) = v.action {
            // A plan applies nothing either: its own task, as a read.
            let id = v.env.id.clone();
            tokio::spawn(plan_reply::serve(
                self.shared.clone(),
                id,
                reference.to_string(),
                app,
                artifact,
            ));
            return;
        }
        self.queue(
            &app,
            Job::Command {
                cmd: v,
                reference: reference.to_string(),
            },
        );
    }

    async fn desired(&mut self, addr: Address, payload: &[u8], reference: &str) {
        let clock = crate::clock::observe(&self.shared.settings);
        match verify::verify_desired(payload, &addr, clock, &self.trust) {
            Ok((doc, kid)) => {
                if kid.is_none() {
                    tracing::warn!(id = doc.id, "accepting an UNSIGNED desired doc (dev mode)");
                }
                tracing::info!(
                    address = addr.as_path(),
                    id = doc.id,
                    apps = doc.apps.len(),
                    "desired state received"
                );
                self.docs.insert(addr, doc);
                self.evaluate(reference).await;
            }
            Err(refused) => self.reject(refused, reference, "desired"),
        }
    }

    /// Queues convergence for every app whose winning desired entry is due. An entry with
    /// one-shots this device has not run is recorded as applied *before* they run (as a command
    /// is), so an agent killed while running them never runs them twice.
    async fn evaluate(&mut self, reference: &str) {
        let device = Address::Device(self.shared.device.clone());
        for (app, (entry, doc_id)) in desired::merge(&self.docs, &device) {
            let due = desired::due(
                entry.version,
                self.state.guard.version(&app),
                self.state.failed_desired.get(&app).copied(),
            );
            if !due || self.converging.get(&app) == Some(&entry.version) {
                continue;
            }
            let applied = self.state.guard.version(&app);
            if entry
                .once
                .iter()
                .any(|o| applied.is_none_or(|a| o.version > a))
            {
                let mut next = self.state.clone();
                next.guard.bump(&app, entry.version);
                if let Err(e) = self.save(&next).await {
                    tracing::error!(app, error = %e, "cannot record desired one-shots; not run");
                    continue;
                }
                self.state = next;
            }
            self.converging.insert(app.clone(), entry.version);
            let slug_hint = entry
                .release
                .as_ref()
                .and_then(|a| self.state.slug_of(&a.sha256))
                .map(str::to_string);
            self.queue(
                &app.clone(),
                Job::Converge(Converge {
                    applied,
                    app,
                    want: entry,
                    doc_id,
                    reference: reference.to_string(),
                    slug_hint,
                }),
            );
        }
    }

    fn queue(&mut self, app: &str, job: Job) {
        let (tx, _) = self.workers.entry(app.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let handle = tokio::spawn(apply::worker(
                app.to_string(),
                rx,
                self.shared.clone(),
                self.updates_tx.clone(),
            ));
            (tx, handle)
        });
        if tx.send(job).is_err() {
            tracing::error!(app, "the app's fleet worker is gone; job dropped");
        }
    }

    async fn update(&mut self, u: Update) {
        match u {
            Update::BundleStaged(b) => return self.bundle_staged(*b).await,
            Update::Artifact { artifact, slug } => self.state.remember_artifact(&artifact, &slug),
            Update::Finished { app, version, ok } => {
                if self.converging.get(&app) == Some(&version) {
                    self.converging.remove(&app);
                }
                self.state.guard.bump(&app, version);
                if ok {
                    self.state.failed_desired.remove(&app);
                } else {
                    self.state.failed_desired.insert(app, version);
                }
            }
        }
        if let Err(e) = self.save(&self.state).await {
            tracing::error!(error = %e, "saving fleet state failed");
        }
        self.publish_view();
    }

    /// Saves on the blocking pool (an fsync must not stall a runtime worker the engine shares);
    /// the intake waits for it, so the order of saves is the order of changes.
    async fn save(&self, state: &FleetState) -> Result<(), String> {
        let (state, path) = (state.clone(), self.shared.settings.fleet_state_path());
        tokio::task::spawn_blocking(move || state.save(&path))
            .await
            .map_err(|e| format!("save task failed: {e}"))?
            .map_err(|e| e.to_string())
    }

    fn publish_view(&self) {
        let _ = self.view.send(Arc::new(View::of(&self.state)));
    }
}

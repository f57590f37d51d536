//! One worker per app: runs the app's fleet work in arrival order (a scale never overtakes the
//! deploy before it; a convergence waits for the command in flight), through the same engine
//! calls as every other door (`Door::Mqtt`), and acks progress: IN_PROGRESS with the step, then
//! SUCCEEDED, FAILED (reason, log tail) or TIMED_OUT. Nothing here touches the store or the
//! processes; a failure leaves what runs as the engine left it (a failed rollout restores the
//! previous release).

use super::desired::{self, Observed, Plan};
use super::jobs::{Converge, Job, Update};
use super::verify::Verified;
use super::{artifact, bases, Shared};
use crate::deploy;
use crate::engine::holds::Wait;
use crate::engine::{Command, Door, EngineError, Reply};
use roboku_wire::fleet::{Ack, AckDetails, AckStatus, Action, AppDesired, Artifact};
use roboku_wire::{ConfigChange, DeployRequest};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[path = "apply_bundle.rs"]
mod bundle;

/// A failure, for the FAILED (or TIMED_OUT) ack.
#[derive(Debug)]
struct Failure {
    reason: String,
    /// A failed rollout: the app's last log lines say why.
    rollout: bool,
    /// The app's gates stayed closed until the command expired: TIMED_OUT, nothing applied.
    gate_closed: bool,
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure {
            rollout: matches!(e, EngineError::DeployFailed(_)),
            gate_closed: matches!(e, EngineError::GateClosed(_)),
            reason: e.to_string(),
        }
    }
}

pub(super) fn details(app: &str, kind: &str, version: Option<u64>) -> AckDetails {
    AckDetails {
        kind: Some(kind.to_string()),
        app: Some(app.to_string()),
        version,
        ..AckDetails::default()
    }
}

/// Sends the acks of one job, and makes its engine calls through `door`.
struct Acker<'a> {
    shared: &'a Shared,
    id: String,
    reference: String,
    base: AckDetails,
    door: Door,
    /// Also hears every ack (a bundle's progress for the local API or the watched directory).
    tap: Option<mpsc::UnboundedSender<Ack>>,
    /// Until when the job's changes may wait for the app's gates (the command's expiry), and
    /// where the engine says what they wait for (relayed as IN_PROGRESS acks).
    gate_deadline: Option<std::time::Instant>,
    progress: mpsc::UnboundedSender<String>,
}

impl<'a> Acker<'a> {
    /// A fleet job's acker; the receiver hears what its engine calls wait for (see
    /// [`relaying`]).
    fn mqtt(
        shared: &'a Shared,
        id: String,
        reference: String,
        base: AckDetails,
        gate_deadline: Option<std::time::Instant>,
    ) -> (Self, mpsc::UnboundedReceiver<String>) {
        let (progress, heard) = mpsc::unbounded_channel();
        let acker = Acker {
            shared,
            id,
            reference,
            base,
            door: Door::Mqtt,
            tap: None,
            gate_deadline,
            progress,
        };
        (acker, heard)
    }

    fn send(&self, status: AckStatus, f: impl FnOnce(&mut AckDetails)) {
        let mut d = self.base.clone();
        f(&mut d);
        let ack = self
            .shared
            .out
            .ack(Some(&self.id), &self.reference, status, d);
        if let Some(tap) = &self.tap {
            let _ = tap.send(ack);
        }
    }
    fn step(&self, step: &str) {
        self.send(AckStatus::InProgress, |d| d.step = Some(step.to_string()));
    }
    /// How an engine call of this job waits for gates.
    fn wait(&self) -> Wait {
        Wait {
            deadline: self.gate_deadline,
            progress: Some(self.progress.clone()),
        }
    }
}

/// Runs `work`, relaying each `waiting for gate ...` from `progress` as an IN_PROGRESS ack.
async fn relaying<T>(
    acker: &Acker<'_>,
    progress: &mut mpsc::UnboundedReceiver<String>,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            Some(step) = progress.recv() => acker.step(&step),
        }
    }
}

pub(super) async fn worker(
    app: String,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
    updates: mpsc::UnboundedSender<Update>,
) {
    use tracing::Instrument;
    while let Some(job) = jobs.recv().await {
        let span = tracing::info_span!("fleet", app = app.as_str());
        match job {
            Job::Command { cmd, reference } => {
                command(&shared, &updates, cmd, reference)
                    .instrument(span)
                    .await
            }
            Job::Converge(c) => converge(&shared, &updates, c).instrument(span).await,
            Job::Bundle(b) => bundle::apply(&shared, &updates, b).instrument(span).await,
        }
    }
}

fn timeout(shared: &Shared) -> Duration {
    Duration::from_secs(shared.settings.mqtt.command_timeout_secs.max(1))
}

async fn command(
    shared: &Shared,
    updates: &mpsc::UnboundedSender<Update>,
    cmd: Verified,
    reference: String,
) {
    let env = &cmd.env;
    // Waiting for the app's gates may last until the command expires; the work after that has
    // `command_timeout_secs` as always.
    let now = crate::clock::observe(&shared.settings).now_ms;
    let until_expiry = Duration::from_millis(env.expires.saturating_sub(now));
    let (acker, mut heard) = Acker::mqtt(
        shared,
        env.id.clone(),
        reference,
        details(&env.app, env.kind.as_str(), env.version),
        Some(std::time::Instant::now() + until_expiry),
    );
    let work = execute(shared, updates, &env.app, &cmd.action, env.version, &acker);
    let result = tokio::time::timeout(
        timeout(shared) + until_expiry,
        relaying(&acker, &mut heard, work),
    )
    .await;
    let ok = finish(&acker, shared, result).await;
    if let Some(version) = env.version {
        let _ = updates.send(Update::Finished {
            app: env.app.clone(),
            version,
            ok,
        });
    }
}

/// Sends the final ack; true on success.
async fn finish(
    acker: &Acker<'_>,
    shared: &Shared,
    result: Result<Result<Option<u32>, Failure>, tokio::time::error::Elapsed>,
) -> bool {
    match result {
        Ok(Ok(release)) => {
            acker.send(AckStatus::Succeeded, |d| d.release = release);
            true
        }
        Ok(Err(f)) if f.gate_closed => {
            acker.send(AckStatus::TimedOut, |d| d.reason = Some(f.reason));
            false
        }
        Ok(Err(f)) => {
            let tail = if f.rollout {
                log_tail(shared, acker.base.app.as_deref().unwrap_or("")).await
            } else {
                Vec::new()
            };
            acker.send(AckStatus::Failed, |d| {
                d.reason = Some(f.reason);
                d.log_tail = tail;
            });
            false
        }
        Err(_) => {
            let secs = timeout(shared).as_secs();
            acker.send(AckStatus::TimedOut, |d| {
                d.reason = Some(format!(
                    "not finished within {secs} s (command_timeout_secs); the engine may still complete it"
                ))
            });
            false
        }
    }
}

async fn log_tail(shared: &Shared, app: &str) -> Vec<String> {
    let Some(logs) = &shared.logs else {
        return Vec::new();
    };
    logs.recent(app, 20, Default::default())
        .await
        .into_iter()
        .map(|l| format!("{} {}", l.dyno, l.line))
        .collect()
}

async fn execute(
    shared: &Shared,
    updates: &mpsc::UnboundedSender<Update>,
    app: &str,
    action: &Action,
    version: Option<u64>,
    acker: &Acker<'_>,
) -> Result<Option<u32>, Failure> {
    let app_s = app.to_string();
    match action {
        Action::Deploy(a) => deploy_artifact(shared, updates, app, a, version, acker, None).await,
        Action::Scale(s) => {
            acker.step("scale");
            let cmd = Command::Scale {
                app: app_s,
                counts: s.counts.clone(),
            };
            shared
                .engine
                .call_waiting(acker.door, cmd, acker.wait())
                .await?;
            Ok(None)
        }
        Action::Config(change) => {
            acker.step("config");
            let cmd = Command::ChangeConfig {
                app: app_s,
                change: change.clone(),
            };
            match shared
                .engine
                .call_waiting(acker.door, cmd, acker.wait())
                .await?
            {
                Reply::ConfigChanged(c) => Ok(c.release.map(|r| r.version)),
                _ => Ok(None),
            }
        }
        Action::Rollback(r) => {
            acker.step("rollback");
            let cmd = Command::Rollback {
                app: app_s,
                version: r.version,
                with_data: r.with_data,
            };
            match shared
                .engine
                .call_waiting(acker.door, cmd, acker.wait())
                .await?
            {
                Reply::Release(r) => Ok(Some(r.version)),
                _ => Ok(None),
            }
        }
        Action::Restart(t) => {
            acker.step("restart");
            let cmd = Command::Restart {
                app: app_s,
                target: t.target.clone(),
            };
            shared
                .engine
                .call_waiting(acker.door, cmd, acker.wait())
                .await?;
            Ok(None)
        }
        // The intake answers reads itself (`logs_reply`, `plan_reply`) and desired state never
        // holds one.
        Action::Logs(_) | Action::Plan(_) | Action::Support(_) => Err(Failure {
            reason: "a read is not work for an app's worker".into(),
            rollout: false,
            gate_closed: false,
        }),
        Action::Stop(t) => {
            acker.step("stop");
            let cmd = Command::Stop {
                app: app_s,
                target: t.target.clone(),
            };
            shared
                .engine
                .call_waiting(acker.door, cmd, acker.wait())
                .await?;
            Ok(None)
        }
    }
}

/// Creates the app if this device does not have it yet (the fleet brings apps to robots).
async fn ensure_app(shared: &Shared, door: Door, app: &str) -> Result<(), Failure> {
    let check = shared
        .engine
        .call(
            door,
            Command::CheckApp {
                app: app.to_string(),
            },
        )
        .await;
    match check {
        Ok(_) => Ok(()),
        Err(EngineError::NotFound(_)) => {
            shared
                .engine
                .call(
                    door,
                    Command::CreateApp {
                        name: app.to_string(),
                    },
                )
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

async fn deploy_artifact(
    shared: &Shared,
    updates: &mpsc::UnboundedSender<Update>,
    app: &str,
    a: &Artifact,
    version: Option<u64>,
    acker: &Acker<'_>,
    local: Option<&Path>,
) -> Result<Option<u32>, Failure> {
    ensure_app(shared, acker.door, app).await?;
    // A bundle's slug is on disk already, checked against its sha256 while it was read.
    let file = match local {
        Some(path) => path.to_path_buf(),
        None => {
            let tmp = shared.settings.tmp_dir();
            let ca = shared.settings.mqtt.artifact_ca_file.as_deref();
            match by_delta(shared, a, acker).await {
                Some(rebuilt) => rebuilt,
                None => {
                    acker.step("download");
                    artifact::fetch(
                        a,
                        &tmp,
                        ca,
                        shared.settings.disk_reserve,
                        Some(&shared.usage),
                        |n| {
                            tracing::debug!(bytes = n, "artifact download progress");
                        },
                    )
                    .await
                    .map_err(|e| Failure {
                        reason: e.to_string(),
                        rollout: false,
                        gate_closed: false,
                    })?
                }
            }
        }
    };
    acker.step("build");
    let req = DeployRequest {
        source: file.display().to_string(),
        description: Some(desired::release_description(&a.sha256, version)),
        buildpacks_of: None,
    };
    let origin = Some(a.clone());
    let result = deploy::deploy(
        &shared.engine,
        &shared.settings,
        acker.door,
        app,
        req,
        origin,
        acker.wait(),
    )
    .await;
    if local.is_none() {
        // Kept as the base of a later delta; GC removes it with its slug.
        let bases = shared.settings.bases_dir();
        let kept = result.is_ok() && bases::keep(&bases, &a.sha256, &file).is_ok();
        if !kept {
            let _ = std::fs::remove_file(&file);
        }
    }
    let release = result?;
    let _ = updates.send(Update::Artifact {
        artifact: a.sha256.clone(),
        slug: release.slug.clone(),
    });
    Ok(Some(release.version))
}

/// The slug rebuilt from `a.delta` when this robot keeps its base; `None` (after saying why in
/// the log and the acks) means: fetch the full artifact instead.
async fn by_delta(shared: &Shared, a: &Artifact, acker: &Acker<'_>) -> Option<std::path::PathBuf> {
    let d = a.delta.as_ref()?;
    let base = bases::find(&shared.settings.bases_dir(), &d.base)?;
    acker.step("download delta");
    let tmp = shared.settings.tmp_dir();
    // The delta, the decoded base, the rebuilt tar and its extraction.
    let need = d.size.saturating_add(d.tar_size.saturating_mul(3));
    if let Err(e) = crate::disk::check(&tmp, shared.settings.disk_reserve, need, "a delta") {
        acker.step(&format!("delta failed ({e}); full download"));
        return None;
    }
    let ca = shared.settings.mqtt.artifact_ca_file.as_deref();
    let file = Artifact {
        url: d.url.clone(),
        sha256: d.sha256.clone(),
        size: d.size,
        delta: None,
    };
    let fetched = artifact::fetch(
        &file,
        &tmp,
        ca,
        shared.settings.disk_reserve,
        Some(&shared.usage),
        |_| {},
    )
    .await;
    let rebuilt = match fetched {
        Ok(delta_file) => {
            let (d, tmp2, df) = (d.clone(), tmp.clone(), delta_file.clone());
            let r = tokio::task::spawn_blocking(move || bases::rebuild(&base, &df, &d, &tmp2))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let _ = std::fs::remove_file(&delta_file);
            r
        }
        Err(e) => Err(e.to_string()),
    };
    match rebuilt {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "delta failed; fetching the full artifact");
            acker.step(&format!("delta failed ({e}); full download"));
            None
        }
    }
}

/// Reads what runs for `app`, as far as desired state cares.
async fn observe(shared: &Shared, door: Door, app: &str) -> Result<Observed, Failure> {
    let call = |cmd| shared.engine.call(door, cmd);
    match call(Command::CheckApp {
        app: app.to_string(),
    })
    .await
    {
        Err(EngineError::NotFound(_)) => return Ok(Observed::default()),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let mut now = Observed {
        exists: true,
        ..Observed::default()
    };
    if let Reply::Releases(rs) = call(Command::Releases {
        app: app.to_string(),
    })
    .await?
    {
        if let Some(r) = rs.into_iter().find(|r| r.current) {
            now.artifact = r.artifact.map(|a| a.sha256);
            now.slug = Some(r.slug);
        }
    }
    if let Reply::Formation(f) = call(Command::Formation {
        app: app.to_string(),
    })
    .await?
    {
        now.formation = f.into_iter().map(|e| (e.ptype, e.count)).collect();
    }
    if let Reply::Config(c) = call(Command::GetConfig {
        app: app.to_string(),
    })
    .await?
    {
        now.config = c;
    }
    Ok(now)
}

async fn converge(shared: &Shared, updates: &mpsc::UnboundedSender<Update>, c: Converge) {
    let Converge {
        app,
        want,
        doc_id,
        reference,
        slug_hint,
        applied,
    } = c;
    let app = app.as_str();
    // Desired state has no expiry: its changes wait for the gates within the job's timeout.
    let (acker, mut heard) = Acker::mqtt(
        shared,
        doc_id,
        reference,
        details(app, "desired", Some(want.version)),
        None,
    );
    let plan = match observe(shared, Door::Mqtt, app).await {
        Ok(now) => desired::plan(&want, &now, slug_hint.as_deref(), applied),
        Err(f) => {
            tracing::warn!(
                app,
                reason = f.reason,
                "cannot read the app's state for desired state"
            );
            return;
        }
    };
    if plan.is_empty() {
        tracing::debug!(app, version = want.version, "in sync with desired state");
        let _ = updates.send(Update::Finished {
            app: app.to_string(),
            version: want.version,
            ok: true,
        });
        return;
    }
    tracing::info!(app, version = want.version, plan = ?plan, "converging to desired state");
    acker.send(AckStatus::Accepted, |_| {});
    let work = apply_plan(shared, updates, app, &want, plan, &acker, None);
    let result = tokio::time::timeout(timeout(shared), relaying(&acker, &mut heard, work)).await;
    let ok = finish(&acker, shared, result).await;
    let _ = updates.send(Update::Finished {
        app: app.to_string(),
        version: want.version,
        ok,
    });
}

async fn apply_plan(
    shared: &Shared,
    updates: &mpsc::UnboundedSender<Update>,
    app: &str,
    want: &AppDesired,
    plan: Plan,
    acker: &Acker<'_>,
    local: Option<&Path>,
) -> Result<Option<u32>, Failure> {
    let mut release = None;
    if plan.create_app {
        ensure_app(shared, acker.door, app).await?;
    }
    for action in &plan.once {
        if let Some(r) = execute(shared, updates, app, action, None, acker).await? {
            release = Some(r);
        }
    }
    if let Some(a) = &plan.deploy {
        release =
            deploy_artifact(shared, updates, app, a, Some(want.version), acker, local).await?;
    }
    // One-shots and a deploy change config and formation: plan the rest against what runs now.
    let rest = if plan.deploy.is_some() || !plan.once.is_empty() {
        desired::plan(
            &AppDesired {
                release: None,
                once: Vec::new(),
                ..want.clone()
            },
            &observe(shared, acker.door, app).await?,
            None,
            None,
        )
    } else {
        plan
    };
    if let Some(change) = rest.config {
        let action = Action::Config(ConfigChange {
            set: change.set,
            unset: change.unset,
        });
        if let Some(r) = execute(shared, updates, app, &action, None, acker).await? {
            release = Some(r);
        }
    }
    if !rest.scale.is_empty() {
        let counts: BTreeMap<String, u32> = rest.scale;
        let action = Action::Scale(roboku_wire::fleet::ScaleBody { counts });
        execute(shared, updates, app, &action, None, acker).await?;
    }
    Ok(release)
}

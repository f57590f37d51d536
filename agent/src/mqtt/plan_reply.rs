//! Answers `plan` commands (`roboku fleet deploy --plan`): what a deploy of the artifact would do
//! on this robot, computed by the same code as the local `deploy --plan` ([`deploy::plan`]: the
//! slug is built in a scratch directory and the engine's planner answers), with nothing
//! applied. The plan travels on the SUCCEEDED ack (`details.plan`). The intake verified and
//! recorded the command (signature, target, expiry, replay) before it got here.
//!
//! The artifact comes from the robot's kept delta bases when it has it (hard-linked, so a
//! garbage collection meanwhile cannot pull it away), else it is downloaded as a deploy would,
//! within the disk reserve. Either way it lands in a directory of its own under `tmp/`
//! (`plan-<id>`), never the name a deploy of the same artifact downloads to, and that directory
//! is removed once the plan's work has ended, whatever the outcome (after a TIMED_OUT answer too:
//! the build or download it waited for may still be reading it).
//!
//! Runs as its own task, never in the app's worker: a plan does not wait behind a deploy nor
//! holds one up. At most [`MAX_PLANS`] run at once; more are FAILED (busy).

use super::{artifact, bases, Shared};
use crate::deploy;
use crate::engine::{Command, Door, EngineError};
use roboku_wire::fleet::{AckDetails, AckStatus, Artifact};
use roboku_wire::DeployRequest;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Plans running at once (each may run a build).
pub const MAX_PLANS: usize = 1;

/// Answers one verified, recorded `plan` command (spawned by the intake).
///
/// The work runs in a task of its own that holds the permit and removes the download only once
/// the build has really ended: a plan over `command_timeout_secs` is answered TIMED_OUT at once,
/// but its build (a blocking thread that cannot be cut short) keeps the permit, so no second plan
/// starts beside it, and its files stay until it no longer reads them.
pub(super) async fn serve(
    shared: Arc<Shared>,
    id: String,
    reference: String,
    app: String,
    a: Artifact,
) {
    let base = super::apply::details(&app, "plan", None);
    let send = {
        let (shared, id, reference) = (shared.clone(), id.clone(), reference.clone());
        move |status: AckStatus, f: &dyn Fn(&mut AckDetails)| {
            let mut d = base.clone();
            f(&mut d);
            shared.out.ack(Some(&id), &reference, status, d);
        }
    };
    let Ok(permit) = shared.planners.clone().try_acquire_owned() else {
        return send(AckStatus::Failed, &|d| {
            d.reason = Some(format!(
                "busy: {MAX_PLANS} deploy plan is running on this robot; try again"
            ))
        });
    };
    let scratch = shared
        .settings
        .tmp_dir()
        .join(format!("plan-{}", safe_id(&id)));
    let limit = Duration::from_secs(shared.settings.mqtt.command_timeout_secs.max(1));
    // Set once the final ack is out: no IN_PROGRESS may follow it.
    let answered = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let work = {
        let (shared, app, send, answered) =
            (shared.clone(), app.clone(), send.clone(), answered.clone());
        async move {
            let step = |step: &str| {
                if !answered.load(Ordering::SeqCst) {
                    send(AckStatus::InProgress, &|d| d.step = Some(step.to_string()))
                }
            };
            let result = answer(&shared, &app, &a, &scratch, &step).await;
            let dir = scratch.clone();
            let removed =
                tokio::task::spawn_blocking(move || crate::build::remove_tree(&dir)).await;
            if let Ok(Err(e)) = removed {
                tracing::warn!(app, error = %e, dir = %scratch.display(), "cannot remove a plan's download");
            }
            drop(permit);
            let _ = tx.send(result);
        }
    };
    tokio::spawn(work);
    let result = tokio::time::timeout(limit, rx).await;
    answered.store(true, Ordering::SeqCst);
    match result {
        Ok(Ok(Ok(plan))) => {
            tracing::info!(app, id, dynos = plan.dynos.len(), "fleet deploy plan sent");
            send(AckStatus::Succeeded, &|d| {
                d.release = plan.current;
                d.plan = Some(Box::new(plan.clone()));
            })
        }
        Ok(Ok(Err(reason))) => send(AckStatus::Failed, &|d| d.reason = Some(reason.clone())),
        Ok(Err(_)) => send(AckStatus::Failed, &|d| {
            d.reason = Some("the plan's task ended without an answer (see robokud's log)".into())
        }),
        Err(_) => {
            tracing::warn!(
                app,
                id,
                "fleet deploy plan timed out; its build finishes in the background"
            );
            send(AckStatus::TimedOut, &|d| {
                d.reason = Some(format!(
                    "no plan within {} s (command_timeout_secs); nothing was applied",
                    limit.as_secs()
                ))
            })
        }
    }
}

/// The plan, or why there is none (in words for the operator).
async fn answer(
    shared: &Shared,
    app: &str,
    a: &Artifact,
    scratch: &Path,
    step: &(dyn Fn(&str) + Sync),
) -> Result<roboku_wire::DeployPlan, String> {
    match shared
        .engine
        .call(
            Door::Mqtt,
            Command::CheckApp {
                app: app.to_string(),
            },
        )
        .await
    {
        Ok(_) => {}
        Err(EngineError::NotFound(_)) => {
            return Err(format!(
                "no app {app:?} on this robot: a deploy would create it and start its \
                 Procfile's formation; there is nothing to diff against"
            ))
        }
        Err(e) => return Err(e.to_string()),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(scratch)
        .map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let file = match kept(shared, a, scratch) {
        Some(f) => f,
        None => {
            step("download");
            let ca = shared.settings.mqtt.artifact_ca_file.as_deref();
            artifact::fetch(
                a,
                scratch,
                ca,
                shared.settings.disk_reserve,
                Some(&shared.usage),
                |_| {},
            )
            .await
            .map_err(|e| e.to_string())?
        }
    };
    step("plan");
    let req = DeployRequest {
        source: file.display().to_string(),
        description: None,
        buildpacks_of: None,
    };
    deploy::plan(&shared.engine, &shared.settings, Door::Mqtt, app, req)
        .await
        .map_err(|e| e.to_string())
}

/// The artifact from the robot's kept bases, linked into `scratch`, when it keeps it.
fn kept(shared: &Shared, a: &Artifact, scratch: &Path) -> Option<PathBuf> {
    let base = bases::find(&shared.settings.bases_dir(), &a.sha256)?;
    let link = scratch.join(format!("kept-{}.tar.gz", a.sha256));
    match std::fs::hard_link(&base, &link) {
        Ok(()) => Some(link),
        Err(e) => {
            tracing::debug!(error = %e, base = %base.display(), "cannot link a kept artifact; downloading it");
            None
        }
    }
}

/// A command id as a file name: its letters and digits (ids are 1-64 characters of anything).
fn safe_id(id: &str) -> String {
    let s: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect();
    format!("{s}-{}", crate::util::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_plain_file_names() {
        let s = safe_id("../../etc/passwd");
        assert!(s.starts_with("etcpasswd-"), "{s}");
        assert!(!s.contains('/') && !s.contains('.'));
        assert!(safe_id("").starts_with('-'));
    }
}

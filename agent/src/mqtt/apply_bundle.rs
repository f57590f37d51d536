//! A bundle's app in its fleet worker: the same convergence as a desired doc (plan against what
//! runs, then one-shots, deploy, config, scale through the engine), with the slug read from the
//! bundle instead of downloaded, engine calls made as `Door::Bundle`, and every ack also sent to
//! the door that brought the bundle.

use super::super::jobs::{BundleJob, Update};
use super::super::{desired, Shared};
use super::{apply_plan, details, finish, observe, relaying, timeout, Acker};
use crate::engine::Door;
use tokio::sync::mpsc;

/// One app of a verified bundle: converged to the bundle's desired state like a desired doc
/// (only what differs changes), its slug taken from the bundle instead of downloaded.
pub(super) async fn apply(shared: &Shared, updates: &mpsc::UnboundedSender<Update>, b: BundleJob) {
    let BundleJob {
        app,
        want,
        id,
        reference,
        slug_hint,
        staged,
        reply,
    } = b;
    let app = app.as_str();
    // Like desired state, a bundle's changes wait for the app's gates within the job's timeout,
    // and say so in IN_PROGRESS acks.
    let (mut acker, mut heard) = Acker::mqtt(
        shared,
        id,
        reference,
        details(app, "bundle", Some(want.version)),
        None,
    );
    acker.door = Door::Bundle;
    acker.tap = Some(reply);
    let result = async {
        let now = observe(shared, acker.door, app).await?;
        let plan = desired::plan(&want, &now, slug_hint.as_deref(), None);
        if plan.is_empty() {
            tracing::info!(app, version = want.version, "bundle: already in sync");
            return Ok(None);
        }
        tracing::info!(app, version = want.version, plan = ?plan, "applying bundle");
        let local = want.release.as_ref().and_then(|a| staged.slug(&a.sha256));
        apply_plan(shared, updates, app, &want, plan, &acker, local).await
    };
    let result = tokio::time::timeout(timeout(shared), relaying(&acker, &mut heard, result)).await;
    let ok = finish(&acker, shared, result).await;
    let _ = updates.send(Update::Finished {
        app: app.to_string(),
        version: want.version,
        ok,
    });
}

//! Offline bundles in the intake: the manifest read and verified here (the same verifier and
//! replay guard as commands), the slugs read and checked off the intake task, then the manifest
//! verified again against the state as it is then, recorded, saved, and each app queued to its
//! worker. A refusal is acked REJECTED to the bundle's door (and on MQTT when connected).

use super::super::jobs::{BundleJob, BundleStaged, Job, Update};
use super::super::verify::{self, Identity, Refused, Rejection};
use super::Intake;
use crate::bundle::BundleRequest;
use crate::util::now_ms;
use roboku_wire::fleet::{payload_ref, AckDetails, AckStatus};
use std::sync::Arc;

impl Intake {
    /// Who this device is, for a bundle's `to`.
    fn identity(&self) -> Identity {
        Identity {
            device: self.shared.device.clone(),
            groups: self.shared.groups.clone(),
        }
    }

    /// Refuses a bundle: REJECTED to its door and, when connected, on MQTT.
    fn reject_bundle(&self, req: &BundleRequest, refused: Refused, reference: &str) {
        tracing::warn!(bundle = req.name, code = refused.why.code(), reason = %refused.why, "bundle REJECTED");
        let details = AckDetails {
            kind: Some("bundle".into()),
            reason: Some(refused.why.to_string()),
            ..AckDetails::default()
        };
        let ack = self.shared.out.ack(
            refused.id.as_deref(),
            reference,
            AckStatus::Rejected,
            details,
        );
        let _ = req.reply.send(ack);
    }

    /// A bundle from a door: the manifest read and verified here, the slugs read off this task.
    pub(super) async fn bundle(&mut self, req: BundleRequest) {
        let file = req.file.clone();
        let read = tokio::task::spawn_blocking(move || crate::bundle::stage::read_manifest(&file))
            .await
            .unwrap_or_else(|e| Err(roboku_wire::bundle::BundleError::Io(e.to_string())));
        let sealed = match read {
            Ok(s) => s,
            Err(e) => {
                let why = Refused {
                    id: None,
                    why: Rejection::Bundle(e),
                };
                return self.reject_bundle(&req, why, &payload_ref(req.name.as_bytes()));
            }
        };
        let reference = payload_ref(&sealed);
        let verified = match verify::verify_bundle(
            &sealed,
            &self.identity(),
            crate::clock::observe(&self.shared.settings),
            &self.trust,
            &self.state.guard,
        ) {
            Ok(v) => v,
            Err(refused) => return self.reject_bundle(&req, refused, &reference),
        };
        if verified.kid.is_none() {
            tracing::warn!(
                id = verified.manifest.id,
                "accepting an UNSIGNED bundle (dev mode)"
            );
        }
        let total: u64 = verified.manifest.slugs().iter().map(|s| s.size).sum();
        let into = if req.dry_run {
            None
        } else {
            // The slugs, then each one's extraction and slug: all on disk at once.
            let settings = &self.shared.settings;
            if let Err(e) = crate::deploy::check_free_space(settings, total.saturating_mul(3)) {
                let details = AckDetails {
                    kind: Some("bundle".into()),
                    reason: Some(format!("not applied: {e}")),
                    ..AckDetails::default()
                };
                let id = Some(verified.manifest.id.as_str());
                let ack = self
                    .shared
                    .out
                    .ack(id, &reference, AckStatus::Failed, details);
                let _ = req.reply.send(ack);
                return;
            }
            self.staged += 1;
            let dir = format!("bundle-{}-{}", now_ms(), self.staged);
            Some(self.shared.settings.tmp_dir().join(dir))
        };
        let updates = self.updates_tx.clone();
        tokio::spawn(async move {
            let (file, m, s) = (req.file.clone(), verified.manifest.clone(), sealed.clone());
            let staged = tokio::task::spawn_blocking(move || {
                crate::bundle::stage::extract(&file, &s, &m, into)
            })
            .await
            .unwrap_or_else(|e| Err(roboku_wire::bundle::BundleError::Io(e.to_string())));
            let staged = Box::new(BundleStaged {
                req,
                sealed,
                verified,
                staged,
            });
            let _ = updates.send(Update::BundleStaged(staged));
        });
    }

    /// The slugs were read: verified again against the state as it is now (another bundle or a
    /// command may have come meanwhile), recorded, saved, then applied app by app.
    pub(super) async fn bundle_staged(&mut self, b: BundleStaged) {
        let BundleStaged {
            req,
            sealed,
            verified,
            staged,
        } = b;
        let reference = payload_ref(&sealed);
        let refuse = |why| Refused {
            id: Some(verified.manifest.id.clone()),
            why,
        };
        let staged = match staged {
            Ok(s) => s,
            Err(e) => return self.reject_bundle(&req, refuse(Rejection::Bundle(e)), &reference),
        };
        let clock = crate::clock::observe(&self.shared.settings);
        let now = clock.now_ms;
        let v = match verify::verify_bundle(
            &sealed,
            &self.identity(),
            clock,
            &self.trust,
            &self.state.guard,
        ) {
            Ok(v) => v,
            Err(refused) => return self.reject_bundle(&req, refused, &reference),
        };
        let m = &v.manifest;
        let base = AckDetails {
            kind: Some("bundle".into()),
            ..AckDetails::default()
        };
        let ack = |status, details| {
            let a = self
                .shared
                .out
                .ack(Some(&m.id), &reference, status, details);
            let _ = req.reply.send(a);
        };
        ack(AckStatus::Accepted, base.clone());
        if req.dry_run {
            return;
        }
        let mut next = self.state.clone();
        next.guard.record_bundle(m, now, self.trust.skew_ms);
        if let Err(e) = self.save(&next).await {
            let details = AckDetails {
                reason: Some(format!("not applied: cannot record the bundle ({e})")),
                ..base
            };
            let a = self
                .shared
                .out
                .ack(Some(&m.id), &reference, AckStatus::Failed, details);
            let _ = req.reply.send(a);
            return;
        }
        self.state = next;
        self.publish_view();
        tracing::info!(bundle = req.name, id = m.id, apps = ?m.apps.keys().collect::<Vec<_>>(), "bundle verified and recorded");
        let staged = Arc::new(staged);
        for (app, entry) in &m.apps {
            let want = crate::bundle::desired_of(entry);
            let slug_hint = want
                .release
                .as_ref()
                .and_then(|a| self.state.slug_of(&a.sha256))
                .map(str::to_string);
            self.queue(
                app,
                Job::Bundle(BundleJob {
                    app: app.clone(),
                    want,
                    id: m.id.clone(),
                    reference: reference.clone(),
                    slug_hint,
                    staged: staged.clone(),
                    reply: req.reply.clone(),
                }),
            );
        }
    }
}

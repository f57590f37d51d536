//! Offline bundles (`.rkb`, format in `roboku_wire::bundle`, rules in `docs/offline.md`): the
//! door through which a robot without a network takes fleet changes.
//!
//! Two ways in, one way through: `POST /v1/bundles` (what `roboku bundle apply` sends) and the
//! watched directory ([`inbox`]) both copy the file somewhere only robokud can write, and hand a
//! [`BundleRequest`] to the fleet intake (`mqtt::intake`), the one owner of the fleet state. The
//! intake verifies the manifest with the same code as an MQTT command (`mqtt::verify_bundle`),
//! has the slugs read and checked against it ([`stage`]), records the bundle in the replay
//! guard and hands each app to its fleet worker, which converges it like a desired doc through
//! the engine. Every step comes back to the door as an [`Ack`], the same records MQTT carries.
//!
//! This module never decides whether a bundle is good: it moves bytes and reports.

pub mod doorbell;
pub mod inbox;
pub mod stage;

pub use stage::Staged;

use crate::engine::EngineError;
use roboku_wire::bundle::{BundleApp, MAX_SLUG};
use roboku_wire::fleet::{Ack, AppDesired, Artifact};
use std::path::PathBuf;
use tokio::sync::mpsc;

/// Largest bundle file taken in: its slugs plus the manifest and tar framing.
pub const MAX_BUNDLE: u64 = MAX_SLUG + (1 << 20);

/// A bundle for the intake.
#[derive(Debug)]
pub struct BundleRequest {
    /// A copy of the bundle that only robokud can write. The door that made it removes it.
    pub file: PathBuf,
    /// What the user called it (the uploaded or dropped file name), for logs.
    pub name: String,
    /// Check only: verify the manifest and the slugs' digests, record and apply nothing.
    pub dry_run: bool,
    /// Hears every ack; closed when the bundle is done with (refused, checked, or applied).
    pub reply: mpsc::UnboundedSender<Ack>,
}

/// Where bundles go in: a handle on the intake's queue.
#[derive(Clone, Debug)]
pub struct BundleDoor {
    tx: mpsc::Sender<BundleRequest>,
}

impl BundleDoor {
    pub fn new(tx: mpsc::Sender<BundleRequest>) -> Self {
        BundleDoor { tx }
    }

    /// Queues `file` (see [`BundleRequest::file`]); the acks come on the returned channel,
    /// which closes when the bundle is done with.
    pub async fn submit(
        &self,
        file: PathBuf,
        name: String,
        dry_run: bool,
    ) -> Result<mpsc::UnboundedReceiver<Ack>, EngineError> {
        let (reply, acks) = mpsc::unbounded_channel();
        let req = BundleRequest {
            file,
            name,
            dry_run,
            reply,
        };
        self.tx
            .send(req)
            .await
            .map_err(|_| EngineError::Unavailable("the fleet intake is shutting down".into()))?;
        Ok(acks)
    }
}

/// One app of a bundle as desired state: the slug becomes the release's artifact (its url
/// only says where it came from; the bytes are the bundle's), the config the complete set.
pub fn desired_of(app: &BundleApp) -> AppDesired {
    AppDesired {
        version: app.version,
        release: app.slug.as_ref().map(|s| Artifact {
            url: format!("bundle:{}", s.member()),
            sha256: s.sha256.clone(),
            size: s.size,
            delta: None,
        }),
        formation: app.formation.clone(),
        config: app.config.clone(),
        config_patch: None,
        once: Vec::new(),
    }
}

//! The messages between the intake and the per-app workers: [`Job`]s go from the intake to a
//! worker, [`Update`]s come back. Kept apart so neither side imports the other.

use super::verify::{Verified, VerifiedBundle};
use crate::bundle::{BundleRequest, Staged};
use roboku_wire::bundle::BundleError;
use roboku_wire::fleet::{Ack, AppDesired};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Work for one app.
#[derive(Debug)]
pub(super) enum Job {
    Command { cmd: Verified, reference: String },
    Converge(Converge),
    Bundle(BundleJob),
}

/// Bring one app to what a verified, recorded bundle says.
#[derive(Debug)]
pub(super) struct BundleJob {
    pub app: String,
    pub want: AppDesired,
    /// The bundle's id and [`payload_ref`](roboku_wire::fleet::payload_ref) of its manifest.
    pub id: String,
    pub reference: String,
    pub slug_hint: Option<String>,
    /// The bundle's slugs on disk; removed when the last app's job is done with them.
    pub staged: Arc<Staged>,
    /// The door that brought the bundle hears every ack; it closes when every job is done.
    pub reply: mpsc::UnboundedSender<Ack>,
}

/// Bring one app to its winning desired entry.
#[derive(Debug)]
pub(super) struct Converge {
    pub app: String,
    pub want: AppDesired,
    pub doc_id: String,
    pub reference: String,
    /// The slug this device built from the wanted artifact before, if it did.
    pub slug_hint: Option<String>,
    /// The last version this device applied for the app (one-shots newer than it run).
    pub applied: Option<u64>,
}

/// What workers tell the intake.
#[derive(Debug)]
pub(super) enum Update {
    /// A fleet artifact became this slug.
    Artifact { artifact: String, slug: String },
    /// A versioned change for `app` ended; failed versions are not retried from desired state.
    Finished { app: String, version: u64, ok: bool },
    /// A bundle's slugs were read (checked against the manifest), or were not.
    BundleStaged(Box<BundleStaged>),
}

#[derive(Debug)]
pub(super) struct BundleStaged {
    pub req: BundleRequest,
    pub sealed: Vec<u8>,
    pub verified: VerifiedBundle,
    pub staged: Result<Staged, BundleError>,
}

//! The messages between the intake and the per-app workers: [`Job`]s go from the intake to a
//! worker, [`Update`]s come back. Kept apart so neither side imports the other.

use super::verify::Verified;
use roboku_wire::fleet::AppDesired;

/// Work for one app.
#[derive(Debug)]
pub(super) enum Job {
    Command { cmd: Verified, reference: String },
    Converge(Converge),
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
}

//! Offline bundles (`.rkb`): one file that carries app slugs, the desired state of those apps
//! (release, config, formation) and the fleet's signature over it, for robots off the network.
//! `docs/offline.md` is the same contract for people.
//!
//! The file is a plain ustar archive (`tar tvf nav.rkb` lists it), but only in the one canonical
//! form [`ustar`] writes, and its members in a fixed order:
//!
//! 1. `roboku-bundle.json`: a [`Sealed`](crate::fleet::Sealed) wrapper (exactly as on the MQTT
//!    `cmd` topic) around the JSON bytes of a [`Manifest`], signed with the fleet key;
//! 2. `slugs/<sha256>.tar.gz`: each slug the manifest names ([`Manifest::slugs`], in that
//!    order), whose sha256 and size the manifest carries.
//!
//! So every byte of a bundle is either covered by the signature (the manifest directly, a slug
//! through its sha256) or fixed by the format (headers, padding, the end marker): a reader
//! refuses anything else, and names the member and the byte offset where it went wrong.
//! The policy (trusted keys, target, expiry, versions, replays) is the device's business
//! (robokud's `mqtt::verify_bundle`), exactly as for fleet commands.

mod read;
pub mod ustar;
mod write;

pub use read::{BundleError, BundleReader};
pub use write::BundleWriter;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bundle format version, carried in the manifest (`"bundle": 1`).
pub const FORMAT: u32 = 1;

/// Name of the first member: the sealed manifest.
pub const MANIFEST_MEMBER: &str = "roboku-bundle.json";

/// Largest sealed manifest (the same bound as an MQTT payload).
pub const MAX_MANIFEST: u64 = crate::fleet::MAX_PAYLOAD as u64;

/// Largest slug in a bundle, and largest sum of slugs (the local API's upload limit).
pub const MAX_SLUG: u64 = 2 << 30;

/// A bundle may be valid at most this long (`expires - ts`): it travels on USB sticks for weeks,
/// but it must not stay usable for ever.
pub const MAX_LIFETIME_MS: u64 = 366 * 24 * 3600 * 1000;

/// The signed bytes: `{bundle, id, ts, expires, to, apps}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub bundle: u32,
    /// Unique per bundle (128 random bits in hex): a device applies a bundle id at most once.
    pub id: String,
    /// When it was made and until when it may be applied, unix ms.
    pub ts: u64,
    pub expires: u64,
    /// The address it was signed for, `d/<device>` or `g/<group>`: a device applies it only
    /// when that is its own id or one of its groups.
    pub to: String,
    /// What each app should look like.
    pub apps: BTreeMap<String, BundleApp>,
}

/// The desired state of one app.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundleApp {
    /// Per-app monotonic version, shared with fleet commands and desired state: it must be
    /// newer than every version the device accepted for the app.
    pub version: u64,
    /// Signed as a rollback: `version` may be older than what the device has, as long as the
    /// bundle was made (`ts`) after everything the device applied for the app.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
    /// The release to run: a slug file (`roboku slug:build`, or any app `.tar.gz`) in the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<SlugRef>,
    /// When present, the complete set of config vars (keys not named are unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    /// Process counts; types not named keep their count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub formation: BTreeMap<String, u32>,
}

/// A slug member: the sha256 (lowercase hex) and size of the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct SlugRef {
    pub sha256: String,
    pub size: u64,
}

impl SlugRef {
    /// Its member name: `slugs/<sha256>.tar.gz`.
    pub fn member(&self) -> String {
        format!("slugs/{}.tar.gz", self.sha256)
    }
}

impl Manifest {
    /// The slug members, in the order they follow the manifest: each distinct slug once, in the
    /// order of the apps (by name) that name it.
    pub fn slugs(&self) -> Vec<SlugRef> {
        let mut out: Vec<SlugRef> = Vec::new();
        for app in self.apps.values() {
            if let Some(s) = &app.slug {
                if !out.iter().any(|o| o.sha256 == s.sha256) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Checks what the format itself requires (not the device's policy): the format version,
    /// an id, app names, slug digests and sizes, and that each app asks for something.
    pub fn check(&self) -> Result<(), String> {
        if self.bundle != FORMAT {
            return Err(format!(
                "bundle format {} is not supported (this roboku reads format {FORMAT})",
                self.bundle
            ));
        }
        if self.id.is_empty() || self.id.len() > 64 {
            return Err("id must be 1-64 characters".into());
        }
        if self.apps.is_empty() {
            return Err("the manifest names no app".into());
        }
        let mut total: u64 = 0;
        for (name, app) in &self.apps {
            crate::check_app_name(name)?;
            if let Some(s) = &app.slug {
                if s.sha256.len() != 64
                    || !s
                        .sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(format!(
                        "app {name}: slug sha256 {:?} is not 64 lowercase hex digits",
                        s.sha256
                    ));
                }
                if s.size == 0 || s.size > MAX_SLUG {
                    return Err(format!(
                        "app {name}: slug size {} is not within 1..={MAX_SLUG} bytes",
                        s.size
                    ));
                }
            }
            if app.slug.is_none() && app.config.is_none() && app.formation.is_empty() {
                return Err(format!(
                    "app {name}: asks for nothing (no slug, config or formation)"
                ));
            }
        }
        for s in self.slugs() {
            total = total.saturating_add(s.size);
        }
        if total > MAX_SLUG {
            return Err(format!(
                "the slugs add up to {total} bytes, more than the {MAX_SLUG} allowed"
            ));
        }
        Ok(())
    }
}

/// Whether a bundle's acks (as the local API streams them) say it went well: no app REJECTED,
/// FAILED or TIMED_OUT (`Err` with the first reason), and a SUCCEEDED (for a check, `dry_run`:
/// an ACCEPTED) among them.
pub fn outcome(acks: &[crate::fleet::Ack], dry_run: bool) -> Result<(), String> {
    use crate::fleet::AckStatus;
    if let Some(bad) = acks.iter().find(|a| {
        matches!(
            a.status,
            AckStatus::Rejected | AckStatus::Failed | AckStatus::TimedOut
        )
    }) {
        return Err(bad
            .details
            .reason
            .clone()
            .unwrap_or_else(|| bad.status.as_str().to_string()));
    }
    let want = if dry_run {
        AckStatus::Accepted
    } else {
        AckStatus::Succeeded
    };
    if acks.iter().any(|a| a.status == want) {
        Ok(())
    } else {
        Err("robokud ended the bundle without a result (see its log)".into())
    }
}

/// Lowercase hex of a sha256 digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

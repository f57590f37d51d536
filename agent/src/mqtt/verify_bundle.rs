//! Verification of offline bundle manifests, pure: no IO, no clock, no tokio. A bundle is
//! checked like a fleet command, by the same code ([`super::verify`]): size, the sealed wrapper,
//! the signature over the exact bytes with a trusted key (or dev mode), then the parsed manifest:
//! its format, the address it was signed for, issue time and expiry with the clock-skew
//! allowance, its lifetime, and per app the version against the [`ReplayGuard`] (the one
//! commands use: one monotonic version per app, whichever door it came through).
//!
//! What differs from a command, and why: a bundle arrives on no topic, so its `to` must name
//! this device or one of its groups; it may live up to a year (it travels by hand), where a
//! command lives a day; and an older version passes only when the bundle is signed as a
//! rollback made after the app's last change, so an old bundle can never undo a newer one.
//! The slug members are checked against the manifest's digests while they are read
//! (`roboku_wire::bundle::BundleReader`), after this and before anything is applied.

use super::verify::{check_times, echo, open, Refused, Rejection, ReplayGuard, Trust};
use roboku_wire::bundle::{Manifest, FORMAT, MAX_LIFETIME_MS};
use roboku_wire::fleet::topic::Address;

/// Who this device is: a bundle must be addressed to it or to one of its groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub device: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// The address `to` names, when it is this device's own or one of its groups'.
    fn matches(&self, to: &str) -> Option<Address> {
        let (scope, name) = to.split_once('/')?;
        match scope {
            "d" if name == self.device => Some(Address::Device(name.to_string())),
            "g" if self.groups.iter().any(|g| g == name) => Some(Address::Group(name.to_string())),
            _ => None,
        }
    }
}

/// A manifest that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    pub manifest: Manifest,
    /// The key that signed it; `None` for an unsigned one accepted in dev mode.
    pub kid: Option<String>,
}

/// Verifies the sealed manifest of a bundle at `now` (unix ms of a trusted clock, or the
/// clock's verdict). Does not record it: the caller
/// calls [`ReplayGuard::record_bundle`] once its slugs checked out too.
pub fn verify_bundle(
    sealed: &[u8],
    me: &Identity,
    now: impl Into<crate::clock::Judged>,
    trust: &Trust,
    guard: &ReplayGuard,
) -> Result<VerifiedBundle, Refused> {
    let now = now.into();
    let (manifest, kid): (Manifest, _) = open(sealed, trust)?;
    let refuse = |why| Refused {
        id: Some(echo(&manifest.id)),
        why,
    };
    if manifest.bundle != FORMAT {
        return Err(refuse(Rejection::Format(manifest.bundle)));
    }
    manifest
        .check()
        .map_err(|e| refuse(Rejection::Malformed(e)))?;
    if me.matches(&manifest.to).is_none() {
        return Err(refuse(Rejection::Foreign {
            to: manifest.to.clone(),
            device: me.device.clone(),
            groups: me.groups.join(", "),
        }));
    }
    check_times(manifest.ts, manifest.expires, &now, trust).map_err(refuse)?;
    let lifetime_ms = manifest.expires.saturating_sub(manifest.ts);
    if lifetime_ms > MAX_LIFETIME_MS {
        return Err(refuse(Rejection::TooLongLived {
            lifetime_ms,
            max_ms: MAX_LIFETIME_MS,
        }));
    }
    guard.check_bundle(&manifest).map_err(refuse)?;
    Ok(VerifiedBundle { manifest, kid })
}

#[cfg(test)]
#[path = "verify_bundle_tests.rs"]
mod tests;

//! Verification of fleet payloads, pure: no IO, no clock, no tokio. Every payload from a `cmd` or
//! `desired` topic goes through here before anything acts on it, and each way it can be wrong has
//! its own [`Rejection`] with a reason a person can act on (it goes back in the REJECTED ack).
//!
//! Order of checks: size; the sealed wrapper and its base64; the signature over the exact bytes
//! (a known key, `verify_strict`), or dev mode for unsigned ones; then the envelope is parsed
//! (never re-serialised); protocol version; the address it was signed for against the topic it
//! came on; issue time and expiry with a clock-skew allowance; for commands the id (duplicate)
//! and the per-app version (replay) against the [`ReplayGuard`].

use crate::clock::Judged;
use roboku_wire::fleet::seal::{self, PublicKey};
use roboku_wire::fleet::topic::Address;
use roboku_wire::fleet::{Action, DesiredDoc, Envelope, MAX_PAYLOAD, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// A command may live at most this long (`expires - ts`); it bounds how long ids must be kept.
pub const MAX_COMMAND_LIFETIME_MS: u64 = 24 * 3600 * 1000;
/// Ids kept at least, even when expired (a cheap second line against replays).
pub const KEEP_IDS: usize = 1000;
/// Ids kept at most, whatever their expiry (memory bound against a flood of valid commands).
pub const MAX_IDS: usize = 100_000;

/// What this device trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: BTreeMap<String, PublicKey>,
    /// Dev mode: unsigned payloads are accepted (and every acceptance says so in the log).
    pub allow_unsigned: bool,
    /// Allowed difference between the publisher's clock and ours, ms.
    pub skew_ms: u64,
}

impl Trust {
    pub fn new(
        keys: impl IntoIterator<Item = PublicKey>,
        allow_unsigned: bool,
        skew_ms: u64,
    ) -> Self {
        Trust {
            keys: keys.into_iter().map(|k| (seal::key_id(&k), k)).collect(),
            allow_unsigned,
            skew_ms,
        }
    }
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("payload is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("unsigned payload refused (signed commands only; dev mode `allow_unsigned` is off)")]
    Unsigned,
    #[error("signed with unknown key {kid:?} (trusted: {trusted})")]
    UnknownKey { kid: String, trusted: String },
    #[error("bad signature (key {0}): the payload was altered or signed with another key")]
    BadSignature(String),
    #[error("protocol version {0} not supported (this device speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("signed for {to:?} but arrived on {arrived:?}")]
    WrongAddress { to: String, arrived: String },
    #[error("expired at {expires} (now {now}, clock-skew allowance {skew_ms} ms)")]
    Expired {
        expires: u64,
        now: u64,
        skew_ms: u64,
    },
    #[error("issued at {ts}, in the future (now {now}; check the clocks)")]
    FromFuture { ts: u64, now: u64 },
    #[error("issued at {ts}, before {floor}, the last time this device trusted its clock (it is not synchronised now, so only what was made since is taken: make it again, or let the clock sync)")]
    BeforeTrustedTime { ts: u64, floor: u64 },
    #[error("lives {lifetime_ms} ms, longer than the {max_ms} ms allowed")]
    TooLongLived { lifetime_ms: u64, max_ms: u64 },
    #[error("duplicate: {0} was already accepted (a command or bundle runs at most once)")]
    Duplicate(String),
    #[error("replayed: version {version} of app {app:?} is not newer than {seen}")]
    Replayed {
        app: String,
        version: u64,
        seen: u64,
    },
    #[error("downgrade: version {version} of app {app:?} is older than {seen}, the version this device has (a bundle signed as a rollback may go back)")]
    Downgraded {
        app: String,
        version: u64,
        seen: u64,
    },
    #[error("stale rollback: made at {ts}, but app {app:?} took a change made at {last} since (make the rollback again)")]
    StaleRollback { app: String, ts: u64, last: u64 },
    #[error("signed for {to:?}, and this device is {device:?} in groups [{groups}]")]
    Foreign {
        to: String,
        device: String,
        groups: String,
    },
    #[error(
        "bundle format {0} not supported (this device reads format {})",
        roboku_wire::bundle::FORMAT
    )]
    Format(u32),
    #[error("{0}")]
    Bundle(roboku_wire::bundle::BundleError),
}

impl Rejection {
    /// A short machine-readable word for logs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Malformed(_) => "malformed",
            Rejection::Unsigned => "unsigned",
            Rejection::UnknownKey { .. } => "unknown_key",
            Rejection::BadSignature(_) => "bad_signature",
            Rejection::Version(_) => "version",
            Rejection::WrongAddress { .. } => "wrong_address",
            Rejection::Expired { .. } => "expired",
            Rejection::FromFuture { .. } => "from_future",
            Rejection::BeforeTrustedTime { .. } => "before_trusted_time",
            Rejection::TooLongLived { .. } => "too_long_lived",
            Rejection::Duplicate(_) => "duplicate",
            Rejection::Replayed { .. } => "replayed",
            Rejection::Downgraded { .. } => "downgraded",
            Rejection::StaleRollback { .. } => "stale_rollback",
            Rejection::Foreign { .. } => "foreign",
            Rejection::Format(_) => "format",
            Rejection::Bundle(e) => e.code(),
        }
    }
}

/// A refusal, with the payload's id when it could be read (an echo for the ack, not trusted).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub id: Option<String>,
    pub why: Rejection,
}

/// A verified command.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub env: Envelope,
    pub action: Action,
    /// The key that signed it; `None` for an unsigned one accepted in dev mode.
    pub kid: Option<String>,
}

/// Checks size and signature, then parses the signed bytes as `T`.
pub(super) fn open<T: serde::de::DeserializeOwned>(
    payload: &[u8],
    trust: &Trust,
) -> Result<(T, Option<String>), Refused> {
    let refuse = |id, why| Refused { id, why };
    if payload.len() > MAX_PAYLOAD {
        // Its id, when it can be read, so the sender hears which command was refused.
        let id = seal::unseal(payload).ok().and_then(|u| echo_id(&u.bytes));
        return Err(refuse(
            id,
            Rejection::TooLarge {
                size: payload.len(),
                max: MAX_PAYLOAD,
            },
        ));
    }
    let unsealed = seal::unseal(payload).map_err(|e| refuse(None, Rejection::Malformed(e)))?;
    let id = echo_id(&unsealed.bytes);
    let kid = match &unsealed.sig {
        None if trust.allow_unsigned => None,
        None => return Err(refuse(id, Rejection::Unsigned)),
        Some((kid, sig)) => {
            let Some(key) = trust.keys.get(kid) else {
                let trusted = if trust.keys.is_empty() {
                    "none configured".to_string()
                } else {
                    trust.key_ids().join(", ")
                };
                return Err(refuse(
                    id,
                    Rejection::UnknownKey {
                        kid: kid.clone(),
                        trusted,
                    },
                ));
            };
            if !seal::verify(key, &unsealed.bytes, sig) {
                return Err(refuse(id, Rejection::BadSignature(kid.clone())));
            }
            Some(kid.clone())
        }
    };
    let doc = serde_json::from_slice(&unsealed.bytes)
        .map_err(|e| refuse(id.clone(), Rejection::Malformed(e.to_string())))?;
    Ok((doc, kid))
}

/// Best-effort id of an unverified envelope, only to echo it in a REJECTED ack.
fn echo_id(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_slice::<IdOnly>(bytes)
        .ok()
        .and_then(|i| i.id)
        .map(|id| echo(&id))
}

/// An id as a REJECTED ack echoes it: at most 64 characters, however long the one sent (an
/// overlong id is one of the reasons to refuse, and the ack must stay small).
pub(super) fn echo(id: &str) -> String {
    id.chars().take(64).collect()
}

/// The header checks commands and desired docs share.
fn check_header(
    v: u32,
    to: &str,
    ts: u64,
    expires: u64,
    arrived: &Address,
    now: &Judged,
    trust: &Trust,
) -> Result<(), Rejection> {
    if v != PROTOCOL_VERSION {
        return Err(Rejection::Version(v));
    }
    if to != arrived.as_path() {
        return Err(Rejection::WrongAddress {
            to: to.to_string(),
            arrived: arrived.as_path(),
        });
    }
    check_times(ts, expires, now, trust)
}

/// Issue time and expiry against the clock's verdict, with the clock-skew allowance (the rule
/// for untrusted clocks: [`super::clock`]).
pub(super) fn check_times(
    ts: u64,
    expires: u64,
    now: &Judged,
    trust: &Trust,
) -> Result<(), Rejection> {
    super::clock::check_times(ts, expires, now, trust.skew_ms)
}

/// Verifies a command payload that arrived on `arrived`'s `cmd` topic at `now` (unix ms of a
/// trusted clock, or the clock's verdict). Does not record it: the caller calls
/// [`ReplayGuard::record`] once it accepts it.
pub fn verify_command(
    payload: &[u8],
    arrived: &Address,
    now: impl Into<Judged>,
    trust: &Trust,
    guard: &ReplayGuard,
) -> Result<Verified, Refused> {
    let now = now.into();
    let (env, kid): (Envelope, _) = open(payload, trust)?;
    let refuse = |why| Refused {
        id: Some(echo(&env.id)),
        why,
    };
    check_header(env.v, &env.to, env.ts, env.expires, arrived, &now, trust).map_err(refuse)?;
    let lifetime_ms = env.expires.saturating_sub(env.ts);
    if lifetime_ms > MAX_COMMAND_LIFETIME_MS {
        return Err(refuse(Rejection::TooLongLived {
            lifetime_ms,
            max_ms: MAX_COMMAND_LIFETIME_MS,
        }));
    }
    if env.id.is_empty() || env.id.len() > 64 {
        return Err(refuse(Rejection::Malformed(
            "id must be 1-64 characters".into(),
        )));
    }
    roboku_wire::check_app_name(&env.app).map_err(|e| refuse(Rejection::Malformed(e)))?;
    let action = env.action().map_err(|e| refuse(Rejection::Malformed(e)))?;
    // A read changes nothing, so it has no place in the per-app version order.
    if action.is_read() && env.version.is_some() {
        return Err(refuse(Rejection::Malformed(format!(
            "body of {}: a read takes no version",
            env.kind.as_str()
        ))));
    }
    if let Action::Logs(q) = &action {
        super::logs_reply::plan(q)
            .map_err(|e| refuse(Rejection::Malformed(format!("body of logs: {e}"))))?;
    }
    guard.check(&env).map_err(refuse)?;
    Ok(Verified { env, action, kid })
}

/// Verifies a desired doc from `arrived`'s `desired` topic. Staleness is judged per app later
/// (against the versions applied), not here.
pub fn verify_desired(
    payload: &[u8],
    arrived: &Address,
    now: impl Into<Judged>,
    trust: &Trust,
) -> Result<(DesiredDoc, Option<String>), Refused> {
    let now = now.into();
    let (doc, kid): (DesiredDoc, _) = open(payload, trust)?;
    let refuse = |why| Refused {
        id: Some(echo(&doc.id)),
        why,
    };
    check_header(doc.v, &doc.to, doc.ts, doc.expires, arrived, &now, trust).map_err(refuse)?;
    for app in doc.apps.keys() {
        roboku_wire::check_app_name(app).map_err(|e| refuse(Rejection::Malformed(e)))?;
    }
    Ok((doc, kid))
}

/// Remembers what was accepted: the highest version per app and recent command ids.
/// Persisted by the caller (serde), so a restart does not reopen the door to replays.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplayGuard {
    #[serde(default)]
    versions: BTreeMap<String, u64>,
    #[serde(default)]
    ids: VecDeque<SeenId>,
    /// Per app, the issue time (`ts`) of the newest versioned command or bundle accepted: a
    /// bundle signed as a rollback must be newer than it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    issued: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SeenId {
    id: String,
    expires: u64,
}

impl ReplayGuard {
    /// Duplicate id or a version not newer than the app's highest: refused.
    pub fn check(&self, env: &Envelope) -> Result<(), Rejection> {
        if self.ids.iter().any(|s| s.id == env.id) {
            return Err(Rejection::Duplicate(env.id.clone()));
        }
        if let (Some(version), Some(&seen)) = (env.version, self.versions.get(&env.app)) {
            if version <= seen {
                return Err(Rejection::Replayed {
                    app: env.app.clone(),
                    version,
                    seen,
                });
            }
        }
        Ok(())
    }

    /// Records an accepted command and forgets ids that can no longer be replayed (expired,
    /// beyond the last [`KEEP_IDS`]).
    pub fn record(&mut self, env: &Envelope, now: u64, skew_ms: u64) {
        self.ids.push_back(SeenId {
            id: env.id.clone(),
            expires: env.expires,
        });
        if let Some(v) = env.version {
            self.bump(&env.app, v);
            self.issued_at(&env.app, env.ts);
        }
        self.prune(now, skew_ms);
    }

    /// Forgets ids that can no longer be replayed (expired, beyond the last [`KEEP_IDS`]).
    fn prune(&mut self, now: u64, skew_ms: u64) {
        while self.ids.len() > KEEP_IDS
            && self
                .ids
                .front()
                .is_some_and(|s| s.expires.saturating_add(skew_ms) < now)
        {
            self.ids.pop_front();
        }
        while self.ids.len() > MAX_IDS {
            self.ids.pop_front();
        }
    }

    /// Duplicate bundle id; per app a version already seen (replay), an older one (downgrade)
    /// unless signed as a rollback made after the app's last change.
    pub fn check_bundle(&self, m: &roboku_wire::bundle::Manifest) -> Result<(), Rejection> {
        if self.ids.iter().any(|s| s.id == m.id) {
            return Err(Rejection::Duplicate(m.id.clone()));
        }
        for (app, a) in &m.apps {
            let Some(&seen) = self.versions.get(app) else {
                continue;
            };
            let (app, version) = (app.clone(), a.version);
            if version == seen {
                return Err(Rejection::Replayed { app, version, seen });
            }
            if version < seen && !a.rollback {
                return Err(Rejection::Downgraded { app, version, seen });
            }
            let last = self.issued.get(&app).copied().unwrap_or(0);
            if version < seen && m.ts <= last {
                return Err(Rejection::StaleRollback {
                    app,
                    ts: m.ts,
                    last,
                });
            }
        }
        Ok(())
    }

    /// Records an accepted bundle: its id, and per app its version and issue time.
    pub fn record_bundle(&mut self, m: &roboku_wire::bundle::Manifest, now: u64, skew_ms: u64) {
        self.ids.push_back(SeenId {
            id: m.id.clone(),
            expires: m.expires,
        });
        for (app, a) in &m.apps {
            self.bump(app, a.version);
            self.issued_at(app, m.ts);
        }
        self.prune(now, skew_ms);
    }

    fn issued_at(&mut self, app: &str, ts: u64) {
        let t = self.issued.entry(app.to_string()).or_insert(0);
        *t = (*t).max(ts);
    }

    /// The highest version applied to `app`.
    pub fn version(&self, app: &str) -> Option<u64> {
        self.versions.get(app).copied()
    }

    /// Raises `app`'s version (never lowers it).
    pub fn bump(&mut self, app: &str, version: u64) {
        let v = self.versions.entry(app.to_string()).or_insert(0);
        *v = (*v).max(version);
    }

    pub fn versions(&self) -> BTreeMap<String, u64> {
        self.versions.clone()
    }

    pub fn ids_len(&self) -> usize {
        self.ids.len()
    }
}

pub use super::verify_bundle::{verify_bundle, Identity, VerifiedBundle};

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;

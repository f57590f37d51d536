//! The fleet state that must survive a restart, in `<data-dir>/fleet.json`: the replay guard
//! (highest version per app, recent command ids), which artifact each fleet-deployed slug came
//! from, and desired versions that failed (not retried until a newer version comes).
//!
//! Owned by the intake task alone; saved (write, fsync, rename, fsync dir) before a command's
//! work starts, so an agent killed at any point never applies it twice.
//! The connection's session counter lives in its own small file (`fleet-session`), written by
//! the connection task once per successful connection.

use super::verify::ReplayGuard;
use crate::util::PathError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How many artifact -> slug pairs are remembered.
const MAX_ARTIFACTS: usize = 256;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FleetState {
    #[serde(default)]
    pub guard: ReplayGuard,
    /// Artifact sha256 -> slug sha256, oldest first.
    #[serde(default)]
    pub artifacts: Vec<(String, String)>,
    /// App -> the desired version whose convergence failed.
    #[serde(default)]
    pub failed_desired: BTreeMap<String, u64>,
}

impl FleetState {
    /// Reads the state; a missing file is a fresh start. A corrupt one is moved aside (named in
    /// the log) and replaced by a fresh state: versions are unix ms, so an old command is still
    /// stopped by its expiry.
    pub fn load(path: &Path) -> FleetState {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FleetState::default(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "reading fleet state failed; starting fresh");
                return FleetState::default();
            }
        };
        match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                let _ = std::fs::rename(path, &aside);
                tracing::error!(path = %path.display(), aside = %aside.display(), error = %e,
                    "fleet state is corrupt; moved aside, starting fresh");
                FleetState::default()
            }
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), PathError> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        write_atomic(path, &bytes)
    }

    /// The slug a fleet artifact became, if this device built it.
    pub fn slug_of(&self, artifact: &str) -> Option<&str> {
        self.artifacts
            .iter()
            .rev()
            .find(|(a, _)| a == artifact)
            .map(|(_, s)| s.as_str())
    }

    /// The artifact a slug came from, if it came from the fleet.
    pub fn artifact_of(&self, slug: &str) -> Option<&str> {
        self.artifacts
            .iter()
            .rev()
            .find(|(_, s)| s == slug)
            .map(|(a, _)| a.as_str())
    }

    pub fn remember_artifact(&mut self, artifact: &str, slug: &str) {
        self.artifacts.retain(|(a, _)| a != artifact);
        self.artifacts
            .push((artifact.to_string(), slug.to_string()));
        if self.artifacts.len() > MAX_ARTIFACTS {
            let excess = self.artifacts.len() - MAX_ARTIFACTS;
            self.artifacts.drain(..excess);
        }
    }
}

/// Whole or not at all (one writer of that helper for the tree: `util`).
pub use crate::util::write_atomic;

/// The session counter: the last session number used, 0 if none.
pub fn load_session(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_survives_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.json");
        assert_eq!(FleetState::load(&path), FleetState::default());
        let mut s = FleetState::default();
        s.guard.bump("hello", 42);
        s.remember_artifact("aa", "ss");
        s.failed_desired.insert("hello".into(), 7);
        s.save(&path).unwrap();
        assert_eq!(FleetState::load(&path), s);
        std::fs::write(&path, b"{broken").unwrap();
        assert_eq!(FleetState::load(&path), FleetState::default());
        assert!(dir.path().join("fleet.json.corrupt").exists());
    }

    #[test]
    fn artifacts_are_bounded_and_latest_wins() {
        let mut s = FleetState::default();
        for i in 0..(MAX_ARTIFACTS + 10) {
            s.remember_artifact(&format!("a{i}"), &format!("s{i}"));
        }
        assert_eq!(s.artifacts.len(), MAX_ARTIFACTS);
        assert_eq!(s.slug_of("a0"), None);
        s.remember_artifact("a300", "new");
        assert_eq!(s.slug_of("a300"), Some("new"));
        assert_eq!(s.artifact_of("new"), Some("a300"));
    }

    #[test]
    fn session_counter_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fleet-session");
        assert_eq!(load_session(&p), 0);
        write_atomic(&p, b"12\n").unwrap();
        assert_eq!(load_session(&p), 12);
    }
}

//! What a new dyno instance is started with besides its command: its cgroup (created with the
//! limits, join files opened), its device groups and its real-time policy. Shared by formation
//! dynos, one-offs and the release phase, so none of them can run unconfined because a cgroup
//! step failed: the caller gets the reason instead and does not start it.

use super::Engine;
use crate::supervisor::hardware::{resolve_groups, rt_params};
use roboku_wire::Limits;
use std::fs::File;

pub(super) struct Confined {
    /// `None` only when this host has no cgroups (limits are then flagged as not enforced).
    pub cgroup: Option<String>,
    pub join: Vec<File>,
    pub groups: Vec<u32>,
    pub rt: Option<(i32, i32)>,
}

/// Supplementary groups and the real-time `(policy, priority)` a start asks for.
pub(super) type Extras = (Vec<u32>, Option<(i32, i32)>);

impl Engine {
    /// Prepares cgroup `rel` with `limits`; `Err` is the reason not to start the dyno (what
    /// was made of the cgroup is already being removed).
    pub(super) fn confine(&self, rel: &str, limits: &Limits) -> Result<Confined, String> {
        let (groups, rt) = self.confine_extras(limits)?;
        if !self.cgroups.status().enforced {
            return Ok(Confined {
                cgroup: None,
                join: Vec::new(),
                groups,
                rt,
            });
        }
        let join = self
            .cgroups
            .create(rel, limits)
            .map_err(|e| format!("cgroup setup failed, not starting unconfined: {e}"))
            .and_then(|()| {
                self.cgroups.join_files(rel).map_err(|e| {
                    format!("cannot open the cgroup's join files, not starting unconfined: {e}")
                })
            });
        match join {
            Ok(join) => Ok(Confined {
                cgroup: Some(rel.to_string()),
                join,
                groups,
                rt,
            }),
            Err(reason) => {
                self.cleanup_cgroup(rel.to_string());
                Err(reason)
            }
        }
    }

    /// The supplementary groups and real-time policy `limits` ask for; `Err` is the reason not
    /// to start.
    pub(super) fn confine_extras(&self, limits: &Limits) -> Result<Extras, String> {
        let groups = limits
            .groups
            .as_deref()
            .map(resolve_groups)
            .transpose()
            .map_err(|e| format!("cannot start: {e}"))?
            .unwrap_or_default();
        let rt = limits
            .rt
            .as_deref()
            .map(rt_params)
            .transpose()
            .map_err(|e| format!("cannot start: {e}"))?;
        Ok((groups, rt))
    }
}

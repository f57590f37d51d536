//! The `none` driver: cgroups are off, unusable or not ours to touch. Dynos still run; limits
//! are stored and shown as not enforced, with the reason. The supervisor still kills each
//! dyno's process group itself, so `kill_all` has nothing to add.

use super::{CgroupDriver, CgroupError, CgroupStats};
use roboku_wire::{CgroupStatus, Limits};
use std::fs::File;

#[derive(Debug, Clone)]
pub struct NoCgroups {
    reason: String,
}

impl NoCgroups {
    pub fn new(reason: impl Into<String>) -> Self {
        NoCgroups {
            reason: reason.into(),
        }
    }
}

impl CgroupDriver for NoCgroups {
    fn status(&self) -> CgroupStatus {
        CgroupStatus {
            mode: "none".into(),
            root: String::new(),
            enforced: false,
            reason: Some(self.reason.clone()),
            joins: None,
        }
    }

    fn create(&self, _rel: &str, _limits: &Limits) -> Result<(), CgroupError> {
        Ok(())
    }

    fn update(&self, _rel: &str, _limits: &Limits) -> Result<(), CgroupError> {
        Ok(())
    }

    /// Nothing to join: the child writes to no file.
    fn join_files(&self, _rel: &str) -> Result<Vec<File>, CgroupError> {
        Ok(Vec::new())
    }

    /// An error, not zeros: zeros would read as "idle dyno". Callers fall back to /proc.
    fn stats(&self, _rel: &str) -> Result<CgroupStats, CgroupError> {
        Err(CgroupError::Disabled(self.reason.clone()))
    }

    /// An error, not an empty list: an empty list would read as "every process is gone".
    fn pids(&self, _rel: &str) -> Result<Vec<i32>, CgroupError> {
        Err(CgroupError::Disabled(self.reason.clone()))
    }

    fn kill_all(&self, _rel: &str) -> Result<(), CgroupError> {
        Ok(())
    }

    fn remove(&self, _rel: &str) -> Result<(), CgroupError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_accepts_everything_and_reports_why() {
        let d = NoCgroups::new("cgroups turned off in settings");
        let limits = Limits {
            memory_max: Some(1 << 20),
            ..Limits::default()
        };
        d.create("demo/web.1", &limits).unwrap();
        d.update("demo/web.1", &limits).unwrap();
        assert!(d.join_files("demo/web.1").unwrap().is_empty());
        d.kill_all("demo/web.1").unwrap();
        d.remove("demo/web.1").unwrap();
        let err = d.stats("demo/web.1").unwrap_err().to_string();
        assert!(err.contains("turned off in settings"), "{err}");
        assert!(matches!(
            d.pids("demo/web.1"),
            Err(CgroupError::Disabled(_))
        ));
        let s = d.status();
        assert_eq!((s.mode.as_str(), s.enforced), ("none", false));
        assert_eq!(s.reason.as_deref(), Some("cgroups turned off in settings"));
    }
}
